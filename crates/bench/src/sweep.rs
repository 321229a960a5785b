//! A sweep: open-loop steps at increasing offered rates, to find where
//! latency turns up (the knee) and what the server really sustains.

use crate::driver::{Plan, run_blocking};
use crate::report::{Load, Report, human_us};
use crate::svg::{Point, latency_chart};
use std::fmt::Write;

/// Runs `plan` once per rate, in order, as open loop; `on_step` sees each
/// report as soon as its step ends.
pub fn sweep_blocking(
    plan: &Plan,
    rates: &[f64],
    mut on_step: impl FnMut(&Report),
) -> anyhow::Result<Vec<Report>> {
    anyhow::ensure!(!rates.is_empty(), "--rates needs at least one rate");
    let mut steps = Vec::with_capacity(rates.len());
    for &rate in rates {
        let step = Plan {
            load: Load::Open { rate },
            ..plan.clone()
        };
        let report = run_blocking(&step)?;
        on_step(&report);
        steps.push(report);
    }
    Ok(steps)
}

/// The chart points of `steps`: one a step that got answers.
pub fn points(steps: &[Report]) -> Vec<Point> {
    steps
        .iter()
        .filter_map(|r| {
            let offered = match r.load {
                Load::Open { rate } => rate,
                Load::Closed { .. } => r.qps,
            };
            r.latency.map(|l| Point {
                offered,
                achieved: r.qps,
                p50_us: l.p50_us,
                p99_us: l.p99_us,
                lost: (r.timeouts + r.errors) as f64 / r.sent.max(1) as f64,
            })
        })
        .collect()
}

/// The SVG of a sweep.
pub fn chart(steps: &[Report]) -> String {
    let title = match steps.first() {
        Some(r) => format!("idnode bench sweep: {} {}", r.transport, r.server),
        None => "idnode bench sweep".to_owned(),
    };
    latency_chart(&title, &points(steps))
}

/// The header of [`table_row`].
pub const TABLE_HEADER: &str = "   offered  achieved       p50       p90       p99     p99.9       max  timeouts  errors  gen cpu  idle";

/// One line of the sweep table.
pub fn table_row(r: &Report) -> String {
    let offered = match r.load {
        Load::Open { rate } => rate,
        Load::Closed { .. } => f64::NAN,
    };
    let mut row = format!("{offered:>10.0}{:>10.0}", r.qps);
    match &r.latency {
        Some(l) => {
            for v in [l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us] {
                let _ = write!(row, "{:>10}", human_us(v));
            }
        }
        None => {
            for _ in 0..5 {
                let _ = write!(row, "{:>10}", "-");
            }
        }
    }
    let _ = write!(row, "{:>10}{:>8}", r.timeouts, r.errors);
    // Where the machine runs out: the generator's cores and the idle share.
    match r.cpu {
        Some(cpu) => {
            let _ = write!(row, "{:>9.2}", cpu.generator_cores);
            match cpu.machine_idle {
                Some(idle) => {
                    let _ = write!(row, "{:>5.0}%", 100.0 * idle);
                }
                None => row.push_str("     -"),
            }
        }
        None => row.push_str("        -     -"),
    }
    row
}
