//! Remote TCP, HTTP and send/expect checks against real loopback servers; the JSON report,
//! `/alive`, `/ready` and `/metrics`.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn tcp_to_ipv4_ipv6_and_localhost() {
    let (_v4, p4) = open_port();
    let mut args = vec![format!("127.0.0.1:{p4}"), format!("localhost:{p4}")];
    let v6 = TcpListener::bind("[::1]:0").ok();
    if let Some(l) = &v6 {
        args.push(format!("[::1]:{}", l.local_addr().unwrap().port()));
    }
    let mut argv = Vec::new();
    for a in &args {
        argv.extend(["--tcp", a.as_str()]);
    }
    let s = Server::start(&argv);
    let r = s.get("/");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains(&format!("pass tcp localhost:{p4} (")),
        "{}",
        r.body
    );
    if let Some(l) = &v6 {
        assert!(r.body.contains(&format!(
            "pass tcp [::1]:{} (",
            l.local_addr().unwrap().port()
        )));
    }
}

#[test]
fn tcp_to_a_closed_remote_port_fails() {
    let closed = closed_port();
    let r = Server::start(&["--tcp", &format!("127.0.0.1:{closed}")]).get("/");
    assert_eq!(r.status, 504);
    assert!(
        r.body.contains(&format!(
            "fail tcp 127.0.0.1:{closed}: connection refused ("
        )),
        "{}",
        r.body
    );
}

#[test]
fn a_name_that_does_not_resolve_fails_within_the_timeout() {
    let s = Server::start(&["--tcp", "no-such-host.invalid:80", "--tcp-timeout", "1"]);
    let start = Instant::now();
    let r = s.get("/");
    assert_eq!(r.status, 504);
    assert!(
        r.body
            .contains("fail tcp no-such-host.invalid:80: cannot resolve no-such-host.invalid"),
        "{}",
        r.body
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

/// A ZooKeeper-like four-letter-word server: reads a word, answers with `reply`, closes.
fn four_letter_server(reply: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut word = [0u8; 4];
            if s.read_exact(&mut word).is_ok() && &word == b"ruok" {
                let _ = s.write_all(reply.as_bytes());
            }
        }
    });
    port
}

#[test]
fn send_expect_probe_speaks_the_zookeeper_protocol() {
    let good = four_letter_server("imok");
    let bad = four_letter_server("nope");
    let s = Server::start(&[
        "--tcp",
        &format!("127.0.0.1:{good},send=ruok,expect=imok"),
        "--tcp",
        &format!("127.0.0.1:{bad},send=ruok,expect=imok"),
    ]);
    let r = s.get("/");
    assert_eq!(r.status, 504);
    assert!(
        r.body.contains(&format!("pass tcp 127.0.0.1:{good} (")),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(&format!(
            "fail tcp 127.0.0.1:{bad}: expected \"imok\", got \"nope\" ("
        )),
        "{}",
        r.body
    );
}

#[test]
fn a_silent_peer_fails_the_probe_at_the_timeout() {
    let silent = http_server("");
    let s = Server::start(&[
        "--tcp",
        &format!("127.0.0.1:{silent},expect=imok"),
        "--tcp-timeout",
        "0.5",
    ]);
    let start = Instant::now();
    let r = s.get("/");
    assert!(r.body.contains("timed out after 0.5s"), "{}", r.body);
    assert!(start.elapsed() < Duration::from_secs(4));
}

#[test]
fn http_statuses_decide() {
    let ok = http_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let closed = closed_port();
    // A redirect passes and is not followed: its target is a closed port.
    let redirect: &'static str = Box::leak(
        format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{closed}/\r\nContent-Length: 0\r\n\r\n").into_boxed_str(),
    );
    let moved = http_server(redirect);
    let error = http_server("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n");
    let urls = [
        format!("http://127.0.0.1:{ok}/health"),
        format!("http://127.0.0.1:{moved}/"),
        format!("http://127.0.0.1:{error}/"),
        format!("http://127.0.0.1:{closed}/"),
    ];
    let mut argv = Vec::new();
    for u in &urls {
        argv.extend(["--http", u.as_str()]);
    }
    let r = Server::start(&argv).get("/");
    assert_eq!(r.status, 504);
    assert!(
        r.body.contains(&format!("pass http {} (", urls[0])),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(&format!("pass http {} (", urls[1])),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains(&format!("fail http {}: status 500 (", urls[2])),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains(&format!("fail http {}: connection refused (", urls[3])),
        "{}",
        r.body
    );
    assert!(
        r.body.starts_with("FAIL: 2 of 4 checks unhealthy"),
        "{}",
        r.body
    );
}

#[test]
fn http_server_that_never_answers_fails_at_the_timeout() {
    let silent = http_server("");
    let url = format!("http://127.0.0.1:{silent}/");
    let s = Server::start(&["--http", &url, "--http-timeout", "0.5"]);
    let start = Instant::now();
    let r = s.get("/");
    let took = start.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        r.body
            .contains(&format!("fail http {url}: timed out after 0.5s")),
        "{}",
        r.body
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn https_is_refused_at_start_up() {
    let out = run(&["--http", "https://127.0.0.1/"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "invalid value \"https://127.0.0.1/\" for --http: https is not supported; use --script"
        ),
        "{err}"
    );
}

fn check_json_report(body: &str, expect_status: &str) -> Json {
    let j = Json::parse(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(j.get("status").str(), Some(expect_status));
    for c in j.get("checks").arr() {
        assert_eq!(
            c.keys(),
            [
                "name",
                "status",
                "duration_ms",
                "reason",
                "state",
                "consecutive_passes",
                "consecutive_failures"
            ]
        );
        assert!(matches!(c.get("name"), Json::Str(_)));
        assert!(matches!(c.get("duration_ms"), Json::Num(d) if *d >= 0.0));
        match c.get("status").str() {
            Some("pass") => assert_eq!(c.get("reason"), &Json::Null),
            Some("fail") => assert!(matches!(c.get("reason"), Json::Str(_))),
            other => panic!("status {other:?}"),
        }
    }
    j
}

#[test]
fn json_report_by_query_or_accept_header() {
    let (_l, open) = open_port();
    let closed = closed_port();
    let s = Server::start(&["--port", &open.to_string(), "--port", &closed.to_string()]);
    let by_query = s.get("/?format=json");
    assert_eq!(by_query.status, 504);
    assert_eq!(by_query.header("Content-Type"), Some("application/json"));
    let j = check_json_report(&by_query.body, "fail");
    let checks = j.get("checks").arr();
    assert_eq!(checks.len(), 2);
    assert_eq!(
        checks[0].get("name").str(),
        Some(format!("tcp 127.0.0.1:{open}").as_str())
    );
    assert_eq!(checks[1].get("reason").str(), Some("connection refused"));
    for accept in [
        "application/json",
        "text/html, application/health+json;q=0.9",
    ] {
        let r = s.send(&format!(
            "GET /health HTTP/1.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(
            r.header("Content-Type"),
            Some("application/json"),
            "{accept}"
        );
        check_json_report(&r.body, "fail");
    }
    let text = s.send("GET / HTTP/1.1\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    assert!(text.body.starts_with("FAIL"));
}

#[test]
fn json_escapes_what_peers_send() {
    // A peer's reply lands in the reason; quotes, backslashes and control bytes must be escaped.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming() {
            let _ = s.and_then(|mut s| s.write_all(b"say \"hi\"\\\n\x01"));
        }
    });
    let s = Server::start(&["--tcp", &format!("127.0.0.1:{port},expect=imok")]);
    let r = s.get("/?format=json");
    let j = check_json_report(&r.body, "fail");
    let reason = j.get("checks").arr()[0]
        .get("reason")
        .str()
        .unwrap()
        .to_string();
    assert!(reason.starts_with("expected \"imok\", got "), "{reason}");
}

#[test]
fn alive_answers_without_running_checks_even_when_they_fail() {
    let dir = scratch();
    let counter = dir.join("runs");
    let failing = script(
        &dir,
        "f.sh",
        &format!("echo run >> {}; exit 1", counter.display()),
    );
    let s = Server::start(&["--script", &failing]);
    for _ in 0..3 {
        let r = s.get("/alive");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(
            Json::parse(&r.body).unwrap(),
            Json::Obj(vec![("alive".into(), Json::Bool(true))])
        );
    }
    assert!(!counter.exists(), "/alive ran a check");
}

#[test]
fn ready_answers_200_or_503_with_reasons() {
    let (l, port) = open_port();
    let s = Server::start(&["--port", &port.to_string()]);
    let r = s.get("/ready");
    assert_eq!((r.status, r.body.as_str()), (200, "{\"ready\":true}"));
    drop(l);
    let r = s.get("/ready?x=1");
    assert_eq!(r.status, 503);
    let j = Json::parse(&r.body).unwrap();
    assert_eq!(j.get("ready"), &Json::Bool(false));
    let reasons: Vec<_> = j
        .get("reasons")
        .arr()
        .iter()
        .filter_map(Json::str)
        .collect();
    assert_eq!(
        reasons,
        [format!("tcp 127.0.0.1:{port}: connection refused")]
    );
}

/// Parses exposition text: every sample line is `name{labels} value` or `name value`.
fn samples(text: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP health_checker_")
                    || line.starts_with("# TYPE health_checker_"),
                "{line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (
                n,
                l.strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels: {line}")),
            ),
            None => (series, ""),
        };
        assert!(name.starts_with("health_checker_"), "{line}");
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{line}"
        );
        out.push((name.to_string(), labels.to_string(), value));
    }
    out
}

#[test]
fn metrics_report_results_and_counts_without_running_checks() {
    let dir = scratch();
    let counter = dir.join("runs");
    let ok = script(&dir, "ok.sh", &format!("echo run >> {}", counter.display()));
    let closed = closed_port();
    let s = Server::start(&["--script", &ok, "--port", &closed.to_string()]);
    assert_eq!(s.get("/").status, 504);
    assert_eq!(s.get("/").status, 504);
    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = samples(&r.body);
    let find = |name: &str, labels: &str| {
        m.iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{}", r.body))
    };
    let tcp = format!("check=\"tcp 127.0.0.1:{closed}\"");
    let sc = format!("check=\"script {ok}\"");
    assert_eq!(find("health_checker_check_up", &tcp), 0.0);
    assert_eq!(find("health_checker_check_up", &sc), 1.0);
    assert_eq!(find("health_checker_check_passes_total", &sc), 2.0);
    assert_eq!(find("health_checker_check_failures_total", &tcp), 2.0);
    assert!(find("health_checker_check_duration_seconds", &sc) > 0.0);
    assert_eq!(find("health_checker_requests_total", "code=\"504\""), 2.0);
    assert_eq!(find("health_checker_runs_total", ""), 2.0);
    assert_eq!(
        find(
            "health_checker_check_state",
            &format!("{tcp},state=\"unhealthy\"")
        ),
        1.0
    );
    assert_eq!(
        find(
            "health_checker_build_info",
            &format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))
        ),
        1.0
    );
    assert_eq!(lines(&counter).len(), 2, "/metrics ran a check");
}

#[test]
fn no_body_ever_shows_script_arguments() {
    let dir = scratch();
    let f = script(&dir, "f.sh", "echo OUT-SECRET; exit 1");
    let s = Server::start(&["--script", &format!("{f} --token ARG-SECRET")]);
    for path in ["/", "/?format=json", "/ready", "/metrics", "/alive"] {
        let r = s.get(path);
        for secret in ["ARG-SECRET", "--token", "OUT-SECRET"] {
            assert!(!r.body.contains(secret), "{secret} in {path}: {}", r.body);
        }
    }
}

#[test]
fn an_endless_reply_without_the_expected_text_fails_at_the_cap_not_the_timeout() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                let chunk = [b'x'; 4096];
                // Far past the 64 KiB cap; stops when the check hangs up.
                for _ in 0..1024 {
                    if s.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let s = Server::start(&[
        "--tcp",
        &format!("127.0.0.1:{port},expect=imok"),
        "--tcp-timeout",
        "10",
    ]);
    let start = Instant::now();
    let r = s.get("/");
    assert_eq!(r.status, 504);
    let x64 = "x".repeat(64);
    assert!(
        r.body
            .contains(&format!("expected \"imok\", got \"{x64}\"")),
        "{}",
        r.body
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        start.elapsed()
    );
}

#[test]
fn a_peer_that_does_not_speak_http_fails_the_http_check() {
    let port = http_server("SSH-2.0-OpenSSH_9.2\r\n\r\n");
    let url = format!("http://127.0.0.1:{port}/");
    let r = Server::start(&["--http", &url]).get("/");
    assert_eq!(r.status, 504);
    assert!(
        r.body
            .contains(&format!("fail http {url}: invalid response: ")),
        "{}",
        r.body
    );
}
