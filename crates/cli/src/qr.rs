//! `idnode id qr`: QR codes of identifiers' proxy URLs
//! (`<base>/<identifier>`), as the node's record pages show them, for
//! labels: one to a file or standard output, or a batch of files from a
//! JSONL file or from every identifier under a prefix.

use crate::args::{AdminArgs, QrArgs};
use crate::{UsageError, usage};
use idnode_core::Identifier;
use idnode_http::qr;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub async fn run(admin: &AdminArgs, args: QrArgs) -> anyhow::Result<ExitCode> {
    let base = match qr::base_url(&args.base_url) {
        Ok(base) => base,
        Err(e) => usage!("--base-url: {e}"),
    };
    if args.size == 0 || args.size > qr::MAX_SIZE {
        usage!("--size {}: give 1 to {} pixels", args.size, qr::MAX_SIZE);
    }
    if let Some(text) = &args.identifier {
        return one(&base, text, &args);
    }
    let Some(dir) = &args.dir else {
        usage!("give an identifier, or --from FILE or --prefix PREFIX with --dir DIR");
    };
    let identifiers = match (&args.from, &args.prefix) {
        (Some(file), _) => from_jsonl(file)?,
        (None, Some(prefix)) => crate::manage::list_all(admin, prefix).await?,
        (None, None) => usage!("give an identifier, or --from FILE or --prefix PREFIX"),
    };
    batch(&base, &identifiers, dir, &args)
}

/// The code of `handle`'s proxy URL, as `args` asks (PNG or SVG, size).
fn render(base: &str, handle: &str, args: &QrArgs) -> Result<(String, Vec<u8>), qr::QrError> {
    let url = qr::proxy_url(base, handle);
    let bytes = if args.png {
        qr::png(&url, args.size)?
    } else {
        qr::svg(&url, args.size)?.into_bytes()
    };
    Ok((url, bytes))
}

fn one(base: &str, text: &str, args: &QrArgs) -> anyhow::Result<ExitCode> {
    let id = match Identifier::parse(text.trim()) {
        Ok(id) => id,
        Err(e) => usage!("`{text}` is not an identifier: {e}"),
    };
    let (url, bytes) = match render(base, id.as_str(), args) {
        Ok(r) => r,
        Err(e) => usage!("{}: {e}", id.as_str()),
    };
    match &args.out {
        Some(path) => {
            write_file(path, &bytes)?;
            println!("wrote {}: {url}", path.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            if args.png && stdout.is_terminal() {
                usage!("a PNG is not for a terminal: give --out FILE or redirect the output");
            }
            stdout.write_all(&bytes)?;
            if !args.png {
                stdout.write_all(b"\n")?;
            }
            stdout.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| UsageError(format!("cannot write {}: {e}", path.display())).into())
}

/// The identifiers of a JSONL file: each line an object with an
/// `identifier` (the lines of `idnode import` do; other fields are
/// ignored), blank lines and `#` comments skipped. Every line is checked
/// before any file is written.
fn from_jsonl(file: &Path) -> anyhow::Result<Vec<String>> {
    let reader = match std::fs::File::open(file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => usage!("cannot open {}: {e}", file.display()),
    };
    let mut identifiers = Vec::new();
    let mut bad = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => usage!("{}: line {}: {e}", file.display(), n + 1),
        };
        match identifier_of_line(&line) {
            Ok(Some(id)) => identifiers.push(id),
            Ok(None) => {}
            Err(e) => bad.push(format!("line {}: {e}", n + 1)),
        }
    }
    if !bad.is_empty() {
        let more = match bad.len() {
            0..=10 => String::new(),
            n => format!("\n  ... and {} more", n - 10),
        };
        usage!(
            "{}: {} bad line(s), no file written:\n  {}{more}",
            file.display(),
            bad.len(),
            bad[..bad.len().min(10)].join("\n  ")
        );
    }
    if identifiers.is_empty() {
        usage!("{} names no identifier", file.display());
    }
    Ok(identifiers)
}

fn identifier_of_line(line: &str) -> Result<Option<String>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| e.to_string())?;
    let Some(text) = value.get("identifier").and_then(|v| v.as_str()) else {
        return Err("no \"identifier\" string".into());
    };
    match Identifier::parse(text) {
        Ok(id) => Ok(Some(id.as_str().to_owned())),
        Err(e) => Err(format!("`{text}` is not an identifier: {e}")),
    }
}

fn batch(
    base: &str,
    identifiers: &[String],
    dir: &Path,
    args: &QrArgs,
) -> anyhow::Result<ExitCode> {
    if let Err(e) = std::fs::create_dir_all(dir) {
        usage!("cannot create {}: {e}", dir.display());
    }
    let extension = if args.png { "png" } else { "svg" };
    let progress = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(identifiers.len() as u64)
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} QR codes ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut written = 0usize;
    let mut failures = Vec::new();
    for handle in identifiers {
        match render(base, handle, args) {
            Ok((_, bytes)) => {
                let path: PathBuf = dir.join(format!("{}.{extension}", file_name(handle)));
                if let Err(e) = write_file(&path, &bytes) {
                    progress.abandon();
                    return Err(e);
                }
                written += 1;
            }
            Err(e) => failures.push(format!("{handle}: {e}")),
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    println!(
        "wrote {written} QR code{} to {}; {} failed",
        if written == 1 { "" } else { "s" },
        dir.display(),
        failures.len()
    );
    for failure in failures.iter().take(50) {
        println!("  {failure}");
    }
    if failures.len() > 50 {
        println!("  ... and {} more", failures.len() - 50);
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// A file name (without extension) for an identifier, one to one: the
/// slash after the prefix becomes `_`; ASCII letters, digits, `-` and `.`
/// (but a leading one) stay; every other byte, `_` included, is `%XX`. A
/// name that would pass 200 bytes keeps its first 180 and a hash of the
/// whole.
pub(crate) fn file_name(handle: &str) -> String {
    let mut name = String::with_capacity(handle.len() + 8);
    let mut slash_seen = false;
    for (i, b) in handle.bytes().enumerate() {
        match b {
            b'/' if !slash_seen => {
                slash_seen = true;
                name.push('_');
            }
            b'.' if i == 0 => name.push_str("%2E"),
            b if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' => name.push(b as char),
            b => name.push_str(&format!("%{b:02X}")),
        }
    }
    if name.len() > 200 {
        // FNV-1a, 64 bits: stable across builds, unlike std's hasher.
        let hash = handle.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        name.truncate(180);
        name.push_str(&format!("~{hash:016x}"));
    }
    name
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_distinct() {
        assert_eq!(file_name("88.100.1/ABC-123"), "88.100.1_ABC-123");
        assert_eq!(file_name("88.1/a/b c"), "88.1_a%2Fb%20c");
        assert_ne!(file_name("88.1/a_b"), file_name("88.1_a/b"));
        assert_eq!(file_name("88.1/Ä"), "88.1_%C3%84");
        assert_eq!(file_name("../x"), "%2E._x");
        let long = format!("88.1/{}", "x".repeat(300));
        let name = file_name(&long);
        assert_eq!(name.len(), 197);
        assert_ne!(name, file_name(&format!("{long}y")));
        assert!(!name.contains('/'));
    }

    #[test]
    fn jsonl_lines_name_identifiers() {
        let import =
            r#"{"identifier": "88.1/a", "values": [{"index": 1, "type": "URL", "data": "x"}]}"#;
        assert_eq!(
            identifier_of_line(import).unwrap().as_deref(),
            Some("88.1/a")
        );
        assert_eq!(identifier_of_line("  ").unwrap(), None);
        assert_eq!(identifier_of_line("# note").unwrap(), None);
        assert!(identifier_of_line(r#"{"id": "88.1/a"}"#).is_err());
        assert!(identifier_of_line(r#"{"identifier": "no-slash"}"#).is_err());
        assert!(identifier_of_line("{").is_err());
    }
}
