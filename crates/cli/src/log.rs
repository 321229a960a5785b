//! The node's log writer: stderr, where a line that cannot be written (a
//! full disk, a closed pipe, a terminal gone) is dropped and counted
//! instead of failing the node.
//!
//! tracing-subscriber's own path for a failed write reports it with
//! `eprintln!`, which panics when stderr itself is what failed: a node
//! logging to a full disk would die at its first log line.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use tracing_subscriber::fmt::MakeWriter;

/// Log lines dropped because stderr refused them.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many log lines could not be written so far.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Makes [`LossyWriter`]s over the process's stderr.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossyStderr;

impl<'a> MakeWriter<'a> for LossyStderr {
    type Writer = LossyWriter<io::StderrLock<'static>>;

    fn make_writer(&'a self) -> Self::Writer {
        LossyWriter(io::stderr().lock())
    }
}

/// A writer that reports every write as done: what the inner writer
/// refuses is dropped and counted in [`dropped`]. The formatter writes a
/// log line with one `write_all`, so a count is about a line.
#[derive(Debug)]
pub struct LossyWriter<W>(pub W);

impl<W: Write> Write for LossyWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() && self.0.write_all(buf).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Sends the log to stderr through [`LossyStderr`], lines at the
/// configured level (unless `RUST_LOG` says otherwise), as text or as one
/// JSON object a line.
pub fn init(config: &idnode_node::LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = || {
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(&config.level))
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    // Both formats: a failed write is reported with `eprintln!`, so that
    // report is off.
    let _ = match config.format {
        idnode_node::LogFormat::Plain => tracing_subscriber::fmt()
            // Colours for a terminal only: not escape codes in a file or
            // the journal.
            .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
            .with_env_filter(filter())
            .with_writer(LossyStderr)
            .log_internal_errors(false)
            .try_init(),
        idnode_node::LogFormat::Json => tracing_subscriber::fmt()
            .json()
            // The message and the event's fields at the top level, beside
            // `timestamp`, `level` and `target`.
            .flatten_event(true)
            .with_env_filter(filter())
            .with_writer(LossyStderr)
            .log_internal_errors(false)
            .try_init(),
    };
}

/// A line for stdout that is lost, not a panic, when stdout is gone
/// (`println!` panics when the write fails).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use say;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// A writer whose every write fails, as stderr on a full disk does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(28))
        }
    }

    #[test]
    fn drops_and_counts_what_cannot_be_written() {
        let before = dropped();
        let mut w = LossyWriter(Full);
        w.write_all(b"a log line\n").unwrap();
        writeln!(w, "another").unwrap();
        w.flush().unwrap();
        assert!(dropped() >= before + 2);
        let mut ok = LossyWriter(Vec::new());
        ok.write_all(b"kept\n").unwrap();
        assert_eq!(ok.0, b"kept\n");
    }

    #[test]
    fn a_subscriber_over_a_full_writer_does_not_panic() {
        let before = dropped();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| LossyWriter(Full))
            .log_internal_errors(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!("the disk is full");
            tracing::error!(lines = 2, "still full");
        });
        assert!(dropped() >= before + 2);
    }

    #[test]
    fn a_json_subscriber_over_a_full_writer_does_not_panic() {
        let before = dropped();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(|| LossyWriter(Full))
            .log_internal_errors(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(peer = "192.0.2.1", "the disk is full");
        });
        assert!(dropped() > before);
    }
}
