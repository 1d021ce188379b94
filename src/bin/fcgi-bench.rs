//! `fcgi-bench`: a FastCGI load generator (like `ab`/`wrk`, speaking FastCGI directly).
//!
//! ```text
//! fcgi-bench [-n REQUESTS | -d SECONDS] [-c CONCURRENCY] [-m MAX_CONNS] [-k | -K]
//!            [-b BODY_BYTES] [-s SCRIPT_FILENAME] [-p NAME=VALUE]... [-t TIMEOUT_SECONDS]
//!            ADDRESS
//! ```
//!
//! ADDRESS is `host:port` or `unix:/path`. `-k` keeps connections alive (the default), `-K`
//! opens one per request. Without `-m`, the pool opens up to one connection per caller and
//! learns how many the backend really accepts (PHP-FPM does not announce it: one kept
//! connection per child); `-m` sets the bound by hand, as behind a web server's pool.
//! Prints progress every second on stderr, then requests/s, throughput, latency
//! percentiles and the responses that were not 2xx (by status) on stdout. Exits 1 when any
//! request failed, 2 on bad arguments, 0 otherwise (also after `--help`).

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fcgi::client::{Address, Backend, Config, FcgiRequest, Pool};

const USAGE: &str = "usage: fcgi-bench [-n REQUESTS | -d SECONDS] [-c CONCURRENCY] \
[-m MAX_CONNS] [-k | -K] [-b BODY_BYTES] [-s SCRIPT_FILENAME] [-p NAME=VALUE]... [-t TIMEOUT_SECONDS] ADDRESS";

const HELP: &str = "\
Sends FastCGI requests to ADDRESS (host:port or unix:/path) as fast as it can answer,
from CONCURRENCY threads over a pool of kept-alive connections, and reports requests/s,
throughput, latency percentiles, and the answers that were not 2xx by status.

Options:
  -n, --requests N        send N requests in all (default 1000)
  -d, --duration SECONDS  send for SECONDS instead
  -c, --concurrency N     callers at once (default 1)
  -m, --max-conns N       at most N connections (default: one per caller, lowered to what
                          the backend accepts; PHP-FPM: pm.max_children)
  -k, --keep-alive        keep connections alive (FCGI_KEEP_CONN; the default)
  -K, --no-keep-alive     a new connection per request
  -b, --body BYTES        send a body of BYTES bytes (a POST)
  -s, --script PATH       SCRIPT_FILENAME (PHP-FPM answers 404 without one)
  -p, --param NAME=VALUE  a param (repeatable; overrides the defaults)
  -t, --timeout SECONDS   limit per request and per wait for a connection (default 30)
  -h, --help              this help
  -V, --version           the version

Exit status: 0 when every request got an answer, 1 when any failed, 2 on bad arguments.";

struct Options {
    addr: Address,
    requests: Option<u64>,
    duration: Option<Duration>,
    concurrency: usize,
    max_conns: Option<usize>,
    keep_alive: bool,
    body: u64,
    params: Vec<(String, String)>,
    timeout: Duration,
}

/// What the command line asks for.
enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

fn parse_args(args: Vec<std::ffi::OsString>) -> Result<Parsed, String> {
    use lexopt::prelude::*;
    let mut o = Options {
        addr: Address::Tcp(([127, 0, 0, 1], 9000).into()),
        requests: None,
        duration: None,
        concurrency: 1,
        max_conns: None,
        keep_alive: true,
        body: 0,
        params: Vec::new(),
        timeout: Duration::from_secs(30),
    };
    let mut addr: Option<String> = None;
    let mut script = None;
    let mut p = lexopt::Parser::from_args(args);
    let err = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(err)? {
        match arg {
            Short('n') | Long("requests") => o.requests = Some(num(&mut p, "-n")?),
            Short('d') | Long("duration") => {
                o.duration = Some(secs(num(&mut p, "-d")?, "-d")?);
            }
            Short('c') | Long("concurrency") => {
                o.concurrency = num::<usize>(&mut p, "-c")?.max(1);
            }
            Short('m') | Long("max-conns") => {
                o.max_conns = Some(num::<usize>(&mut p, "-m")?.max(1))
            }
            Short('k') | Long("keep-alive") => o.keep_alive = true,
            Short('K') | Long("no-keep-alive") => o.keep_alive = false,
            Short('b') | Long("body") => o.body = num(&mut p, "-b")?,
            Short('t') | Long("timeout") => o.timeout = secs(num(&mut p, "-t")?, "-t")?,
            Short('s') | Long("script") => script = Some(string(&mut p)?),
            Short('p') | Long("param") => {
                let v = string(&mut p)?;
                let (n, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("-p {v}: expected NAME=VALUE"))?;
                o.params.push((n.to_string(), val.to_string()));
            }
            Short('h') | Long("help") => return Ok(Parsed::Help),
            Short('V') | Long("version") => return Ok(Parsed::Version),
            Value(v) => {
                let v = v.into_string().map_err(|v| format!("{v:?}: not UTF-8"))?;
                if addr.replace(v).is_some() {
                    return Err("more than one address".into());
                }
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    let addr = addr.ok_or("no address given")?;
    o.addr = addr
        .parse()
        .map_err(|_| format!("{addr}: not host:port or unix:/path"))?;
    if o.requests.is_some() && o.duration.is_some() {
        return Err("give -n or -d, not both".into());
    }
    if o.requests.is_none() && o.duration.is_none() {
        o.requests = Some(1000);
    }
    let method = if o.body > 0 { "POST" } else { "GET" };
    let mut base = vec![
        ("REQUEST_METHOD".to_string(), method.to_string()),
        ("SERVER_PROTOCOL".into(), "HTTP/1.1".into()),
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("SERVER_NAME".into(), "localhost".into()),
        ("REMOTE_ADDR".into(), "127.0.0.1".into()),
        ("QUERY_STRING".into(), String::new()),
    ];
    if let Some(s) = script {
        let name = s.rsplit('/').next().unwrap_or(&s).to_string();
        base.push(("SCRIPT_FILENAME".into(), s));
        base.push(("SCRIPT_NAME".into(), format!("/{name}")));
        base.push(("REQUEST_URI".into(), format!("/{name}")));
    }
    if o.body > 0 {
        base.push(("CONTENT_LENGTH".into(), o.body.to_string()));
        base.push(("CONTENT_TYPE".into(), "application/octet-stream".into()));
    }
    // Later -p values override the defaults of the same name.
    base.retain(|(n, _)| !o.params.iter().any(|(pn, _)| pn == n));
    base.append(&mut o.params);
    o.params = base;
    Ok(Parsed::Run(Box::new(o)))
}

fn string(p: &mut lexopt::Parser) -> Result<String, String> {
    p.value()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|v| format!("{v:?}: not UTF-8"))
}

fn num<T: std::str::FromStr>(p: &mut lexopt::Parser, name: &str) -> Result<T, String> {
    let s = string(p)?;
    s.parse().map_err(|_| format!("{name} {s}: not a number"))
}

fn secs(v: f64, name: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("{name} {v}: not a number of seconds"))
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    bytes: u64,
    errors: u64,
    /// Answers that were not 2xx, by status.
    non_2xx: BTreeMap<u16, u64>,
    first_error: Option<String>,
}

fn main() -> ExitCode {
    let o = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            println!("{USAGE}\n\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("fcgi-bench {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fcgi-bench: {e}");
            eprintln!("{USAGE}");
            eprintln!("(fcgi-bench --help for more)");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::default();
    config.keep_conn = o.keep_alive;
    config.request_timeout = Some(o.timeout);
    let backend = Backend::new(o.addr.clone());
    let backend = match o.max_conns {
        // The caller's bound: never lowered.
        Some(m) => backend.max_conns(m.min(o.concurrency)),
        None => backend,
    };
    let pool = Pool::builder()
        .backend(backend)
        .max_conns_per_backend(o.concurrency)
        .config(config)
        .wait_timeout(Some(o.timeout))
        .build();
    let params = Arc::new(o.params.clone());
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let stop_at = o.duration.map(|d| start + d);
    let workers: Vec<_> = (0..o.concurrency)
        .map(|_| {
            let (pool, params) = (pool.clone(), params.clone());
            let (issued, done, failed) = (issued.clone(), done.clone(), failed.clone());
            let (limit, body) = (o.requests, o.body);
            std::thread::spawn(move || {
                let mut t = Tally::default();
                let mut sink = vec![0u8; 64 * 1024];
                loop {
                    if stop_at.is_some_and(|s| Instant::now() >= s) {
                        break;
                    }
                    if limit.is_some_and(|n| issued.fetch_add(1, Ordering::Relaxed) >= n) {
                        break;
                    }
                    let req = FcgiRequest::new().params(params.iter().map(|(n, v)| (n, v)));
                    let t0 = Instant::now();
                    let result =
                        pool.send(req, std::io::repeat(b'x').take(body))
                            .and_then(|mut resp| {
                                let status = resp.status();
                                let mut n = 0u64;
                                loop {
                                    match resp.read(&mut sink) {
                                        Ok(0) => break,
                                        Ok(k) => n += k as u64,
                                        // The typed error the read carries, not "I/O error".
                                        Err(e) => return Err(fcgi::client::Error::from(e)),
                                    }
                                }
                                Ok((status, n))
                            });
                    match result {
                        Ok((status, n)) => {
                            t.latencies_us.push(t0.elapsed().as_micros() as u64);
                            t.bytes += n;
                            if !(200..300).contains(&status) {
                                *t.non_2xx.entry(status).or_default() += 1;
                            }
                        }
                        Err(e) => {
                            t.errors += 1;
                            failed.fetch_add(1, Ordering::Relaxed);
                            t.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                t
            })
        })
        .collect();
    // Progress once a second until the workers are done.
    let progress = {
        let (done, failed) = (done.clone(), failed.clone());
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f2 = finished.clone();
        let h = std::thread::spawn(move || {
            let mut last = 0;
            let mut tick = Instant::now();
            while !f2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if tick.elapsed() >= Duration::from_secs(1) {
                    let now = done.load(Ordering::Relaxed);
                    eprintln!(
                        "  {:>6.1}s  {now} requests, {} req/s, {} errors",
                        start.elapsed().as_secs_f64(),
                        now - last,
                        failed.load(Ordering::Relaxed)
                    );
                    last = now;
                    tick = Instant::now();
                }
            }
        });
        (finished, h)
    };
    let mut total = Tally::default();
    for w in workers {
        let t = w.join().expect("worker panicked");
        total.latencies_us.extend(t.latencies_us);
        total.bytes += t.bytes;
        total.errors += t.errors;
        for (status, n) in t.non_2xx {
            *total.non_2xx.entry(status).or_default() += n;
        }
        if total.first_error.is_none() {
            total.first_error = t.first_error;
        }
    }
    let elapsed = start.elapsed();
    progress.0.store(true, Ordering::Relaxed);
    let _ = progress.1.join();
    report(&o, elapsed, &mut total, &pool);
    if total.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn report(o: &Options, elapsed: Duration, t: &mut Tally, pool: &Pool) {
    let (addr, concurrency, keep_alive) = (&o.addr, o.concurrency, o.keep_alive);
    let ok = t.latencies_us.len() as u64;
    let secs = elapsed.as_secs_f64().max(1e-9);
    t.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if t.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (t.latencies_us.len() - 1) as f64).round() as usize;
        t.latencies_us[i] as f64 / 1000.0
    };
    let stats = pool.stats();
    let connects: u64 = stats.iter().map(|s| s.connects).sum();
    let non_2xx: u64 = t.non_2xx.values().sum();
    println!("Target:          {addr}");
    println!(
        "Concurrency:     {concurrency} (keep-alive {})",
        if keep_alive { "on" } else { "off" }
    );
    println!("Completed:       {ok}");
    println!("Failed:          {}", t.errors);
    if non_2xx == 0 {
        println!("Non-2xx:         0");
    } else {
        let by: Vec<String> = t.non_2xx.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        println!("Non-2xx:         {non_2xx} ({})", by.join(", "));
    }
    println!("Connections:     {connects}");
    for s in &stats {
        if s.limit < s.configured_limit {
            println!(
                "Backend limit:   {} (learned: the backend left connections unanswered; \
                 -m {} sets it)",
                s.limit, s.limit
            );
        }
    }
    println!("Duration:        {secs:.3} s");
    println!("Requests/s:      {:.1}", ok as f64 / secs);
    println!(
        "Throughput:      {:.3} MiB/s ({} bytes of stdout)",
        t.bytes as f64 / secs / (1024.0 * 1024.0),
        t.bytes
    );
    println!(
        "Latency (ms):    min {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
        pct(0.0),
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(100.0)
    );
    if let Some(e) = &t.first_error {
        println!("First error:     {e}");
    }
    if ok > 0 && non_2xx == ok {
        eprintln!(
            "fcgi-bench: no answer was 2xx{}: these figures measure error pages",
            if t.non_2xx.contains_key(&404) {
                " (404: is -s SCRIPT_FILENAME right?)"
            } else {
                ""
            }
        );
    }
}
