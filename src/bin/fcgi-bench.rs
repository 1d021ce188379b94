//! `fcgi-bench`: a FastCGI load generator (like `ab`/`wrk`, speaking FastCGI directly).
//!
//! ```text
//! fcgi-bench [-n REQUESTS | -d SECONDS] [-c CONCURRENCY] [-m MAX_CONNS] [-k | -K]
//!            [-b BODY_BYTES] [-s SCRIPT_FILENAME] [-p NAME=VALUE]... [-t TIMEOUT_SECONDS]
//!            ADDRESS
//! ```
//!
//! ADDRESS is `host:port` or `unix:/path`. `-k` keeps connections alive (the default), `-K`
//! opens one per request. `-m` caps the connections (default: the concurrency); callers
//! past it wait their turn for a connection, as behind a web server's pool. Set it to
//! PHP-FPM's `pm.max_children` with `-k`: PHP-FPM does not announce `FCGI_MAX_CONNS`, and
//! kept connections beyond its children wait for a child that never comes. Prints progress every second on stderr, then requests/s,
//! throughput and latency percentiles on stdout. Exits 1 when any request failed, 2 on bad
//! arguments.

use std::io::Read;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fcgi::client::{Address, Backend, Config, FcgiRequest, Pool};

const USAGE: &str = "usage: fcgi-bench [-n REQUESTS | -d SECONDS] [-c CONCURRENCY] \
[-m MAX_CONNS] [-k | -K] [-b BODY_BYTES] [-s SCRIPT_FILENAME] [-p NAME=VALUE]... [-t TIMEOUT_SECONDS] ADDRESS";

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

fn parse_args(args: &[String]) -> Result<Options, String> {
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
    let mut addr = None;
    let mut script = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "-n" => o.requests = Some(num(&value("-n")?, "-n")?),
            "-d" => o.duration = Some(Duration::from_secs_f64(num(&value("-d")?, "-d")?)),
            "-c" => o.concurrency = num::<usize>(&value("-c")?, "-c")?.max(1),
            "-m" => o.max_conns = Some(num::<usize>(&value("-m")?, "-m")?.max(1)),
            "-k" => o.keep_alive = true,
            "-K" => o.keep_alive = false,
            "-b" => o.body = num(&value("-b")?, "-b")?,
            "-t" => o.timeout = Duration::from_secs_f64(num(&value("-t")?, "-t")?),
            "-s" => script = Some(value("-s")?),
            "-p" => {
                let v = value("-p")?;
                let (n, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("-p {v}: expected NAME=VALUE"))?;
                o.params.push((n.to_string(), val.to_string()));
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => {
                if addr.replace(s.to_string()).is_some() {
                    return Err("more than one address".into());
                }
            }
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
    Ok(o)
}

fn num<T: std::str::FromStr>(s: &str, name: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{name} {s}: not a number"))
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    bytes: u64,
    errors: u64,
    non_2xx: u64,
    first_error: Option<String>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("fcgi-bench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut config = Config::default();
    config.keep_conn = o.keep_alive;
    config.request_timeout = Some(o.timeout);
    let pool = Pool::builder()
        .backend(
            Backend::new(o.addr.clone())
                .max_conns(o.max_conns.map_or(o.concurrency, |m| m.min(o.concurrency))),
        )
        .config(config)
        .wait_timeout(Some(o.timeout))
        .build();
    let params = Arc::new(o.params);
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
                                        Err(e) => return Err(fcgi::client::Error::Io(e)),
                                    }
                                }
                                Ok((status, n))
                            });
                    match result {
                        Ok((status, n)) => {
                            t.latencies_us.push(t0.elapsed().as_micros() as u64);
                            t.bytes += n;
                            if !(200..300).contains(&status) {
                                t.non_2xx += 1;
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
        total.non_2xx += t.non_2xx;
        if total.first_error.is_none() {
            total.first_error = t.first_error;
        }
    }
    let elapsed = start.elapsed();
    progress.0.store(true, Ordering::Relaxed);
    let _ = progress.1.join();
    report(
        &o.addr,
        o.concurrency,
        o.keep_alive,
        elapsed,
        &mut total,
        &pool,
    );
    if total.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn report(
    addr: &Address,
    concurrency: usize,
    keep_alive: bool,
    elapsed: Duration,
    t: &mut Tally,
    pool: &Pool,
) {
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
    let connects: u64 = pool.stats().iter().map(|s| s.connects).sum();
    println!("Target:          {addr}");
    println!(
        "Concurrency:     {concurrency} (keep-alive {})",
        if keep_alive { "on" } else { "off" }
    );
    println!("Completed:       {ok}");
    println!("Failed:          {}", t.errors);
    println!("Non-2xx:         {}", t.non_2xx);
    println!("Connections:     {connects}");
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
}
