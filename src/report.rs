//! Rendering a run's report for people: the text body every path answers with.

use std::fmt::Write as _;

use crate::check::{Check, Status};
use crate::run::Report;

/// Appends the text report: a summary line starting with `OK` or `FAIL`, then one line per
/// check in configuration order: `pass NAME (D ms)` or `fail NAME: REASON (D ms)`.
pub fn text(checks: &[Check], report: &Report, out: &mut Vec<u8>) {
    let mut s = String::with_capacity(64 * (checks.len() + 1));
    let failed = report
        .outcomes
        .iter()
        .filter(|o| o.status != Status::Pass)
        .count();
    let total = report.outcomes.len();
    let _ = match failed {
        0 => writeln!(s, "OK: {total} of {total} checks passed"),
        _ => writeln!(s, "FAIL: {failed} of {total} checks failed"),
    };
    for (check, o) in checks.iter().zip(&report.outcomes) {
        let ms = o.duration.as_secs_f64() * 1000.0;
        let _ = match &o.status {
            Status::Pass => writeln!(s, "pass {} ({ms:.2} ms)", check.name()),
            Status::Fail(reason) => writeln!(s, "fail {}: {reason} ({ms:.2} ms)", check.name()),
        };
    }
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Outcome, tcp::TcpCheck};
    use std::time::Duration;

    #[test]
    fn failures_name_the_check_and_reason() {
        let checks = vec![
            Check::Tcp(TcpCheck::local(5432, Duration::from_secs(5))),
            Check::Tcp(TcpCheck::local(3306, Duration::from_secs(5))),
        ];
        let report = Report {
            outcomes: vec![
                Outcome {
                    status: Status::Fail("connection refused".into()),
                    duration: Duration::from_micros(120),
                },
                Outcome {
                    status: Status::Pass,
                    duration: Duration::from_micros(1500),
                },
            ],
        };
        let mut out = Vec::new();
        text(&checks, &report, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "FAIL: 1 of 2 checks failed\n\
             fail tcp 127.0.0.1:5432: connection refused (0.12 ms)\n\
             pass tcp 127.0.0.1:3306 (1.50 ms)\n"
        );
    }
}
