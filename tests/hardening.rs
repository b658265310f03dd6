//! Hostile clients, misbehaving scripts, shutdown and deadlines, each against the real binary.
//! Every test ends by showing the server still answers a normal request quickly.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Well under a second on a quiet machine; generous for a shared, noisy one.
const QUICK: Duration = Duration::from_secs(1);

/// A normal request answered within QUICK by a live server.
fn still_serves(s: &mut Server) {
    assert!(s.alive(), "the server died");
    let start = Instant::now();
    let r = s.get("/");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        start.elapsed() < QUICK,
        "a normal request took {:?}",
        start.elapsed()
    );
}

fn server() -> Server {
    let (l, p) = open_port();
    // Keep the checked port open for the whole test.
    std::mem::forget(l);
    Server::start(&["--port", &p.to_string(), "--idle-timeout", "1"])
}

/// Sends `raw` (ignoring a reset while sending: the server may answer and close early) and
/// reads one response, if any comes.
fn exchange(s: &Server, raw: Vec<u8>) -> Option<Resp> {
    let mut c = s.connect();
    let mut w = c.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = w.write_all(&raw);
    });
    let r = read_response(&mut c, false);
    drop(c);
    let _ = writer.join();
    r
}

#[test]
fn huge_content_lengths_get_an_answer_and_cost_nothing() {
    let mut s = server();
    for len in ["100000000000", "18446744073709551615"] {
        let r = exchange(
            &s,
            format!("POST / HTTP/1.1\r\nContent-Length: {len}\r\n\r\nshort").into_bytes(),
        )
        .expect("an answer");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), Some("close"));
        still_serves(&mut s);
    }
    let r = exchange(
        &s,
        b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n".to_vec(),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(proc_status(s.child.id(), "VmHWM:") < 64 * 1024);
}

#[test]
fn stalled_bodies_do_not_stall_the_server_and_are_closed_at_the_timeout() {
    let mut s = server();
    let mut stalled: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\nabc")
                .unwrap();
            c
        })
        .collect();
    // Each is answered (the body is skipped after the answer), then waits for the rest.
    for c in &mut stalled {
        assert_eq!(read_response(c, false).unwrap().status, 200);
    }
    still_serves(&mut s);
    let start = Instant::now();
    for c in &mut stalled {
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
    }
    // --idle-timeout 1: every stalled body is given up on after about a second.
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "took {:?}",
        start.elapsed()
    );
    still_serves(&mut s);
}

#[test]
fn a_one_mib_request_line_is_refused() {
    let mut s = server();
    let mut raw = b"GET /".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 1 << 20));
    raw.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert_eq!(exchange(&s, raw).map(|r| r.status), Some(414));
    still_serves(&mut s);
    assert!(proc_status(s.child.id(), "VmHWM:") < 64 * 1024);
}

#[test]
fn twenty_thousand_header_lines_are_refused() {
    let mut s = server();
    let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..20_000 {
        raw.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    assert_eq!(exchange(&s, raw).map(|r| r.status), Some(431));
    still_serves(&mut s);
}

#[test]
fn garbage_gets_400_or_505_and_a_close() {
    let mut s = server();
    for (raw, status) in [
        (&b"\x00\x01\x02\xff\xfe GARBAGE\r\n\r\n"[..], 400),
        (b"GET / HTTP/9.9\r\n\r\n", 505),
        (b"GET\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
            400,
        ),
    ] {
        let r = exchange(&s, raw.to_vec()).unwrap_or_else(|| panic!("no answer to {raw:?}"));
        assert_eq!(r.status, status, "{raw:?}");
        assert_eq!(r.header("Connection"), Some("close"));
    }
    // A bare "GET\r\n" and then nothing: closed within the idle timeout, no crash.
    let mut c = s.connect();
    c.write_all(b"GET\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    still_serves(&mut s);
}

#[test]
fn chunked_garbage_is_answered_and_closed() {
    let mut s = server();
    let r = exchange(
        &s,
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\nnot a chunk at all\r\n\r\n"
            .to_vec(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    still_serves(&mut s);
}

/// How many connections this process may open, leaving room for everything else.
fn connection_budget(want: usize) -> usize {
    let limits = fs::read_to_string("/proc/self/limits").unwrap();
    let soft: usize = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    want.min(soft.saturating_sub(200))
}

fn floods_stay_bounded(payload: &'static [u8], want: usize) {
    let (_l, p) = open_port();
    // The default --max-connections (256) and idle timeout (10 s): only eviction can help.
    let mut s = Server::start(&["--port", &p.to_string()]);
    let n = connection_budget(want);
    assert!(n >= 300, "too few descriptors for this test: {n}");
    let held: Vec<TcpStream> = (0..n)
        .filter_map(|_| {
            let mut c = TcpStream::connect(s.addr).ok()?;
            let _ = c.write_all(payload);
            Some(c)
        })
        .collect();
    assert!(held.len() >= n - 10, "only {} of {n} connected", held.len());
    still_serves(&mut s);
    let threads = proc_status(s.child.id(), "Threads:");
    assert!(threads <= 256 + 16, "{threads} threads for {n} connections");
    let rss = proc_status(s.child.id(), "VmRSS:");
    assert!(rss < 64 * 1024, "RSS {rss} KiB for {n} connections");
    drop(held);
    still_serves(&mut s);
}

#[test]
fn two_thousand_idle_connections_stay_bounded_and_a_new_request_gets_in() {
    floods_stay_bounded(b"", 2000);
}

#[test]
fn three_hundred_half_heads_stay_bounded() {
    floods_stay_bounded(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Ag", 300);
}

#[test]
fn idle_keep_alive_connections_are_closed_at_the_timeout() {
    let s = server();
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
    let start = Instant::now();
    let mut rest = Vec::new();
    let n = c.read_to_end(&mut rest).unwrap_or(0);
    assert_eq!(
        n,
        0,
        "the server sent more: {:?}",
        String::from_utf8_lossy(&rest)
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
}

#[test]
fn running_out_of_descriptors_is_survived() {
    let (_l, p) = open_port();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "ulimit -n 64 && exec \"$0\" --listener 127.0.0.1:0 --port \"$1\"",
        BIN,
        &p.to_string(),
    ]);
    let mut s = Server::start_cmd(cmd);
    // A burst far past 64 descriptors: accepts fail with EMFILE until connections go away.
    let burst: Vec<TcpStream> = (0..150)
        .filter_map(|_| TcpStream::connect(s.addr).ok())
        .collect();
    assert!(
        eventually(|| s.logs().contains("accept failed")),
        "{}",
        s.logs()
    );
    // Out of descriptors, the longest-idle connection is closed to make room: we get in.
    let r = s.get("/");
    assert_eq!(r.status, 200, "{}", r.body);
    drop(burst);
    assert!(eventually(|| s.get("/").status == 200));
    assert!(
        eventually(|| s.logs().contains("accepting connections again")),
        "{}",
        s.logs()
    );
    still_serves(&mut s);
}

#[test]
fn script_processes_are_bounded_under_200_concurrent_requests() {
    let dir = scratch();
    let running = dir.join("running");
    fs::create_dir(&running).unwrap();
    let sc = script(
        &dir,
        "s.sh",
        &format!("touch {r}/$$; sleep 0.05; rm {r}/$$", r = running.display()),
    );
    let s = Server::start(&[
        "--script",
        &sc,
        "--workers",
        "4",
        "--script-timeout",
        "30",
        "--max-connections",
        "300",
    ]);
    let stop = AtomicBool::new(false);
    let max = AtomicUsize::new(0);
    let answered = AtomicUsize::new(0);
    thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let n = fs::read_dir(&running).map(|d| d.count()).unwrap_or(0);
                max.fetch_max(n, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(2));
            }
        });
        let clients: Vec<_> = (0..200)
            .map(|_| {
                scope.spawn(|| {
                    let r = s.get("/");
                    assert!(r.status == 200 || r.status == 504, "{}", r.status);
                    answered.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        stop.store(true, Ordering::SeqCst);
    });
    assert_eq!(answered.load(Ordering::SeqCst), 200);
    let max = max.load(Ordering::SeqCst);
    assert!(
        max >= 2,
        "the scripts never overlapped ({max}): the test shows nothing"
    );
    assert!(max <= 4, "{max} script processes at once with --workers 4");
}

/// How many connection threads `pid` has.
fn connection_threads(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter(|t| {
                    fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "conn")
                })
                .count()
        })
        .unwrap_or(0)
}

/// Each thread of `pid` with what it waits on in the kernel, for failure messages.
fn thread_states(pid: u32) -> String {
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default();
    tasks
        .iter()
        .map(|t| {
            let read = |f: &str| {
                fs::read_to_string(t.path().join(f))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            format!("{}:{}", read("comm"), read("wchan"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn sigterm(s: &Server) {
    Command::new("kill")
        .args(["-TERM", &s.child.id().to_string()])
        .status()
        .unwrap();
}

#[test]
fn sigterm_with_a_script_running_exits_0_and_leaves_no_orphan() {
    let dir = scratch();
    let pid_file = dir.join("pids");
    let slow = script(
        &dir,
        "slow.sh",
        &format!(
            "sleep 60 & echo $! >> {p}; echo $$ >> {p}; sleep 60",
            p = pid_file.display()
        ),
    );
    let mut s = Server::start(&["--script", &slow, "--script-timeout", "30"]);
    let addr = s.addr;
    let client = thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        read_response(&mut c, false)
    });
    assert!(eventually(|| pids(&pid_file).len() == 2));
    let start = Instant::now();
    sigterm(&s);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < PATIENCE, "still running after SIGTERM");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    for pid in pids(&pid_file) {
        assert!(
            eventually(|| process_gone(pid)),
            "{pid} outlived the server"
        );
    }
    // The request in flight got an answer, not a reset.
    let r = client.join().unwrap().expect("an answer before exit");
    assert_eq!(r.status, 504);
    assert!(s.logs().contains("SIGTERM: shutting down"), "{}", s.logs());
}

#[test]
fn shutdown_delay_answers_failure_while_still_serving() {
    let (_l, p) = open_port();
    let mut s = Server::start(&["--port", &p.to_string(), "--shutdown-delay", "2"]);
    assert_eq!(s.get("/").status, 200);
    let start = Instant::now();
    sigterm(&s);
    assert!(eventually(|| s.get("/").status == 504));
    let ready = s.get("/ready");
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, r#"{"ready":false,"reasons":["shutting down"]}"#)
    );
    assert_eq!(s.get("/alive").status, 200);
    assert!(
        start.elapsed() < Duration::from_millis(1800),
        "the delay passed before the checks"
    );
    assert!(eventually(|| !s.alive()));
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "exited before the delay: {:?}",
        start.elapsed()
    );
    assert_eq!(s.child.wait().unwrap().code(), Some(0));
    assert!(
        TcpStream::connect(s.addr).is_err(),
        "still listening after exit"
    );
}

#[test]
fn deadline_fails_slow_checks_and_kills_their_processes() {
    let dir = scratch();
    let pidfile = dir.join("pid");
    let slow = script(
        &dir,
        "slow.sh",
        &format!("echo $$ > {}; exec sleep 30", pidfile.display()),
    );
    let (_l, p) = open_port();
    let s = Server::start(&[
        "--port",
        &p.to_string(),
        "--script",
        &slow,
        "--script-timeout",
        "20",
        "--deadline",
        "1",
    ]);
    let start = Instant::now();
    let r = s.get("/");
    let took = start.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        r.body.contains(&format!("fail script {slow}: deadline (")),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(&format!("pass tcp 127.0.0.1:{p} (")),
        "{}",
        r.body
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let pid: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(eventually(|| process_gone(pid)));
}

#[test]
fn scripts_start_with_no_signal_blocked() {
    // The server blocks SIGTERM and SIGINT in its own threads; a script must not inherit that.
    let dir = scratch();
    let sc = script(
        &dir,
        "mask.sh",
        "grep -q '^SigBlk:[[:space:]]*0*$' /proc/$$/status",
    );
    let r = Server::start(&["--script", &sc]).get("/");
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_half_closed_client_still_gets_its_whole_answer() {
    // A client that half-closes right after its request still gets the whole answer.
    let s = server();
    let mut c = s.connect();
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_response(&mut c, false).unwrap().status, 200);
}

#[test]
fn a_client_that_never_reads_its_answers_is_closed_at_the_timeout() {
    let port = serving_port();
    let mut s = Server::start(&["--port", &port.to_string(), "--idle-timeout", "1"]);
    let pid = s.child.id();
    let c = s.connect();
    let mut w = c.try_clone().unwrap();
    // /metrics runs no check and answers with ~1.5 KiB, so the answers overflow the socket
    // buffers within moments while the requests keep coming: only the write timeout can end
    // this connection (the client never goes quiet, so the idle timeout does not apply).
    let writer = thread::spawn(move || {
        let burst = b"GET /metrics HTTP/1.1\r\n\r\n".repeat(1000);
        for _ in 0..60 {
            if w.write_all(&burst).is_err() {
                break;
            }
        }
    });
    // Connection threads are named "conn"; counting them, not all threads, leaves out the
    // ones that start after the listening line (the signal thread).
    assert!(
        eventually(|| connection_threads(pid) == 1),
        "{}",
        thread_states(pid)
    );
    // Blocked writing to us, the connection thread gives up after --idle-timeout (1 s).
    assert!(
        eventually(|| connection_threads(pid) == 0),
        "the connection thread is still there: {}",
        thread_states(pid)
    );
    // The server has reset it by now.
    let _ = c.shutdown(Shutdown::Both);
    let _ = writer.join();
    still_serves(&mut s);
}
