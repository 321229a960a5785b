//! The counters of a listener's worker threads: each worker gets its own
//! (so counting is a relaxed store or add no other thread contends for),
//! and a scrape walks them all. The server's UDP workers and the web's
//! workers keep their counts this way.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Every worker's `T`, in the order they were added.
#[derive(Debug)]
pub struct Workers<T> {
    all: Mutex<Vec<Arc<T>>>,
}

impl<T> Default for Workers<T> {
    fn default() -> Self {
        Self {
            all: Mutex::new(Vec::new()),
        }
    }
}

impl<T: Default> Workers<T> {
    /// A new worker's counters, from now on in what [`each`](Self::each)
    /// walks.
    pub fn add(&self) -> Arc<T> {
        let counts = Arc::new(T::default());
        self.lock().push(counts.clone());
        counts
    }
}

impl<T> Workers<T> {
    /// Calls `f` with each worker's counters (a scrape: the lock is held
    /// only against a worker being added meanwhile).
    pub fn each(&self, mut f: impl FnMut(&T)) {
        for w in self.lock().iter() {
            f(w);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<T>>> {
        // A poisoned lock only means a panic elsewhere; the list is whole.
        self.all.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn a_scrape_sees_every_worker() {
        let workers: Workers<AtomicU64> = Workers::default();
        let a = workers.add();
        let b = workers.add();
        a.fetch_add(2, Ordering::Relaxed);
        b.fetch_add(3, Ordering::Relaxed);
        let mut sum = 0;
        workers.each(|w| sum += w.load(Ordering::Relaxed));
        assert_eq!(sum, 5);
    }
}
