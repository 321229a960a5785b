//! `idnode report`: the daily report the national system asks of every
//! node, for one UTC day, read from the minute files the node keeps in its
//! data directory (`idnode_node::report`). Runs with or without the node.

use crate::log::say;
use crate::usage;
use clap::Args;
use idnode_node::report::{Day, DayReport, Millis};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The UTC day, YYYY-MM-DD (default: today, UTC).
    #[arg(long)]
    pub day: Option<String>,
    /// The node's data directory (default: the configuration's, else
    /// ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The node's TOML configuration file, for its data directory.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn latency(m: &Option<Millis>) -> String {
    match m {
        Some(m) => format!(
            "average {:.3}  max {:.3}  min {:.3}",
            m.average, m.max, m.min
        ),
        None => "-".into(),
    }
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let day = match &args.day {
        Some(text) => match Day::parse(text) {
            Ok(day) => day,
            Err(why) => usage!("--day: {why}"),
        },
        None => Day::today(),
    };
    let data_dir = match (&args.data_dir, &args.config) {
        (Some(dir), _) => dir.clone(),
        (None, Some(path)) => match idnode_node::Config::load(path) {
            Ok(config) => config.data_dir,
            Err(e) => usage!("{e}"),
        },
        (None, None) => idnode_node::Config::default().data_dir,
    };
    let file = day.file(&data_dir);
    let report = match idnode_node::report::read_day(&data_dir, day) {
        Ok(report) => report,
        Err(e) => anyhow::bail!("cannot read {}: {e}", file.display()),
    };
    let report = report
        .unwrap_or_else(|| DayReport::from_minutes(day, &std::collections::BTreeMap::new(), 0));
    if args.json {
        say!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if report.minutes == 0 {
        say!(
            "no data for {day} (UTC): the node in {} counted nothing that day ({} holds no minute)",
            data_dir.display(),
            file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    say!("daily report for {day} (UTC), from {}", file.display());
    say!("  registrations               {}", report.registrations);
    say!(
        "  resolution requests         {}",
        report.resolution_requests
    );
    say!(
        "  successful answers          {}",
        report.successful_answers
    );
    say!(
        "  resolution latency (ms)     {}",
        latency(&report.resolution_latency_ms)
    );
    say!("  peak queries per second     {}", report.peak_qps);
    say!(
        "  registration latency (ms)   {}",
        latency(&report.registration_latency_ms)
    );
    say!("  minutes counted             {}", report.minutes);
    if report.skipped_lines > 0 {
        say!(
            "  ({} unreadable line(s) skipped: a minute being written when the node was killed)",
            report.skipped_lines
        );
    }
    Ok(ExitCode::SUCCESS)
}
