//! The identifiers already stored that today's rules would not let in: a
//! store written before a rule existed (an invisible character, a suffix
//! not in Unicode NFC, which reads now normalize, so such a record can no
//! longer be found by its name) keeps working, and the node reports them
//! at start ([`check_stored`]) so the operator can re-register them.

use idnode_core::Identifier;
use idnode_store::{Space, Store, StoreError};

/// What [`check_stored`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyReport {
    /// Identifiers looked at.
    pub checked: u64,
    /// How many break a rule.
    pub refused: u64,
    /// The first few of those: the stored key and why.
    pub examples: Vec<(String, String)>,
}

/// How many examples a report keeps.
pub const EXAMPLES: usize = 10;

/// Reads every stored identifier's key, in pages, while `keep_going`
/// says so, and checks it against the rules a new identifier must meet.
pub fn check_stored(
    store: &dyn Store,
    keep_going: impl Fn() -> bool,
) -> Result<PolicyReport, StoreError> {
    const PAGE: usize = 4096;
    let mut report = PolicyReport::default();
    let mut after: Option<Vec<u8>> = None;
    while keep_going() {
        let page = store.scan(Space::Records, b"", after.as_deref(), PAGE)?;
        for (key, _) in &page {
            report.checked += 1;
            if let Some(why) = breaks_rules(key) {
                report.refused += 1;
                if report.examples.len() < EXAMPLES {
                    report
                        .examples
                        .push((String::from_utf8_lossy(key).into_owned(), why));
                }
            }
        }
        match page.into_iter().last() {
            Some((last, _)) => after = Some(last),
            None => break,
        }
    }
    Ok(report)
}

/// Why a stored key would not be let in today, if it would not.
fn breaks_rules(key: &[u8]) -> Option<String> {
    let Ok(text) = std::str::from_utf8(key) else {
        return Some("not UTF-8".to_owned());
    };
    let id = match Identifier::parse(text) {
        Ok(id) => id,
        Err(e) => return Some(e.to_string()),
    };
    if id.key() != text {
        return Some(format!(
            "not in Unicode NFC: reads now look it up as `{}`",
            id.key()
        ));
    }
    id.check_new().err().map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use idnode_store::MemoryStore;

    #[test]
    fn stored_keys_that_break_todays_rules_are_reported() {
        let store = MemoryStore::new();
        let mut txn = store.begin().unwrap();
        for key in [
            "88.100.1/ABC-1",
            "88.100.1/XA\u{308}",
            "88.100.1/A\u{200b}B",
            "88.100.1/B\u{e4}R",
        ] {
            txn.put(Space::Records, key.as_bytes(), b"x".to_vec().into());
        }
        txn.commit().unwrap();
        let report = check_stored(&store, || true).unwrap();
        assert_eq!((report.checked, report.refused), (4, 2), "{report:?}");
        let why: Vec<&str> = report.examples.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(why, ["88.100.1/A\u{200b}B", "88.100.1/XA\u{308}"]);
        assert!(
            report.examples[1].1.contains("88.100.1/X\u{c4}"),
            "{report:?}"
        );
        assert!(report.examples[0].1.contains("U+200B"), "{report:?}");
        // Stopped at once: nothing checked.
        assert_eq!(check_stored(&store, || false).unwrap().checked, 0);
    }
}
