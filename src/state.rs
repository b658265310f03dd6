//! The health state machine: runs in, per-check and host states out. Pure: no clock reads,
//! no I/O, so every transition is tested with plain values.
//!
//! Each check starts `starting`; its first result decides its first state. After that a
//! healthy check turns unhealthy only after `unhealthy` consecutive failures, and an unhealthy
//! one healthy only after `healthy` consecutive passes. The host is starting while any check
//! is, unhealthy while any check is, and healthy otherwise.

use crate::check::{Outcome, Status};

/// The state of one check or of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No result yet.
    Starting,
    /// Passing, as far as the thresholds are concerned.
    Healthy,
    /// Failing, as far as the thresholds are concerned.
    Unhealthy,
}

impl Health {
    /// Lower-case name, as reports, metrics and hooks show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// Consecutive results needed to change a check's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Passes that make an unhealthy check healthy.
    pub healthy: u32,
    /// Failures that make a healthy check unhealthy.
    pub unhealthy: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            healthy: 1,
            unhealthy: 1,
        }
    }
}

/// One check's state and history.
#[derive(Debug, Clone)]
pub struct CheckState {
    /// The check's display name.
    pub name: String,
    /// Its state.
    pub health: Health,
    /// Consecutive passes up to the last result (0 after a failure).
    pub passes_in_row: u32,
    /// Consecutive failures up to the last result (0 after a pass).
    pub failures_in_row: u32,
    /// The last result, if any.
    pub last: Option<Outcome>,
    /// All passes since start.
    pub passes: u64,
    /// All failures since start.
    pub failures: u64,
}

impl CheckState {
    fn record(&mut self, outcome: Outcome, t: Thresholds) {
        let passed = outcome.status == Status::Pass;
        if passed {
            self.passes_in_row = self.passes_in_row.saturating_add(1);
            self.failures_in_row = 0;
            self.passes += 1;
        } else {
            self.failures_in_row = self.failures_in_row.saturating_add(1);
            self.passes_in_row = 0;
            self.failures += 1;
        }
        self.health = match (self.health, passed) {
            (Health::Starting, true) => Health::Healthy,
            (Health::Starting, false) => Health::Unhealthy,
            (Health::Unhealthy, true) if self.passes_in_row >= t.healthy => Health::Healthy,
            (Health::Healthy, false) if self.failures_in_row >= t.unhealthy => Health::Unhealthy,
            (h, _) => h,
        };
        self.last = Some(outcome);
    }

    /// Why this check keeps the host from being healthy, if it does: `NAME: REASON`.
    pub fn reason(&self) -> Option<String> {
        match (self.health, &self.last) {
            (Health::Healthy, _) => None,
            (Health::Starting, _) => Some(format!("{}: starting", self.name)),
            (
                Health::Unhealthy,
                Some(Outcome {
                    status: Status::Fail(r),
                    ..
                }),
            ) => Some(format!("{}: {r}", self.name)),
            (Health::Unhealthy, _) => Some(format!(
                "{}: recovering ({} consecutive passes so far)",
                self.name, self.passes_in_row
            )),
        }
    }
}

/// A change of the host's state, for the state-change hook and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The state before.
    pub previous: Health,
    /// The state now.
    pub current: Health,
    /// The reasons the host is not healthy (empty when it is).
    pub reasons: Vec<String>,
}

/// Every check's state, in configuration order.
#[derive(Debug, Clone)]
pub struct State {
    /// One entry per check.
    pub checks: Vec<CheckState>,
    thresholds: Thresholds,
    /// Runs recorded so far.
    pub runs: u64,
}

impl State {
    /// All checks starting.
    pub fn new(names: impl IntoIterator<Item = String>, thresholds: Thresholds) -> Self {
        State {
            checks: names
                .into_iter()
                .map(|name| CheckState {
                    name,
                    health: Health::Starting,
                    passes_in_row: 0,
                    failures_in_row: 0,
                    last: None,
                    passes: 0,
                    failures: 0,
                })
                .collect(),
            thresholds,
            runs: 0,
        }
    }

    /// The host's state.
    pub fn host(&self) -> Health {
        let any = |h| self.checks.iter().any(|c| c.health == h);
        if any(Health::Starting) {
            Health::Starting
        } else if any(Health::Unhealthy) {
            Health::Unhealthy
        } else {
            Health::Healthy
        }
    }

    /// The reasons the host is not healthy, one per check that holds it back.
    pub fn reasons(&self) -> Vec<String> {
        self.checks.iter().filter_map(CheckState::reason).collect()
    }

    /// Records one run (outcomes in check order); returns the host's change, if any.
    pub fn record(&mut self, outcomes: impl IntoIterator<Item = Outcome>) -> Option<Change> {
        let previous = self.host();
        for (check, outcome) in self.checks.iter_mut().zip(outcomes) {
            check.record(outcome, self.thresholds);
        }
        self.runs += 1;
        let current = self.host();
        (current != previous).then(|| Change {
            previous,
            current,
            reasons: self.reasons(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Health::*;
    use std::time::Duration;

    fn pass() -> Outcome {
        Outcome {
            status: Status::Pass,
            duration: Duration::ZERO,
            output: None,
        }
    }

    fn fail(r: &str) -> Outcome {
        Outcome {
            status: Status::Fail(r.into()),
            duration: Duration::ZERO,
            output: None,
        }
    }

    /// Feeds one check's results; returns its state after each and the host changes.
    fn feed(t: Thresholds, results: &[bool]) -> (Vec<Health>, Vec<(Health, Health)>) {
        let mut s = State::new(["tcp x".to_string()], t);
        let mut states = Vec::new();
        let mut changes = Vec::new();
        for &ok in results {
            if let Some(c) = s.record([if ok { pass() } else { fail("down") }]) {
                changes.push((c.previous, c.current));
            }
            states.push(s.host());
        }
        (states, changes)
    }

    #[test]
    fn first_result_decides_the_first_state() {
        assert_eq!(feed(Thresholds::default(), &[true]).0, [Healthy]);
        assert_eq!(feed(Thresholds::default(), &[false]).0, [Unhealthy]);
    }

    #[test]
    fn default_thresholds_follow_every_result() {
        let (states, changes) = feed(Thresholds::default(), &[true, false, true, true]);
        assert_eq!(states, [Healthy, Unhealthy, Healthy, Healthy]);
        assert_eq!(
            changes,
            [
                (Starting, Healthy),
                (Healthy, Unhealthy),
                (Unhealthy, Healthy)
            ]
        );
    }

    #[test]
    fn unhealthy_threshold_needs_consecutive_failures() {
        let t = Thresholds {
            healthy: 1,
            unhealthy: 3,
        };
        let (states, _) = feed(t, &[true, false, false, true, false, false, false]);
        assert_eq!(
            states,
            [
                Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Unhealthy
            ]
        );
    }

    #[test]
    fn healthy_threshold_needs_consecutive_passes() {
        let t = Thresholds {
            healthy: 2,
            unhealthy: 1,
        };
        let (states, changes) = feed(t, &[false, true, false, true, true]);
        assert_eq!(
            states,
            [Unhealthy, Unhealthy, Unhealthy, Unhealthy, Healthy]
        );
        assert_eq!(changes, [(Starting, Unhealthy), (Unhealthy, Healthy)]);
    }

    #[test]
    fn host_is_starting_until_every_check_has_a_result_and_unhealthy_if_any_is() {
        let mut s = State::new(["a".to_string(), "b".to_string()], Thresholds::default());
        assert_eq!(s.host(), Starting);
        assert_eq!(s.reasons(), ["a: starting", "b: starting"]);
        let c = s.record([pass(), fail("connection refused")]).unwrap();
        assert_eq!((c.previous, c.current), (Starting, Unhealthy));
        assert_eq!(c.reasons, ["b: connection refused"]);
        assert_eq!(s.record([pass(), fail("connection refused")]), None);
        assert_eq!(s.checks[1].failures_in_row, 2);
        assert_eq!((s.checks[0].passes, s.checks[1].failures), (2, 2));
    }

    #[test]
    fn a_recovering_check_says_so() {
        let mut s = State::new(
            ["a".to_string()],
            Thresholds {
                healthy: 3,
                unhealthy: 1,
            },
        );
        s.record([fail("x")]);
        s.record([pass()]);
        assert_eq!(s.reasons(), ["a: recovering (1 consecutive passes so far)"]);
    }
}
