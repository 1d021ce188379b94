//! The reactor's accept bookkeeping, on real sockets: what a thread may accept, and when.

use std::io::Write;
use std::net::{TcpListener, TcpStream};

use super::*;
use crate::protocol::{encode_header_into, encode_params, BeginRequestBody, RecordType, Role};

#[test]
fn an_empty_look_clears_more_only_if_nothing_was_taken_since() {
    let more = More::default();
    assert!(!more.get());
    more.took();
    assert!(more.get());

    // Thread B looks (the queue is empty), thread A takes a connection meanwhile (and
    // others arrived with it, under one edge), then B reports its empty look.
    let b_saw = more.seen();
    more.took();
    more.empty(b_saw);
    assert!(more.get(), "a stale empty look cleared A's flag");

    // An empty look with nothing taken since clears it.
    let saw = more.seen();
    more.empty(saw);
    assert!(!more.get());
}

/// A complete request head: BEGIN_REQUEST (responder) and an empty PARAMS.
fn head() -> Vec<u8> {
    head_with(0)
}

/// A complete request head whose BEGIN_REQUEST has `flags`.
fn head_with(flags: u8) -> Vec<u8> {
    let mut out = Vec::new();
    encode_header_into(&mut out, RecordType::BeginRequest, 1, 8);
    let body = BeginRequestBody {
        role: Role::Responder,
        flags,
    };
    out.extend_from_slice(&body.encode());
    encode_params(&mut out, 1, std::iter::empty::<(&[u8], &[u8])>());
    out
}

/// An engine (the Rust server's options, without `TCP_DEFER_ACCEPT`) on a loopback
/// listener, blocking unless `nonblocking`.
fn engine_on_loopback(nonblocking: bool) -> (Arc<Engine>, std::net::SocketAddr) {
    engine_on_loopback_with(nonblocking, |_| {})
}

/// [`engine_on_loopback`], with `adjust` applied to the options first.
fn engine_on_loopback_with(
    nonblocking: bool,
    adjust: impl FnOnce(&mut Options),
) -> (Arc<Engine>, std::net::SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(nonblocking).unwrap();
    let addr = l.local_addr().unwrap();
    let mut opts = crate::server::Config::default().engine_options(None);
    opts.defer_accept = false;
    adjust(&mut opts);
    let engine = Engine::new(vec![Listener::Tcp(l)], opts, Arc::new(Counters::default())).unwrap();
    assert_eq!(engine.listeners.read()[0].nonblocking, nonblocking);
    (engine, addr)
}

/// An engine on a loopback listener (blocking unless `nonblocking`), and `peers`
/// connections that each sent a complete request head (kept open).
fn engine_with_peers(nonblocking: bool, peers: usize) -> (Arc<Engine>, Vec<TcpStream>) {
    let (engine, addr) = engine_on_loopback(nonblocking);
    let peers = (0..peers)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&head()).unwrap();
            s
        })
        .collect();
    engine.wake.drain();
    (engine, peers)
}

/// `job` leaves with its thread while another thread waits in the engine.
fn hand_out_with_a_waiter(engine: &Engine, job: Job) -> Job {
    engine.waiters.fetch_add(1, Ordering::SeqCst);
    let job = engine.hand_out(job);
    engine.waiters.fetch_sub(1, Ordering::SeqCst);
    job
}

fn wake_pending(engine: &Engine) -> bool {
    epoll::wait_fd(engine.wake.as_fd(), false, Some(Duration::ZERO)).unwrap()
}

#[test]
fn a_thread_with_a_request_leaves_a_blocking_listener_to_a_waiter() {
    // A blocking listener (a C program's inherited socket): a sibling process may take a
    // connection between the readiness check and accept(2), so a thread that holds a
    // request must not accept there; it wakes a waiter instead.
    let (engine, _peers) = engine_with_peers(false, 2);

    // A thread took the listener's edge and the first connection; another thread waits.
    let first = engine.accept(0).expect("the first request");
    assert!(engine.listeners.read()[0].more.get());
    let first = hand_out_with_a_waiter(&engine, first);

    assert_eq!(
        engine.ready_len.load(Ordering::SeqCst),
        0,
        "the thread with a request accepted from a blocking listener"
    );
    assert!(
        wake_pending(&engine),
        "no waiter was woken to take the second connection"
    );
    // The woken waiter, holding nothing, takes it.
    let second = engine.next(true).expect("the second request");
    assert_ne!(first.conn.key, second.conn.key);
}

#[test]
fn a_thread_with_a_request_takes_the_next_and_queued_requests_go_first() {
    let (engine, _peers) = engine_with_peers(true, 3);
    let first = engine.accept(0).expect("the first request");
    let _first = hand_out_with_a_waiter(&engine, first);
    assert_eq!(
        engine.ready_len.load(Ordering::SeqCst),
        1,
        "the second connection waits for a thread"
    );
    let queued = engine.ready.lock().front().unwrap().conn.key;
    // The next free thread takes the request that waits, not a third connection (which
    // would starve it while connections keep coming).
    let next = engine.next(true).expect("a request");
    assert_eq!(next.conn.key, queued);
}

#[test]
fn a_thread_with_a_request_wakes_nobody_when_a_blocking_listener_is_empty() {
    let (engine, _peers) = engine_with_peers(false, 1);
    let first = engine.accept(0).expect("the request");
    let _first = hand_out_with_a_waiter(&engine, first);
    assert!(
        !engine.listeners.read()[0].more.get(),
        "an empty queue left the flag set"
    );
    assert!(!wake_pending(&engine), "a waiter was woken for nothing");
}

#[test]
fn slices_skip_empty_parts_and_spill_to_the_heap_past_eight() {
    let parts: Vec<Vec<u8>> = (0..12u8).map(|i| vec![i; usize::from(i % 3)]).collect();
    for n in [0, 1, 8, 9, 12] {
        let want: Vec<&[u8]> = parts[..n]
            .iter()
            .map(|p| &p[..])
            .filter(|p| !p.is_empty())
            .collect();
        let mut s = conn::Slices::new(parts[..n].iter().map(|p| &p[..]));
        let got: Vec<&[u8]> = s.as_mut().iter().map(|x| &x[..]).collect();
        assert_eq!(got, want, "{n} parts");
    }
    // More than eight non-empty parts.
    let big: Vec<Vec<u8>> = (1..=20u8).map(|i| vec![i]).collect();
    let mut s = conn::Slices::new(big.iter().map(|p| &p[..]));
    assert_eq!(s.as_mut().len(), 20);
    assert_eq!(&s.as_mut()[19][..], &[20u8][..]);
}

/// What `engine.drain` (with a deadline of 120 s) answered, if it returned within 30 s: a
/// drain that missed its wake-up sleeps until the deadline.
fn drain_within_30_s(engine: &Arc<Engine>) -> Result<bool, std::sync::mpsc::RecvTimeoutError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let e = Arc::clone(engine);
    std::thread::spawn(move || tx.send(e.drain(Instant::now() + Duration::from_secs(120))));
    rx.recv_timeout(Duration::from_secs(30))
}

/// A request that ends while the stopping thread looks at what is left (after its look,
/// before it waits) must still wake it: the drain returns at once, not at its deadline.
#[test]
fn a_request_ending_as_the_drain_looks_wakes_it() {
    let (engine, _peers) = engine_with_peers(true, 1);
    let job = engine.next(true).unwrap();
    engine.stop();
    let (e, conn) = (Arc::clone(&engine), Arc::clone(&job.conn));
    *engine.drain_looked.lock() = Some(Hook(Box::new(move || {
        // The request's thread: its connection closes, then the job is done.
        e.close(&conn, false);
        e.job_done();
    })));
    assert_eq!(
        drain_within_30_s(&engine),
        Ok(true),
        "the drain slept through the end of the last request"
    );
}

/// While stopping, a connection that still owes its peer (closing) and is then closed on
/// another thread must wake the drain waiting for it; nothing else would (no event, no
/// timer).
#[test]
fn a_connection_closed_elsewhere_while_stopping_wakes_the_drain() {
    let (engine, _peers) = engine_with_peers(true, 1);
    let job = engine.next(true).unwrap();
    // Its request is over; its thread still holds the connection, which owes its peer.
    if let Some(e) = engine.table.lock().get(job.conn.key) {
        e.phase = Phase::Closing;
    }
    engine.job_done(); // before the stop: no wake-up
    engine.stop();
    let (e, conn) = (Arc::clone(&engine), Arc::clone(&job.conn));
    *engine.drain_looked.lock() = Some(Hook(Box::new(move || e.close(&conn, false))));
    assert_eq!(
        drain_within_30_s(&engine),
        Ok(true),
        "the drain slept through the close of the last connection it waited for"
    );
}

/// Waits (10 s at most) until `cond` holds; false if it never did.
fn until(cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        if Instant::now() > end {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// `engine.next(true)` on a new thread; its answer comes on the channel.
fn next_on_a_thread(engine: &Arc<Engine>) -> std::sync::mpsc::Receiver<io::Result<Job>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let e = Arc::clone(engine);
    std::thread::spawn(move || {
        let _ = tx.send(e.next(true));
    });
    rx
}

fn own_waiters(engine: &Engine) -> usize {
    engine.own_waiters.load(Ordering::SeqCst)
}

fn shared_waiters(engine: &Engine) -> usize {
    engine.waiters.load(Ordering::SeqCst)
}

/// A kept-alive connection with its first request taken by the calling thread.
fn kept_request(engine: &Engine, addr: std::net::SocketAddr) -> (TcpStream, Job) {
    let mut peer = TcpStream::connect(addr).unwrap();
    peer.write_all(&head_with(1)).unwrap();
    let job = engine.accept(0).expect("the request");
    (peer, job)
}

const WAIT: Duration = Duration::from_secs(10);

/// The request a thread of [`next_on_a_thread`] returned, within [`WAIT`]; `what` says
/// what failed otherwise.
fn taken(rx: &std::sync::mpsc::Receiver<io::Result<Job>>, what: &str) -> Job {
    rx.recv_timeout(WAIT).expect(what).unwrap()
}

/// A thread of [`next_on_a_thread`] returned `Interrupted` (the engine stopped) within
/// [`WAIT`]; `what` says what failed otherwise.
fn ended(rx: &std::sync::mpsc::Receiver<io::Result<Job>>, what: &str) {
    let err = rx.recv_timeout(WAIT).expect(what).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Interrupted);
}

#[test]
fn connections_that_arrive_together_each_wake_a_thread_in_its_own_set() {
    let (engine, addr) = engine_on_loopback(true);
    assert!(engine.own_sets);
    let threads: Vec<_> = (0..2).map(|_| next_on_a_thread(&engine)).collect();
    assert!(
        until(|| own_waiters(&engine) == 2),
        "the threads did not wait in their own sets"
    );
    let _peers: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&head()).unwrap();
            s
        })
        .collect();
    // No second look at the queue: the kernel woke one thread per arrival.
    let jobs: Vec<Job> = threads
        .iter()
        .map(|rx| taken(rx, "a connection found no thread"))
        .collect();
    assert_ne!(jobs[0].conn.key, jobs[1].conn.key);
    assert_eq!(engine.ready_len.load(Ordering::SeqCst), 0);
}

#[test]
fn a_connection_that_came_while_every_thread_was_busy_is_found_by_the_next_free_one() {
    let (engine, addr) = engine_on_loopback(true);
    let mut peer = TcpStream::connect(addr).unwrap();
    peer.write_all(&head()).unwrap();
    // No thread waited when it came; the first to come back finds it in its own set.
    let job = taken(&next_on_a_thread(&engine), "never found");
    assert_eq!(engine.counters.open.load(Ordering::SeqCst), 1);
    drop(job);
}

#[test]
fn a_connection_parked_outside_the_engine_calls_own_set_waiters_to_the_shared_set() {
    let (engine, addr) = engine_on_loopback(true);
    let (mut peer, job) = kept_request(&engine, addr);
    // Nothing to watch while the request runs: a free thread waits in its own set.
    let waiter = next_on_a_thread(&engine);
    assert!(until(|| own_waiters(&engine) == 1));
    // The request ends on this thread (not in `next`): its connection parks, and the
    // waiter must come to watch it.
    assert!(engine.finish(&job.conn, 1, &[]).is_none());
    called_to_watch(&engine, &waiter, &mut peer, job.conn.key);
}

/// `waiter`, until now in its own set, must come to the shared set as its only waiter
/// and take the next request of `key` (sent now by `peer`) from there.
fn called_to_watch(
    engine: &Engine,
    waiter: &std::sync::mpsc::Receiver<io::Result<Job>>,
    peer: &mut TcpStream,
    key: u64,
) {
    assert!(
        until(|| own_waiters(engine) == 0 && shared_waiters(engine) == 1),
        "a parked connection was left without a watcher"
    );
    peer.write_all(&head_with(1)).unwrap();
    let got = taken(waiter, "its next request was never taken");
    assert_eq!(got.conn.key, key);
}

#[test]
fn the_last_watcher_leaving_with_a_request_calls_own_set_waiters() {
    let (engine, addr) = engine_on_loopback(true);
    let (mut peer_a, a) = kept_request(&engine, addr);
    let (mut peer_b, b) = kept_request(&engine, addr);
    assert!(engine.finish(&a.conn, 1, &[]).is_none()); // A parks; nobody waits yet
    let y = next_on_a_thread(&engine);
    assert!(until(|| shared_waiters(&engine) == 1), "Y does not watch A");
    // A is taken elsewhere: nothing to watch, so the next free thread, X, waits in its
    // own set while Y still waits in the shared one.
    assert!(engine.try_take(&a.conn));
    let x = next_on_a_thread(&engine);
    assert!(until(|| own_waiters(&engine) == 1));
    // A and B park while Y watches: nobody is called.
    assert!(engine.park(&a.conn, Phase::Idle));
    assert!(engine.finish(&b.conn, 1, &[]).is_none());
    assert_eq!(own_waiters(&engine), 1);
    // Y leaves with B's next request; A must keep a watcher.
    peer_b.write_all(&head_with(1)).unwrap();
    let got = taken(&y, "Y took nothing");
    assert_eq!(got.conn.key, b.conn.key);
    called_to_watch(&engine, &x, &mut peer_a, a.conn.key);
}

#[test]
fn stopping_wakes_the_threads_in_their_own_sets() {
    let (engine, _addr) = engine_on_loopback(true);
    let waiter = next_on_a_thread(&engine);
    assert!(until(|| own_waiters(&engine) == 1));
    engine.stop();
    ended(&waiter, "still waiting after the stop");
}

#[test]
fn a_thread_woken_in_its_own_set_on_a_blocking_listener_takes_the_connection() {
    // A C program's blocking listener: the thread accepts with a blocking accept(2).
    let (engine, addr) = engine_on_loopback(false);
    assert!(engine.own_sets);
    let waiter = next_on_a_thread(&engine);
    assert!(until(|| own_waiters(&engine) == 1));
    let mut peer = TcpStream::connect(addr).unwrap();
    peer.write_all(&head()).unwrap();
    taken(&waiter, "never taken");
}

#[test]
fn a_request_queued_outside_the_engine_reaches_a_thread_in_its_own_set() {
    let (engine, addr) = engine_on_loopback(true);
    let (_peer, job) = kept_request(&engine, addr);
    let key = job.conn.key;
    let waiter = next_on_a_thread(&engine);
    assert!(until(|| own_waiters(&engine) == 1));
    // A multiplexed connection's reader (a request's thread) queues a request it read.
    engine.push_ready(job);
    let got = taken(&waiter, "the queued request waits");
    assert_eq!(got.conn.key, key);
}

#[test]
fn a_thread_about_to_wait_as_the_drain_clears_the_wake_up_sees_the_stop() {
    let (engine, addr) = engine_on_loopback(true);
    let (_peer, job) = kept_request(&engine, addr);
    // A parked connection: the next free thread waits in the shared set.
    assert!(engine.finish(&job.conn, 1, &[]).is_none());
    let e = Arc::clone(&engine);
    *engine.before_wait.lock() = Some(Hook(Box::new(move || {
        // After this thread's look at the stop, before it counts itself a waiter: the
        // engine stops, and the drain, seeing no waiter, clears the wake-up.
        e.stop();
        assert!(e.drain(Instant::now() + Duration::from_secs(5)));
    })));
    ended(
        &next_on_a_thread(&engine),
        "the thread slept through the stop",
    );
}

/// SIGURG with a handler that does nothing, installed without `SA_RESTART` (as the C
/// library's SIGPIPE handler): the engine's quiet signal in these tests. Not SIGPIPE,
/// which other tests of this process set to be ignored (a signal then discarded), and
/// SIGURG's default is to be ignored anyway.
fn quiet_signal() -> Option<libc::c_int> {
    extern "C" fn nothing(_: libc::c_int) {}
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        // SAFETY: sigaction with a valid, zero-initialised struct and a no-op handler.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = nothing as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGURG, &sa, std::ptr::null_mut()), 0);
        }
    });
    Some(libc::SIGURG)
}

/// Whether thread `tid` of this process waits in `accept(2)`.
fn in_accept(tid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan"))
        .is_ok_and(|w| w.trim() == "inet_csk_accept")
}

#[test]
fn a_connection_parked_with_no_watcher_calls_a_thread_out_of_accept() {
    // A C program's blocking listener. One thread waits in accept(2) with nothing to
    // watch (so unbounded): another process took the connection it was woken for.
    let (engine, addr) = engine_on_loopback_with(false, |o| o.accept_signal = Some(quiet_signal));
    let (tx, rx) = std::sync::mpsc::channel();
    let e = Arc::clone(&engine);
    std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tx.send(Err(unsafe { libc::gettid() })).unwrap();
        let l = Arc::clone(&e.listeners.read()[0]);
        let _ = tx.send(Ok(e.accept_on(&l).map(|_| ())));
    });
    let Ok(Err(tid)) = rx.recv() else {
        panic!("no thread id")
    };
    assert!(
        until(|| in_accept(tid)),
        "the thread does not wait in accept"
    );

    // Another thread's request on a kept connection (not from the listener) ends, and
    // the connection parks with no thread to watch it: the one in accept must come.
    let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
    peer.write_all(&head_with(1)).unwrap();
    let job = engine
        .accepted(Ok((OwnedFd::from(ours), Peer::Local)))
        .expect("the request");
    assert!(engine.finish(&job.conn, 1, &[]).is_none());
    assert_eq!(engine.counters.parked.load(Ordering::SeqCst), 1);
    let got = rx.recv_timeout(WAIT);
    if got.is_err() {
        drop(TcpStream::connect(addr)); // lets the thread go
    }
    let got = got.expect("the thread stayed in accept with a connection left unwatched");
    let Ok(Err(e)) = got else {
        panic!("the accept ended otherwise: {got:?}")
    };
    assert_eq!(e.kind(), io::ErrorKind::Interrupted);
}
