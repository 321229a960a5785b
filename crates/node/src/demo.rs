//! The demo data a node started with `--demo` gets: `seeds/` compiled into
//! the binary, so that a new node in an empty folder has something to
//! resolve.

use crate::jsonl;
use anyhow::Context;
use bytes::Bytes;
use idnode_registry::{BatchItem, Registry};
use idnode_store::{Space, Store};
use std::io::Write as _;

const PREFIXES: &str = include_str!("../../../seeds/prefixes.txt");
const IDENTIFIERS: &str = include_str!("../../../seeds/identifiers.jsonl");
const SEEDED_KEY: &[u8] = b"seeded";

/// Loads the seeds when the store has never been written to.
pub fn load_if_new(store: &dyn Store, registry: &Registry) -> anyhow::Result<()> {
    if store.last_sequence() != 0 || store.get(Space::Meta, SEEDED_KEY)?.is_some() {
        return Ok(());
    }
    for prefix in PREFIXES.lines().map(str::trim) {
        if prefix.is_empty() || prefix.starts_with('#') {
            continue;
        }
        registry
            .create_prefix(prefix)
            .with_context(|| format!("seeding prefix {prefix}"))?;
    }
    let mut items = Vec::new();
    for (n, line) in IDENTIFIERS.lines().enumerate() {
        let parsed = jsonl::parse_line(line)
            .map_err(|e| anyhow::anyhow!("seeds/identifiers.jsonl line {}: {e}", n + 1))?;
        if let Some((line, values)) = parsed {
            items.push(BatchItem {
                identifier: line.identifier,
                values,
                overwrite: false,
            });
        }
    }
    let count = items.len();
    for (n, result) in registry.batch_create(items).into_iter().enumerate() {
        result.with_context(|| format!("seeding identifier {}", n + 1))?;
    }
    let mut txn = store.begin()?;
    txn.put(Space::Meta, SEEDED_KEY, Bytes::from_static(b"1"));
    txn.commit()?;
    // Lost, not a panic, when stdout is gone.
    let _ = writeln!(
        std::io::stdout(),
        "seeded a new node with demo data: {count} identifiers"
    );
    Ok(())
}
