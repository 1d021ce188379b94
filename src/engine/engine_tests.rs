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

fn engine_on(listener: TcpListener) -> Arc<Engine> {
    let mut opts = crate::server::Config::default().engine_options(None);
    opts.defer_accept = false;
    Engine::new(
        vec![Listener::Tcp(listener)],
        opts,
        Arc::new(Counters::default()),
    )
    .unwrap()
}

#[test]
fn a_thread_with_a_request_leaves_a_blocking_listener_to_a_waiter() {
    // A blocking listener (a C program's inherited socket): a sibling process may take a
    // connection between the readiness check and accept(2), so a thread that holds a
    // request must not accept there; it wakes a waiter instead.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let engine = engine_on(l);
    assert!(!engine.listeners.read()[0].nonblocking);
    let mut peers = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&head()).unwrap();
        peers.push(s);
    }
    engine.wake.drain();

    // A thread took the listener's edge and the first connection; another thread waits.
    let first = engine.accept(0).expect("the first request");
    assert!(engine.listeners.read()[0].more.get());
    engine.waiters.fetch_add(1, Ordering::SeqCst);
    let first = engine.hand_out(first);
    engine.waiters.fetch_sub(1, Ordering::SeqCst);

    assert_eq!(
        engine.ready_len.load(Ordering::SeqCst),
        0,
        "the thread with a request accepted from a blocking listener"
    );
    assert!(
        epoll::wait_fd(engine.wake.as_fd(), false, Some(Duration::ZERO)).unwrap(),
        "no waiter was woken to take the second connection"
    );
    // The woken waiter, holding nothing, takes it.
    let second = engine.next(true).expect("the second request");
    assert_ne!(first.conn.key, second.conn.key);
}

#[test]
fn a_thread_with_a_request_takes_the_next_and_queued_requests_go_first() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let engine = engine_on(l);
    let mut peers = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&head()).unwrap();
        peers.push(s);
    }
    let first = engine.accept(0).expect("the first request");
    engine.waiters.fetch_add(1, Ordering::SeqCst);
    let _first = engine.hand_out(first);
    engine.waiters.fetch_sub(1, Ordering::SeqCst);
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
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let engine = engine_on(l);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&head()).unwrap();
    engine.wake.drain();

    let first = engine.accept(0).expect("the request");
    engine.waiters.fetch_add(1, Ordering::SeqCst);
    let _first = engine.hand_out(first);
    engine.waiters.fetch_sub(1, Ordering::SeqCst);
    assert!(
        !engine.listeners.read()[0].more.get(),
        "an empty queue left the flag set"
    );
    assert!(
        !epoll::wait_fd(engine.wake.as_fd(), false, Some(Duration::ZERO)).unwrap(),
        "a waiter was woken for nothing"
    );
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

#[test]
fn threads_leave_blocking_leftovers_to_the_one_taking_them() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let engine = engine_on(l);
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&head()).unwrap();
    engine.listeners.read()[0].more.took();

    // Another thread is taking leftovers: this one leaves the connection to it.
    engine.listeners.read()[0]
        .taking_leftovers
        .store(true, Ordering::SeqCst);
    assert!(engine.accept_leftovers(false).0.is_none());
    assert!(
        readable(&engine.listeners.read()[0]),
        "the connection was taken"
    );

    // Once it is done, the next thread takes it.
    engine.listeners.read()[0]
        .taking_leftovers
        .store(false, Ordering::SeqCst);
    assert!(engine.accept_leftovers(false).0.is_some());
}
