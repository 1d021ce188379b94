//! Multiplexed connections (`FCGI_MPXS_CONNS=1`): one reader thread per connection routes
//! records to the requests running concurrently on the worker pool.
//!
//! FastCGI has no flow control: each request's input is a bounded queue of chunks, and a
//! request that does not read its input holds back the reader, so the other requests of the
//! same connection wait with it. The number of concurrent requests per connection is
//! capped; a BEGIN_REQUEST past the cap is refused with `FCGI_OVERLOADED`.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;

use super::conn::{self, aborted_error, Conn, Head, Shared};
use super::pool::Pool;
use super::{Job, ServerCtx};
use crate::protocol::{BeginRequestBody, ParamsDecoder, ProtocolStatus, RecordType, Role};

/// Chunks of input a request may have queued before the connection's reader waits.
const INBOX_CHUNKS: usize = 16;

enum Chunk {
    Data(RecordType, Vec<u8>),
    End(RecordType),
}

#[derive(Default)]
struct Table {
    entries: HashMap<u16, Entry>,
}

enum Entry {
    /// BEGIN seen, params arriving.
    Params {
        role: Role,
        keep: bool,
        dec: ParamsDecoder,
    },
    /// Handed to the pool; input goes through `tx`.
    Running {
        /// Dropped on abort, which wakes a handler blocked on its input.
        tx: Option<Sender<Chunk>>,
        aborted: Arc<AtomicBool>,
    },
}

/// A multiplexed request's end of its input queue.
pub(crate) struct Inbox {
    rx: Receiver<Chunk>,
    aborted: Arc<AtomicBool>,
    pending: Option<(RecordType, Vec<u8>, usize)>,
    ended: [bool; 2],
    table: Arc<Mutex<Table>>,
    id: u16,
}

impl Inbox {
    pub(crate) fn is_aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    pub(crate) fn read(&mut self, want: RecordType, buf: &mut [u8]) -> io::Result<usize> {
        let slot = usize::from(want == RecordType::Data);
        loop {
            if self.is_aborted() {
                return Err(aborted_error());
            }
            if let Some((t, data, pos)) = &mut self.pending {
                if *t == want {
                    let n = buf.len().min(data.len() - *pos);
                    buf[..n].copy_from_slice(&data[*pos..*pos + n]);
                    *pos += n;
                    if *pos == data.len() {
                        self.pending = None;
                    }
                    return Ok(n);
                }
                self.pending = None; // the other stream's bytes: skipped
            }
            if self.ended[slot] {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Chunk::Data(t, d)) => self.pending = Some((t, d, 0)),
                Ok(Chunk::End(t)) => self.ended[usize::from(t == RecordType::Data)] = true,
                Err(_) => {
                    // The reader thread ended: the connection is gone.
                    self.aborted.store(true, Ordering::Relaxed);
                    return Err(aborted_error());
                }
            }
        }
    }

    /// Frees the request id before END_REQUEST goes out, so the web server may reuse it.
    pub(crate) fn release(&self) {
        self.table.lock().entries.remove(&self.id);
    }
}

/// Serves a multiplexed connection until it closes; runs on its own thread.
pub(crate) fn run(mut c: Conn, pool: Arc<Pool>) {
    let ctx = Arc::clone(&pool.ctx);
    let table = Arc::new(Mutex::new(Table::default()));
    let shared = Arc::clone(&c.shared);
    if let Err(e) = read_loop(&mut c, &shared, &ctx, &pool, &table) {
        if !matches!(e.kind(), io::ErrorKind::UnexpectedEof) {
            ctx.log(format_args!("multiplexed connection closed: {e}"));
        }
    }
    // Whatever still runs sees its input end as an abort, and its writes fail.
    shared.broken.store(true, Ordering::Relaxed);
    for (_, e) in table.lock().entries.drain() {
        if let Entry::Running { aborted, .. } = e {
            aborted.store(true, Ordering::Relaxed);
        }
    }
    let _ = shared.stream.shutdown(std::net::Shutdown::Both);
}

fn read_loop(
    c: &mut Conn,
    shared: &Arc<Shared>,
    ctx: &Arc<ServerCtx>,
    pool: &Pool,
    table: &Arc<Mutex<Table>>,
) -> io::Result<()> {
    let s = &shared.stream;
    let cap = ctx.config.max_reqs_per_conn;
    while let Some(h) = c.reader.next_header(s)? {
        let id = h.request_id;
        if id == 0 {
            let content = c.reader.content(s)?;
            conn::management_reply(shared, h, content)?;
            continue;
        }
        match h.record_type {
            RecordType::BeginRequest => {
                let body =
                    BeginRequestBody::decode(c.reader.content(s)?).map_err(conn::protocol_error)?;
                let mut t = table.lock();
                if t.entries.contains_key(&id) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("FCGI_BEGIN_REQUEST for request {id} which is already active"),
                    ));
                }
                if let Role::Unknown(r) = body.role {
                    drop(t);
                    ctx.log(format_args!(
                        "request {id}: unknown role {r}, answered FCGI_UNKNOWN_ROLE"
                    ));
                    shared.end_request(id, 0, ProtocolStatus::UnknownRole)?;
                } else if t.entries.len() >= cap {
                    drop(t);
                    conn::refuse_overloaded(shared, id)?;
                } else {
                    t.entries.insert(
                        id,
                        Entry::Params {
                            role: body.role,
                            keep: body.keep_conn(),
                            dec: ParamsDecoder::new(ctx.params_limits()),
                        },
                    );
                }
            }
            RecordType::Params => {
                let content = c.reader.content(s)?;
                let mut t = table.lock();
                let Some(Entry::Params { role, keep, dec }) = t.entries.get_mut(&id) else {
                    continue;
                };
                if !content.is_empty() {
                    if let Err(e) = dec.feed(content) {
                        t.entries.remove(&id);
                        drop(t);
                        ctx.log(format_args!("request {id}: {e}; refused"));
                        conn::refuse_with_status(
                            shared,
                            id,
                            431,
                            "Request Header Fields Too Large",
                        )?;
                    }
                    continue;
                }
                let params = dec.finish().map_err(conn::protocol_error)?;
                let head = Head {
                    id,
                    role: *role,
                    keep_conn: *keep,
                    params,
                };
                let (tx, rx) = bounded(INBOX_CHUNKS);
                let aborted = Arc::new(AtomicBool::new(false));
                t.entries.insert(
                    id,
                    Entry::Running {
                        tx: Some(tx),
                        aborted: Arc::clone(&aborted),
                    },
                );
                drop(t);
                let inbox = Inbox {
                    rx,
                    aborted,
                    pending: None,
                    ended: [false, false],
                    table: Arc::clone(table),
                    id,
                };
                let req = super::request::Request::multiplexed(head, Arc::clone(shared), inbox);
                match pool.submit(Job::Request(Box::new(req))) {
                    Ok(()) => {}
                    Err(_) => {
                        table.lock().entries.remove(&id);
                        conn::refuse_overloaded(shared, id)?;
                    }
                }
            }
            t @ (RecordType::Stdin | RecordType::Data) => {
                let tx = match table.lock().entries.get(&id) {
                    Some(Entry::Running { tx: Some(tx), .. }) => tx.clone(),
                    _ => continue, // inactive or aborted id: ignored (spec 3.3)
                };
                let chunk = if h.content_length == 0 {
                    Chunk::End(t)
                } else {
                    Chunk::Data(t, c.reader.content(s)?.to_vec())
                };
                // Blocks while the request's queue is full: no flow control in FastCGI.
                let _ = tx.send(chunk);
            }
            RecordType::AbortRequest => {
                let mut t = table.lock();
                match t.entries.get_mut(&id) {
                    Some(Entry::Running { aborted, tx }) => {
                        aborted.store(true, Ordering::Relaxed);
                        tx.take();
                    }
                    Some(Entry::Params { .. }) => {
                        t.entries.remove(&id);
                        drop(t);
                        shared.end_request(id, 0, ProtocolStatus::RequestComplete)?;
                    }
                    None => {}
                }
            }
            _ => {} // other types for a request id: skipped
        }
    }
    Ok(())
}
