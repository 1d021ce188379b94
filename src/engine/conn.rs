//! One connection's I/O: the socket (always non-blocking), its read side (the protocol
//! machine and a read buffer that exists only while bytes wait in it), and its write side
//! (one writer at a time, a deadline on every blocking write, and output that waits for
//! the poller when the peer reads slowly).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::machine::{Limits, Machine, Which};
use crate::sys::epoll;

/// Bytes one read asks the kernel for: a maximal record's content.
pub(crate) const READ_CHUNK: usize = 64 << 10;
/// Buffers kept for reuse; more are freed.
const POOL_KEEP: usize = 64;
/// Bytes a multiplexed request's unread input may hold before its connection's reader
/// waits for the request (FastCGI has no flow control: the connection's other requests
/// wait with it). Large enough that requests still waiting for a thread rarely hold the
/// reader back.
pub(crate) const INBOX_BYTES: usize = 1 << 20;

/// Read buffers shared by the connections of one engine: a connection takes one when
/// bytes arrive and gives it back once they are used, so an idle connection holds none.
#[derive(Debug, Default)]
pub(crate) struct BufPool(Mutex<Vec<Vec<u8>>>);

impl BufPool {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(READ_CHUNK))
    }

    fn give(&self, mut v: Vec<u8>) {
        v.clear();
        let mut pool = self.0.lock();
        if pool.len() < POOL_KEEP && v.capacity() >= READ_CHUNK {
            pool.push(v);
        }
    }
}

/// What the engine's parts of a connection share: limits, buffers, timeouts.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) limits: Limits,
    pub(crate) bufs: BufPool,
    /// Time without progress a blocking read may wait; the whole head's deadline.
    pub(crate) read_timeout: Option<Duration>,
    /// Time without progress a blocking write may wait.
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) log_errors: bool,
}

impl Shared {
    pub(crate) fn log(&self, args: std::fmt::Arguments<'_>) {
        if self.log_errors {
            eprintln!("fcgi: {args}");
        }
    }
}

/// Received bytes not yet used, in a pooled buffer (none while empty).
#[derive(Debug, Default)]
pub(crate) struct InBuf {
    data: Vec<u8>,
    pos: usize,
}

impl InBuf {
    pub(crate) fn pending(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.data.len()
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.data.len());
    }

    /// Gives the buffer back to the pool if everything in it was used.
    pub(crate) fn release(&mut self, pool: &BufPool) {
        if self.is_empty() && self.data.capacity() > 0 {
            self.pos = 0;
            pool.give(std::mem::take(&mut self.data));
        }
    }

    /// One `recv` into the free room: `Ok(0)` at end of stream, `WouldBlock` when
    /// nothing is there (or, with `wait`, nothing came within the receive timeout). `full`
    /// tells whether the read filled the room (more may wait).
    fn recv(
        &mut self,
        fd: BorrowedFd<'_>,
        pool: &BufPool,
        wait: bool,
    ) -> io::Result<(usize, bool)> {
        if self.data.capacity() == 0 {
            self.data = pool.take();
            self.pos = 0;
        } else if self.is_empty() {
            self.data.clear();
            self.pos = 0;
        } else if self.data.capacity() - self.data.len() < 4096 {
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        if self.data.capacity() - self.data.len() < 4096 {
            self.data.reserve(READ_CHUNK);
        }
        let len = self.data.len();
        let room = self.data.capacity() - len;
        // SAFETY: the spare capacity is allocated; recv initialises the `n` bytes it
        // reports before they become part of the vector.
        let n = unsafe {
            let spare = std::slice::from_raw_parts_mut(self.data.as_mut_ptr().add(len), room);
            let r = epoll::recv(fd, spare, wait);
            if let Ok(n) = r {
                self.data.set_len(len + n);
            }
            r?
        };
        Ok((n, n == room))
    }
}

/// The read side of a connection: whoever drives its input holds this lock.
#[derive(Debug)]
pub(crate) struct ReadSide {
    pub(crate) machine: Machine,
    pub(crate) buf: InBuf,
    /// The peer closed its side.
    pub(crate) eof: bool,
    /// The last read filled its room: more may be waiting with no new edge to come.
    pub(crate) maybe_more: bool,
    /// Multiplexed requests' inputs by id.
    pub(crate) routes: Vec<(u16, Arc<Inbox>)>,
    /// Input waits for this request to read its inbox.
    pub(crate) stalled: Option<u16>,
}

impl ReadSide {
    /// Reads once without blocking: `Ok(true)` when bytes came (or the end of stream was
    /// seen, then `eof` is set), `Ok(false)` when nothing was there.
    pub(crate) fn fill_nonblocking(
        &mut self,
        fd: BorrowedFd<'_>,
        pool: &BufPool,
    ) -> io::Result<bool> {
        match self.buf.recv(fd, pool, false) {
            Ok((0, _)) => {
                self.eof = true;
                self.buf.release(pool);
                Ok(true)
            }
            Ok((_, full)) => {
                self.maybe_more = full;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.maybe_more = false;
                self.buf.release(pool);
                Ok(false)
            }
            Err(e) => {
                self.buf.release(pool);
                Err(e)
            }
        }
    }

    /// Reads, waiting up to the read timeout without progress: `Ok(0)` at end of stream.
    /// `before_wait` runs before the thread would block.
    pub(crate) fn fill_blocking(
        &mut self,
        conn: &Conn,
        pool: &BufPool,
        before_wait: &mut dyn FnMut(),
    ) -> io::Result<usize> {
        let mut wait = false;
        loop {
            match self.buf.recv(conn.as_fd(), pool, wait) {
                Ok((n, full)) => {
                    self.maybe_more = full;
                    if n == 0 {
                        self.eof = true;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.maybe_more = false;
                    if wait {
                        return Err(timed_out("read"));
                    }
                    before_wait();
                    conn.prepare_wait(false)?;
                    wait = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn route(&self, id: u16) -> Option<&Arc<Inbox>> {
        self.routes.iter().find(|(i, _)| *i == id).map(|(_, b)| b)
    }

    pub(crate) fn unroute(&mut self, id: u16) {
        self.routes.retain(|(i, _)| *i != id);
        if self.stalled == Some(id) {
            self.stalled = None;
        }
    }
}

/// One transport connection.
#[derive(Debug)]
pub(crate) struct Conn {
    fd: OwnedFd,
    /// The engine's key for this connection (slot and generation).
    pub(crate) key: u64,
    write: Mutex<Vec<u8>>,
    /// A write failed or timed out, or the peer is gone: later writes fail at once.
    pub(crate) broken: AtomicBool,
    /// Which of the socket's timeouts are set (1: receive, 2: send), on first need.
    timeouts: AtomicU8,
    pub(crate) read: Mutex<ReadSide>,
    pub(crate) shared: Arc<Shared>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let rs = self.read.get_mut();
        rs.machine.release(&self.shared.limits);
        rs.buf.release(&self.shared.bufs);
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The non-empty parts of one write as `IoSlice`s: on the stack when they are few (a
/// request's end is three), on the heap otherwise.
pub(crate) struct Slices<'a> {
    few: [IoSlice<'a>; 8],
    n: usize,
    many: Vec<IoSlice<'a>>,
}

impl<'a> Slices<'a> {
    pub(crate) fn new(parts: impl Iterator<Item = &'a [u8]>) -> Slices<'a> {
        let mut s = Slices {
            few: [IoSlice::new(&[]); 8],
            n: 0,
            many: Vec::new(),
        };
        for part in parts.filter(|p| !p.is_empty()) {
            if s.many.is_empty() && s.n < s.few.len() {
                s.few[s.n] = IoSlice::new(part);
                s.n += 1;
            } else {
                if s.many.is_empty() {
                    s.many.extend_from_slice(&s.few[..s.n]);
                }
                s.many.push(IoSlice::new(part));
            }
        }
        s
    }

    pub(crate) fn as_mut(&mut self) -> &mut [IoSlice<'a>] {
        if self.many.is_empty() {
            &mut self.few[..self.n]
        } else {
            &mut self.many[..]
        }
    }
}

impl Conn {
    pub(crate) fn new(fd: OwnedFd, key: u64, shared: Arc<Shared>) -> Conn {
        Conn {
            fd,
            key,
            write: Mutex::new(Vec::new()),
            broken: AtomicBool::new(false),
            timeouts: AtomicU8::new(0),
            read: Mutex::new(ReadSide {
                machine: Machine::new(),
                buf: InBuf::default(),
                eof: false,
                maybe_more: false,
                routes: Vec::new(),
                stalled: None,
            }),
            shared,
        }
    }

    /// Before a thread blocks in a call on this socket: sets the socket's receive (or send)
    /// timeout to the engine's, once per connection (most connections never need it).
    fn prepare_wait(&self, write: bool) -> io::Result<()> {
        let bit = if write { 2 } else { 1 };
        if self.timeouts.load(Ordering::Relaxed) & bit == 0 {
            let t = if write {
                self.shared.write_timeout
            } else {
                self.shared.read_timeout
            };
            epoll::set_timeout(self.fd.as_fd(), write, t)?;
            self.timeouts.fetch_or(bit, Ordering::Relaxed);
        }
        Ok(())
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    fn fail<T>(&self, e: io::Error) -> io::Result<T> {
        self.broken.store(true, Ordering::Relaxed);
        Err(e)
    }

    /// Writes all of `bufs` as one unit (records of concurrent requests never interleave),
    /// after any output still waiting. Waits for room at most the write timeout without
    /// progress; then, or on any error, the connection is broken.
    pub(crate) fn write_all(&self, bufs: &[&[u8]]) -> io::Result<()> {
        if self.is_broken() {
            return Err(aborted_error());
        }
        let mut pending = self.write.lock();
        let mut slices = Slices::new(std::iter::once(&pending[..]).chain(bufs.iter().copied()));
        let mut rest = slices.as_mut();
        let mut wait = false;
        while !rest.is_empty() {
            match epoll::send(self.fd.as_fd(), rest, wait) {
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if wait {
                        // A blocking send that made no progress for the write timeout.
                        return self.fail(timed_out("write"));
                    }
                    if let Err(e) = self.prepare_wait(true) {
                        return self.fail(e);
                    }
                    wait = true;
                }
                Err(e) => return self.fail(e),
            }
        }
        drop(slices);
        pending.clear();
        Ok(())
    }

    /// Writes what the socket takes now and keeps the rest for [`Conn::flush`]. Returns
    /// whether output is waiting.
    pub(crate) fn write_or_queue(&self, bufs: &[&[u8]]) -> io::Result<bool> {
        if self.is_broken() {
            return Err(aborted_error());
        }
        let mut pending = self.write.lock();
        if !pending.is_empty() {
            for b in bufs {
                pending.extend_from_slice(b);
            }
            return Ok(true);
        }
        let mut slices = Slices::new(bufs.iter().copied());
        let mut rest = slices.as_mut();
        while !rest.is_empty() {
            match epoll::send(self.fd.as_fd(), rest, false) {
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return self.fail(e),
            }
        }
        for s in rest.iter() {
            pending.extend_from_slice(s);
        }
        Ok(!pending.is_empty())
    }

    /// Sends waiting output without blocking; returns whether some is still waiting.
    pub(crate) fn flush(&self) -> io::Result<bool> {
        let mut pending = self.write.lock();
        while !pending.is_empty() {
            match epoll::send(self.fd.as_fd(), &[IoSlice::new(&pending)], false) {
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) => return self.fail(e),
            }
        }
        *pending = Vec::new();
        Ok(false)
    }

    /// Whether output waits for room.
    pub(crate) fn has_pending(&self) -> bool {
        !self.write.lock().is_empty()
    }

    /// Bytes of output waiting for room.
    pub(crate) fn pending_len(&self) -> usize {
        self.write.lock().len()
    }

    /// Closes our sending side (the peer then sees the end of the response).
    pub(crate) fn shutdown_write(&self) {
        // SAFETY: shutdown on our own open descriptor.
        unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&self.fd), libc::SHUT_WR) };
    }

    /// Shuts both directions: threads blocked on this connection return at once.
    pub(crate) fn shutdown_both(&self) {
        self.broken.store(true, Ordering::Relaxed);
        // SAFETY: shutdown on our own open descriptor.
        unsafe { libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&self.fd), libc::SHUT_RDWR) };
    }

    /// Looks at the next bytes without consuming them or blocking (abort checks).
    pub(crate) fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        crate::sys::peek_nonblocking(self.fd.as_fd(), buf)
    }

    /// Sends the machine's own output (management replies, refusals) from a thread that
    /// serves a request: blocking, with the write deadline.
    pub(crate) fn send_machine_output(&self, rs: &mut ReadSide) -> io::Result<()> {
        if rs.machine.has_output() {
            let out = rs.machine.take_output();
            self.write_all(&[&out])?;
        }
        Ok(())
    }
}

/// Reads into `buf` from `conn`'s socket, waiting up to the read timeout without progress
/// (a request's large read that bypasses the read buffer). `Ok(0)` at end of stream.
pub(crate) fn recv_blocking(
    conn: &Conn,
    buf: &mut [u8],
    before_wait: &mut dyn FnMut(),
) -> io::Result<usize> {
    let mut wait = false;
    loop {
        match epoll::recv(conn.as_fd(), buf, wait) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if wait {
                    return Err(timed_out("read"));
                }
                before_wait();
                conn.prepare_wait(false)?;
                wait = true;
            }
            r => return r,
        }
    }
}

/// The error every stream operation returns once the web server has gone or aborted.
pub(crate) fn aborted_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "FastCGI request aborted: the web server closed the connection or sent ABORT_REQUEST",
    )
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("FastCGI connection: no {what} progress within the timeout; request aborted"),
    )
}

/// A multiplexed request's input, filled by whichever thread reads its connection: a free
/// thread woken by the poller, or a request's own thread when it needs input and nobody
/// else reads the connection.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    state: Mutex<InboxState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct InboxState {
    chunks: VecDeque<(Which, Vec<u8>, usize)>,
    bytes: usize,
    ended: [bool; 2],
    aborted: bool,
    /// The connection's reader stopped for this inbox; reading it resumes the reader.
    holding: bool,
    /// Bumped by every change, so a waiter knows something happened.
    version: u64,
}

impl Inbox {
    fn changed(&self, s: &mut InboxState) {
        s.version += 1;
        self.cv.notify_all();
    }

    /// Adds input; returns false when the inbox is full (the reader should wait).
    pub(crate) fn push(&self, which: Which, data: &[u8]) -> bool {
        let mut s = self.state.lock();
        s.bytes += data.len();
        s.chunks.push_back((which, data.to_vec(), 0));
        self.changed(&mut s);
        if s.bytes >= INBOX_BYTES {
            s.holding = true;
            return false;
        }
        true
    }

    pub(crate) fn end(&self, which: Which) {
        let mut s = self.state.lock();
        s.ended[usize::from(which == Which::Data)] = true;
        self.changed(&mut s);
    }

    pub(crate) fn abort(&self) {
        let mut s = self.state.lock();
        s.aborted = true;
        self.changed(&mut s);
    }

    /// Wakes the request's thread if it waits: the connection's reader let go of it, and
    /// the request may read it itself.
    pub(crate) fn kick(&self) {
        let mut s = self.state.lock();
        self.changed(&mut s);
    }

    pub(crate) fn is_aborted(&self) -> bool {
        self.state.lock().aborted
    }

    /// Whether a read of `which` would return at once.
    pub(crate) fn ready(&self, which: Which) -> bool {
        let s = self.state.lock();
        s.aborted
            || s.ended[usize::from(which == Which::Data)]
            || s.chunks.iter().any(|(w, ..)| *w == which)
    }

    /// Reads stream `which` into `buf` if something is there: `Some(n)` (0 at the end of
    /// the stream), `None` when the caller must wait. The flag says the connection's
    /// reader waited for this inbox and may go on now.
    pub(crate) fn try_read(
        &self,
        which: Which,
        buf: &mut [u8],
    ) -> io::Result<(Option<usize>, bool)> {
        let mut s = self.state.lock();
        if s.aborted {
            return Err(aborted_error());
        }
        let mut got = None;
        while let Some((w, data, pos)) = s.chunks.front_mut() {
            let (w, left) = (*w, data.len() - *pos);
            if w != which {
                // The other stream's bytes while this one is read are skipped.
                s.chunks.pop_front();
                s.bytes -= left;
                continue;
            }
            let n = buf.len().min(left);
            buf[..n].copy_from_slice(&data[*pos..*pos + n]);
            *pos += n;
            if n == left {
                s.chunks.pop_front();
            }
            s.bytes -= n;
            got = Some(n);
            break;
        }
        if got.is_none() && s.ended[usize::from(which == Which::Data)] {
            got = Some(0);
        }
        let resume = s.holding && s.bytes < INBOX_BYTES / 2;
        if resume {
            s.holding = false;
        }
        Ok((got, resume))
    }

    /// The change counter, to wait for the next change with [`Inbox::wait_change`].
    pub(crate) fn version(&self) -> u64 {
        self.state.lock().version
    }

    /// Waits until the inbox changed since `seen`, or `deadline` passed (false).
    pub(crate) fn wait_change(&self, seen: u64, deadline: Option<std::time::Instant>) -> bool {
        let mut s = self.state.lock();
        while s.version == seen {
            match deadline {
                None => self.cv.wait(&mut s),
                Some(d) => {
                    if self.cv.wait_until(&mut s, d).timed_out() {
                        return s.version != seen;
                    }
                }
            }
        }
        true
    }
}

/// The error a read gives when the web server sent nothing for the read timeout.
pub(crate) fn read_timed_out() -> io::Error {
    timed_out("read")
}
