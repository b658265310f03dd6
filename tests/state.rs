//! The state machine from the outside: thresholds over requests, --interval, --cache-ttl,
//! --grace-period, --once and the --on-change hook.

mod common;

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn thresholds_are_counted_over_requests() {
    let (l, port) = open_port();
    let s = Server::start(&[
        "--port",
        &port.to_string(),
        "--unhealthy-threshold",
        "3",
        "--healthy-threshold",
        "2",
    ]);
    assert_eq!(s.get("/").status, 200);
    drop(l);
    let r = s.get("/");
    assert_eq!(r.status, 200, "one failure of three: still healthy");
    assert!(
        r.body
            .contains(&format!("fail tcp 127.0.0.1:{port}: connection refused ("))
            && r.body.contains("[healthy, 1 consecutive failure]"),
        "{}",
        r.body
    );
    assert_eq!(s.get("/").status, 200);
    assert_eq!(s.get("/").status, 504);
    let _reopened = TcpListener::bind(("127.0.0.1", port)).expect("port free again");
    let r = s.get("/?format=json");
    assert_eq!(r.status, 504, "one pass of two: still unhealthy");
    let check = &Json::parse(&r.body).unwrap().get("checks").arr()[0].clone();
    assert_eq!(check.get("status").str(), Some("pass"));
    assert_eq!(check.get("state").str(), Some("unhealthy"));
    assert_eq!(check.get("consecutive_passes"), &Json::Num(1.0));
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn interval_runs_without_requests_and_answers_at_once() {
    let dir = scratch();
    let log = dir.join("log");
    let slow = script(
        &dir,
        "slow.sh",
        &format!(
            "echo start >> {l}; sleep 1; echo end >> {l}",
            l = log.display()
        ),
    );
    let s = Server::start(&["--script", &slow, "--interval", "0.2"]);
    assert!(
        eventually(|| lines(&log).iter().filter(|l| *l == "start").count() >= 3),
        "the interval thread did not keep running"
    );
    // A run is in flight most of the time; requests must not wait for it.
    for _ in 0..5 {
        let start = Instant::now();
        let r = s.get("/");
        let took = start.elapsed();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            took < Duration::from_millis(500),
            "a request waited {took:?}"
        );
    }
    // Never overlapping: every start is followed by its end before the next start.
    let l = lines(&log);
    for pair in l.windows(2) {
        assert_ne!(pair, ["start", "start"], "runs overlapped: {l:?}");
    }
}

#[test]
fn cache_ttl_runs_the_script_once_for_many_requests() {
    let dir = scratch();
    let counter = dir.join("runs");
    let sc = script(
        &dir,
        "s.sh",
        &format!("echo run >> {}; sleep 0.3", counter.display()),
    );
    let s = Server::start(&["--script", &sc, "--cache-ttl", "60"]);
    assert_eq!(concurrent_gets(&s, 8), [200; 8]);
    for _ in 0..5 {
        assert_eq!(s.get("/").status, 200);
    }
    assert_eq!(lines(&counter).len(), 1);
}

#[test]
fn cache_ttl_expires() {
    let dir = scratch();
    let counter = dir.join("runs");
    let sc = script(&dir, "s.sh", &format!("echo run >> {}", counter.display()));
    let s = Server::start(&["--script", &sc, "--cache-ttl", "0.3"]);
    s.get("/");
    s.get("/");
    assert_eq!(lines(&counter).len(), 1);
    thread::sleep(Duration::from_millis(600));
    s.get("/");
    assert_eq!(lines(&counter).len(), 2);
}

#[test]
fn grace_period_delays_the_first_run_and_reports_starting() {
    let dir = scratch();
    let counter = dir.join("runs");
    let sc = script(&dir, "s.sh", &format!("echo run >> {}", counter.display()));
    let s = Server::start(&["--script", &sc, "--grace-period", "2"]);
    let r = s.get("/");
    assert_eq!(r.status, 504);
    assert!(r.body.starts_with("FAIL: starting"), "{}", r.body);
    let ready = s.get("/ready");
    assert_eq!(ready.status, 503);
    let reasons = Json::parse(&ready.body).unwrap().get("reasons").clone();
    assert_eq!(
        reasons,
        Json::Arr(vec![Json::Str(format!("script {sc}: starting"))])
    );
    assert!(!counter.exists(), "a run started inside the grace period");
    assert!(eventually(|| s.get("/").status == 200));
    assert!(counter.exists());
}

#[test]
fn grace_period_applies_to_interval_mode() {
    let dir = scratch();
    let counter = dir.join("runs");
    let sc = script(&dir, "s.sh", &format!("echo run >> {}", counter.display()));
    let s = Server::start(&[
        "--script",
        &sc,
        "--grace-period",
        "1.5",
        "--interval",
        "0.1",
    ]);
    thread::sleep(Duration::from_millis(700));
    assert!(!counter.exists(), "a run started inside the grace period");
    assert_eq!(s.get("/").status, 504);
    assert!(eventually(|| s.get("/").status == 200));
}

#[test]
fn once_prints_the_report_and_exits_0_or_1() {
    let (_l, open) = open_port();
    let closed = closed_port();
    let ok = run(&["--once", "--port", &open.to_string()]);
    assert_eq!(ok.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout.starts_with("OK: 1 of 1 checks healthy\npass tcp 127.0.0.1:"),
        "{stdout}"
    );

    let bad = run(&[
        "--once",
        "--port",
        &open.to_string(),
        "--port",
        &closed.to_string(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(
        stdout.starts_with("FAIL: 1 of 2 checks unhealthy\n"),
        "{stdout}"
    );
    // The log (a warning for the failed check) goes to stderr, never into the report.
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert!(!stdout.contains("WARN"));

    let json = run(&["--once", "--format", "json", "--port", &closed.to_string()]);
    assert_eq!(json.status.code(), Some(1));
    let j = Json::parse(String::from_utf8_lossy(&json.stdout).trim()).unwrap();
    assert_eq!(j.get("status").str(), Some("fail"));
    assert_eq!(
        j.get("checks").arr()[0].get("reason").str(),
        Some("connection refused")
    );
}

#[test]
fn once_refuses_serving_options() {
    let out = run(&["--once", "--port", "1", "--interval", "5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "--interval makes no sense with --once, which runs the checks once and serves nothing"
    ));
    let out = run(&["--port", "1", "--interval", "5", "--cache-ttl", "5"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn hook_receives_every_change_in_order_without_blocking_requests() {
    let dir = scratch();
    let events = dir.join("events");
    // The hook is slow on purpose: requests and runs must not wait for it.
    let hook = script(
        &dir,
        "hook.sh",
        &format!(
            "sleep 0.3; printf '%s|%s|%s|%s\\n' \"$HEALTH_CHECKER_PREVIOUS_STATE\" \"$HEALTH_CHECKER_STATE\" \
             \"$(printf '%s' \"$HEALTH_CHECKER_REASONS\" | tr '\\n' ';')\" \"$HEALTH_CHECKER_TIME\" >> {}",
            events.display()
        ),
    );
    let (l, port) = open_port();
    let s = Server::start(&[
        "--port",
        &port.to_string(),
        "--on-change",
        &format!("{hook} --secret x"),
    ]);
    let start = Instant::now();
    assert_eq!(s.get("/").status, 200);
    drop(l);
    assert_eq!(s.get("/").status, 504);
    let _reopened = TcpListener::bind(("127.0.0.1", port)).expect("port free again");
    assert_eq!(s.get("/").status, 200);
    assert!(
        start.elapsed() < Duration::from_millis(800),
        "requests waited for the hook"
    );
    assert!(
        eventually(|| lines(&events).len() == 3),
        "{:?}",
        lines(&events)
    );
    let got: Vec<Vec<String>> = lines(&events)
        .iter()
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect();
    assert_eq!(got[0][..3], ["starting", "healthy", ""]);
    assert_eq!(
        got[1][..3],
        [
            "healthy",
            "unhealthy",
            &format!("tcp 127.0.0.1:{port}: connection refused")
        ]
    );
    assert_eq!(got[2][..3], ["unhealthy", "healthy", ""]);
    for g in &got {
        let t = &g[3];
        assert!(
            t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
    assert!(eventually(|| s.logs().contains("on-change")));
    assert!(!s.logs().contains("--secret"));
}
