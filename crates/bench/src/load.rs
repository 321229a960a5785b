//! `bench load`: puts the synthetic data set into a node, through the gRPC
//! management API (CreatePrefix for each prefix, then one BatchCreate
//! stream), or into a JSONL file for `idnode import`.

use crate::args::AdminTarget;
use crate::workload::Synthetic;
use anyhow::Context;
use idnode_admin::proto;
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Identifiers queued on the BatchCreate stream ahead of the answers.
const QUEUE: usize = 4096;
/// Failure messages kept for the summary.
const FAILURE_SAMPLES: usize = 10;

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    pub prefixes_created: u32,
    /// Prefixes that were there already.
    pub prefixes_existing: u32,
    /// Identifiers registered (or already there with the same values).
    pub registered: u64,
    pub failed: u64,
    pub seconds: f64,
    pub failure_samples: Vec<String>,
}

impl LoadSummary {
    /// Identifiers registered a second.
    pub fn rate(&self) -> f64 {
        self.registered as f64 / self.seconds.max(1e-9)
    }
}

impl std::fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "registered {} identifiers in {:.2} s ({:.0} identifiers/s); {} failed; prefixes: {} created, {} already there",
            self.registered,
            self.seconds,
            self.rate(),
            self.failed,
            self.prefixes_created,
            self.prefixes_existing
        )?;
        for s in &self.failure_samples {
            writeln!(f, "  {s}")?;
        }
        Ok(())
    }
}

/// The values of identifier `n` as the gRPC API takes them.
fn request(set: &Synthetic, n: u64) -> proto::CreateIdentifierRequest {
    proto::CreateIdentifierRequest {
        identifier: set.identifier(n),
        values: set
            .values(n)
            .into_iter()
            .map(|v| proto::Value {
                index: v.index,
                r#type: v.kind,
                data: v.data,
                ..Default::default()
            })
            .collect(),
        overwrite: false,
    }
}

fn token(admin: &AdminTarget) -> anyhow::Result<String> {
    match &admin.token {
        Some(t) => Ok(t.trim().to_owned()),
        None => std::fs::read_to_string(&admin.token_file)
            .map(|t| t.trim().to_owned())
            .with_context(|| {
                format!(
                    "bench load needs the admin token: pass --token or IDNODE_TOKEN, or \
                     --token-file (cannot read {})",
                    admin.token_file.display()
                )
            }),
    }
}

/// A progress line on standard error: rewritten in place on a terminal,
/// a line every few seconds otherwise.
struct Progress {
    quiet: bool,
    terminal: bool,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let now = Instant::now();
        Self {
            quiet,
            terminal: std::io::stderr().is_terminal(),
            started: now,
            last: now,
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        let every = if self.terminal {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        if self.quiet || self.last.elapsed() < every {
            return;
        }
        self.last = Instant::now();
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let line = format!(
            "registered {done}/{total} identifiers ({:.1}%, {rate:.0}/s)",
            100.0 * done as f64 / total.max(1) as f64
        );
        if self.terminal {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if !self.quiet && self.terminal {
            eprint!("\r{:70}\r", "");
        }
    }
}

/// Creates the prefixes of `set`, then registers its identifiers on one
/// BatchCreate stream. Running it again is harmless: identical identifiers
/// succeed, existing prefixes are counted as such.
pub async fn register(
    set: Synthetic,
    admin: &AdminTarget,
    quiet: bool,
) -> anyhow::Result<LoadSummary> {
    let token = token(admin)?;
    let (mut prefixes, mut identifiers) = idnode_admin::connect(&admin.grpc, Some(token))
        .await
        .with_context(|| format!("cannot reach the node's gRPC API at {}", admin.grpc))?;
    let mut summary = LoadSummary::default();
    let started = Instant::now();
    for prefix in set.all_prefixes() {
        match prefixes
            .create_prefix(proto::CreatePrefixRequest {
                prefix: prefix.clone(),
            })
            .await
        {
            Ok(_) => summary.prefixes_created += 1,
            Err(s) if s.code() == tonic::Code::AlreadyExists => summary.prefixes_existing += 1,
            Err(s) => anyhow::bail!("CreatePrefix {prefix}: {:?}: {}", s.code(), s.message()),
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    let producer = tokio::spawn(async move {
        for n in 0..set.count {
            if tx.send(request(&set, n)).await.is_err() {
                break;
            }
        }
    });
    let mut results = identifiers
        .batch_create(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| anyhow::anyhow!("BatchCreate: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    let mut progress = Progress::new(quiet);
    let mut done = 0u64;
    while let Some(result) = results
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("BatchCreate: {:?}: {}", s.code(), s.message()))?
    {
        done += 1;
        if result.code == 0 {
            summary.registered += 1;
        } else {
            summary.failed += 1;
            if summary.failure_samples.len() < FAILURE_SAMPLES {
                summary
                    .failure_samples
                    .push(format!("{}: {}", result.identifier, result.message));
            }
        }
        progress.update(done, set.count);
    }
    progress.finish();
    producer.await.context("the identifier producer failed")?;
    if done < set.count {
        summary.failed += set.count - done;
        summary.failure_samples.push(format!(
            "the node answered {done} of {} items, then ended the stream",
            set.count
        ));
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Asks the node to compact its store (`bench load --compact`, the
/// `Compact` call of `idnode compact`) and returns how long it took.
pub async fn compact(admin: &AdminTarget) -> anyhow::Result<Duration> {
    let token = token(admin)?;
    let (_, mut identifiers) = idnode_admin::connect(&admin.grpc, Some(token))
        .await
        .with_context(|| format!("cannot reach the node's gRPC API at {}", admin.grpc))?;
    let done = identifiers
        .compact(proto::CompactRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("Compact: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    Ok(Duration::from_millis(done.duration_ms))
}

#[derive(Serialize)]
struct Line<'a> {
    identifier: &'a str,
    values: Vec<LineValue<'a>>,
}

#[derive(Serialize)]
struct LineValue<'a> {
    index: u32,
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a str,
}

/// Writes `set` as JSONL, the format of `seeds/identifiers.jsonl` that
/// `idnode import` reads: one identifier with its values a line.
pub fn write_jsonl(set: &Synthetic, out: &mut impl Write) -> std::io::Result<()> {
    let mut name = Vec::new();
    for n in 0..set.count {
        name.clear();
        set.write_identifier(n, &mut name);
        let values = set.values(n);
        let line = Line {
            identifier: std::str::from_utf8(&name).unwrap_or_default(),
            values: values
                .iter()
                .map(|v| LineValue {
                    index: v.index,
                    kind: &v.kind,
                    data: std::str::from_utf8(&v.data).unwrap_or_default(),
                })
                .collect(),
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Where the prefixes of a JSONL file go: `<file>.prefixes.txt`.
pub fn prefixes_path(jsonl: &Path) -> PathBuf {
    let mut name = jsonl.as_os_str().to_owned();
    name.push(".prefixes.txt");
    PathBuf::from(name)
}

/// Writes `set` to `path` as JSONL and its prefixes, one a line (the
/// format of `seeds/prefixes.txt`), to [`prefixes_path`].
pub fn write_files(set: &Synthetic, path: &Path) -> anyhow::Result<PathBuf> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    write_jsonl(set, &mut out)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let prefixes = prefixes_path(path);
    let mut text = String::from("# Prefixes of the synthetic bench data set, one a line.\n");
    for p in set.all_prefixes() {
        text.push_str(&p);
        text.push('\n');
    }
    std::fs::write(&prefixes, text)
        .with_context(|| format!("cannot write {}", prefixes.display()))?;
    Ok(prefixes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn jsonl_has_the_import_shape() {
        let set = Synthetic::new(20, 3).unwrap();
        let mut out = Vec::new();
        write_jsonl(&set, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 20);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["identifier"], "88.900.1/BENCH-0");
        let values = first["values"].as_array().unwrap();
        assert_eq!(values.len(), 5);
        assert_eq!(values[0]["index"], 1);
        assert_eq!(values[0]["type"], "URL");
        assert_eq!(
            values[0]["data"],
            "https://bench.example.com/products/BENCH-0"
        );
        let keys: Vec<&String> = values[0].as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
    }

    #[test]
    fn files_hold_the_set_and_its_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.jsonl");
        let set = Synthetic::new(10, 4).unwrap();
        let prefixes = write_files(&set, &path).unwrap();
        assert_eq!(prefixes, dir.path().join("set.jsonl.prefixes.txt"));
        let listed: Vec<String> = std::fs::read_to_string(&prefixes)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        assert_eq!(listed, set.all_prefixes().collect::<Vec<_>>());
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 10);
    }
}
