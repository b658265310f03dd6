//! The kinds of check, each a function from its spec to an [`Outcome`].

pub mod http;
pub mod script;
pub mod tcp;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::Config;
use crate::limit::Semaphore;

/// One configured check.
#[derive(Debug)]
pub enum Check {
    /// A TCP connection must open (and perhaps answer).
    Tcp(tcp::TcpCheck),
    /// A URL must answer 200-399.
    Http(http::HttpCheck),
    /// A program must exit 0 in time.
    Script(script::ScriptCheck),
}

/// Whether a check passed, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The check passed.
    Pass,
    /// The check failed, for this reason (never script output or arguments).
    Fail(String),
}

/// The result of running one check once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Passed or failed.
    pub status: Status,
    /// How long the check took.
    pub duration: Duration,
    /// What a failed script printed (the tails of stdout and stderr), for the log only: the
    /// run takes it out before the outcome reaches the state, so no response can show it.
    pub output: Option<String>,
}

impl Check {
    /// The stable display name: `tcp 127.0.0.1:5432` or `script /path/to/program`.
    pub fn name(&self) -> &str {
        match self {
            Check::Tcp(c) => &c.name,
            Check::Http(c) => &c.name,
            Check::Script(c) => &c.name,
        }
    }

    /// Runs the check once, within its own timeout and the overall `deadline`, if any.
    pub fn run(&self, deadline: Option<Instant>) -> Outcome {
        let start = Instant::now();
        let (result, output) = match self {
            Check::Tcp(c) => (c.run(Budget::new(start, c.timeout, deadline)), None),
            Check::Http(c) => (c.run(Budget::new(start, c.timeout, deadline)), None),
            Check::Script(c) => c.run(Budget::new(start, c.timeout, deadline)),
        };
        Outcome {
            status: match result {
                Ok(()) => Status::Pass,
                Err(reason) => Status::Fail(reason),
            },
            duration: start.elapsed(),
            output,
        }
    }
}

/// The reason of a check cut short by `--deadline`.
pub const DEADLINE: &str = "deadline";

/// When a check must end: its own timeout, or the overall deadline when that comes first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The instant the check must be done by.
    pub end: Instant,
    timeout: Duration,
    /// Whether `end` is the overall deadline rather than the check's own timeout.
    overall: bool,
}

impl Budget {
    /// The budget of a check with `timeout` started at `start`, under `deadline`.
    pub fn new(start: Instant, timeout: Duration, deadline: Option<Instant>) -> Budget {
        let own = start + timeout;
        match deadline {
            Some(d) if d < own => Budget {
                end: d,
                timeout,
                overall: true,
            },
            _ => Budget {
                end: own,
                timeout,
                overall: false,
            },
        }
    }

    /// Whether `end` is the overall deadline rather than the check's own timeout.
    pub fn overall(&self) -> bool {
        self.overall
    }

    /// The reason for running out of time: [`DEADLINE`], or `timed out after 5s`.
    pub fn expired(&self) -> String {
        if self.overall {
            DEADLINE.to_string()
        } else {
            format!("timed out after {}", seconds(self.timeout))
        }
    }
}

/// Every check the configuration asks for: `--port`, `--tcp`, `--http`, then `--script`,
/// each kind in the order given.
pub fn from_config(config: &Config) -> Vec<Check> {
    // One bound for all scripts of all runs: however many requests arrive, at most this many
    // script processes exist at once.
    let script_slots = Arc::new(Semaphore::new(config.workers));
    let ports = config
        .ports
        .iter()
        .map(|&p| Check::Tcp(tcp::TcpCheck::local(p, config.tcp_timeout)));
    let tcps = config
        .tcp
        .iter()
        .map(|t| Check::Tcp(tcp::TcpCheck::new(t.clone(), config.tcp_timeout)));
    let https = config
        .http
        .iter()
        .map(|u| Check::Http(http::HttpCheck::new(u.clone(), config.http_timeout)));
    let scripts = config.scripts.iter().map(|s| {
        Check::Script(script::ScriptCheck::new(
            s.clone(),
            config.script_timeout,
            script_slots.clone(),
        ))
    });
    ports.chain(tcps).chain(https).chain(scripts).collect()
}

/// Describes an OS error the way a reason line wants it: lower case, no "(os error N)".
pub fn describe(e: &io::Error) -> String {
    use io::ErrorKind as K;
    let s = match e.kind() {
        K::ConnectionRefused => "connection refused",
        K::ConnectionReset => "connection reset",
        K::TimedOut | K::WouldBlock => "timed out",
        K::HostUnreachable => "host unreachable",
        K::NetworkUnreachable => "network unreachable",
        K::AddrNotAvailable => "address not available",
        K::PermissionDenied => "permission denied",
        K::NotFound => "not found",
        _ => {
            let full = e.to_string();
            let cut = full
                .find(" (os error")
                .map_or(full.as_str(), |i| &full[..i]);
            let mut out = cut.to_string();
            if let Some(first) = out.get(..1) {
                let lower = first.to_ascii_lowercase();
                out.replace_range(..1, &lower);
            }
            return out;
        }
    };
    s.to_string()
}

/// Formats a duration given in seconds for reasons: `5s`, `0.5s`.
pub fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_reasons() {
        assert_eq!(
            describe(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            "connection refused"
        );
        assert_eq!(
            describe(&io::Error::from_raw_os_error(libc::ENOEXEC)),
            "exec format error"
        );
        assert_eq!(
            describe(&io::Error::from_raw_os_error(libc::EMFILE)),
            "too many open files"
        );
    }

    #[test]
    fn seconds_are_short() {
        assert_eq!(seconds(Duration::from_secs(5)), "5s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5s");
    }
}
