//! One run: every check once, concurrently, at most `--workers` runs at a time, all within
//! the overall `--deadline` when one is set.

use std::thread;
use std::time::{Duration, Instant};

use log::{error, warn};

use crate::check::{Check, Outcome, Status};
use crate::limit::Semaphore;

/// Stack of a thread that runs one check: a connect or a spawn, a few formatted strings.
const CHECK_STACK: usize = 128 * 1024;

/// Runs the configured checks, bounding how many runs proceed at once.
pub struct Runner {
    checks: Vec<Check>,
    workers: Semaphore,
    /// How long a run may wait for a worker before it fails.
    worker_wait: Duration,
    /// Cap on one whole run (`--deadline`).
    deadline: Option<Duration>,
}

impl Runner {
    /// A runner for `checks` with `workers` concurrent runs, waiting at most `worker_wait` for
    /// one, each run capped by `deadline` when set.
    pub fn new(
        checks: Vec<Check>,
        workers: usize,
        worker_wait: Duration,
        deadline: Option<Duration>,
    ) -> Self {
        Runner {
            checks,
            workers: Semaphore::new(workers),
            worker_wait,
            deadline,
        }
    }

    /// The checks, in report order.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// Runs every check once and logs each failure; outcomes come in check order.
    pub fn run(&self) -> Vec<Outcome> {
        let start = Instant::now();
        let deadline = self.deadline.map(|d| start + d);
        let wait_until = deadline.map_or(start + self.worker_wait, |d| {
            d.min(start + self.worker_wait)
        });
        let Some(_permit) = self.workers.acquire(wait_until) else {
            let reason = match deadline {
                Some(d) if d <= wait_until => "deadline".to_string(),
                _ => format!(
                    "busy: all {} check workers stayed in use",
                    self.workers.size()
                ),
            };
            warn!("run skipped: {reason}");
            return self
                .checks
                .iter()
                .map(|_| Outcome {
                    status: Status::Fail(reason.clone()),
                    duration: start.elapsed(),
                })
                .collect();
        };
        let outcomes = run_all(&self.checks, deadline);
        for (check, o) in self.checks.iter().zip(&outcomes) {
            if let Status::Fail(reason) = &o.status {
                warn!("{} failed: {reason}", check.name());
            }
        }
        outcomes
    }
}

/// Runs the first check on this thread and each other one on a scoped thread of its own.
fn run_all(checks: &[Check], deadline: Option<Instant>) -> Vec<Outcome> {
    let Some((first, rest)) = checks.split_first() else {
        return Vec::new();
    };
    if rest.is_empty() {
        return vec![first.run(deadline)];
    }
    thread::scope(|s| {
        let spawned: Vec<_> = rest
            .iter()
            .map(|c| {
                thread::Builder::new()
                    .stack_size(CHECK_STACK)
                    .spawn_scoped(s, move || c.run(deadline))
            })
            .collect();
        let mut outcomes = Vec::with_capacity(checks.len());
        outcomes.push(first.run(deadline));
        for (c, handle) in rest.iter().zip(spawned) {
            let outcome = match handle {
                Ok(h) => h.join().unwrap_or_else(|_| panicked(c)),
                // Out of threads: run it here rather than not at all; still within its deadline.
                Err(e) => {
                    error!(
                        "cannot start a thread for {}: {e}; running it in turn",
                        c.name()
                    );
                    c.run(deadline)
                }
            };
            outcomes.push(outcome);
        }
        outcomes
    })
}

fn panicked(c: &Check) -> Outcome {
    error!("{} panicked; reporting it as failed", c.name());
    Outcome {
        status: Status::Fail("internal error: the check panicked".to_string()),
        duration: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::script::ScriptCheck;
    use crate::cli::Script;
    use std::sync::Arc;

    fn sleeper(secs: &str) -> Check {
        Check::Script(ScriptCheck::new(
            Script {
                program: "sleep".into(),
                args: vec![secs.into()],
            },
            Duration::from_secs(10),
            Arc::new(Semaphore::new(8)),
        ))
    }

    #[test]
    fn checks_run_concurrently() {
        let runner = Runner::new(
            vec![sleeper("1"), sleeper("1"), sleeper("1")],
            1,
            Duration::from_secs(10),
            None,
        );
        let start = Instant::now();
        let outcomes = runner.run();
        assert!(outcomes.iter().all(|o| o.status == Status::Pass));
        assert_eq!(outcomes.len(), 3);
        assert!(
            start.elapsed() < Duration::from_millis(2500),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_run_that_cannot_get_a_worker_fails_with_a_reason() {
        let runner = Runner::new(vec![sleeper("0")], 1, Duration::from_millis(100), None);
        let _held = runner.workers.acquire(Instant::now()).unwrap();
        assert_eq!(
            runner.run()[0].status,
            Status::Fail("busy: all 1 check workers stayed in use".into())
        );
    }

    #[test]
    fn the_overall_deadline_cuts_slow_checks() {
        let runner = Runner::new(
            vec![sleeper("0"), sleeper("5")],
            1,
            Duration::from_secs(10),
            Some(Duration::from_millis(300)),
        );
        let start = Instant::now();
        let outcomes = runner.run();
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(outcomes[0].status, Status::Pass);
        assert_eq!(outcomes[1].status, Status::Fail("deadline".into()));
    }
}
