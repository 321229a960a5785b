//! The recursor's cache: whole answers by identifier, and the sites that
//! home a prefix (from successful prefix lookups) by prefix, both with an
//! expiry instant and bounded together by one entry count.
//!
//! Certified entries (from walks whose every answer was verified) are kept
//! apart from uncertified ones (docs/hierarchy.md, "Certified answers and the node's key"): an
//! uncertified question may use a certified entry, a certified question
//! never uses an uncertified one.

use crate::Answer;
use idnode_handle::SiteInfo;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;

/// One kind of entry, uncertified (index 0) and certified (index 1).
type Split<T> = [HashMap<String, (T, Instant)>; 2];

/// Answers and prefix sites, each with the instant it expires.
#[derive(Debug)]
pub(crate) struct Cache {
    /// Keyed by the normalized identifier (ASCII upper-case).
    answers: Split<Answer>,
    /// The sites homing a prefix, keyed by the normalized prefix (`88.100`).
    sites: Split<Arc<Vec<SiteInfo>>>,
    max_entries: usize,
}

/// The maps a question in this mode may read, in order: its own, then (for
/// an uncertified question) the certified one.
fn readable(certified: bool) -> &'static [usize] {
    if certified { &[1] } else { &[0, 1] }
}

/// The fresh entry for `key` in the maps `certified` may read; expired
/// entries met on the way are dropped.
fn get<T: Clone>(maps: &mut Split<T>, key: &str, certified: bool, now: Instant) -> Option<T> {
    for &i in readable(certified) {
        match maps[i].get(key) {
            Some((value, expires)) if *expires > now => return Some(value.clone()),
            Some(_) => {
                maps[i].remove(key);
            }
            None => {}
        }
    }
    None
}

impl Cache {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            answers: Default::default(),
            sites: Default::default(),
            max_entries,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.answers.iter().map(HashMap::len).sum::<usize>()
            + self.sites.iter().map(HashMap::len).sum::<usize>()
    }

    /// The cached answer for `key` that a question in this mode may use,
    /// unless it expired (then it is dropped).
    pub(crate) fn answer(&mut self, key: &str, certified: bool, now: Instant) -> Option<Answer> {
        get(&mut self.answers, key, certified, now)
    }

    /// The cached sites homing prefix `key` that a walk in this mode may
    /// use, unless they expired.
    pub(crate) fn sites(
        &mut self,
        key: &str,
        certified: bool,
        now: Instant,
    ) -> Option<Arc<Vec<SiteInfo>>> {
        get(&mut self.sites, key, certified, now)
    }

    /// Forgets the sites of prefix `key`, certified or not (they answered
    /// that they do not home it; forgetting only costs a lookup).
    pub(crate) fn remove_sites(&mut self, key: &str) {
        for map in &mut self.sites {
            map.remove(key);
        }
    }

    pub(crate) fn put_answer(
        &mut self,
        key: String,
        certified: bool,
        answer: Answer,
        expires: Instant,
        now: Instant,
    ) {
        if expires <= now || !self.make_room(now) {
            return;
        }
        self.answers[usize::from(certified)].insert(key, (answer, expires));
    }

    pub(crate) fn put_sites(
        &mut self,
        key: String,
        certified: bool,
        sites: Arc<Vec<SiteInfo>>,
        expires: Instant,
        now: Instant,
    ) {
        if expires <= now || !self.make_room(now) {
            return;
        }
        self.sites[usize::from(certified)].insert(key, (sites, expires));
    }

    /// Makes room for one more entry: drops what expired, then, if still
    /// full, every answer (prefix sites are fewer and save whole walks),
    /// then every prefix's sites. False when nothing may be cached (`max_entries` 0).
    fn make_room(&mut self, now: Instant) -> bool {
        if self.max_entries == 0 {
            return false;
        }
        if self.len() < self.max_entries {
            return true;
        }
        for map in &mut self.answers {
            map.retain(|_, (_, expires)| *expires > now);
        }
        for map in &mut self.sites {
            map.retain(|_, (_, expires)| *expires > now);
        }
        if self.len() >= self.max_entries {
            self.answers.iter_mut().for_each(HashMap::clear);
        }
        if self.len() >= self.max_entries {
            self.sites.iter_mut().for_each(HashMap::clear);
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
        c.put_answer(
            "A".into(),
            false,
            found(1),
            now + Duration::from_secs(5),
            now,
        );
        c.put_answer("B".into(), false, found(2), now, now); // already expired: not kept
        assert_eq!(c.len(), 1);
        assert_eq!(c.answer("A", false, now), Some(found(1)));
        assert_eq!(c.answer("A", false, now + Duration::from_secs(5)), None);
        assert_eq!(c.len(), 0, "an expired entry is dropped when seen");
        c.put_sites(
            "88".into(),
            false,
            Arc::new(Vec::new()),
            now + Duration::from_secs(1),
            now,
        );
        assert!(c.sites("88", false, now).is_some());
        assert!(c.sites("88", false, now + Duration::from_secs(2)).is_none());
        c.put_sites(
            "88".into(),
            false,
            Arc::new(Vec::new()),
            now + Duration::from_secs(1),
            now,
        );
        c.remove_sites("88");
        assert!(c.sites("88", false, now).is_none());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn stays_within_max_entries() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut c = Cache::new(3);
        c.put_sites("88".into(), false, Arc::new(Vec::new()), later, now);
        c.put_answer(
            "SOON".into(),
            false,
            found(1),
            now + Duration::from_secs(1),
            now,
        );
        c.put_answer("X".into(), false, found(2), later, now);
        assert_eq!(c.len(), 3);
        // Full: the expired answer goes first.
        let t = now + Duration::from_secs(2);
        c.put_answer("Y".into(), false, found(3), later, t);
        assert_eq!(c.len(), 3);
        assert_eq!(c.answer("X", false, t), Some(found(2)));
        // Full and nothing expired: answers are dropped, the sites stay.
        c.put_answer("Z".into(), false, found(4), later, t);
        assert_eq!(c.len(), 2);
        assert!(c.sites("88", false, t).is_some());
        assert_eq!(c.answer("Z", false, t), Some(found(4)));
        assert_eq!(c.answer("X", false, t), None);
        for i in 0..100 {
            c.put_sites(format!("P{i}"), false, Arc::new(Vec::new()), later, t);
            assert!(c.len() <= 3);
        }
        let mut none = Cache::new(0);
        none.put_answer("A".into(), false, found(1), later, now);
        assert_eq!(none.len(), 0);
    }

    #[test]
    fn certified_entries_serve_both_modes_uncertified_only_their_own() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut c = Cache::new(10);
        c.put_answer("C".into(), true, found(1), later, now);
        c.put_answer("U".into(), false, found(2), later, now);
        assert_eq!(c.answer("C", true, now), Some(found(1)));
        assert_eq!(c.answer("C", false, now), Some(found(1)));
        assert_eq!(c.answer("U", false, now), Some(found(2)));
        assert_eq!(c.answer("U", true, now), None, "never the reverse");
        let sites = Arc::new(Vec::new());
        c.put_sites("88".into(), false, sites.clone(), later, now);
        assert!(c.sites("88", true, now).is_none());
        c.put_sites("88".into(), true, sites, later, now);
        assert!(c.sites("88", true, now).is_some());
        assert_eq!(c.len(), 4);
        c.remove_sites("88");
        assert!(c.sites("88", false, now).is_none());
        assert_eq!(c.len(), 2);
        // An expired certified entry is dropped when an uncertified
        // question meets it.
        c.put_answer(
            "E".into(),
            true,
            found(3),
            now + Duration::from_secs(1),
            now,
        );
        assert_eq!(c.answer("E", false, later), None);
        assert_eq!(c.len(), 2);
    }
}
