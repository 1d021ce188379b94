//! A small FastCGI load generator (used by `bench/run.sh`): `CONCURRENCY` threads send
//! Responder requests to `ADDR` for `SECONDS`, one connection per request (no keep-conn),
//! and it prints requests per second and response megabytes per second.
//!
//! ```text
//! cargo run --release --example fcgi_load -- 127.0.0.1:9000 32 5
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fcgi::protocol::{
    decode_record, encode_params, encode_record, encode_stream_end, BeginRequestBody, RecordType,
    Role, Status,
};

/// One request on a new connection; returns the stdout bytes received.
fn one_request(addr: &str, wire: &[u8]) -> std::io::Result<u64> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    conn.write_all(wire)?;
    let mut buf = vec![0u8; 1 << 16];
    let mut pending: Vec<u8> = Vec::new();
    let mut stdout = 0u64;
    loop {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        pending.extend_from_slice(&buf[..n]);
        let mut used_total = 0;
        while let Ok(Status::Complete((record, used))) = decode_record(&pending[used_total..]) {
            match record.header.record_type {
                RecordType::Stdout => stdout += record.content.len() as u64,
                RecordType::EndRequest => return Ok(stdout),
                _ => {}
            }
            used_total += used;
        }
        pending.drain(..used_total);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: fcgi_load ADDR CONCURRENCY SECONDS");
        std::process::exit(2);
    }
    let addr = Arc::new(args[1].clone());
    let concurrency: usize = args[2].parse().expect("CONCURRENCY");
    let seconds: u64 = args[3].parse().expect("SECONDS");

    let mut wire = Vec::new();
    let begin = BeginRequestBody {
        role: Role::Responder,
        flags: 0,
    };
    encode_record(&mut wire, RecordType::BeginRequest, 1, &begin.encode());
    let params: [(&[u8], &[u8]); 3] = [
        (b"REQUEST_METHOD", b"GET"),
        (b"SCRIPT_NAME", b"/bench"),
        (b"QUERY_STRING", b""),
    ];
    encode_params(&mut wire, 1, params);
    encode_stream_end(&mut wire, RecordType::Stdin, 1);
    let wire = Arc::new(wire);

    let requests = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (addr, wire) = (Arc::clone(&addr), Arc::clone(&wire));
            let (requests, bytes, errors) = (
                Arc::clone(&requests),
                Arc::clone(&bytes),
                Arc::clone(&errors),
            );
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    match one_request(&addr, &wire) {
                        Ok(n) => {
                            requests.fetch_add(1, Ordering::Relaxed);
                            bytes.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let r = requests.load(Ordering::Relaxed) as f64;
    println!(
        "{:.0} req/s {:.1} MB/s errors {}",
        r / secs,
        bytes.load(Ordering::Relaxed) as f64 / secs / 1e6,
        errors.load(Ordering::Relaxed)
    );
}
