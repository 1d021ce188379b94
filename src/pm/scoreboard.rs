//! The scoreboard: one small shared-memory page per child process, written by the child
//! (when its FastCGI library is this crate's, Rust or C) and read by the `fcgi-pm` manager.
//!
//! The manager creates the page with `memfd_create`, writes a magic number and the
//! `pm.max_requests` limit into it, and hands the descriptor to the child at `exec` under
//! the environment variable [`ENV_VAR`] (its number, e.g. `FCGI_PM_SCOREBOARD=5`). The
//! child maps it on its first request ([`Slot::from_env`]) and from then on records, with
//! plain atomic stores and no system call:
//!
//! - requests in flight (idle or busy), requests started and finished;
//! - the current (or last) request's start time, method, URI, script and content length;
//! - the duration of the last finished request.
//!
//! With `pm.max_requests` the child asks [`should_exit`] between requests and ends its
//! accept loop cleanly once the limit is reached, so no request is cut off.
//!
//! Everything in the page is untrusted for the manager: it reads bytes and numbers with
//! atomic loads, strings stop at the first NUL and are decoded lossily, and a page whose
//! magic number is wrong reads as "not attached".
//!
//! # Example
//!
//! ```
//! use fcgi::pm::scoreboard::Board;
//! // The manager's side: a page for one child that should exit after 100 requests.
//! let board = Board::create(100).unwrap();
//! let view = board.read();
//! assert!(!view.attached);
//! assert_eq!(view.max_requests, 100);
//! ```

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that names the scoreboard descriptor of a child.
pub const ENV_VAR: &str = "FCGI_PM_SCOREBOARD";

/// "FCGIPMS" and the layout version.
const MAGIC: u64 = u64::from_le_bytes(*b"FCGIPMS1");
/// Size of the shared page.
const PAGE: usize = 4096;
/// Bytes kept of the request method.
pub const METHOD_LEN: usize = 16;
/// Bytes kept of the request URI (with its query string).
pub const URI_LEN: usize = 512;
/// Bytes kept of the script name.
pub const SCRIPT_LEN: usize = 256;

/// The page's layout. Every field is atomic: two processes share it, and the child may
/// run several requests at once on several threads.
#[repr(C)]
struct Layout {
    magic: AtomicU64,
    /// Written by the manager before `exec`: 0 for no limit.
    max_requests: AtomicU64,
    /// Written by the child when it maps the page.
    pid: AtomicU32,
    /// Requests in flight.
    busy: AtomicU32,
    /// Requests started.
    started: AtomicU64,
    /// Requests finished.
    finished: AtomicU64,
    /// Wall-clock microseconds since the epoch at which the current (or last) request started.
    start_us: AtomicU64,
    /// Duration of the last finished request, in microseconds.
    last_duration_us: AtomicU64,
    /// `CONTENT_LENGTH` of the current (or last) request.
    content_length: AtomicU64,
    /// Odd while the text fields are being written (a sequence lock for readers).
    text_seq: AtomicU32,
    /// Held by the one writer of the text fields (others skip writing them).
    text_lock: AtomicU32,
    method: [AtomicU8; METHOD_LEN],
    uri: [AtomicU8; URI_LEN],
    script: [AtomicU8; SCRIPT_LEN],
}

const _: () = assert!(std::mem::size_of::<Layout>() <= PAGE);

/// Maps `fd` shared, read-write.
fn map(fd: BorrowedFd<'_>) -> io::Result<NonNull<Layout>> {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh shared mapping of a descriptor we were given; the kernel checks
    // the descriptor and its size, and the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast::<Layout>()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn store_text(dst: &[AtomicU8], src: &[u8]) {
    let n = src.len().min(dst.len() - 1);
    for (d, s) in dst.iter().zip(&src[..n]) {
        d.store(*s, Ordering::Relaxed);
    }
    dst[n].store(0, Ordering::Relaxed);
}

fn load_text(src: &[AtomicU8]) -> String {
    let bytes: Vec<u8> = src
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .take_while(|b| *b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The child's side: its mapped page. Made once per process by [`Slot::from_env`].
///
/// # Example
///
/// ```
/// // Outside a process manager there is no slot, and recording costs nothing.
/// assert!(fcgi::pm::scoreboard::Slot::from_env().is_none());
/// fcgi::pm::scoreboard::request_started(b"GET", b"/", b"/srv/index");
/// fcgi::pm::scoreboard::request_finished();
/// assert!(!fcgi::pm::scoreboard::should_exit());
/// ```
#[derive(Debug)]
pub struct Slot {
    page: NonNull<Layout>,
}

// SAFETY: the page is only accessed through atomics, and it is never unmapped.
unsafe impl Send for Slot {}
// SAFETY: as above.
unsafe impl Sync for Slot {}

static SLOT: OnceLock<Option<Slot>> = OnceLock::new();

impl Slot {
    /// The process's slot, when it was started by `fcgi-pm` (the variable [`ENV_VAR`] names
    /// a scoreboard descriptor); mapped on the first call, `None` otherwise. The descriptor
    /// is closed once mapped, so programs the child starts do not inherit it.
    ///
    /// # Example
    ///
    /// ```
    /// if let Some(slot) = fcgi::pm::scoreboard::Slot::from_env() {
    ///     println!("managed by fcgi-pm; exit after the limit: {}", slot.should_exit());
    /// }
    /// ```
    pub fn from_env() -> Option<&'static Slot> {
        SLOT.get_or_init(Slot::attach).as_ref()
    }

    fn attach() -> Option<Slot> {
        let value = std::env::var(ENV_VAR).ok()?;
        let fd: i32 = value.trim().parse().ok()?;
        if fd < 3 {
            return None;
        }
        // The descriptor must be a regular file of at least a page (a memfd); anything
        // else (a number inherited by a grandchild that lost the descriptor) is ignored.
        // SAFETY: fstat writes into a zeroed plain struct; any fd number is valid input.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut st) } != 0
            || st.st_mode & libc::S_IFMT != libc::S_IFREG
            || (st.st_size as usize) < PAGE
        {
            return None;
        }
        // SAFETY: the descriptor is open (fstat succeeded) and was handed to this process
        // for this purpose; it is closed when `owned` drops, after mapping.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let page = map(owned.as_fd()).ok()?;
        drop(owned);
        let slot = Slot { page };
        if slot.layout().magic.load(Ordering::Acquire) != MAGIC {
            return None; // not our page: leave it alone (and leak the mapping)
        }
        slot.layout()
            .pid
            .store(std::process::id(), Ordering::Release);
        Some(slot)
    }

    fn layout(&self) -> &Layout {
        // SAFETY: the page stays mapped for the life of the process.
        unsafe { self.page.as_ref() }
    }

    /// Records the start of a request: one more in flight, and its method, URI (with the
    /// query string), script and content length.
    ///
    /// # Example
    ///
    /// ```
    /// if let Some(slot) = fcgi::pm::scoreboard::Slot::from_env() {
    ///     slot.request_started(b"GET", b"/index?a=1", b"/srv/index", 0);
    ///     slot.request_finished();
    /// }
    /// ```
    pub fn request_started(&self, method: &[u8], uri: &[u8], script: &[u8], content_length: u64) {
        let l = self.layout();
        l.busy.fetch_add(1, Ordering::AcqRel);
        l.started.fetch_add(1, Ordering::AcqRel);
        l.start_us.store(now_us(), Ordering::Release);
        // With several requests at once, one thread writes the text and the others skip it.
        if l.text_lock
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            l.text_seq.fetch_add(1, Ordering::AcqRel);
            store_text(&l.method, method);
            store_text(&l.uri, uri);
            store_text(&l.script, script);
            l.content_length.store(content_length, Ordering::Relaxed);
            l.text_seq.fetch_add(1, Ordering::AcqRel);
            l.text_lock.store(0, Ordering::Release);
        }
    }

    /// Records the end of a request (after its `FCGI_END_REQUEST` was handed over).
    ///
    /// # Example
    ///
    /// ```
    /// if let Some(slot) = fcgi::pm::scoreboard::Slot::from_env() {
    ///     slot.request_finished();
    /// }
    /// ```
    pub fn request_finished(&self) {
        let l = self.layout();
        let start = l.start_us.load(Ordering::Acquire);
        l.last_duration_us
            .store(now_us().saturating_sub(start), Ordering::Relaxed);
        l.finished.fetch_add(1, Ordering::AcqRel);
        // Never below zero, whatever the caller does.
        let _ = l
            .busy
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_sub(1));
    }

    /// Whether the process has served its `pm.max_requests` and should stop accepting.
    ///
    /// # Example
    ///
    /// ```
    /// if let Some(slot) = fcgi::pm::scoreboard::Slot::from_env() {
    ///     if slot.should_exit() {
    ///         return; // end the accept loop; the manager starts a fresh child
    ///     }
    /// }
    /// ```
    pub fn should_exit(&self) -> bool {
        let l = self.layout();
        let max = l.max_requests.load(Ordering::Acquire);
        max > 0 && l.started.load(Ordering::Acquire) >= max
    }
}

/// Records a request start in this process's slot, if it has one (see
/// [`Slot::request_started`]); costs one check otherwise.
///
/// # Example
///
/// ```
/// fcgi::pm::scoreboard::request_started(b"POST", b"/form", b"/srv/form");
/// fcgi::pm::scoreboard::request_finished();
/// ```
pub fn request_started(method: &[u8], uri: &[u8], script: &[u8]) {
    if let Some(s) = Slot::from_env() {
        s.request_started(method, uri, script, 0);
    }
}

/// Records a request start from its params, looked up by `param` (`REQUEST_METHOD`,
/// `REQUEST_URI` or else `SCRIPT_NAME` and `QUERY_STRING`, `SCRIPT_FILENAME` or else
/// `SCRIPT_NAME`, `CONTENT_LENGTH`). This is the hook the crate's server and C ABI call.
///
/// # Example
///
/// ```
/// let params = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", "/a?b")];
/// fcgi::pm::scoreboard::request_started_with(|name| {
///     params.iter().find(|(n, _)| n.as_bytes() == name).map(|(_, v)| v.as_bytes())
/// });
/// fcgi::pm::scoreboard::request_finished();
/// ```
pub fn request_started_with<'a>(param: impl Fn(&[u8]) -> Option<&'a [u8]>) {
    let Some(s) = Slot::from_env() else {
        return;
    };
    let method = param(b"REQUEST_METHOD").unwrap_or(b"");
    let uri: std::borrow::Cow<'_, [u8]> = match param(b"REQUEST_URI") {
        Some(u) => u.into(),
        None => {
            let mut u = param(b"SCRIPT_NAME").unwrap_or(b"").to_vec();
            if let Some(q) = param(b"QUERY_STRING").filter(|q| !q.is_empty()) {
                u.push(b'?');
                u.extend_from_slice(q);
            }
            u.into()
        }
    };
    let script = param(b"SCRIPT_FILENAME")
        .or_else(|| param(b"SCRIPT_NAME"))
        .unwrap_or(b"");
    let length = param(b"CONTENT_LENGTH")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    s.request_started(method, &uri, script, length);
}

/// Records a request end in this process's slot, if it has one.
///
/// # Example
///
/// ```
/// fcgi::pm::scoreboard::request_finished(); // no slot: nothing happens
/// ```
pub fn request_finished() {
    if let Some(s) = Slot::from_env() {
        s.request_finished();
    }
}

/// Whether this process has a slot and has reached its `pm.max_requests`.
///
/// # Example
///
/// ```
/// assert!(!fcgi::pm::scoreboard::should_exit()); // no slot, no limit
/// ```
pub fn should_exit() -> bool {
    Slot::from_env().is_some_and(Slot::should_exit)
}

/// The manager's side: the page of one child, created before the child is started.
///
/// # Example
///
/// ```
/// let board = fcgi::pm::scoreboard::Board::create(0).unwrap();
/// // Hand `board.fd()` to the child (not close-on-exec there) and set
/// // FCGI_PM_SCOREBOARD to its number.
/// assert_eq!(board.read().requests, 0);
/// ```
#[derive(Debug)]
pub struct Board {
    fd: OwnedFd,
    page: NonNull<Layout>,
}

// SAFETY: the page is only accessed through atomics; it is unmapped on drop only.
unsafe impl Send for Board {}
// SAFETY: as above.
unsafe impl Sync for Board {}

/// What a child's page says, read by [`Board::read`].
///
/// # Example
///
/// ```
/// let v = fcgi::pm::scoreboard::SlotView::default();
/// assert!(!v.attached && !v.busy());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotView {
    /// The child mapped the page (its library reports).
    pub attached: bool,
    /// The pid the child wrote.
    pub pid: u32,
    /// Requests in flight.
    pub in_flight: u32,
    /// Requests started.
    pub requests: u64,
    /// Requests finished.
    pub finished: u64,
    /// The limit the manager set (0: none).
    pub max_requests: u64,
    /// Start of the current (or last) request, microseconds since the epoch.
    pub start_us: u64,
    /// Duration of the last finished request, in microseconds.
    pub last_duration_us: u64,
    /// `CONTENT_LENGTH` of the current (or last) request.
    pub content_length: u64,
    /// Method of the current (or last) request.
    pub method: String,
    /// URI (with query string) of the current (or last) request.
    pub uri: String,
    /// Script of the current (or last) request.
    pub script: String,
}

impl SlotView {
    /// Whether a request is running.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!fcgi::pm::scoreboard::SlotView::default().busy());
    /// ```
    pub fn busy(&self) -> bool {
        self.in_flight > 0
    }
}

impl Board {
    /// A fresh page whose child should exit after `max_requests` requests (0: never).
    /// The descriptor is close-on-exec; the manager clears that flag in the child only.
    ///
    /// # Errors
    ///
    /// `memfd_create`, `ftruncate` or `mmap` failing; `Unsupported` off Linux.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::pm::scoreboard::Board::create(10).unwrap();
    /// assert_eq!(b.read().max_requests, 10);
    /// ```
    pub fn create(max_requests: u64) -> io::Result<Board> {
        let fd = memfd()?;
        let page = map(fd.as_fd())?;
        let board = Board { fd, page };
        let l = board.layout();
        l.max_requests.store(max_requests, Ordering::Relaxed);
        l.magic.store(MAGIC, Ordering::Release);
        Ok(board)
    }

    fn layout(&self) -> &Layout {
        // SAFETY: mapped until drop.
        unsafe { self.page.as_ref() }
    }

    /// The descriptor to hand to the child.
    ///
    /// # Example
    ///
    /// ```
    /// use std::os::fd::AsRawFd;
    /// let b = fcgi::pm::scoreboard::Board::create(0).unwrap();
    /// assert!(b.fd().as_raw_fd() > 2);
    /// ```
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads the page (text fields consistently when no writer is busy with them).
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::pm::scoreboard::Board::create(0).unwrap();
    /// assert_eq!(b.read().in_flight, 0);
    /// ```
    pub fn read(&self) -> SlotView {
        let l = self.layout();
        let pid = l.pid.load(Ordering::Acquire);
        let (mut method, mut uri, mut script, mut content_length);
        let mut tries = 0;
        loop {
            let before = l.text_seq.load(Ordering::Acquire);
            method = load_text(&l.method);
            uri = load_text(&l.uri);
            script = load_text(&l.script);
            content_length = l.content_length.load(Ordering::Relaxed);
            let after = l.text_seq.load(Ordering::Acquire);
            tries += 1;
            if (before == after && before.is_multiple_of(2)) || tries >= 4 {
                break;
            }
            std::hint::spin_loop();
        }
        SlotView {
            attached: pid != 0,
            pid,
            in_flight: l.busy.load(Ordering::Acquire),
            requests: l.started.load(Ordering::Acquire),
            finished: l.finished.load(Ordering::Acquire),
            max_requests: l.max_requests.load(Ordering::Acquire),
            start_us: l.start_us.load(Ordering::Acquire),
            last_duration_us: l.last_duration_us.load(Ordering::Acquire),
            content_length,
            method,
            uri,
            script,
        }
    }

    /// Maps this board's page a second time as if it were a child's slot (for tests of
    /// both sides in one process).
    ///
    /// # Errors
    ///
    /// `mmap` failing.
    ///
    /// # Example
    ///
    /// ```
    /// let b = fcgi::pm::scoreboard::Board::create(2).unwrap();
    /// let slot = b.child_view().unwrap();
    /// slot.request_started(b"GET", b"/x", b"/srv/x", 0);
    /// assert!(b.read().busy());
    /// slot.request_finished();
    /// slot.request_started(b"GET", b"/y", b"/srv/y", 0);
    /// slot.request_finished();
    /// assert!(slot.should_exit());
    /// ```
    pub fn child_view(&self) -> io::Result<Slot> {
        let page = map(self.fd.as_fd())?;
        let slot = Slot { page };
        slot.layout()
            .pid
            .store(std::process::id(), Ordering::Release);
        Ok(slot)
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `create`; no reference outlives `self`.
        unsafe { libc::munmap(self.page.as_ptr().cast(), PAGE) };
    }
}

fn memfd() -> io::Result<OwnedFd> {
    // SAFETY: a static NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"fcgi-pm-scoreboard".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let file = std::fs::File::from(fd);
    file.set_len(PAGE as u64)?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_view_reports_to_the_board() {
        let b = Board::create(3).unwrap();
        assert!(!b.read().attached);
        let slot = b.child_view().unwrap();
        let v = b.read();
        assert!(v.attached);
        assert_eq!(v.pid, std::process::id());
        slot.request_started(b"POST", b"/form?x=1", b"/srv/form", 42);
        let v = b.read();
        assert!(v.busy());
        assert_eq!(v.requests, 1);
        assert_eq!((v.method.as_str(), v.uri.as_str()), ("POST", "/form?x=1"));
        assert_eq!((v.script.as_str(), v.content_length), ("/srv/form", 42));
        slot.request_finished();
        let v = b.read();
        assert!(!v.busy());
        assert_eq!(v.finished, 1);
        // Text of the last request stays, as php-fpm shows the last request of an idle child.
        assert_eq!(v.method, "POST");
    }

    #[test]
    fn max_requests_counts_started_requests() {
        let b = Board::create(2).unwrap();
        let slot = b.child_view().unwrap();
        assert!(!slot.should_exit());
        slot.request_started(b"GET", b"/", b"", 0);
        slot.request_finished();
        assert!(!slot.should_exit());
        slot.request_started(b"GET", b"/", b"", 0);
        assert!(slot.should_exit(), "the limit counts the request in flight");
        slot.request_finished();
        let unlimited = Board::create(0).unwrap().child_view().unwrap();
        for _ in 0..10 {
            unlimited.request_started(b"GET", b"/", b"", 0);
            unlimited.request_finished();
        }
        assert!(!unlimited.should_exit());
    }

    #[test]
    fn long_and_odd_text_is_cut_and_read_lossily() {
        let b = Board::create(0).unwrap();
        let slot = b.child_view().unwrap();
        let long = vec![b'a'; 5000];
        slot.request_started(b"GET\xff", &long, b"x\0y", 0);
        let v = b.read();
        assert_eq!(v.uri.len(), URI_LEN - 1);
        assert_eq!(v.method, "GET\u{fffd}");
        assert_eq!(v.script, "x", "a NUL ends the string");
    }

    #[test]
    fn finishing_more_than_started_never_wraps() {
        let b = Board::create(0).unwrap();
        let slot = b.child_view().unwrap();
        slot.request_finished();
        slot.request_finished();
        assert_eq!(b.read().in_flight, 0);
    }

    #[test]
    fn concurrent_requests_count_in_flight() {
        let b = Board::create(0).unwrap();
        let slot = std::sync::Arc::new(b.child_view().unwrap());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = std::sync::Arc::clone(&slot);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        s.request_started(b"GET", b"/t", b"/t", 0);
                        s.request_finished();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let v = b.read();
        assert_eq!((v.requests, v.finished, v.in_flight), (4000, 4000, 0));
    }

    #[test]
    fn a_wrong_magic_is_not_attached() {
        // A regular file page without the magic: the child must ignore it.
        let f = tempfile::tempfile().unwrap();
        f.set_len(PAGE as u64).unwrap();
        let page = map(f.as_fd()).unwrap();
        let slot = Slot { page };
        assert_ne!(slot.layout().magic.load(Ordering::Relaxed), MAGIC);
    }
}
