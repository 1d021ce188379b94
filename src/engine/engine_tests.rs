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
    let mut out = Vec::new();
    encode_header_into(&mut out, RecordType::BeginRequest, 1, 8);
    let body = BeginRequestBody {
        role: Role::Responder,
        flags: 0,
    };
    out.extend_from_slice(&body.encode());
    encode_params(&mut out, 1, std::iter::empty::<(&[u8], &[u8])>());
    out
}

/// An engine on a loopback listener (blocking unless `nonblocking`), and `peers`
/// connections that each sent a complete request head (kept open).
fn engine_with_peers(nonblocking: bool, peers: usize) -> (Arc<Engine>, Vec<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(nonblocking).unwrap();
    let addr = l.local_addr().unwrap();
    let mut opts = crate::server::Config::default().engine_options(None);
    opts.defer_accept = false;
    let engine = Engine::new(vec![Listener::Tcp(l)], opts, Arc::new(Counters::default())).unwrap();
    assert_eq!(engine.listeners.read()[0].nonblocking, nonblocking);
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
