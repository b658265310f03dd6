//! Singleflight: callers that arrive while a run is in flight wait for it and share its result.
//!
//! Invariant: at most one leader runs at a time; every waiter returns the result of a run that
//! started after the waiter arrived or was in flight when it arrived, never an older one. A
//! leader that panics hands the lead to the next waiter instead of leaving them hanging.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// A singleflight gate for results of type `T`.
pub struct Gate<T> {
    state: Mutex<State<T>>,
    done: Condvar,
}

struct State<T> {
    running: bool,
    /// Counts finished runs; a waiter knows its run ended when this moves.
    generation: u64,
    /// The result of the run that ended last.
    last: Option<T>,
}

impl<T: Clone> Default for Gate<T> {
    fn default() -> Self {
        Gate {
            state: Mutex::new(State {
                running: false,
                generation: 0,
                last: None,
            }),
            done: Condvar::new(),
        }
    }
}

impl<T: Clone> Gate<T> {
    /// Runs `f`, unless a run is already in flight: then waits for it and returns its result.
    pub fn run(&self, f: impl FnOnce() -> T) -> T {
        let mut st = self.lock();
        while st.running {
            let seen = st.generation;
            while st.running && st.generation == seen {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            if st.generation != seen {
                if let Some(v) = &st.last {
                    return v.clone();
                }
            }
            // The leader panicked: take the lead if nobody else has.
        }
        st.running = true;
        drop(st);
        let lead = Lead { gate: self };
        let value = f();
        let mut st = self.lock();
        st.last = Some(value.clone());
        st.generation += 1;
        drop(st);
        drop(lead);
        value
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state is three plain fields written under the lock, so a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Ends the lead on every path out of `run`, panics included.
struct Lead<'a, T: Clone> {
    gate: &'a Gate<T>,
}

impl<T: Clone> Drop for Lead<'_, T> {
    fn drop(&mut self) {
        self.gate.lock().running = false;
        self.gate.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::Duration;

    #[test]
    fn concurrent_callers_share_one_run() {
        let gate = Arc::new(Gate::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..10)
            .map(|_| {
                let (gate, runs) = (gate.clone(), runs.clone());
                thread::spawn(move || {
                    gate.run(|| {
                        thread::sleep(Duration::from_millis(300));
                        runs.fetch_add(1, Ordering::SeqCst) + 1
                    })
                })
            })
            .collect();
        let results: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        // Threads start within microseconds of each other and a run takes 300 ms, so at most a
        // straggler or two can start a second run; never one per caller.
        let n = runs.load(Ordering::SeqCst);
        assert!(n <= 2, "{n} runs for 10 concurrent callers");
        assert!(results.iter().all(|&r| r >= 1 && r <= n));
    }

    #[test]
    fn a_caller_after_the_run_starts_a_new_one() {
        let gate = Gate::default();
        assert_eq!(gate.run(|| 1), 1);
        assert_eq!(gate.run(|| 2), 2);
    }

    #[test]
    fn a_panicking_leader_does_not_strand_waiters() {
        let gate = Arc::new(Gate::default());
        let g = gate.clone();
        let leader = thread::spawn(move || {
            g.run(|| -> u32 {
                thread::sleep(Duration::from_millis(200));
                panic!("check exploded")
            })
        });
        thread::sleep(Duration::from_millis(50));
        let waiter = {
            let g = gate.clone();
            thread::spawn(move || g.run(|| 7))
        };
        assert!(leader.join().is_err());
        assert_eq!(waiter.join().unwrap(), 7);
        assert_eq!(gate.run(|| 8), 8);
    }
}
