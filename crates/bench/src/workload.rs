//! What to ask: identifiers (the synthetic data set or a file), the mix of
//! unknown names and type-filtered queries, and the records of the
//! synthetic data set (which `bench load` registers and the echo server
//! imitates).

use anyhow::Context;
use idnode_core::Value;
use std::io::{BufRead, Write};
use std::path::Path;

/// A small deterministic random generator (SplitMix64): the same seed asks
/// the same questions in the same order, run after run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        // 53 random bits as a float in [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}

/// The synthetic data set: `count` identifiers `88.<p>.<x>/BENCH-<n>`
/// spread round-robin over `prefixes` prefixes `88.<p>.<x>`, where prefix
/// `k` is `88.{900 + k / 1000}.{k % 1000 + 1}` (`88.900.1`, `88.900.2`...,
/// a range the demo seeds do not use). Everything is a function of
/// `(count, prefixes)`, so a node loaded once can be asked by any later run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synthetic {
    pub count: u64,
    pub prefixes: u32,
}

impl Synthetic {
    pub fn new(count: u64, prefixes: u32) -> anyhow::Result<Self> {
        anyhow::ensure!(count > 0, "--count must be at least 1");
        anyhow::ensure!(prefixes > 0, "--prefixes must be at least 1");
        Ok(Self { count, prefixes })
    }

    /// Prefix number `k` (`0..prefixes`).
    pub fn prefix(&self, k: u32) -> String {
        format!("88.{}.{}", 900 + k / 1000, k % 1000 + 1)
    }

    /// Every prefix of the set, in order.
    pub fn all_prefixes(&self) -> impl Iterator<Item = String> + '_ {
        (0..self.prefixes).map(|k| self.prefix(k))
    }

    /// The prefix number identifier `n` lives under.
    pub fn prefix_of(&self, n: u64) -> u32 {
        (n % u64::from(self.prefixes)) as u32
    }

    /// Appends identifier `n` (`0..count`) to `out`.
    pub fn write_identifier(&self, n: u64, out: &mut Vec<u8>) {
        let k = self.prefix_of(n);
        // Writing into a Vec cannot fail.
        let _ = write!(out, "88.{}.{}/BENCH-{n}", 900 + k / 1000, k % 1000 + 1);
    }

    pub fn identifier(&self, n: u64) -> String {
        let mut out = Vec::with_capacity(32);
        self.write_identifier(n, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Appends an identifier that is not in the set but lives under one of
    /// its prefixes (so a node answers HANDLE_NOT_FOUND, not a referral).
    pub fn write_unknown(&self, n: u64, out: &mut Vec<u8>) {
        let k = self.prefix_of(n);
        let _ = write!(out, "88.{}.{}/MISS-{n}", 900 + k / 1000, k % 1000 + 1);
    }

    /// The values of identifier `n`: five public values shaped like the
    /// demo seeds' (URL, product name, manufacturer, batch, date).
    pub fn values(&self, n: u64) -> Vec<Value> {
        let day = n % 28 + 1;
        let month = n / 28 % 12 + 1;
        vec![
            Value::new(
                1,
                "URL",
                format!("https://bench.example.com/products/BENCH-{n}"),
            ),
            Value::new(2, "productName", format!("Bench part {} series", n % 1000)),
            Value::new(3, "manufacturer", "Bench Manufacturing Co., Ltd."),
            Value::new(4, "batch", format!("B26{month:02}{day:02}-{}", n % 100)),
            Value::new(5, "productionDate", format!("2026-{month:02}-{day:02}")),
        ]
    }
}

/// Where the identifiers asked come from.
#[derive(Debug, Clone)]
pub enum Identifiers {
    Synthetic(Synthetic),
    /// A list read from a file.
    List(Vec<String>),
}

impl Identifiers {
    /// Reads one identifier a line; blank lines and `#` comments are
    /// skipped, and a JSON line (the JSONL of `idnode import`) gives its
    /// `identifier` field.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut list = Vec::new();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{}: line {}", path.display(), n + 1))?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('{') {
                let json: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("{}: line {}", path.display(), n + 1))?;
                let Some(id) = json.get("identifier").and_then(|v| v.as_str()) else {
                    anyhow::bail!(
                        "{}: line {}: a JSON line needs an \"identifier\" string",
                        path.display(),
                        n + 1
                    );
                };
                list.push(id.to_owned());
            } else {
                list.push(line.to_owned());
            }
        }
        anyhow::ensure!(!list.is_empty(), "{} holds no identifiers", path.display());
        Ok(Self::List(list))
    }
}

/// What one query asks besides its identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pick {
    /// The identifier does not exist.
    pub unknown: bool,
    /// The query asks only for values of the filter type.
    pub filtered: bool,
}

/// The questions a run asks: identifiers, and how often they are unknown
/// or filtered by type.
#[derive(Debug, Clone)]
pub struct Workload {
    pub identifiers: Identifiers,
    /// Fraction of queries for identifiers that do not exist (0..=1).
    pub miss_ratio: f64,
    /// Fraction of queries with a type filter (0..=1).
    pub filter_ratio: f64,
    /// The type those queries ask for, e.g. `URL`.
    pub filter_type: String,
}

impl Workload {
    pub fn new(identifiers: Identifiers) -> Self {
        Self {
            identifiers,
            miss_ratio: 0.0,
            filter_ratio: 0.0,
            filter_type: "URL".to_owned(),
        }
    }

    pub fn check(&self) -> anyhow::Result<()> {
        for (name, r) in [
            ("--miss-ratio", self.miss_ratio),
            ("--filter-ratio", self.filter_ratio),
        ] {
            anyhow::ensure!((0.0..=1.0).contains(&r), "{name} must be between 0 and 1");
        }
        Ok(())
    }

    /// Clears `name`, writes the next identifier to ask into it, and says
    /// what kind of query it is. Performance-critical: called once a
    /// request, it does not allocate once `name` has grown.
    pub fn next(&self, rng: &mut Rng, name: &mut Vec<u8>) -> Pick {
        name.clear();
        let pick = Pick {
            unknown: rng.chance(self.miss_ratio),
            filtered: rng.chance(self.filter_ratio),
        };
        match &self.identifiers {
            Identifiers::Synthetic(set) => {
                let n = rng.below(set.count);
                if pick.unknown {
                    set.write_unknown(n, name);
                } else {
                    set.write_identifier(n, name);
                }
            }
            Identifiers::List(list) => {
                let n = rng.below(list.len() as u64) as usize;
                name.extend_from_slice(list[n].as_bytes());
                if pick.unknown {
                    let _ = write!(name, "-BENCH-MISS-{}", rng.next_u64() >> 32);
                }
            }
        }
        pick
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn synthetic_names_are_deterministic_and_use_every_prefix() {
        let set = Synthetic::new(1000, 7).unwrap();
        assert_eq!(set.identifier(0), "88.900.1/BENCH-0");
        assert_eq!(set.identifier(8), "88.900.2/BENCH-8");
        let prefixes: HashSet<String> = (0..set.count)
            .map(|n| set.identifier(n).split('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(prefixes.len(), 7);
        assert_eq!(prefixes, set.all_prefixes().collect());
        let big = Synthetic::new(10, 2500).unwrap();
        assert_eq!(big.prefix(2499), "88.902.500");
        assert_eq!(big.all_prefixes().collect::<HashSet<_>>().len(), 2500);
    }

    #[test]
    fn same_seed_same_questions() {
        let w = Workload {
            miss_ratio: 0.3,
            filter_ratio: 0.2,
            ..Workload::new(Identifiers::Synthetic(
                Synthetic::new(1_000_000, 100).unwrap(),
            ))
        };
        let ask = |seed| {
            let mut rng = Rng::new(seed);
            let mut name = Vec::new();
            (0..1000)
                .map(|_| {
                    let pick = w.next(&mut rng, &mut name);
                    (String::from_utf8(name.clone()).unwrap(), pick)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ask(7), ask(7));
        assert_ne!(ask(7), ask(8));
    }

    #[test]
    fn miss_and_filter_ratios_hold() {
        let set = Synthetic::new(1_000_000, 100).unwrap();
        let w = Workload {
            miss_ratio: 0.1,
            filter_ratio: 0.25,
            ..Workload::new(Identifiers::Synthetic(set))
        };
        let mut rng = Rng::new(42);
        let mut name = Vec::new();
        let (mut unknown, mut filtered) = (0u32, 0u32);
        let total = 100_000;
        for _ in 0..total {
            let pick = w.next(&mut rng, &mut name);
            let text = std::str::from_utf8(&name).unwrap();
            // The name says what it is: unknown names are never in the set.
            assert_eq!(pick.unknown, text.contains("/MISS-"), "{text}");
            assert!(text.starts_with("88.900."), "{text}");
            unknown += u32::from(pick.unknown);
            filtered += u32::from(pick.filtered);
        }
        let miss = f64::from(unknown) / f64::from(total);
        let filter = f64::from(filtered) / f64::from(total);
        assert!((miss - 0.1).abs() < 0.005, "{miss}");
        assert!((filter - 0.25).abs() < 0.005, "{filter}");
    }

    #[test]
    fn list_workload_makes_unknown_names_from_known_ones() {
        let w = Workload {
            miss_ratio: 0.5,
            ..Workload::new(Identifiers::List(vec!["88.1/A".into(), "88.1/B".into()]))
        };
        let mut rng = Rng::new(1);
        let mut name = Vec::new();
        for _ in 0..100 {
            let pick = w.next(&mut rng, &mut name);
            let text = std::str::from_utf8(&name).unwrap();
            assert!(text.starts_with("88.1/"));
            assert_eq!(pick.unknown, text.contains("-BENCH-MISS-"));
        }
    }

    #[test]
    fn ids_file_accepts_lines_comments_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.txt");
        std::fs::write(
            &path,
            "# comment\n88.1/A\n\n  88.1/B  \n{\"identifier\": \"88.1/C\", \"values\": []}\n",
        )
        .unwrap();
        let Identifiers::List(list) = Identifiers::from_file(&path).unwrap() else {
            panic!("not a list");
        };
        assert_eq!(list, ["88.1/A", "88.1/B", "88.1/C"]);
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(Identifiers::from_file(&path).is_err());
    }

    #[test]
    fn rng_below_stays_in_range() {
        let mut rng = Rng::new(3);
        assert_eq!(rng.below(0), 0);
        for _ in 0..1000 {
            assert!(rng.below(3) < 3);
        }
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
    }
}
