//! Rendering the state for people and machines: text, JSON and Prometheus exposition.
//! Pure functions of the state; nothing here runs a check.

use std::fmt::Write as _;

use crate::check::{Outcome, Status};
use crate::state::{CheckState, Health, State};

/// Appends the text report: a summary line starting with `OK` or `FAIL`, then one line per
/// check in configuration order, `pass NAME (D ms) [STATE, ...]` or
/// `fail NAME: REASON (D ms) [STATE, ...]`, or `wait NAME [starting]` before its first result.
pub fn text(state: &State, out: &mut String) {
    let total = state.checks.len();
    let _ = match state.host() {
        Health::Healthy => writeln!(out, "OK: {total} of {total} checks healthy"),
        Health::Unhealthy => {
            let bad = state
                .checks
                .iter()
                .filter(|c| c.health == Health::Unhealthy)
                .count();
            writeln!(out, "FAIL: {bad} of {total} checks unhealthy")
        }
        Health::Starting => {
            let waiting = state
                .checks
                .iter()
                .filter(|c| c.health == Health::Starting)
                .count();
            writeln!(
                out,
                "FAIL: starting, {waiting} of {total} checks have no result yet"
            )
        }
    };
    for c in &state.checks {
        match &c.last {
            None => {
                let _ = writeln!(out, "wait {} [starting]", c.name);
            }
            Some(Outcome {
                status, duration, ..
            }) => {
                let ms = duration.as_secs_f64() * 1000.0;
                let _ = match status {
                    Status::Pass => write!(out, "pass {} ({ms:.2} ms)", c.name),
                    Status::Fail(reason) => write!(out, "fail {}: {reason} ({ms:.2} ms)", c.name),
                };
                let (n, what) = match status {
                    Status::Pass => (c.passes_in_row, "pass"),
                    Status::Fail(_) => (c.failures_in_row, "failure"),
                };
                let plural = if n == 1 {
                    ""
                } else if what == "pass" {
                    "es"
                } else {
                    "s"
                };
                let _ = writeln!(
                    out,
                    " [{}, {n} consecutive {what}{plural}]",
                    c.health.as_str()
                );
            }
        }
    }
}

/// Appends the JSON report:
/// `{"status":"pass"|"fail","state":...,"checks":[{"name","status","duration_ms","reason",...}]}`.
pub fn json(state: &State, out: &mut String) {
    let host = state.host();
    out.push_str("{\"status\":");
    out.push_str(if host == Health::Healthy {
        "\"pass\""
    } else {
        "\"fail\""
    });
    let _ = write!(out, ",\"state\":\"{}\",\"checks\":[", host.as_str());
    for (i, c) in state.checks.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json_string(&c.name, out);
        check_json_fields(c, out);
        out.push('}');
    }
    out.push_str("]}");
}

fn check_json_fields(c: &CheckState, out: &mut String) {
    match &c.last {
        None => out.push_str(",\"status\":\"fail\",\"duration_ms\":null,\"reason\":\"starting\""),
        Some(o) => {
            let _ = write!(
                out,
                ",\"status\":\"{}\",\"duration_ms\":{:.3},\"reason\":",
                if o.status == Status::Pass {
                    "pass"
                } else {
                    "fail"
                },
                o.duration.as_secs_f64() * 1000.0
            );
            match &o.status {
                Status::Pass => out.push_str("null"),
                Status::Fail(r) => json_string(r, out),
            }
        }
    }
    let _ = write!(
        out,
        ",\"state\":\"{}\",\"consecutive_passes\":{},\"consecutive_failures\":{}",
        c.health.as_str(),
        c.passes_in_row,
        c.failures_in_row
    );
}

/// Appends `/ready`'s body: `{"ready":true}` or `{"ready":false,"reasons":[...]}`.
pub fn ready(state: &State, out: &mut String) {
    if state.host() == Health::Healthy {
        out.push_str("{\"ready\":true}");
        return;
    }
    out.push_str("{\"ready\":false,\"reasons\":[");
    for (i, r) in state.reasons().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(r, out);
    }
    out.push_str("]}");
}

/// Appends `s` as a JSON string literal.
pub fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Requests answered, by status code, for `/metrics`.
pub struct RequestCount {
    /// The status code.
    pub code: u16,
    /// How many responses carried it.
    pub count: u64,
}

/// Appends the Prometheus text exposition (format 0.0.4) of the state and request counts.
pub fn metrics(state: &State, requests: &[RequestCount], out: &mut String) {
    let up = |o: &Outcome| f64::from(u8::from(o.status == Status::Pass));
    per_check(
        out,
        state,
        "check_up",
        "gauge",
        "1 if the check's last result was a pass, 0 if a failure.",
        |c| c.last.as_ref().map(up),
    );
    per_check(
        out,
        state,
        "check_duration_seconds",
        "gauge",
        "How long the check's last run took.",
        |c| c.last.as_ref().map(|o| o.duration.as_secs_f64()),
    );
    per_check(
        out,
        state,
        "check_passes_total",
        "counter",
        "Runs of the check that passed.",
        |c| Some(c.passes as f64),
    );
    per_check(
        out,
        state,
        "check_failures_total",
        "counter",
        "Runs of the check that failed.",
        |c| Some(c.failures as f64),
    );
    family(
        out,
        "check_state",
        "gauge",
        "1 for the check's current state, 0 for the others.",
    );
    for c in &state.checks {
        for h in [Health::Starting, Health::Healthy, Health::Unhealthy] {
            sample(
                out,
                "check_state",
                &c.name,
                Some(h.as_str()),
                u8::from(c.health == h),
            );
        }
    }
    family(
        out,
        "state",
        "gauge",
        "1 for the host's current state, 0 for the others.",
    );
    let host = state.host();
    for h in [Health::Starting, Health::Healthy, Health::Unhealthy] {
        let _ = writeln!(
            out,
            "health_checker_state{{state=\"{}\"}} {}",
            h.as_str(),
            u8::from(host == h)
        );
    }
    family(out, "runs_total", "counter", "Check runs completed.");
    let _ = writeln!(out, "health_checker_runs_total {}", state.runs);
    family(
        out,
        "requests_total",
        "counter",
        "HTTP responses sent, by status code.",
    );
    for r in requests {
        let _ = writeln!(
            out,
            "health_checker_requests_total{{code=\"{}\"}} {}",
            r.code, r.count
        );
    }
    family(
        out,
        "build_info",
        "gauge",
        "Always 1; the version is in the label.",
    );
    let _ = writeln!(
        out,
        "health_checker_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
}

/// One family with a sample per check that `value` has a value for (none before its first
/// result, for the last-result families).
fn per_check(
    out: &mut String,
    state: &State,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&CheckState) -> Option<f64>,
) {
    family(out, name, kind, help);
    for c in &state.checks {
        if let Some(v) = value(c) {
            sample(out, name, &c.name, None, v);
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP health_checker_{name} {help}\n# TYPE health_checker_{name} {kind}"
    );
}

fn sample(
    out: &mut String,
    name: &str,
    check: &str,
    state: Option<&str>,
    value: impl std::fmt::Display,
) {
    let _ = write!(out, "health_checker_{name}{{check=\"");
    label_value(check, out);
    if let Some(s) = state {
        let _ = write!(out, "\",state=\"{s}");
    }
    let _ = writeln!(out, "\"}} {value}");
}

/// Appends a label value escaped as the exposition format requires: `\\`, `\"`, `\n`.
fn label_value(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Thresholds;
    use std::time::Duration;

    fn state() -> State {
        let mut s = State::new(
            [
                "tcp 127.0.0.1:5432".to_string(),
                "tcp 127.0.0.1:3306".to_string(),
            ],
            Thresholds::default(),
        );
        s.record([
            Outcome {
                status: Status::Fail("connection refused".into()),
                duration: Duration::from_micros(120),
                output: None,
            },
            Outcome {
                status: Status::Pass,
                duration: Duration::from_micros(1500),
                output: None,
            },
        ]);
        s
    }

    #[test]
    fn text_names_each_check_its_reason_and_state() {
        let mut out = String::new();
        text(&state(), &mut out);
        assert_eq!(
            out,
            "FAIL: 1 of 2 checks unhealthy\n\
             fail tcp 127.0.0.1:5432: connection refused (0.12 ms) [unhealthy, 1 consecutive failure]\n\
             pass tcp 127.0.0.1:3306 (1.50 ms) [healthy, 1 consecutive pass]\n"
        );
    }

    #[test]
    fn text_before_any_run_says_starting() {
        let s = State::new(["script /x".to_string()], Thresholds::default());
        let mut out = String::new();
        text(&s, &mut out);
        assert_eq!(
            out,
            "FAIL: starting, 1 of 1 checks have no result yet\nwait script /x [starting]\n"
        );
    }

    #[test]
    fn json_report_has_the_documented_shape() {
        let mut out = String::new();
        json(&state(), &mut out);
        assert_eq!(
            out,
            r#"{"status":"fail","state":"unhealthy","checks":[{"name":"tcp 127.0.0.1:5432","status":"fail","duration_ms":0.120,"reason":"connection refused","state":"unhealthy","consecutive_passes":0,"consecutive_failures":1},{"name":"tcp 127.0.0.1:3306","status":"pass","duration_ms":1.500,"reason":null,"state":"healthy","consecutive_passes":1,"consecutive_failures":0}]}"#
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut out = String::new();
        json_string("a\"b\\c\nd\u{1}é", &mut out);
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn ready_lists_reasons() {
        let mut out = String::new();
        ready(&state(), &mut out);
        assert_eq!(
            out,
            r#"{"ready":false,"reasons":["tcp 127.0.0.1:5432: connection refused"]}"#
        );
    }

    #[test]
    fn metric_labels_are_escaped() {
        let mut out = String::new();
        label_value("a\\b\"c\nd", &mut out);
        assert_eq!(out, r#"a\\b\"c\nd"#);
    }

    #[test]
    fn metrics_show_results_counters_and_states() {
        let mut out = String::new();
        metrics(
            &state(),
            &[RequestCount {
                code: 504,
                count: 3,
            }],
            &mut out,
        );
        for line in [
            "health_checker_check_up{check=\"tcp 127.0.0.1:5432\"} 0",
            "health_checker_check_up{check=\"tcp 127.0.0.1:3306\"} 1",
            "health_checker_check_duration_seconds{check=\"tcp 127.0.0.1:3306\"} 0.0015",
            "health_checker_check_failures_total{check=\"tcp 127.0.0.1:5432\"} 1",
            "health_checker_check_state{check=\"tcp 127.0.0.1:5432\",state=\"unhealthy\"} 1",
            "health_checker_state{state=\"unhealthy\"} 1",
            "health_checker_requests_total{code=\"504\"} 3",
            "# TYPE health_checker_check_passes_total counter",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line}\n{out}");
        }
    }
}
