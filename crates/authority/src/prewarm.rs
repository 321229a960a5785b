//! Prewarming: filling the response cache from the stored records at start.

use crate::answer::project;
use crate::service::HandleService;
use idnode_store::{Space, StoreError};

/// What [`HandleService::prewarm`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prewarmed {
    /// Records read.
    pub records: usize,
    /// Of those, the ones now in the response cache.
    pub cached: usize,
}

impl HandleService {
    /// Fills the response cache with the public values of the stored
    /// records, in key order, while it has room: a node that starts (or
    /// restarts under load) then answers from memory within seconds
    /// instead of paying a store read for each identifier's first question.
    /// Evicts nothing; stops at the end of the records, when a page of them
    /// adds nothing (the cache is full, or writes touched every shard while
    /// the page was read: best effort, the cache then fills as questions
    /// come), or when `keep_going` says so (checked between pages). Safe while writes go on: each page is read
    /// after the cache's generations were taken, so an entry whose record a
    /// write changed meanwhile is refused, as for any fill.
    pub fn prewarm(&self, keep_going: impl Fn() -> bool) -> Result<Prewarmed, StoreError> {
        const PAGE: usize = 1024;
        let mut done = Prewarmed::default();
        let Some(cache) = &self.cache else {
            return Ok(done);
        };
        let mut after: Option<Vec<u8>> = None;
        let mut values = Vec::new();
        while keep_going() {
            let seen = cache.generations();
            let page = self
                .store
                .scan(Space::Records, b"", after.as_deref(), PAGE)?;
            let mut added = 0;
            for (key, stored) in &page {
                // A record that does not decode is left to the question
                // that asks for it, which reports it.
                if let Ok(entry) = project(Some(stored), &mut values)
                    && cache.fill(&seen, key, entry)
                {
                    added += 1;
                }
            }
            done.records += page.len();
            done.cached += added;
            match page.into_iter().last() {
                Some((last, _)) if added > 0 => after = Some(last),
                _ => break,
            }
        }
        Ok(done)
    }
}
