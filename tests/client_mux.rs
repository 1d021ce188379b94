//! MuxConnection against a scripted multiplexing backend on a loopback socket: several
//! requests at once on one connection, interleaved answers, aborts, limits, a slow reader,
//! and a backend that dies.

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fcgi::client::{Address, Backend, Config, Error, FcgiRequest, MuxConnection, Pool};
use fcgi::protocol::{
    decode_record, encode_end_request, encode_record, encode_stream_end, ParamsDecoder,
    ProtocolStatus, RecordType, Status,
};
use parking_lot::Mutex;

#[derive(Copy, Clone)]
enum Mode {
    /// Wait until this many requests have their whole stdin, then answer them interleaved,
    /// one record each in turn.
    Batch(usize),
    /// As `Batch`, in request id order, and all in one write: the whole answer is on its
    /// way (as far as socket buffers go) before the client reads any of it.
    Burst(usize),
    /// Answer each request as soon as its stdin is complete, after a short pause.
    Immediate,
    /// Once this many requests have their whole stdin: a part of each answer, then close.
    CloseAfter(usize),
    /// As soon as a request's params are in: this many bytes of stdout, before reading any
    /// of its stdin; after the stdin, a line with its length and END_REQUEST.
    EarlyAnswer(usize),
}

#[derive(Default, Debug)]
struct Log {
    accepted: usize,
    aborts: Vec<u16>,
    max_in_flight: usize,
    ids: Vec<u16>,
}

#[derive(Default)]
struct Req {
    params_done: bool,
    answered_early: bool,
    params: HashMap<String, String>,
    stdin_len: usize,
    stdin_sum: u64,
    done: bool,
}

fn answer_line(r: &Req) -> String {
    format!(
        "n={} len={} sum={}\n",
        r.params.get("N").map_or("", |s| s.as_str()),
        r.stdin_len,
        r.stdin_sum
    )
}

/// Records the answer for one request: head, `parts` stdout records, END. With the param
/// `SEQ`, each line starts with its number, seven digits and a space.
fn answer_parts(id: u16, r: &Req) -> Vec<Vec<u8>> {
    let parts: usize = r.params.get("PARTS").map_or(20, |p| p.parse().unwrap());
    let seq = r.params.contains_key("SEQ");
    let line = answer_line(r);
    let mut out = Vec::new();
    let mut rec = Vec::new();
    encode_record(
        &mut rec,
        RecordType::Stdout,
        id,
        b"Content-Type: text/plain\r\n\r\n",
    );
    out.push(rec);
    for i in 0..parts {
        let mut rec = Vec::new();
        let text = if seq {
            format!("{i:07} {line}")
        } else {
            line.clone()
        };
        encode_record(&mut rec, RecordType::Stdout, id, text.as_bytes());
        out.push(rec);
    }
    let mut rec = Vec::new();
    encode_record(
        &mut rec,
        RecordType::Stderr,
        id,
        format!("err {id}\n").as_bytes(),
    );
    encode_stream_end(&mut rec, RecordType::Stdout, id);
    encode_end_request(&mut rec, id, id as u32, ProtocolStatus::RequestComplete);
    out.push(rec);
    out
}

fn mux_backend(mode: Mode) -> (Address, Arc<Mutex<Log>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = Address::Tcp(l.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Log::default()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            log2.lock().accepted += 1;
            let log = log2.clone();
            std::thread::spawn(move || serve(s, mode, &log));
        }
    });
    (addr, log)
}

/// Reads whatever records are available (blocking for the first when `block`), updating
/// request state; false on EOF.
fn pump(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    reqs: &mut HashMap<u16, Req>,
    log: &Mutex<Log>,
    aborted: &mut Vec<u16>,
    block: bool,
) -> bool {
    s.set_nonblocking(!block).unwrap();
    let mut tmp = [0u8; 65536];
    let open = match s.read(&mut tmp) {
        Ok(0) => false,
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
        Err(_) => false,
    };
    s.set_nonblocking(false).unwrap();
    let mut used_total = 0;
    while let Ok(Status::Complete((rec, used))) = decode_record(&buf[used_total..]) {
        used_total += used;
        let id = rec.header.request_id;
        match rec.header.record_type {
            RecordType::BeginRequest => {
                reqs.insert(id, Req::default());
                let mut l = log.lock();
                l.ids.push(id);
                l.max_in_flight = l.max_in_flight.max(reqs.len());
            }
            RecordType::Params if rec.content.is_empty() => {
                reqs.get_mut(&id).unwrap().params_done = true;
            }
            RecordType::Params => {
                let mut d = ParamsDecoder::new(Default::default());
                d.feed(rec.content).unwrap();
                for p in d.finish().unwrap().iter() {
                    reqs.get_mut(&id).unwrap().params.insert(
                        String::from_utf8_lossy(p.name).into(),
                        String::from_utf8_lossy(p.value).into(),
                    );
                }
            }
            RecordType::Stdin => {
                let r = reqs.get_mut(&id).unwrap();
                if rec.content.is_empty() {
                    r.done = true;
                } else {
                    r.stdin_len += rec.content.len();
                    r.stdin_sum += rec.content.iter().map(|&b| b as u64).sum::<u64>();
                }
            }
            RecordType::GetValues => {
                let mut out = Vec::new();
                fcgi::protocol::encode_get_values_result(
                    &mut out,
                    &[("FCGI_MPXS_CONNS", "1"), ("FCGI_MAX_REQS", "3")],
                );
                let _ = s.write_all(&out);
            }
            RecordType::AbortRequest => {
                log.lock().aborts.push(id);
                aborted.push(id);
            }
            _ => {}
        }
    }
    buf.drain(..used_total);
    open
}

fn serve(mut s: TcpStream, mode: Mode, log: &Mutex<Log>) {
    let mut buf = Vec::new();
    let mut reqs: HashMap<u16, Req> = HashMap::new();
    let mut aborted = Vec::new();
    loop {
        if !pump(&mut s, &mut buf, &mut reqs, log, &mut aborted, true) {
            return;
        }
        for id in aborted.drain(..) {
            if reqs.remove(&id).is_some() {
                let mut end = Vec::new();
                encode_end_request(&mut end, id, 0, ProtocolStatus::RequestComplete);
                let _ = s.write_all(&end);
            }
        }
        let ready: Vec<u16> = reqs
            .iter()
            .filter(|(_, r)| r.done)
            .map(|(&i, _)| i)
            .collect();
        if let Mode::EarlyAnswer(n) = mode {
            let early: Vec<u16> = reqs
                .iter()
                .filter(|(_, r)| r.params_done && !r.answered_early)
                .map(|(&i, _)| i)
                .collect();
            for id in early {
                reqs.get_mut(&id).unwrap().answered_early = true;
                let mut out = Vec::new();
                encode_record(&mut out, RecordType::Stdout, id, b"X: early\r\n\r\n");
                encode_record(&mut out, RecordType::Stdout, id, &vec![b'e'; n]);
                if s.write_all(&out).is_err() {
                    return;
                }
            }
            for id in ready {
                let r = reqs.remove(&id).unwrap();
                let mut out = Vec::new();
                let line = format!("\nread={} sum={}", r.stdin_len, r.stdin_sum);
                encode_record(&mut out, RecordType::Stdout, id, line.as_bytes());
                encode_end_request(&mut out, id, 0, ProtocolStatus::RequestComplete);
                let _ = s.write_all(&out);
            }
            continue;
        }
        match mode {
            Mode::Immediate => {
                for id in ready {
                    std::thread::sleep(Duration::from_millis(30));
                    let r = reqs.remove(&id).unwrap();
                    for rec in answer_parts(id, &r) {
                        let _ = s.write_all(&rec);
                    }
                }
            }
            Mode::CloseAfter(n) if ready.len() >= n => {
                for id in ready {
                    let r = &reqs[&id];
                    let parts = answer_parts(id, r);
                    let _ = s.write_all(&parts[0]);
                    let _ = s.write_all(&parts[1]);
                }
                return;
            }
            Mode::Burst(n) if ready.len() >= n => {
                let mut ready = ready;
                ready.sort_unstable();
                let mut queues: Vec<std::vec::IntoIter<Vec<u8>>> = ready
                    .iter()
                    .map(|&id| answer_parts(id, &reqs.remove(&id).unwrap()).into_iter())
                    .collect();
                let mut out = Vec::new();
                while queues.iter().any(|q| !q.as_slice().is_empty()) {
                    for q in queues.iter_mut() {
                        out.extend(q.next().unwrap_or_default());
                    }
                }
                if s.write_all(&out).is_err() {
                    return;
                }
            }
            Mode::Batch(n) if ready.len() >= n => {
                let mut queues: Vec<(u16, std::collections::VecDeque<Vec<u8>>)> = ready
                    .iter()
                    .map(|&id| (id, answer_parts(id, &reqs[&id]).into()))
                    .collect();
                for &id in &ready {
                    reqs.remove(&id);
                }
                // Round-robin, one record per request per turn, watching for aborts.
                while queues.iter().any(|(_, q)| !q.is_empty()) {
                    for (id, q) in queues.iter_mut() {
                        if let Some(rec) = q.pop_front() {
                            if s.write_all(&rec).is_err() {
                                return;
                            }
                        }
                        pump(&mut s, &mut buf, &mut reqs, log, &mut aborted, false);
                        if aborted.contains(id) {
                            aborted.retain(|a| a != id);
                            q.clear();
                            let mut end = Vec::new();
                            encode_end_request(&mut end, *id, 0, ProtocolStatus::RequestComplete);
                            let _ = s.write_all(&end);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// A body of `len` bytes and its byte sum.
fn body(len: usize, seed: u8) -> (Vec<u8>, u64) {
    let v: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    let sum = v.iter().map(|&b| b as u64).sum();
    (v, sum)
}

fn read_all(mut r: impl Read) -> Result<String, std::io::Error> {
    let mut s = String::new();
    r.read_to_string(&mut s).map(|_| s)
}

/// Polls `cond` until it holds, failing the test after 10 s.
fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    assert!(
        support::wait_until(Duration::from_secs(10), cond),
        "timed out waiting for {what}"
    );
}

#[test]
fn concurrent_requests_interleaved_on_one_connection() {
    let (addr, log) = mux_backend(Mode::Batch(3));
    let conn = MuxConnection::connect(&addr, &Config::default(), 8).unwrap();
    let threads: Vec<_> = [(0usize, 3u8), (200_000, 5), (1_000_000, 7)]
        .into_iter()
        .enumerate()
        .map(|(n, (len, seed))| {
            let conn = conn.clone();
            std::thread::spawn(move || {
                let (data, sum) = body(len, seed);
                let req = FcgiRequest::new()
                    .param("N", n.to_string())
                    .param("PARTS", "50");
                let mut resp = conn.send(req, &data[..]).unwrap();
                assert_eq!(resp.header("content-type"), Some("text/plain"));
                let text = read_all(&mut resp).unwrap();
                let line = format!("n={n} len={len} sum={sum}\n");
                assert_eq!(text, line.repeat(50), "request {n} got another's answer");
                let id = resp.app_status().unwrap();
                assert_eq!(resp.stderr(), format!("err {id}\n").as_bytes());
                id
            })
        })
        .collect();
    let mut ids: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "distinct request ids");
    let l = log.lock();
    assert_eq!(l.accepted, 1, "{l:?}");
    assert_eq!(l.max_in_flight, 3, "{l:?}");
    assert!(
        l.ids.iter().all(|&i| (1..=3).contains(&i)),
        "small ids: {l:?}"
    );
    drop(l);
    assert_eq!(conn.in_flight(), 0);
    assert_eq!(conn.requests(), 3);
}

#[test]
fn dropping_one_response_aborts_only_that_request() {
    let (addr, log) = mux_backend(Mode::Batch(3));
    let conn = MuxConnection::connect(&addr, &Config::default(), 8).unwrap();
    let threads: Vec<_> = (0..3)
        .map(|n| {
            let conn = conn.clone();
            std::thread::spawn(move || {
                let req = FcgiRequest::new()
                    .param("N", n.to_string())
                    .param("PARTS", "2000");
                let mut resp = conn.send(req, std::io::empty()).unwrap();
                if n == 1 {
                    let mut some = [0u8; 10];
                    resp.read_exact(&mut some).unwrap();
                    drop(resp);
                    return None;
                }
                Some(read_all(resp).unwrap())
            })
        })
        .collect();
    for (n, t) in threads.into_iter().enumerate() {
        if let Some(text) = t.join().unwrap() {
            assert_eq!(text, format!("n={n} len=0 sum=0\n").repeat(2000));
        }
    }
    assert_eq!(log.lock().aborts.len(), 1, "{:?}", log.lock());
    assert!(!conn.is_broken());
}

#[test]
fn max_reqs_bounds_requests_in_flight() {
    let (addr, log) = mux_backend(Mode::Immediate);
    let conn = MuxConnection::connect(&addr, &Config::default(), 2).unwrap();
    let threads: Vec<_> = (0..6)
        .map(|n| {
            let conn = conn.clone();
            std::thread::spawn(move || {
                let (data, sum) = body(30_000 * n, 3);
                let req = FcgiRequest::new()
                    .param("N", n.to_string())
                    .param("PARTS", "3");
                let text = read_all(conn.send(req, &data[..]).unwrap()).unwrap();
                assert_eq!(
                    text,
                    format!("n={n} len={} sum={sum}\n", 30_000 * n).repeat(3)
                );
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let l = log.lock();
    assert!(l.max_in_flight <= 2, "{l:?}");
    assert_eq!(l.ids.len(), 6);
    assert_eq!(l.accepted, 1);
}

#[test]
fn a_slow_reader_holds_back_but_does_not_corrupt_the_others() {
    // Both answers are numbered lines of one length, interleaved one record each in turn,
    // the slow request's first (Burst answers in id order; it takes id 1 by being sent
    // first), all written before the client reads. So the fast reader has read no more than
    // the slow inbox holds plus what the slow reader took out: once it is 1 MiB ahead the
    // slow inbox is full, reading pauses for everyone, and each line the slow reader then
    // takes lets the fast one have one more.
    const INBOX: usize = 1 << 20;
    const SLOW_PARTS: usize = 150_000; // ~4 MB, more than an inbox holds
    const FAST_PARTS: usize = 100_000; // ~2.7 MB: cannot end before the slow one reads
    const STEPS: usize = 32; // lines the slow reader takes one at a time once its inbox is full
    let lines = |n: &str, parts: usize| -> String {
        (0..parts)
            .map(|i| format!("{i:07} n={n} len=0 sum=0\n"))
            .collect()
    };
    let line = lines("fast", 1).len();
    assert_eq!(lines("slow", 1).len(), line);
    assert!(FAST_PARTS * line > INBOX + (STEPS + 1) * line);

    let (addr, _log) = mux_backend(Mode::Burst(2));
    let mut config = Config::default();
    config.io_timeout = Some(Duration::from_secs(20)); // a lost wake-up fails, not hangs
    let conn = MuxConnection::connect(&addr, &config, 8).unwrap();
    // Bytes the fast reader has read.
    let fast_got = Arc::new(AtomicUsize::new(0));
    // Bytes the slow reader may have taken: raised before each of its reads.
    let slow_took = Arc::new(AtomicUsize::new(0));
    let slow = {
        let conn = conn.clone();
        let (fast_got, slow_took) = (fast_got.clone(), slow_took.clone());
        std::thread::spawn(move || {
            let req = FcgiRequest::new()
                .param("N", "slow")
                .param("SEQ", "1")
                .param("PARTS", SLOW_PARTS.to_string());
            let mut resp = conn.send(req, std::io::empty()).unwrap();
            // Bounded waits: a client that pauses too early, or does not go on when this
            // reader takes a line, fails below instead of hanging.
            let fast_at = |target: usize| {
                support::wait_until(Duration::from_secs(30), || {
                    fast_got.load(Ordering::SeqCst) >= target
                })
            };
            let (mut text, mut one) = (Vec::new(), vec![0u8; line]);
            // Lag, reading nothing, until the fast reader has seen this inbox fill (it
            // reads whole lines: the first line end at or past 1 MiB).
            let full = INBOX.div_ceil(line) * line;
            let mut paced = fast_at(full);
            for k in 1..=STEPS {
                if !paced {
                    break;
                }
                slow_took.fetch_add(line, Ordering::SeqCst);
                resp.read_exact(&mut one).unwrap();
                text.extend_from_slice(&one);
                // That made room for one record: the fast reader gets one line more.
                paced = fast_at(full + k * line);
            }
            // Then it reads the rest as fast as it can: no bound for the other reader.
            slow_took.store(usize::MAX / 2, Ordering::SeqCst);
            resp.read_to_end(&mut text).unwrap();
            (paced, String::from_utf8(text).unwrap(), resp.app_status())
        })
    };
    wait_until("the slow request to take its id", || conn.in_flight() == 1);
    let fast = {
        let conn = conn.clone();
        let (fast_got, slow_took) = (fast_got.clone(), slow_took.clone());
        std::thread::spawn(move || {
            let req = FcgiRequest::new()
                .param("N", "fast")
                .param("SEQ", "1")
                .param("PARTS", FAST_PARTS.to_string());
            let mut resp = conn.send(req, std::io::empty()).unwrap();
            let (mut text, mut buf) = (Vec::new(), [0u8; 4096]);
            // The most this reader got beyond what the slow inbox may hold.
            let mut excess = 0;
            loop {
                let n = resp.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                text.extend_from_slice(&buf[..n]);
                // The slow inbox holds 1 MiB plus the record that crosses it, no more.
                let allowed = slow_took.load(Ordering::SeqCst) + INBOX + line;
                excess = excess.max(text.len().saturating_sub(allowed));
                fast_got.store(text.len(), Ordering::SeqCst);
            }
            (String::from_utf8(text).unwrap(), excess, resp.app_status())
        })
    };
    let (fast_text, excess, fast_id) = fast.join().unwrap();
    let (paced, slow_text, slow_id) = slow.join().unwrap();
    assert_eq!((slow_id, fast_id), (Some(1), Some(2)), "answer order");
    assert!(
        paced,
        "the fast reader did not get 1 MiB ahead of the idle slow one, then one line on \
         for each line the slow one took: reading paused early or did not resume"
    );
    // Each answer whole and in order (the lines are numbered).
    assert!(
        fast_text == lines("fast", FAST_PARTS),
        "fast answer corrupted"
    );
    assert!(
        slow_text == lines("slow", SLOW_PARTS),
        "slow answer corrupted"
    );
    assert_eq!(
        excess, 0,
        "the fast reader got further ahead than the slow inbox holds: not held back"
    );
    assert!(!conn.is_broken());
    assert_eq!(conn.in_flight(), 0);
}

#[test]
fn backend_closing_fails_every_request_in_flight() {
    let (addr, _log) = mux_backend(Mode::CloseAfter(2));
    let mut config = Config::default();
    config.io_timeout = Some(Duration::from_secs(5));
    let conn = MuxConnection::connect(&addr, &config, 8).unwrap();
    let threads: Vec<_> = (0..2)
        .map(|n| {
            let conn = conn.clone();
            std::thread::spawn(move || {
                let req = FcgiRequest::new().param("N", n.to_string());
                match conn.send(req, std::io::empty()) {
                    Err(e) => e,
                    Ok(resp) => {
                        let e = read_all(resp).unwrap_err();
                        *e.into_inner().unwrap().downcast::<Error>().unwrap()
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let err = t.join().unwrap();
        assert!(matches!(err, Error::BackendClosed { .. }), "{err}");
    }
    assert!(conn.is_broken());
    assert!(matches!(
        conn.send(FcgiRequest::new(), std::io::empty()),
        Err(Error::ConnectionUnusable)
    ));
}

#[test]
fn after_an_abort_the_connection_carries_new_requests() {
    let (addr, log) = mux_backend(Mode::Immediate);
    let conn = MuxConnection::connect(&addr, &Config::default(), 4).unwrap();
    let mut resp = conn
        .send(
            FcgiRequest::new()
                .param("N", "dropped")
                .param("PARTS", "5000"),
            std::io::empty(),
        )
        .unwrap();
    let mut some = [0u8; 5];
    resp.read_exact(&mut some).unwrap();
    drop(resp);
    for n in 0..3 {
        let text = read_all(
            conn.send(
                FcgiRequest::new()
                    .param("N", n.to_string())
                    .param("PARTS", "2"),
                std::io::empty(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(text, format!("n={n} len=0 sum=0\n").repeat(2));
    }
    assert!(!conn.is_broken());
    assert_eq!(log.lock().accepted, 1);
    assert_eq!(conn.requests(), 4);
}

#[test]
fn a_request_left_unanswered_times_out_alone() {
    // Batch(2): the first request alone is never answered.
    let (addr, log) = mux_backend(Mode::Batch(2));
    let mut config = Config::default();
    config.io_timeout = Some(Duration::from_millis(300));
    let conn = MuxConnection::connect(&addr, &config, 4).unwrap();
    let t0 = std::time::Instant::now();
    let err = conn
        .send(FcgiRequest::new().param("N", "1"), std::io::empty())
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(fcgi::client::TimeoutKind::Io)),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(!conn.is_broken());
    // Its ABORT_REQUEST goes out with the next I/O round.
    let _ = conn.send(
        FcgiRequest::new()
            .param("N", "2")
            .timeout(Duration::from_millis(300)),
        std::io::empty(),
    );
    assert!(log.lock().aborts.contains(&1), "{:?}", log.lock());
}

fn pool_burst(pool: &Pool, n: usize) {
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let (data, sum) = body(10_000 * i, 9);
                let req = FcgiRequest::new()
                    .param("N", i.to_string())
                    .param("PARTS", "4");
                let text = read_all(pool.send(req, &data[..]).unwrap()).unwrap();
                assert_eq!(
                    text,
                    format!("n={i} len={} sum={sum}\n", 10_000 * i).repeat(4)
                );
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn pool_multiplexes_on_one_connection() {
    let (addr, log) = mux_backend(Mode::Immediate);
    let pool = Pool::builder()
        .backend(Backend::new(addr).multiplex(4))
        .build();
    pool_burst(&pool, 8);
    let l = log.lock();
    assert_eq!(l.accepted, 1, "{l:?}");
    assert!(l.max_in_flight <= 4, "{l:?}");
    assert_eq!(l.ids.len(), 8);
    let s = &pool.stats()[0];
    assert!(s.multiplexed && s.connects == 1, "{s:?}");
}

#[test]
fn pool_multiplexes_when_the_backend_says_so() {
    let (addr, log) = mux_backend(Mode::Immediate);
    let pool = Pool::builder()
        .backend(Backend::new(addr))
        .learn_backend_limits(true)
        .build();
    assert!(!pool.stats()[0].multiplexed);
    // The first request learns FCGI_MPXS_CONNS=1 and FCGI_MAX_REQS=3 (and still goes over
    // a plain connection); the burst then shares one multiplexed connection.
    pool_burst(&pool, 1);
    assert!(pool.stats()[0].multiplexed);
    pool_burst(&pool, 6);
    let l = log.lock();
    assert_eq!(l.accepted, 3, "GET_VALUES, plain, multiplexed: {l:?}");
    assert!(l.max_in_flight <= 3, "{l:?}");
    assert_eq!(l.ids.len(), 7);
}

#[test]
fn full_duplex_on_a_shared_connection() {
    // Each application writes 4 MiB before it reads any of its 4 MiB of input, on one
    // connection for three requests at once.
    const OUT: usize = 4 << 20;
    let (addr, log) = mux_backend(Mode::EarlyAnswer(OUT));
    let mut config = Config::default();
    config.io_timeout = Some(Duration::from_secs(5));
    let conn = MuxConnection::connect(&addr, &config, 8).unwrap();
    let threads: Vec<_> = (0..3u8)
        .map(|i| {
            let conn = conn.clone();
            std::thread::spawn(move || {
                let (data, sum) = body(4 << 20, i + 1);
                let mut resp = conn.send(FcgiRequest::new(), &data[..]).unwrap();
                assert_eq!(resp.header("x"), Some("early"));
                let mut out = Vec::new();
                resp.read_to_end(&mut out).unwrap();
                let tail = format!("\nread={} sum={sum}", 4 << 20);
                assert_eq!(out.len(), OUT + tail.len());
                assert!(out.ends_with(tail.as_bytes()));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(log.lock().accepted, 1);
}
