//! Raw-record FastCGI client and an in-process server for the server's integration tests.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use fcgi::protocol::{
    decode_record, encode_header_into, encode_params, encode_record, encode_stream_end,
    BeginRequestBody, EndRequestBody, Header, ProtocolStatus, RecordType, Role, Status,
};
use fcgi::server::{Config, ShutdownHandle, StatsHandle};
use fcgi::{Request, Server};

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A server running in this process on an ephemeral loopback port.
pub struct TestServer {
    pub addr: String,
    pub stop: ShutdownHandle,
    pub stats: StatsHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    pub fn start<H>(config: Config, handler: H) -> TestServer
    where
        H: Fn(&mut Request) -> io::Result<()> + Send + Sync + 'static,
    {
        TestServer::start_on("127.0.0.1:0", config, handler)
    }

    pub fn start_on<H>(addr: &str, mut config: Config, handler: H) -> TestServer
    where
        H: Fn(&mut Request) -> io::Result<()> + Send + Sync + 'static,
    {
        config.handle_signals = false;
        let server = Server::bind(addr).unwrap().config_with(config);
        let addr = server.local_addrs()[0].clone();
        let stop = server.shutdown_handle();
        let stats = server.stats_handle();
        let thread = Some(std::thread::spawn(move || server.serve(handler)));
        TestServer {
            addr,
            stop,
            stats,
            thread,
        }
    }

    pub fn connect(&self) -> Raw {
        Raw::connect(&self.addr)
    }

    /// Stops the server and waits for `serve` to return.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop.shutdown();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.shutdown();
    }
}

pub fn config(workers: usize) -> Config {
    let mut c = Config::default();
    c.workers = workers;
    c
}

/// The echo handler used by most tests: params as NAME=VALUE lines, empty line, stdin.
pub fn echo(req: &mut Request) -> io::Result<()> {
    let mut head = b"Content-Type: text/plain\r\n\r\n".to_vec();
    for p in req.params() {
        head.extend_from_slice(p.name);
        head.push(b'=');
        head.extend_from_slice(p.value);
        head.push(b'\n');
    }
    head.push(b'\n');
    req.stdout().write_all(&head)?;
    let (i, o, _) = req.split();
    io::copy(i, o)?;
    Ok(())
}

/// One decoded record.
#[derive(Debug, Clone)]
pub struct Rec {
    pub header: Header,
    pub content: Vec<u8>,
}

/// What came back for one request.
#[derive(Debug, Default)]
pub struct Response {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub end: Option<EndRequestBody>,
    pub stdout_records: Vec<usize>,
    pub stdout_ended: bool,
}

impl Response {
    pub fn body(&self) -> &[u8] {
        let pos = self
            .stdout
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("response head");
        &self.stdout[pos + 4..]
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn protocol_status(&self) -> ProtocolStatus {
        self.end.expect("END_REQUEST").protocol_status
    }
}

/// A FastCGI connection driven record by record.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        Raw { s, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    pub fn begin_bytes(id: u16, role: Role, keep: bool) -> Vec<u8> {
        let mut out = Vec::new();
        encode_header_into(&mut out, RecordType::BeginRequest, id, 8);
        out.extend_from_slice(
            &BeginRequestBody {
                role,
                flags: u8::from(keep),
            }
            .encode(),
        );
        out
    }

    /// BEGIN + PARAMS + STDIN (split at 65535) + end of STDIN, as bytes.
    pub fn request_bytes(id: u16, keep: bool, params: &[(&str, &str)], stdin: &[u8]) -> Vec<u8> {
        let mut out = Raw::begin_bytes(id, Role::Responder, keep);
        encode_params(
            &mut out,
            id,
            params.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
        );
        encode_record(&mut out, RecordType::Stdin, id, stdin);
        encode_stream_end(&mut out, RecordType::Stdin, id);
        out
    }

    pub fn request(
        &mut self,
        id: u16,
        keep: bool,
        params: &[(&str, &str)],
        stdin: &[u8],
    ) -> Response {
        let bytes = Raw::request_bytes(id, keep, params, stdin);
        self.send(&bytes);
        self.response(id)
    }

    /// Next record, or None at EOF.
    pub fn record(&mut self) -> Option<Rec> {
        loop {
            match decode_record(&self.buf).expect("valid record from the server") {
                Status::Complete((rec, used)) => {
                    let out = Rec {
                        header: rec.header,
                        content: rec.content.to_vec(),
                    };
                    self.buf.drain(..used);
                    return Some(out);
                }
                Status::Partial(_) => {
                    let mut chunk = [0u8; 65536];
                    let n = match self.s.read(&mut chunk) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
                        Err(e) => panic!("read from server: {e}"),
                    };
                    if n == 0 {
                        assert!(self.buf.is_empty(), "EOF inside a record");
                        return None;
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    /// Collects records of request `id` until its END_REQUEST; records of other ids are
    /// a test failure.
    pub fn response(&mut self, id: u16) -> Response {
        let mut r = Response::default();
        loop {
            let rec = self.record().expect("connection closed before END_REQUEST");
            assert_eq!(rec.header.request_id, id, "record for another id: {rec:?}");
            match rec.header.record_type {
                RecordType::Stdout => {
                    assert!(!r.stdout_ended, "STDOUT after its end record");
                    if rec.content.is_empty() {
                        r.stdout_ended = true;
                    }
                    r.stdout_records.push(rec.content.len());
                    r.stdout.extend_from_slice(&rec.content);
                }
                RecordType::Stderr => r.stderr.extend_from_slice(&rec.content),
                RecordType::EndRequest => {
                    r.end = Some(EndRequestBody::decode(&rec.content).unwrap());
                    return r;
                }
                t => panic!("unexpected record type {t:?}"),
            }
        }
    }

    /// True when the server closed the connection (EOF) within the timeout.
    pub fn closed_by_server(&mut self) -> bool {
        self.s
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0))
            || matches!(self.s.read(&mut b), Err(ref e) if e.kind() == io::ErrorKind::ConnectionReset)
    }
}

/// A gate a handler can wait on until the test opens it.
#[derive(Clone, Default)]
pub struct Gate(Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>);

impl Gate {
    pub fn open(&self) {
        *self.0 .0.lock() = true;
        self.0 .1.notify_all();
    }
    pub fn wait(&self) {
        let mut g = self.0 .0.lock();
        while !*g {
            self.0 .1.wait_for(&mut g, TIMEOUT);
        }
    }
}

/// A barrier for `n` parties that gives up after [`TIMEOUT`], for handlers that must
/// prove they run at the same time: `wait` is true once all `n` arrived (each round;
/// it can be reused), false if they did not within the timeout.
#[derive(Clone)]
pub struct Rendezvous {
    n: usize,
    /// (arrived in this round, rounds completed).
    state: Arc<(parking_lot::Mutex<(usize, u64)>, parking_lot::Condvar)>,
}

impl Rendezvous {
    pub fn new(n: usize) -> Rendezvous {
        Rendezvous {
            n,
            state: Arc::default(),
        }
    }

    pub fn wait(&self) -> bool {
        let (m, cv) = &*self.state;
        let mut g = m.lock();
        let round = g.1;
        g.0 += 1;
        if g.0 == self.n {
            *g = (0, round + 1);
            cv.notify_all();
            return true;
        }
        let deadline = std::time::Instant::now() + TIMEOUT;
        while g.1 == round {
            if cv.wait_until(&mut g, deadline).timed_out() {
                return g.1 != round;
            }
        }
        true
    }
}

/// Polls `cond` until true or the timeout.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
