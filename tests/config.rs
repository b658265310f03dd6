//! Configuration from a file and the environment, against the real binary.

mod common;

use std::fs;
use std::process::Command;

use common::*;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn starts_from_a_config_file_alone() {
    let dir = scratch();
    let (_l, p) = open_port();
    let ok = script(&dir, "ok.sh", "[ \"$1\" = 'a b' ]");
    let conf = write(
        &dir,
        "hc.conf",
        &format!(
            "# health-checker\nlistener = 127.0.0.1:0\n\nport = {p}\nscript = {ok} 'a b'\nsingleflight = true\n"
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["--config", &conf]);
    let s = Server::start_cmd(cmd);
    let r = s.get("/");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(s.logs().contains("(singleflight)"), "{}", s.logs());
}

#[test]
fn starts_from_environment_variables_alone() {
    let (_a, a) = open_port();
    let (_b, b) = open_port();
    let mut cmd = Command::new(BIN);
    cmd.env("HEALTH_CHECKER_LISTENER", "127.0.0.1:0")
        .env("HEALTH_CHECKER_PORT", format!("{a},{b}"))
        .env("HEALTH_CHECKER_SCRIPT", "true\nsh -c 'exit 0'")
        .env("HEALTH_CHECKER_SINGLEFLIGHT", "true")
        .env("HEALTH_CHECKER_DEBUG", "true");
    let s = Server::start_cmd(cmd);
    let r = s.get("/");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains(&format!("pass tcp 127.0.0.1:{a}"))
            && r.body.contains(&format!("pass tcp 127.0.0.1:{b}"))
    );
    assert!(
        r.body.contains("pass script true") && r.body.contains("pass script sh"),
        "{}",
        r.body
    );
    assert!(s.logs().contains("(singleflight)"), "{}", s.logs());
    assert!(
        s.logs()
            .contains("ignoring environment variable HEALTH_CHECKER_DEBUG: it names no option"),
        "{}",
        s.logs()
    );
}

#[test]
fn the_environment_can_name_the_config_file_and_adds_to_it() {
    let dir = scratch();
    let (_l, p) = open_port();
    let conf = write(&dir, "hc.conf", "script = false\nport = 1\n");
    let mut cmd = Command::new(BIN);
    cmd.env("HEALTH_CHECKER_LISTENER", "127.0.0.1:0")
        .env("HEALTH_CHECKER_PORT", p.to_string())
        .env("HEALTH_CHECKER_CONFIG", &conf);
    let s = Server::start_cmd(cmd);
    let r = s.get("/");
    // The environment's port replaces the file's; the file's script stays.
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(
        r.body.contains(&format!("pass tcp 127.0.0.1:{p}")),
        "{}",
        r.body
    );
    assert!(!r.body.contains("tcp 127.0.0.1:1 "), "{}", r.body);
    assert!(
        r.body.contains("fail script false: exited with status 1"),
        "{}",
        r.body
    );
}

#[test]
fn the_command_line_replaces_a_repeatable_option_from_lower_sources() {
    let dir = scratch();
    let (_l, open) = open_port();
    let closed = closed_port();
    let conf = write(&dir, "hc.conf", &format!("port = {closed}\n"));
    let s = Server::start_with(
        &["--config", &conf, "--port", &open.to_string()],
        &[("HEALTH_CHECKER_PORT", "1")],
    );
    let r = s.get("/");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body.lines().count(), 2, "{}", r.body);
}

fn usage(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn errors_name_their_source() {
    let dir = scratch();
    let conf = write(&dir, "hc.conf", "port = 1\n\nthreashold = 3\n");
    assert!(usage(&run(&["--config", &conf])).starts_with(&format!(
        "health-checker: {conf}:3: unknown setting \"threashold\"\n"
    )));
    let conf = write(&dir, "bad.conf", "port = abc\n");
    assert!(usage(&run(&["--config", &conf])).starts_with(&format!(
        "health-checker: {conf}:1: invalid value \"abc\" for --port: not a port number (1-65535)\n"
    )));
    let out = run_env(
        &[],
        &[
            ("HEALTH_CHECKER_SCRIPT_TIMEOUT", "0"),
            ("HEALTH_CHECKER_PORT", "1"),
        ],
    );
    assert!(usage(&out).starts_with(
        "health-checker: environment HEALTH_CHECKER_SCRIPT_TIMEOUT: invalid value \"0\" for --script-timeout: not a positive number of seconds\n"
    ));
    let missing = dir.join("missing.conf");
    let out = run(&["--config", missing.to_str().unwrap()]);
    assert!(usage(&out).starts_with(&format!(
        "health-checker: cannot read config file \"{}\": not found\n",
        missing.display()
    )));
}

#[test]
fn no_source_at_all_prints_usage() {
    let out = run_env(&[], &[("HEALTH_CHECKER_DEBUG", "true")]);
    assert!(usage(&out).contains("Usage: health-checker [OPTIONS]"));
}

#[test]
fn check_config_prints_a_loadable_configuration() {
    let dir = scratch();
    let ok = script(&dir, "ok.sh", "exit 0");
    let conf = write(
        &dir,
        "hc.conf",
        &format!("script = {ok} --name 'a b'\nport = 9\ninterval = 5\n"),
    );
    let out = run_env(
        &["--config", &conf, "--port", "5432", "--check-config"],
        &[("HEALTH_CHECKER_UNHEALTHY_THRESHOLD", "3")],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        printed.contains("# from the command line\nport = 5432\n"),
        "{printed}"
    );
    assert!(printed.contains(
        "# from environment HEALTH_CHECKER_UNHEALTHY_THRESHOLD\nunhealthy-threshold = 3\n"
    ));
    assert!(
        printed.contains(&format!("# from {conf}:1\nscript = {ok} --name 'a b'\n")),
        "{printed}"
    );
    assert!(
        printed.contains("# default\nlistener = 0.0.0.0:5000\n"),
        "{printed}"
    );
    assert!(
        !printed.contains("port = 9"),
        "the command line replaces the file's ports"
    );
    // Loading the printout gives the same effective configuration.
    let again = write(&dir, "printed.conf", &printed);
    let out2 = run(&["--config", &again, "--check-config"]);
    assert_eq!(out2.status.code(), Some(0));
    let settings = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        settings(&String::from_utf8(out2.stdout).unwrap()),
        settings(&printed)
    );
}

#[test]
fn check_config_refuses_scripts_that_cannot_run_and_warns_without_shebang() {
    let dir = scratch();
    let no_shebang = write(&dir, "plain.sh", "exit 0\n");
    fs::set_permissions(
        &no_shebang,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = run(&["--script", &no_shebang, "--check-config"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no #! line"),
        "{out:?}"
    );
    let out = run(&[
        "--script",
        "/nonexistent/check.sh",
        "--script",
        "no-such-tool-here",
        "--check-config",
    ]);
    let err = usage(&out);
    assert!(
        err.contains("script \"/nonexistent/check.sh\": no such file"),
        "{err}"
    );
    assert!(
        err.contains("script \"no-such-tool-here\": not found in PATH"),
        "{err}"
    );
}

#[test]
fn once_works_with_a_daemon_config_file() {
    let dir = scratch();
    let (_l, p) = open_port();
    let conf = write(
        &dir,
        "hc.conf",
        &format!("listener = 0.0.0.0:6000\ninterval = 10\nport = {p}\n"),
    );
    let out = run(&["--config", &conf, "--once"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[test]
fn a_config_file_over_a_mebibyte_is_refused() {
    let dir = scratch();
    let mut text = String::from("port = 1\n");
    while text.len() <= 1024 * 1024 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    let conf = write(&dir, "huge.conf", &text);
    assert!(usage(&run(&["--config", &conf])).starts_with(&format!(
        "health-checker: cannot read config file \"{conf}\": larger than 1024 KiB\n"
    )));
}
