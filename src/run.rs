//! One run: every check once, concurrently, at most `--workers` runs at a time, all within
//! the overall `--deadline` when one is set.
//!
//! The thread that asks for a run does the first check itself and hands every other one to
//! a helper. Helpers are kept and reused rather than spawned per run: a thread spawn costs
//! some 17 system calls and fresh stack pages, a hand-off one lock and one wake-up. There are
//! never more helpers than `workers × (checks − 1)`, the most that concurrent runs can use at
//! once: at most that many jobs are ever unfinished, so a job queued while every helper is
//! busy is taken by the one that has just finished. Helpers idle for [`HELPER_IDLE`] exit.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use log::{error, info, warn};

use crate::check::{Check, DEADLINE, Outcome, Status};
use crate::limit::Semaphore;

/// Stack of a helper thread that runs one check at a time: a connect or a spawn, a few
/// formatted strings.
const CHECK_STACK: usize = 128 * 1024;
/// How often a check that keeps failing for the same reason is logged again: a host probed
/// every few seconds by several load balancers would otherwise log the same line dozens of
/// times a minute for as long as a service is down.
const REPEAT_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// How long an idle helper waits for work before it exits, giving back its stack.
const HELPER_IDLE: Duration = Duration::from_secs(30);

/// Runs the configured checks, bounding how many runs proceed at once.
pub struct Runner {
    checks: Arc<Vec<Check>>,
    helpers: Arc<Helpers>,
    workers: Semaphore,
    /// How long a run may wait for a worker before it fails.
    worker_wait: Duration,
    /// Cap on one whole run (`--deadline`).
    deadline: Option<Duration>,
    failures: Mutex<FailureLog>,
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
        let max_helpers = workers * checks.len().saturating_sub(1);
        let checks_len = checks.len();
        Runner {
            checks: Arc::new(checks),
            helpers: Arc::new(Helpers {
                state: Mutex::new(HelperState {
                    queue: VecDeque::new(),
                    idle: 0,
                    threads: 0,
                }),
                work: Condvar::new(),
                max: max_helpers,
            }),
            failures: Mutex::new(FailureLog {
                checks: vec![Logged::default(); checks_len],
            }),
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
        let permit = self.workers.acquire(wait_until);
        let mut outcomes = match permit {
            Some(_) => self.run_all(deadline),
            None => {
                let reason = match deadline {
                    Some(d) if d <= wait_until => DEADLINE.to_string(),
                    _ => format!(
                        "busy: all {} check workers stayed in use",
                        self.workers.size()
                    ),
                };
                let failed = |_| Outcome {
                    status: Status::Fail(reason.clone()),
                    duration: start.elapsed(),
                    output: None,
                };
                self.checks.iter().map(failed).collect()
            }
        };
        drop(permit);
        let now = Instant::now();
        let mut log = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, (check, o)) in self.checks.iter().zip(&mut outcomes).enumerate() {
            // Taken out here whether logged or not: script output never reaches the state.
            let output = o.output.take();
            if let Some(line) = log.note(i, check.name(), &o.status, output, now) {
                match o.status {
                    Status::Pass => info!("{line}"),
                    Status::Fail(_) => warn!("{line}"),
                }
            }
        }
        outcomes
    }
}

impl Runner {
    /// Runs the first check on this thread and hands each other one to a helper.
    fn run_all(&self, deadline: Option<Instant>) -> Vec<Outcome> {
        let n = self.checks.len();
        if n <= 1 {
            return self.checks.iter().map(|c| c.run(deadline)).collect();
        }
        let batch = Arc::new(Batch {
            outcomes: Mutex::new((vec![None; n], n - 1)),
            done: Condvar::new(),
        });
        for index in 1..n {
            let job = Job {
                checks: self.checks.clone(),
                index,
                deadline,
                batch: batch.clone(),
            };
            if let Err(job) = Helpers::submit(&self.helpers, job) {
                // Out of threads: run it here rather than not at all; still within its deadline.
                job.run();
            }
        }
        let first = run_one(&self.checks[0], deadline);
        let mut guard = batch.lock();
        guard.0[0] = Some(first);
        while guard.1 > 0 {
            guard = batch
                .done
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let outcomes = std::mem::take(&mut guard.0);
        let checks = self.checks.iter();
        outcomes
            .into_iter()
            .zip(checks)
            .map(|(o, c)| o.unwrap_or_else(|| panicked(c)))
            .collect()
    }
}

/// Decides which check results are worth a log line: a failure when it starts, when its
/// reason changes, and again at most every [`REPEAT_LOG_INTERVAL`] with how many were not
/// logged; the first pass after a failure. Everything else is a repeat.
struct FailureLog {
    checks: Vec<Logged>,
}

#[derive(Debug, Clone, Default)]
struct Logged {
    /// The reason last logged, while the check is failing.
    reason: Option<String>,
    /// When it was logged.
    at: Option<Instant>,
    /// Failures since then that were not logged.
    quiet: u64,
}

impl FailureLog {
    /// The line to log for check `i`'s result `status` at `now`, if any.
    fn note(
        &mut self,
        i: usize,
        name: &str,
        status: &Status,
        output: Option<String>,
        now: Instant,
    ) -> Option<String> {
        let entry = self.checks.get_mut(i)?;
        let output = output.map(|o| format!("; output: {o}")).unwrap_or_default();
        match status {
            Status::Pass => {
                let was = entry.reason.take()?;
                let quiet = std::mem::take(&mut entry.quiet);
                Some(format!(
                    "{name} passes again (it failed: {was}; {} failures not logged)",
                    quiet
                ))
            }
            Status::Fail(reason) => {
                let due = entry
                    .at
                    .is_none_or(|at| now.duration_since(at) >= REPEAT_LOG_INTERVAL);
                if entry.reason.as_deref() == Some(reason) && !due {
                    entry.quiet += 1;
                    return None;
                }
                let quiet = std::mem::take(&mut entry.quiet);
                let repeats = match (&entry.reason, quiet) {
                    (Some(old), n) if old == reason => format!(" (still; {n} more failures since)"),
                    _ => String::new(),
                };
                entry.reason = Some(reason.clone());
                entry.at = Some(now);
                Some(format!("{name} failed: {reason}{repeats}{output}"))
            }
        }
    }
}

/// Runs one check, turning a panic into a failed outcome.
fn run_one(c: &Check, deadline: Option<Instant>) -> Outcome {
    catch_unwind(AssertUnwindSafe(|| c.run(deadline))).unwrap_or_else(|_| panicked(c))
}

/// The outcomes of one run as helpers deliver them, and how many are still missing.
struct Batch {
    outcomes: Mutex<(Vec<Option<Outcome>>, usize)>,
    done: Condvar,
}

impl Batch {
    fn lock(&self) -> MutexGuard<'_, (Vec<Option<Outcome>>, usize)> {
        // Slots are written whole under the lock, so a poisoned one is still sound.
        self.outcomes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One check of one run, for a helper.
struct Job {
    checks: Arc<Vec<Check>>,
    index: usize,
    deadline: Option<Instant>,
    batch: Arc<Batch>,
}

impl Job {
    fn run(self) {
        let outcome = run_one(&self.checks[self.index], self.deadline);
        let mut guard = self.batch.lock();
        guard.0[self.index] = Some(outcome);
        guard.1 -= 1;
        if guard.1 == 0 {
            self.batch.done.notify_one();
        }
    }
}

/// The helper threads and their queue.
struct Helpers {
    state: Mutex<HelperState>,
    work: Condvar,
    /// Most helpers that can ever be busy at once.
    max: usize,
}

struct HelperState {
    queue: VecDeque<Job>,
    idle: usize,
    threads: usize,
}

impl Helpers {
    fn lock(&self) -> MutexGuard<'_, HelperState> {
        // Counters and a queue, each updated whole under the lock: sound after a poison.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job` for a helper, starting one when none is idle; gives the job back when
    /// no helper can be had.
    fn submit(this: &Arc<Helpers>, job: Job) -> Result<(), Job> {
        let mut st = this.lock();
        st.queue.push_back(job);
        if st.idle >= st.queue.len() {
            drop(st);
            this.work.notify_one();
            return Ok(());
        }
        if st.threads >= this.max {
            // Every helper is busy, but at most `max` jobs are ever unfinished, so one of
            // them has just finished its job and takes this one next.
            return Ok(());
        }
        let helpers = this.clone();
        let spawned = thread::Builder::new()
            .name("check".into())
            .stack_size(CHECK_STACK)
            .spawn(move || helpers.work_loop());
        match spawned {
            Ok(_) => {
                st.threads += 1;
                Ok(())
            }
            Err(e) => {
                error!("cannot start a helper thread: {e}; running the check in turn");
                // Still ours: the lock was held all along, so no helper could take it.
                match st.queue.pop_back() {
                    Some(job) => Err(job),
                    None => Ok(()),
                }
            }
        }
    }

    fn work_loop(&self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                job.run();
                st = self.lock();
                continue;
            }
            st.idle += 1;
            loop {
                if !st.queue.is_empty() {
                    st.idle -= 1;
                    break;
                }
                let (guard, timeout) = self
                    .work
                    .wait_timeout(st, HELPER_IDLE)
                    .unwrap_or_else(PoisonError::into_inner);
                st = guard;
                if timeout.timed_out() && st.queue.is_empty() {
                    st.idle -= 1;
                    st.threads -= 1;
                    return;
                }
            }
        }
    }
}

fn panicked(c: &Check) -> Outcome {
    error!("{} panicked; reporting it as failed", c.name());
    Outcome {
        status: Status::Fail("internal error: the check panicked".to_string()),
        duration: Duration::ZERO,
        output: None,
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
    fn failures_are_logged_when_they_start_change_or_a_minute_passed() {
        let mut log = FailureLog {
            checks: vec![Logged::default()],
        };
        let t0 = Instant::now();
        let fail = |r: &str| Status::Fail(r.into());
        let mut at = |secs: u64, status: Status, out: Option<&str>| {
            log.note(
                0,
                "tcp x",
                &status,
                out.map(str::to_string),
                t0 + Duration::from_secs(secs),
            )
        };
        assert_eq!(at(0, Status::Pass, None), None);
        assert_eq!(
            at(1, fail("refused"), Some("o")).as_deref(),
            Some("tcp x failed: refused; output: o")
        );
        assert_eq!(at(2, fail("refused"), None), None);
        assert_eq!(at(30, fail("refused"), None), None);
        assert_eq!(
            at(35, fail("timed out"), None).as_deref(),
            Some("tcp x failed: timed out")
        );
        assert_eq!(at(40, fail("timed out"), None), None);
        assert_eq!(
            at(96, fail("timed out"), None).as_deref(),
            Some("tcp x failed: timed out (still; 1 more failures since)")
        );
        assert_eq!(at(97, fail("timed out"), None), None);
        assert_eq!(
            at(98, Status::Pass, None).as_deref(),
            Some("tcp x passes again (it failed: timed out; 1 failures not logged)")
        );
        assert_eq!(at(99, Status::Pass, None), None);
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
        assert_eq!(outcomes[1].status, Status::Fail(DEADLINE.into()));
    }
}
