//! What a run cost the machine: the generator's own CPU time and the
//! machine's idle time, so a report says when the generator and the
//! server fought for the cores (the latency then includes waiting for
//! one, and measures the machine more than the server).

use serde::Serialize;
use std::time::Instant;

/// Below this share of idle time a report calls the machine saturated.
const SATURATED_IDLE: f64 = 0.05;

/// CPU use over a run (its warm-up included).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuUse {
    /// The generator's CPU time, user and system, over the run's wall
    /// time: in cores.
    pub generator_cores: f64,
    /// The share of all the cores' time that was idle (Linux
    /// `/proc/stat`), from 0 to 1; absent where it cannot be read.
    pub machine_idle: Option<f64>,
    /// Cores the machine has.
    pub cores: usize,
}

impl CpuUse {
    /// Whether the cores had (almost) no idle time.
    pub fn saturated(&self) -> bool {
        self.machine_idle.is_some_and(|idle| idle < SATURATED_IDLE)
    }
}

/// Readings at the start of a run.
pub(crate) struct CpuMeter {
    started: Instant,
    own: Option<f64>,
    machine: Option<(u64, u64)>,
}

impl CpuMeter {
    pub(crate) fn start() -> Self {
        Self {
            started: Instant::now(),
            own: own_cpu_secs(),
            machine: machine_jiffies(),
        }
    }

    /// The use since [`start`](Self::start); `None` where the process's
    /// own CPU time cannot be read.
    pub(crate) fn stop(self) -> Option<CpuUse> {
        let wall = self.started.elapsed().as_secs_f64();
        let own = own_cpu_secs()? - self.own?;
        let machine_idle = match (self.machine, machine_jiffies()) {
            (Some((idle0, total0)), Some((idle1, total1))) if total1 > total0 => {
                Some(idle1.saturating_sub(idle0) as f64 / (total1 - total0) as f64)
            }
            _ => None,
        };
        Some(CpuUse {
            generator_cores: if wall > 0.0 { own / wall } else { 0.0 },
            machine_idle,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        })
    }
}

/// User and system CPU seconds of this process, all its threads.
fn own_cpu_secs() -> Option<f64> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(secs(usage.user_time()) + secs(usage.system_time()))
}

fn machine_jiffies() -> Option<(u64, u64)> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Idle (idle and iowait) and total clock ticks of all cores, from the
/// first line of `/proc/stat`.
fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let mut fields = text.lines().next()?.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is
    // already counted in user).
    let ticks: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if ticks.len() < 5 {
        return None;
    }
    Some((ticks[3] + ticks[4], ticks.iter().sum()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_idle_and_total() {
        let text = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 50 2 25 400 10 1 1 5 0 0\n";
        assert_eq!(parse_proc_stat(text), Some((820, 990)));
        // Older kernels: fewer columns.
        assert_eq!(parse_proc_stat("cpu 1 2 3 4 5\n"), Some((9, 15)));
        assert_eq!(parse_proc_stat("cpu 1 2 3\n"), None);
        assert_eq!(parse_proc_stat("intr 1 2 3 4 5\n"), None);
        assert_eq!(parse_proc_stat("cpu 1 x 3 4 5\n"), None);
        assert_eq!(parse_proc_stat(""), None);
    }

    #[test]
    fn a_busy_thread_shows_in_the_generators_cores() {
        let meter = CpuMeter::start();
        let until = Instant::now() + std::time::Duration::from_millis(200);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = meter.stop().expect("getrusage");
        // One thread spinning for the whole wall time: about one core
        // (less if the machine took it away for a while).
        assert!(used.generator_cores > 0.3, "{used:?}");
        assert!(used.generator_cores < used.cores as f64 + 0.5, "{used:?}");
        if let Some(idle) = used.machine_idle {
            assert!((0.0..=1.0).contains(&idle), "{used:?}");
        }
    }
}
