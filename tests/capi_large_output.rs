//! A C program's large `FCGX_PutStr` on our libfcgi.so.0 goes out as maximal records (up to
//! 64 KiB of content each, gathered into few system calls), not one record per 8 KiB stream
//! buffer as with the classic library: the bytes arrive whole and in order, in few records.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fcgi::protocol::{decode_record, RecordType, Status};
use support::capi::have_tools;
use support::engine::{request_bytes, OursApp};

const BODY: usize = 300_000;

#[test]
fn a_large_put_str_goes_out_in_maximal_records() {
    if !have_tools(&["cc"], "a_large_put_str_goes_out_in_maximal_records") {
        return;
    }
    let app = OursApp::start(&[]);

    // engine_app writes BODY_BYTES in FCGX_PutStr calls of 64 KiB.
    let mut s = TcpStream::connect(("127.0.0.1", app.port)).unwrap();
    let body = BODY.to_string();
    s.write_all(&request_bytes(false, &[("BODY_BYTES", &body)]))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut buf, mut stdout, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    'read: loop {
        while let Status::Complete((rec, used)) = decode_record(&buf).expect("well-formed records")
        {
            match rec.header.record_type {
                RecordType::Stdout if !rec.content.is_empty() => {
                    sizes.push(rec.content.len());
                    stdout.extend_from_slice(rec.content);
                }
                RecordType::EndRequest => break 'read,
                _ => {}
            }
            buf.drain(..used);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no END_REQUEST within 20 s");
        s.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 65536];
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed before END_REQUEST");
        buf.extend_from_slice(&chunk[..n]);
    }

    let text = String::from_utf8_lossy(&stdout);
    let head_end = text.find("\n").map(|i| i + 1).expect("a header line");
    let after_pid = text[head_end..]
        .find("pid=")
        .and_then(|i| {
            text[head_end + i..]
                .find('\n')
                .map(|j| head_end + i + j + 1)
        })
        .expect("pid=N line");
    assert_eq!(stdout.len() - after_pid, BODY, "body length");
    assert!(stdout[after_pid..].iter().all(|&b| b == b'x'), "body bytes");
    let largest = sizes.iter().copied().max().unwrap_or(0);
    assert!(
        largest > 8192,
        "the body went out in stream-buffer records (largest {largest} bytes, {} records)",
        sizes.len()
    );
    assert!(
        sizes.len() <= 16,
        "{} stdout records for {BODY} bytes: {sizes:?}",
        sizes.len()
    );
}
