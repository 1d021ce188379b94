//! Bad input: each case gets a clear error (logged, or an error response) and the server
//! goes on serving everyone else.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use fcgi::protocol::{
    encode_header_into, encode_params, encode_record, encode_stream_end, ProtocolStatus,
    RecordType, Role,
};

/// Runs `bad` against a fresh server, then checks a well-formed request on a new
/// connection, and one on a connection opened before the bad one, still work.
fn survives(bad: impl FnOnce(&mut Raw)) {
    let srv = TestServer::start(config(2), echo);
    let mut before = srv.connect();
    let mut c = srv.connect();
    bad(&mut c);
    let mut after = srv.connect();
    assert_eq!(
        after.request(1, false, &[("OK", "1")], b"fine").body(),
        b"OK=1\n\nfine"
    );
    assert_eq!(before.request(1, false, &[], b"x").body(), b"\nx");
}

#[test]
fn truncated_header_then_close() {
    survives(|c| {
        c.send(&[1, 1, 0]);
        c.s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(c.closed_by_server());
    });
}

#[test]
fn wrong_version_closes_only_that_connection() {
    survives(|c| {
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(c.closed_by_server());
    });
}

#[test]
fn begin_request_with_wrong_body_length() {
    survives(|c| {
        let mut b = Vec::new();
        encode_record(&mut b, RecordType::BeginRequest, 1, &[0, 1, 0]);
        c.send(&b);
        assert!(c.closed_by_server());
    });
}

#[test]
fn oversized_params_are_refused_with_431_and_the_connection_stays_in_sync() {
    let mut cfg = config(2);
    cfg.params.max_bytes = 4096;
    let srv = TestServer::start(cfg, echo);
    let mut c = srv.connect();
    let big = "x".repeat(10_000);
    let mut b = Raw::begin_bytes(1, Role::Responder, true);
    encode_params(&mut b, 1, [(&b"HTTP_X_BIG"[..], big.as_bytes())]);
    encode_record(&mut b, RecordType::Stdin, 1, b"ignored body");
    encode_stream_end(&mut b, RecordType::Stdin, 1);
    c.send(&b);
    let r = c.response(1);
    assert!(r.text().starts_with("Status: 431 "), "{}", r.text());
    assert_eq!(r.protocol_status(), ProtocolStatus::RequestComplete);
    // The refused request's remaining records are skipped; the next request works.
    assert_eq!(
        c.request(2, false, &[("A", "b")], b"ok").body(),
        b"A=b\n\nok"
    );
}

/// This test binary's allocator: the system's, with the largest single request seen.
/// No test here has reason to ask for more than a few MiB at once; the decoder that sized a
/// buffer from a hostile length would ask for gigabytes.
struct Measuring;

static LARGEST_ALLOC: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

fn note(size: usize) {
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    LARGEST_ALLOC.fetch_max(size, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Measuring {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Measuring = Measuring;

/// Far below the 2 GiB a hostile length announces, far above any honest buffer here.
const ALLOC_CEILING: usize = 64 << 20;

#[test]
fn hostile_pair_length_does_not_allocate_and_is_refused() {
    // The measure works: an allocation in this process is seen.
    let before = ALLOCS.load(Ordering::Relaxed);
    let probe = std::hint::black_box(vec![0u8; 1 << 20]);
    assert!(ALLOCS.load(Ordering::Relaxed) > before);
    assert!(LARGEST_ALLOC.load(Ordering::Relaxed) >= probe.len());
    drop(probe);

    let srv = TestServer::start(config(2), echo);
    let mut c = srv.connect();
    let mut b = Raw::begin_bytes(1, Role::Responder, false);
    // CVE-2025-23016 shape: 4-byte lengths of 0x7fffffff with almost no bytes behind them.
    encode_record(
        &mut b,
        RecordType::Params,
        1,
        b"\xff\xff\xff\xff\xff\xff\xff\xffAB",
    );
    c.send(&b);
    let r = c.response(1);
    assert!(r.text().starts_with("Status: 431 "));
    // Both lengths were refused before anything was sized from them.
    let largest = LARGEST_ALLOC.load(Ordering::Relaxed);
    assert!(
        largest < ALLOC_CEILING,
        "largest single allocation {largest} bytes: sized from the hostile length"
    );
    let mut after = srv.connect();
    assert_eq!(after.request(1, false, &[], b"z").body(), b"\nz");
}

#[test]
fn peer_disconnects_mid_record() {
    survives(|c| {
        let mut b = Raw::begin_bytes(1, Role::Responder, false);
        encode_params(&mut b, 1, []);
        encode_header_into(&mut b, RecordType::Stdin, 1, 1000);
        b.extend_from_slice(&[b'a'; 10]);
        c.send(&b);
        c.s.shutdown(std::net::Shutdown::Both).unwrap();
    });
}

#[test]
fn peer_disconnects_mid_params() {
    survives(|c| {
        let mut b = Raw::begin_bytes(1, Role::Responder, false);
        encode_header_into(&mut b, RecordType::Params, 1, 100);
        b.extend_from_slice(b"\x05");
        c.send(&b);
        c.s.shutdown(std::net::Shutdown::Both).unwrap();
    });
}

#[test]
fn records_for_unknown_request_ids_are_ignored() {
    let srv = TestServer::start(config(2), echo);
    let mut c = srv.connect();
    let mut b = Vec::new();
    encode_record(&mut b, RecordType::Stdin, 7, b"stray stdin");
    encode_record(&mut b, RecordType::Params, 8, b"\x01\x01AB");
    encode_header_into(&mut b, RecordType::AbortRequest, 9, 0);
    encode_record(&mut b, RecordType::Unknown(99), 3, b"future type");
    c.send(&b);
    let r = c.request(1, false, &[("A", "1")], b"real");
    assert_eq!(r.body(), b"A=1\n\nreal");
}

#[test]
fn stdin_before_params_end_is_a_protocol_error_for_that_connection_only() {
    survives(|c| {
        let mut b = Raw::begin_bytes(1, Role::Responder, false);
        encode_record(&mut b, RecordType::Stdin, 1, b"too early");
        c.send(&b);
        assert!(c.closed_by_server());
    });
}

#[test]
fn garbage_bytes_of_every_kind_never_take_the_server_down() {
    let srv = TestServer::start(config(2), echo);
    let mut seed = 0x1234_5678u32;
    for round in 0..40 {
        let mut c = srv.connect();
        let mut junk = Vec::new();
        // Valid-looking headers with random types, ids and lengths, and random bytes.
        for _ in 0..8 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let t = (seed % 14) as u8;
            let id = ((seed >> 8) % 3) as u16;
            let len = ((seed >> 12) % 300) as usize;
            let mut content = vec![0u8; len];
            for (i, b) in content.iter_mut().enumerate() {
                *b = (seed >> (i % 24)) as u8;
            }
            if round % 5 == 0 {
                junk.push(seed as u8); // sometimes plain garbage
            }
            encode_record(&mut junk, RecordType::from(t), id, &content);
        }
        let _ = c.s.write_all(&junk);
        let _ = c.s.shutdown(std::net::Shutdown::Write);
        drop(c);
    }
    let mut ok = srv.connect();
    assert_eq!(ok.request(1, false, &[], b"alive").body(), b"\nalive");
}

#[test]
fn a_peer_that_asks_and_never_reads_is_not_read_without_end() {
    // GET_VALUES after GET_VALUES, never reading the answers: the server must stop reading
    // once it owes a bounded amount, so the peer's writes stall (instead of the server
    // buffering answers for ever).
    let srv = TestServer::start(config(1), echo);
    let mut c = srv.connect();
    let mut q = Vec::new();
    for _ in 0..1000 {
        fcgi::protocol::encode_get_values(&mut q, &["FCGI_MAX_CONNS", "FCGI_MAX_REQS"]);
    }
    c.s.set_write_timeout(Some(std::time::Duration::from_secs(2)))
        .unwrap();
    let mut sent = 0usize;
    let stalled = loop {
        match std::io::Write::write(&mut c.s, &q) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break true,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break true,
            Err(e) => panic!("write: {e}"),
        }
        if sent > 256 << 20 {
            break false;
        }
    };
    assert!(
        stalled,
        "the server read {sent} bytes of queries it could not answer"
    );
    // And it still serves others.
    let mut ok = srv.connect();
    assert_eq!(ok.request(1, false, &[], b"fine").body(), b"\nfine");
}
