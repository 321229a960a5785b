//! Requests sent on one channel and not yet answered, matched by request
//! id.
//!
//! A channel numbers its requests 1, 2, 3... (wrapping), so the requests in
//! flight are a window of consecutive ids: a ring whose front is the oldest
//! request still unanswered. Answering marks a slot; the front advances
//! over answered slots and over requests older than the timeout. Every
//! operation is O(1) amortized and allocates only when the window grows
//! past what it has held before (performance-critical path).

use std::collections::VecDeque;

/// What the driver remembers about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// When the request was meant to go out (open loop) or went out (closed
    /// loop), in nanoseconds of the run's clock.
    pub at: u64,
    /// Counted in the results (sent after the warmup).
    pub measured: bool,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    sent: Sent,
    answered: bool,
}

#[derive(Debug)]
pub struct InFlight {
    /// Request id of `ring[0]`.
    front: u32,
    /// Request id the next [`push`](Self::push) gets.
    next: u32,
    ring: VecDeque<Slot>,
    /// Requests pushed and neither answered nor expired.
    outstanding: usize,
}

impl Default for InFlight {
    fn default() -> Self {
        Self::new()
    }
}

impl InFlight {
    pub fn new() -> Self {
        Self {
            front: 1,
            next: 1,
            ring: VecDeque::with_capacity(1024),
            outstanding: 0,
        }
    }

    /// Records a request and returns the request id to send it with.
    pub fn push(&mut self, sent: Sent) -> u32 {
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        self.ring.push_back(Slot {
            sent,
            answered: false,
        });
        self.outstanding += 1;
        id
    }

    /// The request answered by a response with `id`, once: `None` for an
    /// id never sent, already answered, or already expired (a late answer).
    pub fn answer(&mut self, id: u32) -> Option<Sent> {
        let at = id.wrapping_sub(self.front) as usize;
        let slot = self.ring.get_mut(at)?;
        if slot.answered {
            return None;
        }
        slot.answered = true;
        let sent = slot.sent;
        self.outstanding -= 1;
        self.advance();
        Some(sent)
    }

    fn advance(&mut self) {
        while self.ring.front().is_some_and(|s| s.answered) {
            self.ring.pop_front();
            self.front = self.front.wrapping_add(1);
        }
    }

    /// Drops the unanswered requests sent before `deadline` and calls
    /// `expired` with each. Requests are sent in id order, so only the
    /// front needs looking at.
    pub fn expire(&mut self, deadline: u64, mut expired: impl FnMut(Sent)) {
        while let Some(slot) = self.ring.front() {
            if !slot.answered && slot.sent.at >= deadline {
                break;
            }
            if !slot.answered {
                self.outstanding -= 1;
                expired(slot.sent);
            }
            self.ring.pop_front();
            self.front = self.front.wrapping_add(1);
        }
    }

    /// Drops every unanswered request (the channel closed, or the run is
    /// over) and calls `lost` with each.
    pub fn clear(&mut self, lost: impl FnMut(Sent)) {
        self.expire(u64::MAX, lost);
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    pub fn is_empty(&self) -> bool {
        self.outstanding == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn sent(at: u64) -> Sent {
        Sent { at, measured: true }
    }

    #[test]
    fn answers_in_any_order_once() {
        let mut f = InFlight::new();
        let ids: Vec<u32> = (0..5).map(|i| f.push(sent(i))).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        assert_eq!(f.answer(3), Some(sent(2)));
        assert_eq!(f.answer(3), None);
        assert_eq!(f.answer(1), Some(sent(0)));
        assert_eq!(f.answer(99), None);
        assert_eq!(f.outstanding(), 3);
        let mut lost = Vec::new();
        f.expire(4, |s| lost.push(s.at));
        assert_eq!(lost, [1, 3]);
        assert_eq!(f.answer(2), None, "late answer");
        assert_eq!(f.answer(5), Some(sent(4)));
        assert!(f.is_empty());
    }

    #[test]
    fn ids_wrap_around() {
        let mut f = InFlight::new();
        f.front = u32::MAX - 1;
        f.next = u32::MAX - 1;
        let a = f.push(sent(0));
        let b = f.push(sent(1));
        let c = f.push(sent(2));
        assert_eq!((a, b, c), (u32::MAX - 1, u32::MAX, 0));
        assert_eq!(f.answer(0), Some(sent(2)));
        assert_eq!(f.answer(u32::MAX - 1), Some(sent(0)));
        assert_eq!(f.answer(u32::MAX), Some(sent(1)));
        assert!(f.is_empty());
        let mut n = 0;
        f.push(sent(3));
        f.clear(|_| n += 1);
        assert_eq!(n, 1);
        assert!(f.is_empty());
    }
}
