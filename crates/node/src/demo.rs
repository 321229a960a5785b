//! The demo data a node started with `--demo` gets: `seeds/` compiled into
//! the binary, so that a new node in an empty folder has something to
//! resolve: prefixes, their metadata templates (`templates.json`: one for
//! `88`, which the other demo prefixes inherit, and one of its own for
//! `88.200.7`), and identifiers that satisfy them.

use anyhow::Context;
use bytes::Bytes;
use idnode_core::jsonl;
use idnode_registry::{BatchItem, Registry, Template};
use idnode_store::{Space, Store};
use std::io::Write as _;

const PREFIXES: &str = include_str!("../../../seeds/prefixes.txt");
const IDENTIFIERS: &str = include_str!("../../../seeds/identifiers.jsonl");
const TEMPLATES: &str = include_str!("../../../seeds/templates.json");
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
    set_templates(registry)?;
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

/// The templates of `seeds/templates.json`: an object from prefix to
/// template (docs/templates.md).
fn set_templates(registry: &Registry) -> anyhow::Result<()> {
    let all: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(TEMPLATES).context("seeds/templates.json")?;
    for (prefix, template) in all {
        let template = Template::from_json(&template.to_string())
            .map_err(|e| anyhow::anyhow!("seeds/templates.json, prefix {prefix}: {e}"))?;
        registry
            .set_template(&prefix, template)
            .with_context(|| format!("seeding the template of {prefix}"))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use idnode_store::MemoryStore;
    use std::sync::Arc;

    #[test]
    fn the_seeds_satisfy_their_templates() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
        let registry = Registry::new(Arc::clone(&store));
        // Fails when a seeded identifier is refused.
        load_if_new(&*store, &registry).unwrap();
        let inherited = registry.template_for("88.100.1").unwrap().unwrap();
        assert_eq!(inherited.prefix, "88");
        let own = registry.template_for("88.200.7").unwrap().unwrap();
        assert_eq!(own.prefix, "88.200.7");
        let seeded = registry.get_identifier("88.200.7/CELL-LFP280-202600000");
        assert!(seeded.is_ok(), "{seeded:?}");
        // And the templates bite: a seeded record may not lose its URL.
        let e = registry
            .remove_values("88.200.7/CELL-LFP280-202600000", &[1])
            .unwrap_err();
        assert!(
            e.to_string().contains("a value of type URL is required"),
            "{e}"
        );
    }
}
