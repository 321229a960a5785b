//! Counting while a run goes (`Tally`, one per driver thread, merged at
//! the end) and the [`Report`] it turns into: text for a person, JSON for a
//! script.

use crate::cpu::CpuUse;
use hdrhistogram::Histogram;
use idnode_handle::code;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// Longest latency a histogram tells apart (longer ones count as this).
const HISTOGRAM_MAX_NS: u64 = 3_600_000_000_000;
/// First error messages kept for the report.
const ERROR_SAMPLES: usize = 5;

pub(crate) fn histogram() -> Histogram<u64> {
    // 1 ns to 1 hour at 3 significant digits: a constant, valid range.
    #[allow(clippy::unwrap_used)]
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, 3).unwrap()
}

/// What one driver thread counted. Only requests sent after the warmup are
/// counted.
#[derive(Debug)]
pub(crate) struct Tally {
    /// Response time, nanoseconds (open loop: from the intended send time).
    pub latency: Histogram<u64>,
    /// Open loop: how late each request went out after its intended time.
    pub lag: Histogram<u64>,
    pub sent: u64,
    pub answered: u64,
    pub timeouts: u64,
    /// Requests that failed outright (their channel closed, or could not
    /// send them).
    pub errors: u64,
    /// Failures of a socket or connection not tied to one request (a
    /// refused datagram, an undecodable answer); the requests involved
    /// time out.
    pub channel_errors: u64,
    /// Answers to requests that had already timed out, or ids never sent.
    pub late: u64,
    pub unknown: u64,
    pub filtered: u64,
    /// (response code, count), in order of first appearance.
    pub codes: Vec<(u32, u64)>,
    pub error_samples: Vec<String>,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            latency: histogram(),
            lag: histogram(),
            sent: 0,
            answered: 0,
            timeouts: 0,
            errors: 0,
            channel_errors: 0,
            late: 0,
            unknown: 0,
            filtered: 0,
            codes: Vec::new(),
            error_samples: Vec::new(),
        }
    }

    pub fn answer(&mut self, response_code: u32, latency_ns: u64) {
        self.answered += 1;
        self.latency.saturating_record(latency_ns.max(1));
        match self.codes.iter_mut().find(|(c, _)| *c == response_code) {
            Some((_, n)) => *n += 1,
            None => self.codes.push((response_code, 1)),
        }
    }

    /// A request failed (counted when `measured`); `what` says why.
    pub fn failed(&mut self, measured: bool, what: impl FnOnce() -> String) {
        self.errors += u64::from(measured);
        self.sample(what);
    }

    /// A socket or connection failed, not one request.
    pub fn channel_error(&mut self, what: impl FnOnce() -> String) {
        self.channel_errors += 1;
        self.sample(what);
    }

    fn sample(&mut self, what: impl FnOnce() -> String) {
        if self.error_samples.len() < ERROR_SAMPLES {
            let text = what();
            if !self.error_samples.contains(&text) {
                self.error_samples.push(text);
            }
        }
    }

    pub fn merge(&mut self, other: Tally) {
        // Histograms made by `histogram()` share bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.lag.add(&other.lag);
        self.sent += other.sent;
        self.answered += other.answered;
        self.timeouts += other.timeouts;
        self.errors += other.errors;
        self.channel_errors += other.channel_errors;
        self.late += other.late;
        self.unknown += other.unknown;
        self.filtered += other.filtered;
        for (c, n) in other.codes {
            match self.codes.iter_mut().find(|(k, _)| *k == c) {
                Some((_, m)) => *m += n,
                None => self.codes.push((c, n)),
            }
        }
        for e in other.error_samples {
            if self.error_samples.len() < ERROR_SAMPLES && !self.error_samples.contains(&e) {
                self.error_samples.push(e);
            }
        }
    }
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Self {
            min_us: us(h.min()),
            mean_us: h.mean() / 1000.0,
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        })
    }
}

/// How many answers carried one response code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeCount {
    pub code: u32,
    pub name: &'static str,
    pub count: u64,
}

/// Closed loop (a fixed number of requests outstanding) or open loop (a
/// fixed rate, whatever the answers do).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Load {
    Closed { concurrency: usize },
    Open { rate: f64 },
}

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub transport: String,
    pub server: String,
    pub load: Load,
    /// UDP sockets, TCP or QUIC connections.
    pub channels: usize,
    /// Open loop over UDP: the period the generator sent on (0: each
    /// request at its own time).
    pub pace_secs: f64,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub timeout_secs: f64,
    /// Requests sent after the warmup.
    pub sent: u64,
    pub answered: u64,
    pub timeouts: u64,
    /// Requests that failed outright: `sent = answered + timeouts + errors`.
    pub errors: u64,
    /// Socket or connection failures not tied to one request (a refused
    /// datagram, an undecodable answer, a failed reconnect).
    pub channel_errors: u64,
    /// Answers that came after their request timed out.
    pub late: u64,
    /// Answers a second: `answered / duration_secs`.
    pub qps: f64,
    /// Requests for identifiers that do not exist.
    pub unknown_sent: u64,
    /// Requests with a type filter.
    pub filtered_sent: u64,
    pub codes: Vec<CodeCount>,
    /// Absent when nothing was answered.
    pub latency: Option<Latency>,
    /// Open loop: how late requests went out after their intended time
    /// (the generator's own scheduling; it is part of `latency`).
    pub send_lag: Option<Latency>,
    /// The generator's CPU time and the machine's idle time over the run.
    pub cpu: Option<CpuUse>,
    pub error_samples: Vec<String>,
}

impl Report {
    pub(crate) fn new(
        header: ReportHeader,
        duration: Duration,
        warmup: Duration,
        timeout: Duration,
        mut tally: Tally,
        cpu: Option<CpuUse>,
    ) -> Self {
        tally.codes.sort_unstable();
        let secs = duration.as_secs_f64();
        Self {
            transport: header.transport,
            server: header.server,
            load: header.load,
            channels: header.channels,
            pace_secs: header.pace.as_secs_f64(),
            warmup_secs: warmup.as_secs_f64(),
            duration_secs: secs,
            timeout_secs: timeout.as_secs_f64(),
            sent: tally.sent,
            answered: tally.answered,
            timeouts: tally.timeouts,
            errors: tally.errors,
            channel_errors: tally.channel_errors,
            late: tally.late,
            qps: if secs > 0.0 {
                tally.answered as f64 / secs
            } else {
                0.0
            },
            unknown_sent: tally.unknown,
            filtered_sent: tally.filtered,
            codes: tally
                .codes
                .iter()
                .map(|&(code, count)| CodeCount {
                    code,
                    name: code_name(code),
                    count,
                })
                .collect(),
            latency: Latency::from_histogram(&tally.latency),
            send_lag: match header.load {
                Load::Open { .. } => Latency::from_histogram(&tally.lag),
                Load::Closed { .. } => None,
            },
            cpu,
            error_samples: tally.error_samples,
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// What a report says about the run besides its counts.
#[derive(Debug, Clone)]
pub(crate) struct ReportHeader {
    pub transport: String,
    pub server: String,
    pub load: Load,
    pub channels: usize,
    pub pace: Duration,
}

/// A latency in a unit a person reads at a glance.
pub fn human_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.1} us")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

fn percentiles(f: &mut fmt::Formatter<'_>, label: &str, l: &Latency) -> fmt::Result {
    writeln!(
        f,
        "{label:<11}p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})",
        human_us(l.p50_us),
        human_us(l.p90_us),
        human_us(l.p99_us),
        human_us(l.p999_us),
        human_us(l.max_us),
        human_us(l.mean_us),
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let load = match self.load {
            Load::Closed { concurrency } => format!("closed loop, {concurrency} outstanding"),
            Load::Open { rate } if self.pace_secs > 0.0 => format!(
                "open loop, {rate:.0} queries/s offered, sent every {}",
                human_us(self.pace_secs * 1e6)
            ),
            Load::Open { rate } => format!("open loop, {rate:.0} queries/s offered"),
        };
        let what = if self.transport == "udp" {
            "sockets"
        } else {
            "connections"
        };
        writeln!(
            f,
            "{} {}: {load}, {} {what}, {:.2} s after {:.2} s warmup",
            self.transport, self.server, self.channels, self.duration_secs, self.warmup_secs
        )?;
        writeln!(f, "throughput {:.0} answers/s", self.qps)?;
        writeln!(
            f,
            "requests   {} sent ({} unknown, {} filtered), {} answered, {} timeouts, {} errors, {} late",
            self.sent,
            self.unknown_sent,
            self.filtered_sent,
            self.answered,
            self.timeouts,
            self.errors,
            self.late
        )?;
        if self.channel_errors > 0 {
            writeln!(
                f,
                "channels   {} socket or connection errors (refused, undecodable answers...)",
                self.channel_errors
            )?;
        }
        let codes: Vec<String> = self
            .codes
            .iter()
            .map(|c| {
                let share = 100.0 * c.count as f64 / self.answered.max(1) as f64;
                format!("{} ({}) {} ({share:.1}%)", c.name, c.code, c.count)
            })
            .collect();
        writeln!(f, "responses  {}", codes.join(", "))?;
        match &self.latency {
            Some(l) => percentiles(f, "latency", l)?,
            None => writeln!(f, "latency    (nothing answered)")?,
        }
        if let Some(lag) = &self.send_lag {
            percentiles(f, "send lag", lag)?;
        }
        if let Some(cpu) = &self.cpu {
            let idle = cpu
                .machine_idle
                .map(|idle| format!(", machine idle {:.1}%", 100.0 * idle))
                .unwrap_or_default();
            writeln!(
                f,
                "cpu        generator {:.2} of {} cores{idle}",
                cpu.generator_cores, cpu.cores
            )?;
            if cpu.saturated() {
                writeln!(
                    f,
                    "note       the cores had almost no idle time: the latency includes waiting for one (generator and server share them)"
                )?;
                if matches!(self.load, Load::Open { .. })
                    && self.transport == "udp"
                    && self.pace_secs == 0.0
                {
                    writeln!(
                        f,
                        "note       --pace 50us sends on a coarser clock, with fewer wake-ups of the generator"
                    )?;
                }
            }
        }
        for e in &self.error_samples {
            writeln!(f, "error      {e}")?;
        }
        Ok(())
    }
}

/// The name of a Handle response code.
pub fn code_name(c: u32) -> &'static str {
    match c {
        code::SUCCESS => "SUCCESS",
        code::ERROR => "ERROR",
        code::SERVER_TOO_BUSY => "SERVER_TOO_BUSY",
        code::PROTOCOL_ERROR => "PROTOCOL_ERROR",
        code::OPERATION_NOT_SUPPORTED => "OPERATION_NOT_SUPPORTED",
        code::RECURSION_COUNT_TOO_HIGH => "RECURSION_COUNT_TOO_HIGH",
        code::SERVER_BACKUP => "SERVER_BACKUP",
        code::HANDLE_NOT_FOUND => "HANDLE_NOT_FOUND",
        code::HANDLE_ALREADY_EXISTS => "HANDLE_ALREADY_EXISTS",
        code::INVALID_HANDLE => "INVALID_HANDLE",
        code::VALUES_NOT_FOUND => "VALUES_NOT_FOUND",
        code::SERVICE_REFERRAL => "SERVICE_REFERRAL",
        code::PREFIX_REFERRAL => "PREFIX_REFERRAL",
        code::INSUFFICIENT_PERMISSIONS => "INSUFFICIENT_PERMISSIONS",
        code::AUTHENTICATION_NEEDED => "AUTHENTICATION_NEEDED",
        code::DAILY_REQUEST_LIMIT => "DAILY_REQUEST_LIMIT",
        _ => "OTHER",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// A one-socket UDP run's header.
    fn header(load: Load) -> ReportHeader {
        ReportHeader {
            transport: "udp".into(),
            server: "127.0.0.1:1".into(),
            load,
            channels: 1,
            pace: Duration::ZERO,
        }
    }

    #[test]
    fn a_saturated_machine_is_named_in_the_report() {
        let header = header(Load::Open { rate: 1000.0 });
        let d = Duration::from_secs(1);
        let report = |idle: Option<f64>| {
            let cpu = CpuUse {
                generator_cores: 1.25,
                machine_idle: idle,
                cores: 2,
            };
            Report::new(header.clone(), d, d, d, Tally::new(), Some(cpu)).to_string()
        };
        let busy = report(Some(0.004));
        assert!(
            busy.contains("generator 1.25 of 2 cores, machine idle 0.4%"),
            "{busy}"
        );
        assert!(busy.contains("almost no idle time"), "{busy}");
        assert!(busy.contains("--pace 50us"), "{busy}");
        let quiet = report(Some(0.4));
        assert!(quiet.contains("machine idle 40.0%"), "{quiet}");
        assert!(!quiet.contains("almost no idle time"), "{quiet}");
        let unknown = report(None);
        assert!(unknown.contains("generator 1.25 of 2 cores\n"), "{unknown}");
        assert!(!unknown.contains("almost no idle time"), "{unknown}");
        // A paced run is not told to pace.
        let mut paced = header.clone();
        paced.pace = Duration::from_micros(50);
        let cpu = CpuUse {
            generator_cores: 1.0,
            machine_idle: Some(0.01),
            cores: 2,
        };
        let paced = Report::new(paced, d, d, d, Tally::new(), Some(cpu)).to_string();
        assert!(paced.contains("almost no idle time"), "{paced}");
        assert!(!paced.contains("--pace 50us"), "{paced}");
    }

    #[test]
    fn tallies_merge_and_report() {
        let mut a = Tally::new();
        a.sent = 3;
        a.answer(code::SUCCESS, 10_000);
        a.answer(code::HANDLE_NOT_FOUND, 30_000);
        a.failed(true, || "boom".into());
        a.channel_error(|| "refused".into());
        let mut b = Tally::new();
        b.sent = 2;
        b.answer(code::SUCCESS, 20_000);
        b.failed(true, || "boom".into());
        b.failed(false, || "warmup".into());
        a.merge(b);
        let header = header(Load::Closed { concurrency: 2 });
        let d = Duration::from_secs(2);
        let r = Report::new(header, d, d, d, a, None);
        assert_eq!((r.sent, r.answered, r.errors), (5, 3, 2));
        assert_eq!(r.error_samples, ["boom", "refused", "warmup"]);
        assert_eq!(r.channel_errors, 1);
        assert_eq!(r.qps, 1.5);
        assert_eq!(r.codes[0].name, "SUCCESS");
        assert_eq!(r.codes[0].count, 2);
        assert_eq!(r.codes[1].code, 100);
        let l = r.latency.unwrap();
        assert!(l.min_us <= l.p50_us && l.p50_us <= l.max_us);
        assert!((l.max_us - 30.0).abs() < 0.1, "{l:?}");
        let text = r.to_string();
        assert!(text.contains("HANDLE_NOT_FOUND (100) 1 (33.3%)"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["load"]["mode"], "closed");
        assert_eq!(json["load"]["concurrency"], 2);
    }

    #[test]
    fn human_units() {
        assert_eq!(human_us(12.34), "12.3 us");
        assert_eq!(human_us(1234.0), "1.23 ms");
        assert_eq!(human_us(2_500_000.0), "2.50 s");
    }
}
