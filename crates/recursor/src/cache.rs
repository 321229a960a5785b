//! The recursor's cache: whole answers by identifier, and the sites of
//! delegated prefixes (from referrals) by prefix, both with an expiry
//! instant and bounded together by one entry count.

use crate::Answer;
use idnode_handle::SiteInfo;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

/// Answers and referrals, each with the instant it expires.
#[derive(Debug)]
pub(crate) struct Cache {
    /// Keyed by the normalized identifier (ASCII upper-case).
    answers: HashMap<String, (Answer, Instant)>,
    /// Keyed by the normalized prefix (`88.100`).
    referrals: HashMap<String, (Arc<Vec<SiteInfo>>, Instant)>,
    max_entries: usize,
}

impl Cache {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            answers: HashMap::new(),
            referrals: HashMap::new(),
            max_entries,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.answers.len() + self.referrals.len()
    }

    /// The cached answer for `key`, unless it expired (then it is dropped).
    pub(crate) fn answer(&mut self, key: &str, now: Instant) -> Option<Answer> {
        match self.answers.get(key) {
            Some((answer, expires)) if *expires > now => Some(answer.clone()),
            Some(_) => {
                self.answers.remove(key);
                None
            }
            None => None,
        }
    }

    /// The cached sites of prefix `key`, unless they expired.
    pub(crate) fn referral(&mut self, key: &str, now: Instant) -> Option<Arc<Vec<SiteInfo>>> {
        match self.referrals.get(key) {
            Some((sites, expires)) if *expires > now => Some(sites.clone()),
            Some(_) => {
                self.referrals.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn put_answer(
        &mut self,
        key: String,
        answer: Answer,
        expires: Instant,
        now: Instant,
    ) {
        if expires <= now || !self.make_room(now) {
            return;
        }
        self.answers.insert(key, (answer, expires));
    }

    pub(crate) fn put_referral(
        &mut self,
        key: String,
        sites: Arc<Vec<SiteInfo>>,
        expires: Instant,
        now: Instant,
    ) {
        if expires <= now || !self.make_room(now) {
            return;
        }
        self.referrals.insert(key, (sites, expires));
    }

    /// Makes room for one more entry: drops what expired, then, if still
    /// full, every answer (referrals are fewer and save whole walks), then
    /// every referral. False when nothing may be cached (`max_entries` 0).
    fn make_room(&mut self, now: Instant) -> bool {
        if self.max_entries == 0 {
            return false;
        }
        if self.len() < self.max_entries {
            return true;
        }
        self.answers.retain(|_, (_, expires)| *expires > now);
        self.referrals.retain(|_, (_, expires)| *expires > now);
        if self.len() >= self.max_entries {
            self.answers.clear();
        }
        if self.len() >= self.max_entries {
            self.referrals.clear();
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::time::Duration;

    fn found(n: u32) -> Answer {
        Answer::Failed {
            code: n,
            message: String::new(),
        }
    }

    #[test]
    fn entries_expire() {
        let now = Instant::now();
        let mut c = Cache::new(10);
        c.put_answer("A".into(), found(1), now + Duration::from_secs(5), now);
        c.put_answer("B".into(), found(2), now, now); // already expired: not kept
        assert_eq!(c.len(), 1);
        assert_eq!(c.answer("A", now), Some(found(1)));
        assert_eq!(c.answer("A", now + Duration::from_secs(5)), None);
        assert_eq!(c.len(), 0, "an expired entry is dropped when seen");
        c.put_referral(
            "88".into(),
            Arc::new(Vec::new()),
            now + Duration::from_secs(1),
            now,
        );
        assert!(c.referral("88", now).is_some());
        assert!(c.referral("88", now + Duration::from_secs(2)).is_none());
    }

    #[test]
    fn stays_within_max_entries() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut c = Cache::new(3);
        c.put_referral("88".into(), Arc::new(Vec::new()), later, now);
        c.put_answer("SOON".into(), found(1), now + Duration::from_secs(1), now);
        c.put_answer("X".into(), found(2), later, now);
        assert_eq!(c.len(), 3);
        // Full: the expired answer goes first.
        let t = now + Duration::from_secs(2);
        c.put_answer("Y".into(), found(3), later, t);
        assert_eq!(c.len(), 3);
        assert_eq!(c.answer("X", t), Some(found(2)));
        // Full and nothing expired: answers are dropped, the referral stays.
        c.put_answer("Z".into(), found(4), later, t);
        assert_eq!(c.len(), 2);
        assert!(c.referral("88", t).is_some());
        assert_eq!(c.answer("Z", t), Some(found(4)));
        assert_eq!(c.answer("X", t), None);
        for i in 0..100 {
            c.put_referral(format!("P{i}"), Arc::new(Vec::new()), later, t);
            assert!(c.len() <= 3);
        }
        let mut none = Cache::new(0);
        none.put_answer("A".into(), found(1), later, now);
        assert_eq!(none.len(), 0);
    }
}
