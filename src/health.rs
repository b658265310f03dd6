//! The host's health over time: when runs happen (on demand, cached, or on an interval, after
//! a grace period), recording them into the state, and telling the log and the hook of changes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use log::{error, info};

use crate::gate::Gate;
use crate::hook::Hook;
use crate::run::Runner;
use crate::state::{Change, State, Thresholds};

/// Stack of the interval thread: it runs checks like a connection thread does.
const INTERVAL_STACK: usize = 256 * 1024;

/// When runs happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each request runs the checks; with a TTL, a recent run answers instead.
    OnDemand {
        /// How long after a run ends requests are answered from it.
        cache_ttl: Option<Duration>,
    },
    /// A background thread runs the checks every period; requests only read the state.
    Interval(Duration),
}

/// Runs, state and modes together.
pub struct Monitor {
    runner: Runner,
    /// Shares one run among concurrent requests (`--singleflight`, or implied by a cache TTL).
    gate: Option<Gate<()>>,
    tracked: Mutex<Tracked>,
    mode: Mode,
    /// No run starts before this instant (`--grace-period`).
    first_run_at: Instant,
    hook: Option<&'static Hook>,
    /// Set on SIGTERM: answer failure without running checks (`--shutdown-delay`).
    stopping: AtomicBool,
}

struct Tracked {
    state: State,
    last_run_end: Option<Instant>,
}

impl Monitor {
    /// A monitor of `runner`'s checks; no run starts before `first_run_at`.
    pub fn new(
        runner: Runner,
        thresholds: Thresholds,
        mode: Mode,
        singleflight: bool,
        first_run_at: Instant,
        hook: Option<&'static Hook>,
    ) -> Self {
        let names = runner.checks().iter().map(|c| c.name().to_string());
        let cached = matches!(mode, Mode::OnDemand { cache_ttl: Some(_) });
        Monitor {
            tracked: Mutex::new(Tracked {
                state: State::new(names, thresholds),
                last_run_end: None,
            }),
            runner,
            gate: (singleflight || cached).then(Gate::default),
            mode,
            first_run_at,
            hook,
            stopping: AtomicBool::new(false),
        }
    }

    /// From now on, answer failure: the host is going away.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether the host is going away.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Calls `f` with the current state, locked for the call.
    pub fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.tracked().state)
    }

    fn tracked(&self) -> MutexGuard<'_, Tracked> {
        // Runs are recorded whole under the lock, so a poisoned one still holds a sound state.
        self.tracked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a request does before answering: run the checks when the mode says so.
    pub fn refresh(&self) {
        let now = Instant::now();
        if now < self.first_run_at {
            return;
        }
        match self.mode {
            Mode::Interval(_) => {}
            Mode::OnDemand { cache_ttl } => {
                // Without a TTL nothing is ever fresh, and the lock is not worth taking.
                let fresh = |t: &Tracked| match (cache_ttl, t.last_run_end) {
                    (Some(ttl), Some(end)) => end.elapsed() < ttl,
                    _ => false,
                };
                if cache_ttl.is_some() && fresh(&self.tracked()) {
                    return;
                }
                match &self.gate {
                    // Checked again inside: a request that waited for the gate may find the
                    // run it wanted has just finished.
                    Some(gate) => gate.run(|| {
                        if cache_ttl.is_none() || !fresh(&self.tracked()) {
                            self.run_once();
                        }
                    }),
                    None => self.run_once(),
                }
            }
        }
    }

    /// Runs every check once and records the result.
    pub fn run_once(&self) {
        let outcomes = self.runner.run();
        let change = {
            let mut t = self.tracked();
            t.last_run_end = Some(Instant::now());
            t.state.record(outcomes)
        };
        if let Some(change) = change {
            log_change(&change);
            if let Some(hook) = self.hook {
                hook.notify(change);
            }
        }
    }

    /// In interval mode, starts the thread that runs the checks every period.
    pub fn start_interval(&'static self) -> std::io::Result<()> {
        let Mode::Interval(period) = self.mode else {
            return Ok(());
        };
        thread::Builder::new()
            .name("interval".into())
            .stack_size(INTERVAL_STACK)
            .spawn(move || {
                let mut next = self.first_run_at;
                loop {
                    let now = Instant::now();
                    if next > now {
                        thread::sleep(next - now);
                    }
                    let start = Instant::now();
                    self.run_once();
                    // Start to start; a run longer than the period delays the next one.
                    next = (start + period).max(Instant::now());
                }
            })
            .map(|_| ())
            .inspect_err(|e| error!("cannot start the interval thread: {e}"))
    }
}

fn log_change(c: &Change) {
    if c.reasons.is_empty() {
        info!(
            "host is {} (was {})",
            c.current.as_str(),
            c.previous.as_str()
        );
    } else {
        info!(
            "host is {} (was {}): {}",
            c.current.as_str(),
            c.previous.as_str(),
            c.reasons.join("; ")
        );
    }
}
