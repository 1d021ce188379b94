//! Name-value pairs (spec 3.4), decoded incrementally across record boundaries.

use super::{encode_header_into, encode_stream_end, ProtocolError, RecordType, MAX_CONTENT_LEN};

/// Limits a [`ParamsDecoder`] enforces before it stores a byte.
///
/// # Example
///
/// ```
/// use fcgi::protocol::ParamsLimits;
/// let l = ParamsLimits { max_bytes: 1024, max_pairs: 10 };
/// assert!(l.max_bytes < ParamsLimits::default().max_bytes);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ParamsLimits {
    /// Most name and value bytes, summed over all pairs. Default 1 MiB.
    pub max_bytes: usize,
    /// Most pairs. Default 4096.
    pub max_pairs: usize,
}

impl Default for ParamsLimits {
    fn default() -> Self {
        ParamsLimits {
            max_bytes: 1 << 20,
            max_pairs: 4096,
        }
    }
}

/// One decoded pair, borrowed from its [`Params`] or [`ParamsDecoder`].
///
/// # Example
///
/// ```
/// use fcgi::protocol::{ParamsDecoder, ParamsLimits};
/// let mut d = ParamsDecoder::new(ParamsLimits::default());
/// d.feed(b"\x01\x02AOK").unwrap();
/// let p = d.finish().unwrap();
/// let pair = p.iter().next().unwrap();
/// assert_eq!((pair.name, pair.value), (&b"A"[..], &b"OK"[..]));
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Pair<'a> {
    /// The name bytes.
    pub name: &'a [u8],
    /// The value bytes.
    pub value: &'a [u8],
}

/// Decoded name-value pairs in the order received: one buffer, no allocation per pair.
///
/// Lookups are case-sensitive and the first of duplicate names wins, as in libfcgi.
///
/// # Example
///
/// ```
/// use fcgi::protocol::{encode_pair, ParamsDecoder, ParamsLimits};
/// let mut wire = Vec::new();
/// encode_pair(&mut wire, b"HOST", b"a");
/// encode_pair(&mut wire, b"HOST", b"b");
/// let mut d = ParamsDecoder::new(ParamsLimits::default());
/// d.feed(&wire).unwrap();
/// let params = d.finish().unwrap();
/// assert_eq!(params.get(b"HOST"), Some(&b"a"[..]));
/// assert_eq!(params.get(b"host"), None);
/// assert_eq!(params.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    bytes: Vec<u8>,
    // (start of name in `bytes`, name length, value length); the value follows the name.
    index: Vec<(usize, usize, usize)>,
}

impl Params {
    /// The value of the first pair named `name`.
    ///
    /// # Example
    ///
    /// ```
    /// let p = fcgi::protocol::Params::default();
    /// assert!(p.get(b"X").is_none());
    /// ```
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter().find(|p| p.name == name).map(|p| p.value)
    }

    /// The value of the first pair named `name`, as UTF-8: `Ok(None)` when absent,
    /// `Err` when present but not UTF-8 (then [`Params::get`] has the bytes).
    ///
    /// # Errors
    ///
    /// The value is not valid UTF-8.
    ///
    /// # Example
    ///
    /// ```
    /// let mut p = fcgi::protocol::Params::default();
    /// p.push(b"A", b"1");
    /// p.push(b"RAW", b"\xff");
    /// assert_eq!(p.get_str("A"), Ok(Some("1")));
    /// assert_eq!(p.get_str("B"), Ok(None));
    /// assert!(p.get_str("RAW").is_err());
    /// ```
    pub fn get_str(&self, name: &str) -> Result<Option<&str>, std::str::Utf8Error> {
        self.get(name.as_bytes())
            .map(std::str::from_utf8)
            .transpose()
    }

    /// The pairs in the order received.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::protocol::Params::default().iter().count(), 0);
    /// ```
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Pair<'_>> + Clone + '_ {
        self.index.iter().map(move |&(start, n, v)| Pair {
            name: &self.bytes[start..start + n],
            value: &self.bytes[start + n..start + n + v],
        })
    }

    /// Number of pairs.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::protocol::Params::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when there are no pairs.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(fcgi::protocol::Params::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes of names and values stored.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(fcgi::protocol::Params::default().byte_len(), 0);
    /// ```
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends a pair (used by the client side and by tests).
    ///
    /// # Example
    ///
    /// ```
    /// let mut p = fcgi::protocol::Params::default();
    /// p.push(b"A", b"1");
    /// assert_eq!(p.get(b"A"), Some(&b"1"[..]));
    /// ```
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.index.push((start, name.len(), value.len()));
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum State {
    /// Collecting the two length fields (1 or 4 bytes each) in `lens[..got]`.
    Lengths { lens: [u8; 8], got: usize },
    /// Copying `remaining` bytes of name then value.
    Body {
        start: usize,
        name: usize,
        value: usize,
        remaining: usize,
    },
    /// A limit was passed; every later feed repeats the error until `finish`.
    Failed(ProtocolError),
}

/// Decodes a name-value pair stream fed in arbitrary pieces (record contents).
///
/// A pair may span any number of records, split at any byte, including inside a length field.
/// Storage grows only by bytes actually received: a hostile length of 2^31 costs nothing until
/// the bytes arrive, and is refused at once if it would pass [`ParamsLimits::max_bytes`].
///
/// # Example
///
/// ```
/// use fcgi::protocol::{ParamsDecoder, ParamsLimits};
/// let wire = b"\x0b\x02SERVER_PORT80";
/// let mut d = ParamsDecoder::new(ParamsLimits::default());
/// for byte in wire.chunks(1) {
///     d.feed(byte).unwrap();
/// }
/// assert_eq!(d.finish().unwrap().get(b"SERVER_PORT"), Some(&b"80"[..]));
/// ```
#[derive(Clone, Debug)]
pub struct ParamsDecoder {
    limits: ParamsLimits,
    params: Params,
    state: State,
}

impl ParamsDecoder {
    /// A decoder enforcing `limits`.
    ///
    /// # Example
    ///
    /// ```
    /// let d = fcgi::protocol::ParamsDecoder::new(Default::default());
    /// assert_eq!(d.pairs().count(), 0);
    /// ```
    pub fn new(limits: ParamsLimits) -> ParamsDecoder {
        ParamsDecoder {
            limits,
            params: Params::default(),
            state: State::Lengths {
                lens: [0; 8],
                got: 0,
            },
        }
    }

    /// Feeds the next piece of the stream.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::ParamsTooLong`] or [`ProtocolError::TooManyParams`] as soon as a
    /// pair's announced lengths would pass a limit. The decoder then refuses every later feed
    /// with the same error until [`ParamsDecoder::finish`].
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::{ParamsDecoder, ParamsLimits, ProtocolError};
    /// let mut d = ParamsDecoder::new(ParamsLimits { max_bytes: 10, max_pairs: 10 });
    /// // A 4-byte value length of 0x7fffffff: refused before any byte of it is stored.
    /// assert_eq!(d.feed(b"\x01\xff\xff\xff\xffA"), Err(ProtocolError::ParamsTooLong { limit: 10 }));
    /// ```
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), ProtocolError> {
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        if self.params.index.capacity() == 0 && !input.is_empty() {
            // Room for the pairs this piece may hold (a pair takes at least 2 bytes; most
            // take 16 or more), instead of growing from 4 a pair at a time.
            let guess = (input.len() / 16).max(8).min(self.limits.max_pairs);
            self.params.index.reserve(guess);
        }
        while !input.is_empty() {
            match &mut self.state {
                State::Failed(e) => return Err(*e),
                State::Lengths { got: 0, .. } if lengths_len(input).is_some() => {
                    // Both lengths are in this piece: read them in one step.
                    let used = lengths_len(input).expect("checked");
                    let (name, value) = parse_lengths(&input[..used]).expect("complete");
                    input = &input[used..];
                    if let Err(e) = self.start_pair(name, value) {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                }
                State::Lengths { lens, got } => {
                    lens[*got] = input[0];
                    *got += 1;
                    input = &input[1..];
                    if let Some((name, value)) = parse_lengths(&lens[..*got]) {
                        if let Err(e) = self.start_pair(name, value) {
                            self.state = State::Failed(e);
                            return Err(e);
                        }
                    }
                }
                State::Body {
                    start,
                    name,
                    value,
                    remaining,
                } => {
                    let take = (*remaining).min(input.len());
                    if self.params.bytes.capacity() - self.params.bytes.len() < take {
                        // Room for the rest of the piece at once (bytes received already,
                        // never past the limit), not one growth step per pair.
                        let room = self.limits.max_bytes - self.params.bytes.len();
                        self.params.bytes.reserve(input.len().min(room));
                    }
                    self.params.bytes.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    *remaining -= take;
                    if *remaining == 0 {
                        self.params.index.push((*start, *name, *value));
                        self.state = State::Lengths {
                            lens: [0; 8],
                            got: 0,
                        };
                    }
                }
            }
        }
        Ok(())
    }

    fn start_pair(&mut self, name: usize, value: usize) -> Result<(), ProtocolError> {
        if self.params.index.len() >= self.limits.max_pairs {
            return Err(ProtocolError::TooManyParams {
                limit: self.limits.max_pairs,
            });
        }
        let room = self.limits.max_bytes - self.params.bytes.len();
        if name.saturating_add(value) > room {
            return Err(ProtocolError::ParamsTooLong {
                limit: self.limits.max_bytes,
            });
        }
        let start = self.params.bytes.len();
        self.state = if name + value == 0 {
            self.params.index.push((start, 0, 0));
            State::Lengths {
                lens: [0; 8],
                got: 0,
            }
        } else {
            State::Body {
                start,
                name,
                value,
                remaining: name + value,
            }
        };
        Ok(())
    }

    /// The pairs completed so far.
    ///
    /// # Example
    ///
    /// ```
    /// let mut d = fcgi::protocol::ParamsDecoder::new(Default::default());
    /// d.feed(b"\x01\x01AB\x01").unwrap();
    /// assert_eq!(d.pairs().count(), 1);
    /// ```
    pub fn pairs(&self) -> impl Iterator<Item = Pair<'_>> + '_ {
        self.params.iter()
    }

    /// Ends the stream and hands over the pairs; the decoder is left empty and reusable.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::TruncatedParams`] if the stream ended inside a pair, or the error
    /// [`ParamsDecoder::feed`] returned.
    ///
    /// # Example
    ///
    /// ```
    /// use fcgi::protocol::{ParamsDecoder, ProtocolError};
    /// let mut d = ParamsDecoder::new(Default::default());
    /// d.feed(b"\x05\x01AB").unwrap();
    /// assert_eq!(d.finish(), Err(ProtocolError::TruncatedParams));
    /// ```
    pub fn finish(&mut self) -> Result<Params, ProtocolError> {
        let state = std::mem::replace(
            &mut self.state,
            State::Lengths {
                lens: [0; 8],
                got: 0,
            },
        );
        let params = std::mem::take(&mut self.params);
        match state {
            State::Lengths { got: 0, .. } => Ok(params),
            State::Failed(e) => Err(e),
            _ => Err(ProtocolError::TruncatedParams),
        }
    }
}

/// Reads one length (1 byte if the high bit is clear, else 4 bytes) from the front of `b`.
fn parse_length(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.first()?;
    if first & 0x80 == 0 {
        Some((first as usize, 1))
    } else {
        let four: &[u8; 4] = b.get(..4)?.try_into().ok()?;
        let n = u32::from_be_bytes(*four) & 0x7fff_ffff;
        Some((n as usize, 4))
    }
}

/// How many bytes the two length fields at the front of `b` take, if `b` holds them all.
fn lengths_len(b: &[u8]) -> Option<usize> {
    let first = if *b.first()? & 0x80 == 0 { 1 } else { 4 };
    let second = if *b.get(first)? & 0x80 == 0 { 1 } else { 4 };
    (b.len() >= first + second).then_some(first + second)
}

/// Both lengths of a pair, once `b` holds all their bytes.
fn parse_lengths(b: &[u8]) -> Option<(usize, usize)> {
    let (name, used) = parse_length(b)?;
    let (value, used2) = parse_length(&b[used..])?;
    debug_assert_eq!(used + used2, b.len());
    Some((name, value))
}

fn encode_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let len = u32::try_from(len).expect("a FastCGI length is at most 2^31 - 1");
        assert!(len < 0x8000_0000, "a FastCGI length is at most 2^31 - 1");
        out.extend_from_slice(&(len | 0x8000_0000).to_be_bytes());
    }
}

/// Appends one name-value pair: 1-byte lengths below 128, else 4-byte lengths (spec 3.4).
///
/// # Panics
///
/// If a name or value is 2^31 bytes or longer, which the format cannot express.
///
/// # Example
///
/// ```
/// let mut out = Vec::new();
/// fcgi::protocol::encode_pair(&mut out, b"N", &[b'v'; 128]);
/// assert_eq!(&out[..6], &[1, 0x80, 0, 0, 128, b'N']);
/// ```
pub fn encode_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    encode_length(out, name.len());
    encode_length(out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Appends a whole `FCGI_PARAMS` stream for `request_id`: the pairs in records of at most
/// 65535 bytes (a pair may span records) and the empty record that ends the stream.
///
/// # Example
///
/// ```
/// let mut out = Vec::new();
/// fcgi::protocol::encode_params(&mut out, 1, [(&b"A"[..], &b"B"[..])]);
/// assert_eq!(out, [1, 4, 0, 1, 0, 4, 0, 0, 1, 1, b'A', b'B', 1, 4, 0, 1, 0, 0, 0, 0]);
/// ```
pub fn encode_params<'a, I>(out: &mut Vec<u8>, request_id: u16, pairs: I)
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    let mut body = Vec::new();
    for (name, value) in pairs {
        encode_pair(&mut body, name, value);
    }
    for piece in body.chunks(MAX_CONTENT_LEN) {
        encode_header_into(out, RecordType::Params, request_id, piece.len() as u16);
        out.extend_from_slice(piece);
    }
    encode_stream_end(out, RecordType::Params, request_id);
}

#[cfg(test)]
mod tests {
    use super::*;

    type Owned = Vec<(Vec<u8>, Vec<u8>)>;

    fn decode_all(wire: &[u8], split: usize) -> Result<Owned, ProtocolError> {
        let mut d = ParamsDecoder::new(ParamsLimits::default());
        for piece in [&wire[..split], &wire[split..]] {
            d.feed(piece)?;
        }
        Ok(d.finish()?
            .iter()
            .map(|p| (p.name.to_vec(), p.value.to_vec()))
            .collect())
    }

    #[test]
    fn length_encoding_boundaries() {
        for (len, enc) in [
            (0usize, vec![0u8]),
            (127, vec![127]),
            (128, vec![0x80, 0, 0, 128]),
            (65535, vec![0x80, 0, 0xff, 0xff]),
            (0x7fff_ffff, vec![0xff, 0xff, 0xff, 0xff]),
        ] {
            let mut out = Vec::new();
            encode_length(&mut out, len);
            assert_eq!(out, enc, "length {len}");
            assert_eq!(parse_length(&enc), Some((len, enc.len())));
        }
    }

    #[test]
    fn pairs_split_at_every_byte() {
        let pairs: Owned = vec![
            (b"A".to_vec(), b"".to_vec()),
            (vec![b'n'; 127], vec![b'v'; 128]),
            (vec![b'N'; 128], vec![b'V'; 127]),
            (b"".to_vec(), b"x".to_vec()),
            (b"QUERY_STRING".to_vec(), vec![0u8, 0xff, b'=', 0]),
        ];
        let mut wire = Vec::new();
        for (n, v) in &pairs {
            encode_pair(&mut wire, n, v);
        }
        for split in 0..=wire.len() {
            assert_eq!(decode_all(&wire, split).unwrap(), pairs, "split at {split}");
        }
    }

    #[test]
    fn byte_at_a_time_and_truncation_at_every_byte() {
        let mut wire = Vec::new();
        encode_pair(&mut wire, &[b'k'; 200], &[b'w'; 300]);
        encode_pair(&mut wire, b"K", b"W");
        let mut d = ParamsDecoder::new(ParamsLimits::default());
        for b in &wire {
            d.feed(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(d.finish().unwrap().len(), 2);
        let first_end = 8 + 500;
        for cut in 1..wire.len() {
            let mut d = ParamsDecoder::new(ParamsLimits::default());
            d.feed(&wire[..cut]).unwrap();
            let r = d.finish();
            if cut == first_end {
                assert_eq!(r.unwrap().len(), 1);
            } else {
                assert_eq!(r, Err(ProtocolError::TruncatedParams), "cut at {cut}");
            }
        }
    }

    #[test]
    fn hostile_lengths_are_refused_before_storage() {
        // CVE-2025-23016: lengths near 2^31 made libfcgi overflow its allocation.
        let mut d = ParamsDecoder::new(ParamsLimits::default());
        let err = d.feed(b"\xff\xff\xff\xff\xff\xff\xff\xffAAAA").unwrap_err();
        assert_eq!(err, ProtocolError::ParamsTooLong { limit: 1 << 20 });
        assert_eq!(d.params.bytes.capacity(), 0);
        // Under the limit: storage grows only with bytes received.
        let mut d = ParamsDecoder::new(ParamsLimits::default());
        d.feed(b"\x01\x80\x0f\x00\x00N").unwrap();
        d.feed(&[b'v'; 10]).unwrap();
        assert!(d.params.bytes.capacity() < 1024);
    }

    #[test]
    fn pair_count_and_byte_limits() {
        let limits = ParamsLimits {
            max_bytes: 6,
            max_pairs: 2,
        };
        let mut d = ParamsDecoder::new(limits);
        d.feed(b"\x01\x01AB\x01\x01CD").unwrap();
        assert_eq!(
            d.feed(b"\x00\x00"),
            Err(ProtocolError::TooManyParams { limit: 2 })
        );
        let mut d = ParamsDecoder::new(limits);
        d.feed(b"\x02\x04AB1234").unwrap();
        assert_eq!(
            d.feed(b"\x00\x01"),
            Err(ProtocolError::ParamsTooLong { limit: 6 })
        );
    }

    /// Found by the `params` fuzz target (tests/data/regress/params/crash-*): a feed after a
    /// refused pair indexed past the 8 length bytes (a panic even in release builds).
    #[test]
    fn feeding_after_a_refusal_repeats_the_error() {
        let limits = ParamsLimits {
            max_bytes: 10,
            max_pairs: 1,
        };
        let mut d = ParamsDecoder::new(limits);
        let too_long = ProtocolError::ParamsTooLong { limit: 10 };
        assert_eq!(d.feed(b"\x80\0\0\x10\x80\0\0\x10"), Err(too_long));
        assert_eq!(d.feed(b"more"), Err(too_long));
        assert_eq!(d.feed(b""), Err(too_long));
        assert_eq!(d.finish(), Err(too_long));
        // finish resets: the decoder is usable again.
        d.feed(b"\x01\x01AB").unwrap();
        assert_eq!(d.finish().unwrap().get(b"A"), Some(&b"B"[..]));

        let mut d = ParamsDecoder::new(limits);
        let too_many = ProtocolError::TooManyParams { limit: 1 };
        assert_eq!(d.feed(b"\x01\x01AB\x7e\x00"), Err(too_many));
        assert_eq!(d.feed(b"\x08"), Err(too_many));
        assert_eq!(d.pairs().count(), 1);
        assert_eq!(d.finish(), Err(too_many));
    }

    #[test]
    fn encode_params_spans_records_and_terminates() {
        let value = vec![b'z'; 100_000];
        let mut out = Vec::new();
        encode_params(&mut out, 3, [(&b"BIG"[..], &value[..])]);
        let mut d = ParamsDecoder::new(ParamsLimits::default());
        let mut rest = &out[..];
        let mut ended = false;
        while !rest.is_empty() {
            let crate::protocol::Status::Complete((rec, used)) =
                crate::protocol::decode_record(rest).unwrap()
            else {
                panic!()
            };
            assert_eq!(rec.header.record_type, RecordType::Params);
            assert!(!ended);
            ended = rec.content.is_empty();
            d.feed(rec.content).unwrap();
            rest = &rest[used..];
        }
        assert!(ended);
        assert_eq!(d.finish().unwrap().get(b"BIG"), Some(&value[..]));
    }
}
