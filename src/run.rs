//! One run: every check once, concurrently, at most `--workers` runs at a time.

use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use log::{error, warn};

use crate::check::{Check, Outcome, Status};

/// Stack of a thread that runs one check: a connect or a spawn, a few formatted strings.
const CHECK_STACK: usize = 128 * 1024;

/// Runs the configured checks, bounding how many runs proceed at once.
pub struct Runner {
    checks: Vec<Check>,
    workers: Semaphore,
    /// How long a run may wait for a worker before it fails: the longest check timeout, so a
    /// queued request is answered no later than one that ran.
    worker_wait: Duration,
}

impl Runner {
    /// A runner for `checks` with `workers` concurrent runs, waiting at most `worker_wait` for one.
    pub fn new(checks: Vec<Check>, workers: usize, worker_wait: Duration) -> Self {
        Runner {
            checks,
            workers: Semaphore::new(workers),
            worker_wait,
        }
    }

    /// The checks, in report order.
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// Runs every check once and logs each failure; outcomes come in check order.
    pub fn run(&self) -> Vec<Outcome> {
        let Some(_permit) = self.workers.acquire(self.worker_wait) else {
            let reason = format!(
                "busy: all {} check workers stayed in use",
                self.workers.size
            );
            warn!("run skipped: {reason}");
            return self
                .checks
                .iter()
                .map(|_| Outcome {
                    status: Status::Fail(reason.clone()),
                    duration: self.worker_wait,
                })
                .collect();
        };
        let outcomes = run_all(&self.checks);
        for (check, o) in self.checks.iter().zip(&outcomes) {
            if let Status::Fail(reason) = &o.status {
                warn!("{} failed: {reason}", check.name());
            }
        }
        outcomes
    }
}

/// Runs the first check on this thread and each other one on a scoped thread of its own.
fn run_all(checks: &[Check]) -> Vec<Outcome> {
    let Some((first, rest)) = checks.split_first() else {
        return Vec::new();
    };
    if rest.is_empty() {
        return vec![first.run()];
    }
    thread::scope(|s| {
        let spawned: Vec<_> = rest
            .iter()
            .map(|c| {
                thread::Builder::new()
                    .stack_size(CHECK_STACK)
                    .spawn_scoped(s, move || c.run())
            })
            .collect();
        let mut outcomes = Vec::with_capacity(checks.len());
        outcomes.push(first.run());
        for (c, handle) in rest.iter().zip(spawned) {
            let outcome = match handle {
                Ok(h) => h.join().unwrap_or_else(|_| panicked(c)),
                // Out of threads: run it here rather than not at all; still within its own deadline.
                Err(e) => {
                    error!(
                        "cannot start a thread for {}: {e}; running it in turn",
                        c.name()
                    );
                    c.run()
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

/// A counting semaphore with a bounded wait.
struct Semaphore {
    size: usize,
    free: Mutex<usize>,
    freed: Condvar,
}

/// Holds one unit of a [`Semaphore`] until dropped.
struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    fn new(size: usize) -> Self {
        Semaphore {
            size,
            free: Mutex::new(size),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self, wait: Duration) -> Option<Permit<'_>> {
        let deadline = Instant::now() + wait;
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            free = self
                .freed
                .wait_timeout(free, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *free -= 1;
        Some(Permit(self))
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::script::ScriptCheck;
    use crate::cli::Script;

    fn sleeper(secs: &str) -> Check {
        Check::Script(ScriptCheck::new(
            Script {
                program: "sleep".into(),
                args: vec![secs.into()],
            },
            Duration::from_secs(10),
        ))
    }

    #[test]
    fn checks_run_concurrently() {
        let runner = Runner::new(
            vec![sleeper("1"), sleeper("1"), sleeper("1")],
            1,
            Duration::from_secs(10),
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
    fn semaphore_bounds_and_times_out() {
        let s = Semaphore::new(1);
        let held = s.acquire(Duration::ZERO).unwrap();
        assert!(s.acquire(Duration::from_millis(50)).is_none());
        drop(held);
        assert!(s.acquire(Duration::ZERO).is_some());
    }

    #[test]
    fn a_run_that_cannot_get_a_worker_fails_with_a_reason() {
        let runner = Runner::new(vec![sleeper("0")], 1, Duration::from_millis(100));
        let _held = runner.workers.acquire(Duration::ZERO).unwrap();
        let outcomes = runner.run();
        assert_eq!(
            outcomes[0].status,
            Status::Fail("busy: all 1 check workers stayed in use".into())
        );
    }
}
