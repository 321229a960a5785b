//! Requests in flight on one UDP socket or TCP connection, matched to their
//! answers by request id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// The map from request id to the task waiting for the answer.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    state: Mutex<State>,
}

/// An answer, or why none will come (an ICMP error on UDP, say).
pub(crate) type Answer = Result<Vec<u8>, std::io::ErrorKind>;

#[derive(Debug, Default)]
struct State {
    waiting: HashMap<u32, oneshot::Sender<Answer>>,
    /// The connection is gone: no new registrations.
    closed: bool,
}

/// The channel can take no more requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

impl Pending {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves the map consistent (every
        // operation is a single insert or remove), so a poisoned lock is
        // still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a request under the first id from `ids` not in flight.
    pub(crate) fn register(
        self: &Arc<Self>,
        mut ids: impl FnMut() -> u32,
    ) -> Result<Waiter, Closed> {
        let mut state = self.state();
        if state.closed {
            return Err(Closed);
        }
        let mut id = ids();
        while state.waiting.contains_key(&id) {
            id = ids();
        }
        let (tx, rx) = oneshot::channel();
        state.waiting.insert(id, tx);
        Ok(Waiter {
            id,
            answer: rx,
            pending: self.clone(),
        })
    }

    /// Hands `message` to the request `id`; false when none waits for it
    /// (a late or duplicate answer).
    pub(crate) fn complete(&self, id: u32, message: Vec<u8>) -> bool {
        match self.state().waiting.remove(&id) {
            Some(tx) => tx.send(Ok(message)).is_ok(),
            None => false,
        }
    }

    pub(crate) fn is_waiting(&self, id: u32) -> bool {
        self.state().waiting.contains_key(&id)
    }

    /// Fails every request in flight with `kind`; new ones may come.
    pub(crate) fn fail_all(&self, kind: std::io::ErrorKind) {
        for (_, tx) in self.state().waiting.drain() {
            let _ = tx.send(Err(kind));
        }
    }

    /// Fails every request in flight and refuses new ones.
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.waiting.clear();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state().closed
    }
}

/// One registered request. Dropping it (answered, timed out or cancelled)
/// forgets the id.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) id: u32,
    pub(crate) answer: oneshot::Receiver<Answer>,
    pending: Arc<Pending>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.pending.state().waiting.remove(&self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_reach_their_request_and_ids_are_unique() {
        let pending = Arc::new(Pending::default());
        let mut next = 0;
        let mut ids = || {
            next = (next + 1) % 2;
            next
        };
        let a = pending.register(&mut ids).unwrap();
        let mut b = pending.register(&mut ids).unwrap();
        assert_ne!(a.id, b.id);
        assert!(pending.complete(b.id, b"b".to_vec()));
        assert!(!pending.complete(b.id, b"again".to_vec()));
        assert_eq!((&mut b.answer).await.unwrap(), Ok(b"b".to_vec()));
        let id = a.id;
        drop(a);
        assert!(!pending.is_waiting(id));
        let mut c = pending.register(&mut ids).unwrap();
        pending.fail_all(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            (&mut c.answer).await.unwrap(),
            Err(std::io::ErrorKind::ConnectionRefused)
        );
        let mut c = pending.register(&mut ids).unwrap();
        pending.close();
        assert!((&mut c.answer).await.is_err());
        assert_eq!(pending.register(&mut ids).unwrap_err(), Closed);
    }
}
