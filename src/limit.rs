//! A counting semaphore with a bounded wait: how many runs, or script processes, at once.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

/// At most `size` holders at a time.
#[derive(Debug)]
pub struct Semaphore {
    size: usize,
    free: Mutex<usize>,
    freed: Condvar,
}

/// Holds one unit of a [`Semaphore`] until dropped.
pub struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    /// A semaphore of `size` units.
    pub fn new(size: usize) -> Self {
        Semaphore {
            size,
            free: Mutex::new(size),
            freed: Condvar::new(),
        }
    }

    /// How many units it has.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Takes a unit, waiting until `deadline` at most.
    pub fn acquire(&self, deadline: Instant) -> Option<Permit<'_>> {
        // A plain counter, written under the lock: a poisoned lock still holds a sound count.
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::Duration;

    #[test]
    fn bounds_and_times_out() {
        let s = Semaphore::new(1);
        let held = s.acquire(Instant::now()).unwrap();
        assert!(
            s.acquire(Instant::now() + Duration::from_millis(50))
                .is_none()
        );
        drop(held);
        assert!(s.acquire(Instant::now()).is_some());
    }

    #[test]
    fn never_more_holders_than_units_under_real_threads() {
        let s = Arc::new(Semaphore::new(3));
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let (s, now, max) = (s.clone(), now.clone(), max.clone());
                thread::spawn(move || {
                    let _p = s.acquire(Instant::now() + Duration::from_secs(30)).unwrap();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(10));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(max.load(Ordering::SeqCst) <= 3);
    }
}
