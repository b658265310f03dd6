//! The drop-in contract, run against the real binary: the reference tool's own cases, scripts
//! with deadlines, HTTP behaviour, and every bad-input case with its message and exit status.

mod common;

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn one_open_port_answers_200_ok() {
    let (_l, p) = open_port();
    let s = Server::start(&["--port", &p.to_string()]);
    let r = s.get("/");
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("OK"), "{}", r.body);
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
}

#[test]
fn three_open_ports_answer_200() {
    let ports: Vec<_> = (0..3).map(|_| open_port()).collect();
    let mut args = Vec::new();
    for (_, p) in &ports {
        args.push("--port".to_string());
        args.push(p.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = Server::start(&args).get("/");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body
            .lines()
            .filter(|l| l.starts_with("pass tcp 127.0.0.1:"))
            .count(),
        3
    );
}

#[test]
fn one_closed_port_of_three_answers_504_naming_it() {
    let (_a, a) = open_port();
    let (_b, b) = open_port();
    let closed = closed_port();
    let s = Server::start(&[
        "--port",
        &a.to_string(),
        "--port",
        &closed.to_string(),
        "--port",
        &b.to_string(),
    ]);
    let r = s.get("/");
    assert_eq!(r.status, 504);
    assert!(
        r.body.starts_with("FAIL: 1 of 3 checks unhealthy\n"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(&format!(
            "fail tcp 127.0.0.1:{closed}: connection refused ("
        )),
        "{}",
        r.body
    );
    assert!(eventually(|| s.logs().contains(&format!(
        "tcp 127.0.0.1:{closed} failed: connection refused"
    ))));
}

#[test]
fn passing_script_answers_200() {
    let dir = scratch();
    let ok = script(&dir, "ok.sh", "exit 0");
    let r = Server::start(&["--script", &ok]).get("/");
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(&format!("pass script {ok} (")),
        "{}",
        r.body
    );
}

#[test]
fn missing_script_answers_504_and_the_server_stays_up() {
    let mut s = Server::start(&["--script", "/nonexistent/check.sh"]);
    let r = s.get("/");
    assert_eq!(r.status, 504);
    assert!(
        r.body
            .contains("fail script /nonexistent/check.sh: cannot run it: no such file or program"),
        "{}",
        r.body
    );
    assert!(s.alive());
    assert_eq!(s.get("/").status, 504);
}

#[test]
fn script_without_shebang_or_exec_bit_fails_with_a_reason() {
    let dir = scratch();
    let no_shebang = dir.join("no-shebang");
    fs::write(&no_shebang, "exit 0\n").unwrap();
    fs::set_permissions(
        &no_shebang,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let not_exec = dir.join("not-exec.sh");
    fs::write(&not_exec, "#!/bin/sh\nexit 0\n").unwrap();
    let s = Server::start(&[
        "--script",
        no_shebang.to_str().unwrap(),
        "--script",
        not_exec.to_str().unwrap(),
    ]);
    let r = s.get("/");
    assert_eq!(r.status, 504);
    assert!(
        r.body
            .contains("exec format error (does it start with a #! line?)"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("permission denied (is it executable?)"),
        "{}",
        r.body
    );
}

#[test]
fn two_passing_scripts_answer_200() {
    let dir = scratch();
    let a = script(&dir, "a.sh", "exit 0");
    let b = script(&dir, "b.sh", "exit 0");
    assert_eq!(
        Server::start(&["--script", &a, "--script", &b])
            .get("/")
            .status,
        200
    );
}

#[test]
fn one_failing_script_of_two_answers_504() {
    let dir = scratch();
    let a = script(&dir, "a.sh", "exit 0");
    let b = script(&dir, "b.sh", "exit 3");
    let r = Server::start(&["--script", &a, "--script", &b]).get("/");
    assert_eq!(r.status, 504);
    assert!(
        r.body
            .contains(&format!("fail script {b}: exited with status 3 (")),
        "{}",
        r.body
    );
}

#[test]
fn script_and_port_together() {
    let dir = scratch();
    let ok = script(&dir, "ok.sh", "exit 0");
    let (l, p) = open_port();
    let s = Server::start(&["--port", &p.to_string(), "--script", &ok]);
    assert_eq!(s.get("/").status, 200);
    drop(l);
    assert_eq!(s.get("/").status, 504);
}

#[test]
fn script_arguments_are_split_like_a_shell() {
    let dir = scratch();
    let check = script(
        &dir,
        "args.sh",
        r#"[ "$#" -eq 3 ] && [ "$1" = "--name" ] && [ "$2" = "a b" ] && [ "$3" = 'x"y' ]"#,
    );
    let line = format!(r#"{check} --name 'a b' "x\"y""#);
    assert_eq!(Server::start(&["--script", &line]).get("/").status, 200);
}

#[test]
fn program_without_a_slash_is_found_in_path() {
    assert_eq!(Server::start(&["--script", "true"]).get("/").status, 200);
    assert_eq!(Server::start(&["--script", "false"]).get("/").status, 504);
}

#[test]
fn secrets_and_output_never_reach_a_response_or_the_logs_of_arguments() {
    let dir = scratch();
    let leak = script(
        &dir,
        "leak.sh",
        "echo OUTPUT-SECRET; echo ERR-SECRET >&2; exit 1",
    );
    let s = Server::start(&["--script", &format!("{leak} --password ARG-SECRET")]);
    let r = s.get("/");
    assert_eq!(r.status, 504);
    for secret in ["ARG-SECRET", "OUTPUT-SECRET", "ERR-SECRET", "--password"] {
        assert!(!r.body.contains(secret), "{secret} in {}", r.body);
    }
    // Output is for the operator's log, at warn; arguments are not.
    assert!(eventually(
        || s.logs().contains("OUTPUT-SECRET") && s.logs().contains("ERR-SECRET")
    ));
    assert!(!s.logs().contains("ARG-SECRET"), "{}", s.logs());
}

#[test]
fn checks_of_one_request_run_concurrently() {
    let dir = scratch();
    let slow = script(&dir, "slow.sh", "sleep 1");
    let s = Server::start(&["--script", &slow, "--script", &slow, "--script", &slow]);
    let start = Instant::now();
    assert_eq!(s.get("/").status, 200);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(
        took < Duration::from_millis(2500),
        "three 1 s scripts took {took:?}"
    );
}

#[test]
fn timed_out_script_leaves_no_children_and_answers_in_time() {
    let dir = scratch();
    let pid_file = dir.join("pids");
    // The grandchild holds the script's stdout open: the Go tool hangs on exactly this.
    let hang = script(
        &dir,
        "hang.sh",
        &format!(
            "sleep 60 & echo $! > {p}; echo $$ >> {p}; sleep 60",
            p = pid_file.display()
        ),
    );
    let s = Server::start(&["--script", &hang, "--script-timeout", "1"]);
    let start = Instant::now();
    let r = s.get("/");
    let took = start.elapsed();
    assert_eq!(r.status, 504);
    assert!(r.body.contains("timed out after 1s"), "{}", r.body);
    assert!(took < Duration::from_secs(4), "answer took {took:?}");
    let pids = pids(&pid_file);
    assert_eq!(pids.len(), 2);
    for pid in pids {
        assert!(
            eventually(|| process_gone(pid)),
            "process {pid} outlived the timeout"
        );
    }
}

#[test]
fn script_that_exits_but_leaves_a_child_on_its_stdout_answers_at_once() {
    let dir = scratch();
    let pidfile = dir.join("pid");
    let bg = script(
        &dir,
        "bg.sh",
        &format!("sleep 60 & echo $! > {}; exit 0", pidfile.display()),
    );
    let s = Server::start(&["--script", &bg, "--script-timeout", "5"]);
    let start = Instant::now();
    let r = s.get("/");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    let pid: u32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        eventually(|| process_gone(pid)),
        "the script's leftover {pid} survived"
    );
}

#[test]
fn flood_of_script_output_does_not_grow_memory() {
    let dir = scratch();
    // 100 MiB on stdout, then success: we must read it all and keep only the tail.
    let flood = script(&dir, "flood.sh", "head -c 104857600 /dev/zero; echo end");
    let mut s = Server::start(&["--script", &flood, "--script-timeout", "60"]);
    assert_eq!(s.get("/").status, 200);
    let hwm_kib = proc_status(s.child.id(), "VmHWM:");
    assert!(
        hwm_kib < 32 * 1024,
        "peak RSS {hwm_kib} KiB after a 100 MiB flood"
    );
    assert!(s.alive());
}

fn count_runs(singleflight: bool) -> usize {
    let dir = scratch();
    let counter = dir.join("runs");
    let slow = script(
        &dir,
        "slow.sh",
        &format!("echo run >> {}; sleep 1", counter.display()),
    );
    let mut args = vec!["--script", &slow, "--workers", "16"];
    if singleflight {
        args.push("--singleflight");
    }
    let s = Server::start(&args);
    assert_eq!(concurrent_gets(&s, 10), [200; 10]);
    lines(&counter).len()
}

#[test]
fn singleflight_runs_the_script_once_for_concurrent_requests() {
    assert_eq!(count_runs(true), 1);
}

#[test]
fn without_singleflight_every_request_runs_the_script() {
    assert_eq!(count_runs(false), 10);
}

#[test]
fn head_gets_status_and_headers_without_a_body() {
    let (_l, p) = open_port();
    let s = Server::start(&["--port", &p.to_string()]);
    let mut c = s.connect();
    c.write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let head = read_response(&mut c, true).unwrap();
    assert_eq!(head.status, 200);
    let announced: usize = head.header("Content-Length").unwrap().parse().unwrap();
    assert!(announced > "OK".len());
    assert_eq!(
        head.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert!(head.body.is_empty());
    // The next response starts right where the HEAD response ended: no stray body bytes.
    let next = read_response(&mut c, false).unwrap();
    assert_eq!(next.status, 200);
    assert!(next.body.starts_with("OK"));
}

#[test]
fn every_method_and_path_runs_the_checks() {
    let closed = closed_port();
    let s = Server::start(&["--port", &closed.to_string()]);
    for req in [
        "GET / HTTP/1.1\r\n\r\n",
        "POST /some/path?x=1 HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody",
        "DELETE /health HTTP/1.1\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\n\r\n",
        "GET /health HTTP/1.0\r\n\r\n",
    ] {
        assert_eq!(s.send(req).status, 504, "{req:?}");
    }
}

#[test]
fn keep_alive_and_pipelining_answer_in_order() {
    let (l, p) = open_port();
    let s = Server::start(&["--port", &p.to_string()]);
    let mut c = s.connect();
    c.write_all(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\n\r\n")
        .unwrap();
    for _ in 0..3 {
        let r = read_response(&mut c, false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), None);
    }
    drop(l);
    c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c, false).unwrap();
    assert_eq!(r.status, 504);
    assert_eq!(r.header("Connection"), Some("close"));
}

#[test]
fn http_1_0_keep_alive_is_honoured() {
    let (_l, p) = open_port();
    let s = Server::start(&["--port", &p.to_string()]);
    let mut c = s.connect();
    for _ in 0..2 {
        c.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = read_response(&mut c, false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), Some("keep-alive"));
    }
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(
        read_response(&mut c, false).unwrap().header("Connection"),
        Some("close")
    );
}

#[test]
fn ipv6_listener_serves() {
    let (_l, p) = open_port();
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback on this machine; skipping");
        return;
    };
    drop(probe);
    let s = Server::start(&["--listener", "[::1]:0", "--port", &p.to_string()]);
    assert!(s.addr.is_ipv6());
    assert_eq!(s.get("/").status, 200);
}

#[test]
fn sigterm_ends_the_process_promptly() {
    let (_l, p) = open_port();
    let mut s = Server::start(&["--port", &p.to_string()]);
    let pid = s.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(eventually(|| !s.alive()));
}

// ---- bad input: one line naming option and value, a hint, exit status 2 ----

fn usage_error(args: &[&str], message: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(
        stderr,
        format!("health-checker: {message}\nRun 'health-checker --help' for usage.\n"),
        "{args:?}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_ports_exit_2() {
    for p in ["abc", "0", "70000"] {
        usage_error(
            &["--port", p],
            &format!("invalid value \"{p}\" for --port: not a port number (1-65535)"),
        );
    }
}

#[test]
fn bad_timeouts_exit_2() {
    for t in ["0", "-1", "abc", "1s"] {
        usage_error(
            &["--port", "1", "--script-timeout", t],
            &format!(
                "invalid value \"{t}\" for --script-timeout: not a positive number of seconds"
            ),
        );
    }
}

#[test]
fn bad_log_level_exits_2() {
    usage_error(
        &["--port", "1", "--log-level", "loud"],
        "invalid value \"loud\" for --log-level: expected panic, fatal, error, warning, info, debug or trace",
    );
}

#[test]
fn unknown_option_and_missing_value_exit_2() {
    usage_error(
        &["--port", "1", "--frobnicate"],
        "unknown option \"--frobnicate\"",
    );
    usage_error(&["--port"], "missing value for --port");
    usage_error(&["--port", "1", "--script"], "missing value for --script");
}

#[test]
fn malformed_listener_exits_2() {
    usage_error(
        &["--port", "1", "--listener", "1.2.3.4"],
        "invalid value \"1.2.3.4\" for --listener: expected ADDR:PORT",
    );
    usage_error(
        &["--port", "1", "--listener", "0.0.0.0:99999"],
        "invalid value \"0.0.0.0:99999\" for --listener: expected ADDR:PORT",
    );
}

#[test]
fn no_check_exits_2() {
    usage_error(
        &["--listener", "127.0.0.1:0"],
        "at least one --port or --script (or --tcp, --http) is required",
    );
}

#[test]
fn no_arguments_print_usage_and_exit_2() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Usage: health-checker [OPTIONS]"),
        "{stderr}"
    );
}

#[test]
fn listener_in_use_exits_1_naming_it() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = run(&["--listener", &addr, "--port", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("cannot listen on {addr}: address already in use")),
        "{stdout}"
    );
}

#[test]
fn help_and_version_exit_0() {
    let help = run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--script-timeout SECONDS"));
    let version = run(&["-v"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&version.stdout)
            .starts_with(&format!("health-checker {}", env!("CARGO_PKG_VERSION")))
    );
}

#[test]
fn readme_options_are_the_help_text() {
    let help = String::from_utf8(run(&["--help"]).stdout).unwrap();
    let options = &help[help.find("Options:").unwrap()..help.find("\nExamples:").unwrap()];
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(options),
        "README.md's options differ from --help; paste:\n{options}"
    );
}

#[test]
fn a_failure_that_repeats_is_logged_once_and_its_recovery_once() {
    let (l, port) = open_port();
    let s = Server::start(&["--port", &port.to_string()]);
    drop(l);
    for _ in 0..5 {
        assert_eq!(s.get("/").status, 504);
    }
    let failed = format!("tcp 127.0.0.1:{port} failed: connection refused");
    assert!(eventually(|| s.logs().contains(&failed)));
    let _reopened = std::net::TcpListener::bind(("127.0.0.1", port)).expect("port free again");
    assert_eq!(s.get("/").status, 200);
    let recovered = format!(
        "tcp 127.0.0.1:{port} passes again (it failed: connection refused; 4 failures not logged)"
    );
    assert!(eventually(|| s.logs().contains(&recovered)), "{}", s.logs());
    assert_eq!(s.logs().matches(&failed).count(), 1, "{}", s.logs());
}
