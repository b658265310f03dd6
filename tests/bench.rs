//! `make bench`: a load generator (std only) against the release binary on loopback, printing
//! one table. Ignored by `cargo test`; a benchmark, never a timed test.
//!
//! Each scenario starts a fresh server, runs keep-alive clients for `BENCH_SECONDS` (default
//! 3), and reads the server's CPU time (its own and its reaped children's, so script
//! processes count) from /proc/PID/stat, its peak RSS (VmHWM) and its thread count.
//! `BENCH_ONLY=b` runs only the scenarios with those letters (and skips start-up and floors).

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{BIN, proc_status};

/// Clock ticks per second of /proc/PID/stat times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

fn seconds() -> f64 {
    std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0)
}

/// CPU seconds of `pid`: user + system, plus those of its reaped children.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the command: state is field 3, so utime (14) .. cstime (17) are indices 11..=14.
    let ticks: u64 = (11..=14)
        .filter_map(|i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / TICKS_PER_SECOND
}

/// A port whose listener accepts and closes every connection, as a live service would. Four
/// accepting threads keep std's 128-connection backlog from overflowing under load, which
/// would cost a one-second SYN retransmit and measure the bench, not the server.
fn serving_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    for _ in 0..4 {
        let l = l.try_clone().unwrap();
        thread::spawn(move || {
            for s in l.incoming() {
                drop(s);
            }
        });
    }
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin` with `args` on a free port and waits for its first answer; returns it and the
/// time from spawn to that first answer.
fn start(bin: &str, args: &[String]) -> (Server, Duration) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = Instant::now();
    let child = Command::new(bin)
        .args(["--listener", &addr.to_string(), "--log-level", "error"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, addr };
    loop {
        if let Ok(mut c) = TcpStream::connect(addr) {
            c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out);
            if !out.is_empty() {
                return (server, t0.elapsed());
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "server did not start"
        );
        thread::sleep(Duration::from_micros(100));
    }
}

/// Reads one response with a Content-Length body from a keep-alive connection.
fn read_one(c: &mut TcpStream, buf: &mut Vec<u8>) -> Option<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).ok()?;
            let status = head.get(9..12)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = c.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(status);
        }
    }
}

struct Row {
    name: String,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us: f64,
    hwm_kib: u64,
    threads: u64,
    statuses: String,
}

/// The binary under load: the static build when `make bench` built one (it is what ships),
/// else the release build of this checkout.
fn under_test() -> String {
    std::env::var("BENCH_STATIC_BIN")
        .ok()
        .filter(|p| fs::metadata(p).is_ok())
        .unwrap_or_else(|| BIN.to_string())
}

/// Whether `BENCH_ONLY` (scenario letters, e.g. `ab`) leaves out the scenario `name`.
fn skipped(name: &str) -> bool {
    let letter = name.chars().nth(1).unwrap_or(' ');
    std::env::var("BENCH_ONLY").is_ok_and(|only| !only.contains(letter))
}

fn scenario(name: &str, args: &[String], clients: usize) -> Option<Row> {
    if skipped(name) {
        return None;
    }
    let (mut server, _) = start(&under_test(), args);
    let pid = server.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (stop, barrier, addr) = (stop.clone(), barrier.clone(), server.addr);
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    c.set_nodelay(true).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut buf = Vec::with_capacity(4096);
                    let mut lat = Vec::with_capacity(1 << 16);
                    let mut codes = [0u64; 2];
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        if c.write_all(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n").is_err() {
                            break;
                        }
                        match read_one(&mut c, &mut buf) {
                            Some(s) => codes[usize::from(s != 200)] += 1,
                            None => break,
                        }
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                    (lat, codes)
                })
                .unwrap()
        })
        .collect();
    barrier.wait();
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    let mut threads = 0;
    while t0.elapsed().as_secs_f64() < seconds() {
        thread::sleep(Duration::from_millis(50));
        threads = threads.max(proc_status(pid, "Threads:"));
    }
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut codes = [0u64; 2];
    for h in handles {
        let (l, c) = h.join().unwrap();
        lat.extend(l);
        codes[0] += c[0];
        codes[1] += c[1];
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let hwm = proc_status(pid, "VmHWM:");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "server died during {name}"
    );
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let n = lat.len().max(1) as f64;
    Some(Row {
        name: name.to_string(),
        rps: lat.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        cpu_us: cpu / n * 1e6,
        hwm_kib: hwm,
        threads,
        statuses: format!("{} ok / {} fail", codes[0], codes[1]),
    })
}

/// Median time from spawn to the first answer, and RSS after a second of idling.
fn startup_and_idle(bin: &str, args: &[String]) -> (Duration, u64) {
    let mut times: Vec<Duration> = (0..9).map(|_| start(bin, args).1).collect();
    times.sort();
    let (server, _) = start(bin, args);
    thread::sleep(Duration::from_secs(1));
    (
        times[times.len() / 2],
        proc_status(server.child.id(), "VmRSS:"),
    )
}

/// Loopback connect+close, and spawn+wait of /bin/true: the floors the checks cannot beat.
fn floors() -> (f64, f64, f64) {
    let port = serving_port();
    let n = 5000;
    let t = Instant::now();
    for _ in 0..n {
        drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    let connect_us = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    let n = 500;
    let me = std::process::id();
    let cpu0 = cpu_seconds(me);
    let t = Instant::now();
    for _ in 0..n {
        Command::new("/bin/true").status().unwrap();
    }
    let spawn_us = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    let spawn_cpu_us = (cpu_seconds(me) - cpu0) / n as f64 * 1e6;
    (connect_us, spawn_us, spawn_cpu_us)
}

#[test]
#[ignore = "a benchmark: run with make bench"]
fn bench() {
    let machine = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name\t: ").map(str::to_string))
        .unwrap_or_default();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nhealth-checker {} bench: {cores} cores, {machine}",
        env!("CARGO_PKG_VERSION")
    );
    let bin = under_test();
    println!(
        "binary under load: {bin} ({} bytes)",
        fs::metadata(&bin).map_or(0, |m| m.len())
    );
    println!(
        "{} s per scenario; load generator on the same cores\n",
        seconds()
    );

    let (p1, p2) = (serving_port(), serving_port());
    let ports = |v: &mut Vec<String>| {
        v.extend([
            "--port".into(),
            p1.to_string(),
            "--port".into(),
            p2.to_string(),
        ]);
    };
    let mut two_ports = Vec::new();
    ports(&mut two_ports);
    let script = vec!["--script".to_string(), "/bin/true".to_string()];
    let mut script_sf = script.clone();
    script_sf.push("--singleflight".into());
    let closed = vec!["--port".to_string(), free_port().to_string()];
    let mut interval = two_ports.clone();
    interval.extend(["--interval".into(), "1".into()]);

    let rows = [
        scenario("(a) 2 ports, 16 conns", &two_ports, 16),
        scenario("(b) 2 ports, 200 conns", &two_ports, 200),
        scenario("(c) /bin/true, 16 conns", &script, 16),
        scenario("(d) /bin/true singleflight", &script_sf, 16),
        scenario("(e) failing port, 16 conns", &closed, 16),
        scenario("(f) 2 ports --interval 1", &interval, 16),
    ];
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>10} {:>9} {:>7}  answers",
        "scenario", "req/s", "p50 µs", "p99 µs", "cpu µs/req", "peak KiB", "threads"
    );
    for r in rows.iter().flatten() {
        println!(
            "{:<30} {:>9.0} {:>9.0} {:>9.0} {:>10.1} {:>9} {:>7}  {}",
            r.name, r.rps, r.p50_us, r.p99_us, r.cpu_us, r.hwm_kib, r.threads, r.statuses
        );
    }
    if std::env::var("BENCH_ONLY").is_ok() {
        return;
    }
    let (start_gnu, idle_gnu) = startup_and_idle(BIN, &two_ports);
    println!(
        "\nstart-up to first 200: {:.2} ms; idle RSS {idle_gnu} KiB  ({BIN})",
        start_gnu.as_secs_f64() * 1e3
    );
    if let Ok(musl) = std::env::var("BENCH_STATIC_BIN") {
        if fs::metadata(&musl).is_ok() {
            let (start_musl, idle_musl) = startup_and_idle(&musl, &two_ports);
            println!(
                "start-up to first 200: {:.2} ms; idle RSS {idle_musl} KiB  ({musl}, {} bytes)",
                start_musl.as_secs_f64() * 1e3,
                fs::metadata(&musl).map_or(0, |m| m.len())
            );
        }
    }
    let (connect_us, spawn_us, spawn_cpu_us) = floors();
    println!(
        "\nfloor: loopback connect+close {connect_us:.1} µs; spawn+wait /bin/true {spawn_us:.0} µs wall, {spawn_cpu_us:.0} µs CPU"
    );
    println!(
        "ratios: (a) cpu/req = {:.1}x a bare connect; (c) cpu/req = {:.2}x a bare spawn+wait",
        rows[0].as_ref().map_or(0.0, |r| r.cpu_us) / connect_us,
        rows[2].as_ref().map_or(0.0, |r| r.cpu_us) / spawn_cpu_us
    );
}
