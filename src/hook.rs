//! The state-change hook: `--on-change "PROGRAM ARGS..."` runs when the host's state changes.
//!
//! Invariants: at most one hook process at a time, on a thread of its own, so no request and
//! no run ever waits for it; changes are delivered in the order they happened, and each
//! hook's previous state is the state the hook before it reported, so none is lost. While a
//! slow hook runs, at most [`MAX_QUEUED`] changes wait; past that the newest two merge into
//! one (from the older's previous state to the newer's state), keeping that chain intact.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};

use crate::check::Budget;
use crate::check::script::run_program;
use crate::cli::Script;
use crate::state::Change;
use crate::time;

/// Changes that may wait for a slow hook: far more than a sane hook ever lags behind.
const MAX_QUEUED: usize = 64;
/// Stack of the hook thread: it spawns one process at a time.
const HOOK_STACK: usize = 128 * 1024;

/// One change to report, with when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The change.
    pub change: Change,
    /// When it happened.
    pub at: SystemTime,
}

/// The hook's program and its queue of changes.
pub struct Hook {
    script: Script,
    timeout: Duration,
    queue: Mutex<VecDeque<Event>>,
    ready: Condvar,
}

impl Hook {
    /// Starts the hook thread; the hook lives as long as the process.
    pub fn start(script: Script, timeout: Duration) -> std::io::Result<&'static Hook> {
        let hook: &'static Hook = Box::leak(Box::new(Hook {
            script,
            timeout,
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        }));
        thread::Builder::new()
            .name("on-change".into())
            .stack_size(HOOK_STACK)
            .spawn(move || hook.work())?;
        Ok(hook)
    }

    /// Queues a change for the hook; never blocks on the hook itself.
    pub fn notify(&self, change: Change) {
        let event = Event {
            change,
            at: SystemTime::now(),
        };
        enqueue(
            &mut self.queue.lock().unwrap_or_else(PoisonError::into_inner),
            event,
        );
        self.ready.notify_one();
    }

    fn work(&self) {
        loop {
            let event = {
                let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    if let Some(e) = q.pop_front() {
                        break e;
                    }
                    q = self.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
            };
            self.run(&event);
        }
    }

    fn run(&self, event: &Event) {
        let c = &event.change;
        let env = [
            ("HEALTH_CHECKER_STATE", c.current.as_str().to_string()),
            (
                "HEALTH_CHECKER_PREVIOUS_STATE",
                c.previous.as_str().to_string(),
            ),
            ("HEALTH_CHECKER_REASONS", c.reasons.join("\n")),
            ("HEALTH_CHECKER_TIME", time::rfc3339(event.at)),
        ];
        let budget = Budget::new(Instant::now(), self.timeout, None);
        let done = run_program(&self.script, &env, budget);
        let output = format!(
            "stdout {:?} stderr {:?}",
            done.stdout.text(),
            done.stderr.text()
        );
        match done.result {
            Ok(()) => info!(
                "on-change {} ran for {} -> {}: {output}",
                self.script.program,
                c.previous.as_str(),
                c.current.as_str()
            ),
            Err(reason) => warn!(
                "on-change {} failed: {reason}; {output}",
                self.script.program
            ),
        }
    }
}

/// Appends `event`, merging the newest two when the queue is full (see the module doc).
fn enqueue(q: &mut VecDeque<Event>, event: Event) {
    if q.len() < MAX_QUEUED {
        q.push_back(event);
        return;
    }
    let Some(last) = q.back_mut() else { return };
    last.change.current = event.change.current;
    last.change.reasons = event.change.reasons;
    last.at = event.at;
    if last.change.current == last.change.previous {
        q.pop_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Health::{self, *};

    fn ev(previous: Health, current: Health) -> Event {
        Event {
            change: Change {
                previous,
                current,
                reasons: Vec::new(),
            },
            at: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn changes_queue_in_order() {
        let mut q = VecDeque::new();
        enqueue(&mut q, ev(Starting, Healthy));
        enqueue(&mut q, ev(Healthy, Unhealthy));
        let states: Vec<_> = q
            .iter()
            .map(|e| (e.change.previous, e.change.current))
            .collect();
        assert_eq!(states, [(Starting, Healthy), (Healthy, Unhealthy)]);
    }

    #[test]
    fn a_full_queue_merges_the_newest_and_keeps_the_chain() {
        let mut q = VecDeque::new();
        enqueue(&mut q, ev(Starting, Unhealthy));
        let mut h = Unhealthy;
        while q.len() < MAX_QUEUED {
            let next = if h == Healthy { Unhealthy } else { Healthy };
            enqueue(&mut q, ev(h, next));
            h = next;
        }
        // Full; the last queued ends in `h`. One more change merges with it.
        let next = if h == Healthy { Unhealthy } else { Healthy };
        let before = q.back().unwrap().change.previous;
        enqueue(&mut q, ev(h, next));
        assert!(
            q.len() < MAX_QUEUED,
            "a flip back to the same state cancels out"
        );
        assert_eq!(q.back().unwrap().change.current, before);
        for pair in q.iter().collect::<Vec<_>>().windows(2) {
            assert_eq!(
                pair[0].change.current, pair[1].change.previous,
                "chain broken"
            );
        }
    }
}
