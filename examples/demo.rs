//! The whole round trip with no web server: starts the `echo` application on a loopback
//! port, plays the web server's part over a real socket (raw FastCGI records, keep-alive,
//! a management query), prints what came back and the server's stats, then shuts down.
//!
//! ```text
//! cargo run --example demo
//! ```
use std::io::{self, Read, Write};
use std::net::TcpStream;

use fcgi::protocol::{
    decode_record, encode_get_values, encode_header_into, encode_params, encode_record,
    encode_stream_end, BeginRequestBody, EndRequestBody, RecordType, Role, Status, KEEP_CONN,
    MAX_CONNS, MAX_REQS, MPXS_CONNS,
};

fn echo(req: &mut fcgi::Request) -> io::Result<()> {
    let mut head = b"Content-Type: text/plain\r\n\r\n".to_vec();
    for p in req.params() {
        head.extend_from_slice(p.name);
        head.push(b'=');
        head.extend_from_slice(p.value);
        head.push(b'\n');
    }
    head.push(b'\n');
    req.stdout().write_all(&head)?;
    let (stdin, stdout, _) = req.split();
    io::copy(stdin, stdout)?;
    Ok(())
}

/// Reads records until `stop` returns true for one; returns them all.
fn read_records(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    mut stop: impl FnMut(RecordType) -> bool,
) -> io::Result<Vec<(RecordType, u16, Vec<u8>)>> {
    let mut out = Vec::new();
    loop {
        match decode_record(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))? {
            Status::Complete((rec, used)) => {
                let t = rec.header.record_type;
                out.push((t, rec.header.request_id, rec.content.to_vec()));
                buf.drain(..used);
                if stop(t) {
                    return Ok(out);
                }
            }
            Status::Partial(_) => {
                let mut chunk = [0u8; 16384];
                let n = s.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

fn request(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    params: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut out = Vec::new();
    encode_header_into(&mut out, RecordType::BeginRequest, 1, 8);
    out.extend_from_slice(
        &BeginRequestBody {
            role: Role::Responder,
            flags: KEEP_CONN,
        }
        .encode(),
    );
    encode_params(
        &mut out,
        1,
        params.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
    );
    encode_record(&mut out, RecordType::Stdin, 1, body);
    encode_stream_end(&mut out, RecordType::Stdin, 1);
    s.write_all(&out)?;
    let records = read_records(s, buf, |t| t == RecordType::EndRequest)?;
    let mut stdout = Vec::new();
    for (t, _, content) in &records {
        match t {
            RecordType::Stdout => stdout.extend_from_slice(content),
            RecordType::EndRequest => {
                let end = EndRequestBody::decode(content).expect("8-byte body");
                println!("{}", String::from_utf8_lossy(&stdout));
                println!(
                    "-- END_REQUEST: app status {}, {:?}\n",
                    end.app_status, end.protocol_status
                );
            }
            _ => {}
        }
    }
    Ok(())
}

fn main() -> io::Result<()> {
    let mut config = fcgi::server::Config::default();
    config.workers = 4;
    config.handle_signals = false;
    let server = fcgi::Server::bind("127.0.0.1:0")?.config_with(config);
    let addr = server.local_addrs()[0].clone();
    let stop = server.shutdown_handle();
    let stats = server.stats_handle();
    let thread = std::thread::spawn(move || server.serve(echo));
    println!("fcgi echo application listening on {addr}\n");

    let mut s = TcpStream::connect(&addr)?;
    let mut buf = Vec::new();

    let mut q = Vec::new();
    encode_get_values(&mut q, &[MAX_CONNS, MAX_REQS, MPXS_CONNS]);
    s.write_all(&q)?;
    let answer = read_records(&mut s, &mut buf, |_| true)?;
    let mut values = fcgi::protocol::ParamsDecoder::new(Default::default());
    values
        .feed(&answer[0].2)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    print!("-- FCGI_GET_VALUES_RESULT:");
    for p in values
        .finish()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        .iter()
    {
        print!(
            " {}={}",
            String::from_utf8_lossy(p.name),
            String::from_utf8_lossy(p.value)
        );
    }
    println!("\n");

    request(
        &mut s,
        &mut buf,
        &[("REQUEST_METHOD", "GET"), ("QUERY_STRING", "name=world")],
        b"",
    )?;
    request(
        &mut s,
        &mut buf,
        &[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "19")],
        b"a body, echoed back",
    )?;
    drop(s);

    println!("-- server stats: {:?}", stats.snapshot());
    stop.shutdown();
    thread.join().expect("server thread")
}
