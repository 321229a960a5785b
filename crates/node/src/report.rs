//! The daily report (`idnode report --day D`): registrations, resolution
//! requests, successful answers, resolution latency, peak queries per
//! second and registration latency for one UTC day, from counts the node
//! keeps durably per minute.
//!
//! A running node samples its totals every second ([`Sampler`]): the
//! resolution requests of every surface (Handle over UDP, TCP and QUIC, DNS
//! over UDP, TCP and QUIC, the REST API and the proxy), the answers that
//! succeeded, how long the answers took, and the registrations the
//! registry counted. The difference of two samples a second apart is one
//! 1-second bucket of the peak rate. At each new UTC minute it appends the
//! minute that ended as one JSON line to `<data_dir>/report/<day>.jsonl`
//! and syncs the file; a graceful stop writes the current minute the same
//! way. A SIGKILL (or a crash) loses at most the minute being counted.
//!
//! Each line holds the counts of one process over (part of) one minute; a
//! restart within a minute gives that minute two lines, which the reader
//! adds up. The counts live in these files only, never in the store, whose
//! change log is replicated to mirrors and read by IXFR.
//!
//! The reader skips what it cannot parse (a line torn by a crash, a line
//! of another day) and says how many lines it skipped.

use idnode_core::latency::Extremes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// The folder of the minute files, under the data directory.
pub const DIR: &str = "report";

/// A UTC calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl std::fmt::Display for Day {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Day {
    /// `YYYY-MM-DD`, a date that exists.
    pub fn parse(text: &str) -> Result<Day, String> {
        let bad = || {
            format!("{text:?} is not a date: give it as YYYY-MM-DD (a UTC day), e.g. 2026-12-06")
        };
        let b = text.as_bytes();
        if b.len() != 10
            || b[4] != b'-'
            || b[7] != b'-'
            || !b
                .iter()
                .enumerate()
                .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        {
            return Err(bad());
        }
        let (year, month, day) = (
            text[..4].parse::<i32>().map_err(|_| bad())?,
            text[5..7].parse::<u32>().map_err(|_| bad())?,
            text[8..].parse::<u32>().map_err(|_| bad())?,
        );
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(format!(
                "{text:?} is not a date: there is no day {day} in month {month} of {year}"
            ));
        }
        Ok(Day { year, month, day })
    }

    /// The UTC day of `unix_secs`, and the minute of that day (0..1440).
    pub fn of_unix(unix_secs: u64) -> (Day, u32) {
        let days = unix_secs / 86_400;
        let minute = ((unix_secs % 86_400) / 60) as u32;
        // Howard Hinnant's civil_from_days, for days since 1970-01-01.
        let z = days as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        (Day { year, month, day }, minute)
    }

    /// The UTC day now.
    pub fn today() -> Day {
        Day::of_unix(unix_secs()).0
    }

    /// The minute file of this day in `data_dir`.
    pub fn file(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(DIR).join(format!("{self}.jsonl"))
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A minute's key: `2026-12-06T10:15Z`.
fn minute_key(day: Day, minute: u32) -> String {
    format!("{day}T{:02}:{:02}Z", minute / 60, minute % 60)
}

/// One line of a minute file: what one process counted over (part of)
/// one minute. Latencies in nanoseconds; a minimum and maximum are absent
/// when nothing was timed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Minute {
    /// `2026-12-06T10:15Z`.
    pub minute: String,
    /// Resolution requests, every surface.
    pub requests: u64,
    /// Answers that succeeded (Handle SUCCESS, DNS NOERROR, the web's
    /// answers with values).
    pub succeeded: u64,
    /// Answers timed, and their times.
    pub timed: u64,
    pub latency_sum_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_min_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_max_ns: Option<u64>,
    /// The most requests in one 1-second sample.
    pub peak_qps: u64,
    /// Identifiers registered, and the calls that registered them (a
    /// batch is one call) with their times.
    pub registrations: u64,
    pub registration_calls: u64,
    pub registration_sum_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_min_ns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_max_ns: Option<u64>,
}

fn min_of(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_of(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn extremes(e: Extremes) -> (Option<u64>, Option<u64>) {
    if e.any() {
        (Some(e.min_ns), Some(e.max_ns))
    } else {
        (None, None)
    }
}

impl Minute {
    /// Adds `other` (another process's counts of the same minute, or
    /// another minute when summing a day): counts add up, the peak and
    /// the extremes are the larger and smaller.
    pub fn merge(&mut self, other: &Minute) {
        self.requests = self.requests.saturating_add(other.requests);
        self.succeeded = self.succeeded.saturating_add(other.succeeded);
        self.timed = self.timed.saturating_add(other.timed);
        self.latency_sum_ns = self.latency_sum_ns.saturating_add(other.latency_sum_ns);
        self.latency_min_ns = min_of(self.latency_min_ns, other.latency_min_ns);
        self.latency_max_ns = max_of(self.latency_max_ns, other.latency_max_ns);
        self.peak_qps = self.peak_qps.max(other.peak_qps);
        self.registrations = self.registrations.saturating_add(other.registrations);
        self.registration_calls = self
            .registration_calls
            .saturating_add(other.registration_calls);
        self.registration_sum_ns = self
            .registration_sum_ns
            .saturating_add(other.registration_sum_ns);
        self.registration_min_ns = min_of(self.registration_min_ns, other.registration_min_ns);
        self.registration_max_ns = max_of(self.registration_max_ns, other.registration_max_ns);
    }

    fn is_empty(&self) -> bool {
        self.requests == 0
            && self.timed == 0
            && self.registrations == 0
            && self.registration_calls == 0
    }
}

/// The lines of a minute file for `day`, merged by minute, and how many
/// lines were skipped (not JSON of a minute, torn by a crash, or of
/// another day). Never fails: whatever the text holds.
pub fn parse_minutes(text: &str, day: Day) -> (BTreeMap<String, Minute>, usize) {
    let prefix = format!("{day}T");
    let mut minutes: BTreeMap<String, Minute> = BTreeMap::new();
    let mut skipped = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<Minute>(line) {
            Ok(m) if m.minute.starts_with(&prefix) => {
                minutes
                    .entry(m.minute.clone())
                    .and_modify(|sum| sum.merge(&m))
                    .or_insert(m);
            }
            _ => skipped += 1,
        }
    }
    (minutes, skipped)
}

/// Shortest, average and longest, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Millis {
    pub average: f64,
    pub max: f64,
    pub min: f64,
}

fn millis(count: u64, sum_ns: u64, min_ns: Option<u64>, max_ns: Option<u64>) -> Option<Millis> {
    let (min, max) = (min_ns?, max_ns?);
    (count > 0).then(|| Millis {
        average: sum_ns as f64 / count as f64 / 1e6,
        max: max as f64 / 1e6,
        min: min as f64 / 1e6,
    })
}

/// One day's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayReport {
    /// `2026-12-06`.
    pub day: String,
    /// Minutes with counts.
    pub minutes: usize,
    pub registrations: u64,
    pub resolution_requests: u64,
    pub successful_answers: u64,
    /// Absent when no answer was timed.
    pub resolution_latency_ms: Option<Millis>,
    pub peak_qps: u64,
    /// Absent when nothing was registered.
    pub registration_latency_ms: Option<Millis>,
    /// Lines of the file that could not be read (a line torn by a crash).
    pub skipped_lines: usize,
}

impl DayReport {
    /// The report of `day` from its merged minutes.
    pub fn from_minutes(day: Day, minutes: &BTreeMap<String, Minute>, skipped: usize) -> Self {
        let mut all = Minute::default();
        for m in minutes.values() {
            all.merge(m);
        }
        DayReport {
            day: day.to_string(),
            minutes: minutes.len(),
            registrations: all.registrations,
            resolution_requests: all.requests,
            successful_answers: all.succeeded,
            resolution_latency_ms: millis(
                all.timed,
                all.latency_sum_ns,
                all.latency_min_ns,
                all.latency_max_ns,
            ),
            peak_qps: all.peak_qps,
            registration_latency_ms: millis(
                all.registration_calls,
                all.registration_sum_ns,
                all.registration_min_ns,
                all.registration_max_ns,
            ),
            skipped_lines: skipped,
        }
    }
}

/// The report of `day` from the minute file in `data_dir`; `None` when
/// the node counted nothing that day (no file, or no minute in it).
pub fn read_day(data_dir: &Path, day: Day) -> std::io::Result<Option<DayReport>> {
    let bytes = match std::fs::read(day.file(data_dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let (minutes, skipped) = parse_minutes(&String::from_utf8_lossy(&bytes), day);
    if minutes.is_empty() {
        return Ok(None);
    }
    Ok(Some(DayReport::from_minutes(day, &minutes, skipped)))
}

/// Appends `minute` to the file of `day` and syncs it. A last line torn
/// by a crash is ended first, so that it stays one bad line.
fn append(data_dir: &Path, day: Day, minute: &Minute) -> std::io::Result<()> {
    let path = day.file(data_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)?;
    let mut line = serde_json::to_vec(minute).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let len = file.metadata()?.len();
    if len > 0 {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
    }
    file.write_all(&line)?;
    file.sync_data()
}

/// The totals a node has counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub succeeded: u64,
    pub timed: u64,
    pub latency_sum_ns: u64,
    pub registrations: u64,
    pub registration_calls: u64,
    pub registration_sum_ns: u64,
}

impl Totals {
    fn since(&self, before: &Totals) -> Totals {
        Totals {
            requests: self.requests.wrapping_sub(before.requests),
            succeeded: self.succeeded.wrapping_sub(before.succeeded),
            timed: self.timed.wrapping_sub(before.timed),
            latency_sum_ns: self.latency_sum_ns.wrapping_sub(before.latency_sum_ns),
            registrations: self.registrations.wrapping_sub(before.registrations),
            registration_calls: self
                .registration_calls
                .wrapping_sub(before.registration_calls),
            registration_sum_ns: self
                .registration_sum_ns
                .wrapping_sub(before.registration_sum_ns),
        }
    }
}

/// Where the sampler reads the node's counts.
pub trait Counted: Send + Sync + 'static {
    /// The totals now.
    fn totals(&self) -> Totals;
    /// The shortest and longest resolution and registration times since
    /// the last call.
    fn take_extremes(&self) -> (Extremes, Extremes);
}

/// A node's counters, as the sampler reads them: the UDP listeners'
/// workers, the stream listeners, the web's resolutions and the
/// registry's registrations.
pub struct NodeCounts {
    pub udp: Vec<Arc<idnode_server::metrics::ListenerCounts>>,
    pub streams: Vec<Arc<idnode_server::metrics::StreamCounts>>,
    pub http: Option<Arc<idnode_http::metrics::HttpCounts>>,
    pub registry: Arc<idnode_registry::Registry>,
}

impl Counted for NodeCounts {
    fn totals(&self) -> Totals {
        use std::sync::atomic::Ordering::Relaxed;
        let mut t = Totals::default();
        let mut add = |requests: u64, succeeded: u64, timed: u64, sum_ns: u64| {
            t.requests = t.requests.wrapping_add(requests);
            t.succeeded = t.succeeded.wrapping_add(succeeded);
            t.timed = t.timed.wrapping_add(timed);
            t.latency_sum_ns = t.latency_sum_ns.wrapping_add(sum_ns);
        };
        for l in &self.udp {
            let u = l.totals();
            // Bucket 0 is success: Handle 1, DNS NOERROR.
            add(u.received, u.codes[0], u.latency.count(), u.latency.sum_ns);
        }
        for s in &self.streams {
            let latency = s.latency_totals();
            add(
                s.requests.load(Relaxed),
                s.succeeded.load(Relaxed),
                latency.count(),
                latency.sum_ns,
            );
        }
        if let Some(http) = &self.http {
            let r = &http.resolutions;
            let mut latency = idnode_core::latency::LatencyTotals::default();
            r.latency.add_to(&mut latency);
            add(
                r.requests.load(Relaxed),
                r.succeeded.load(Relaxed),
                latency.count(),
                latency.sum_ns,
            );
        }
        let r = self.registry.registrations();
        let mut latency = idnode_core::latency::LatencyTotals::default();
        r.latency.add_to(&mut latency);
        t.registrations = r.registered.load(Relaxed);
        t.registration_calls = latency.count();
        t.registration_sum_ns = latency.sum_ns;
        t
    }

    fn take_extremes(&self) -> (Extremes, Extremes) {
        let mut latency = Extremes::default();
        for l in &self.udp {
            latency.merge(l.take_extremes());
        }
        for s in &self.streams {
            latency.merge(s.latency.take_extremes());
        }
        if let Some(http) = &self.http {
            latency.merge(http.resolutions.latency.take_extremes());
        }
        let registration = self.registry.registrations().latency.take_extremes();
        (latency, registration)
    }
}

/// What has been counted of the minute being counted.
struct Current {
    day: Day,
    minute: u32,
    start: Totals,
    peak_qps: u64,
    latency: Extremes,
    registration: Extremes,
}

/// Samples a node's counts every second and writes each minute to the
/// minute files; [`Sampler::run`] until stopped, then writes the minute
/// being counted.
pub struct Sampler {
    data_dir: PathBuf,
    counted: Arc<dyn Counted>,
    last: Totals,
    last_at: Instant,
    current: Current,
}

impl Sampler {
    /// Starts counting from now: what was counted before (the demo data's
    /// registrations) is not in the report.
    pub fn new(data_dir: &Path, counted: Arc<dyn Counted>) -> Self {
        let last = counted.totals();
        let _ = counted.take_extremes();
        let (day, minute) = Day::of_unix(unix_secs());
        Sampler {
            data_dir: data_dir.to_path_buf(),
            counted,
            last,
            last_at: Instant::now(),
            current: Current {
                day,
                minute,
                start: last,
                peak_qps: 0,
                latency: Extremes::default(),
                registration: Extremes::default(),
            },
        }
    }

    /// Samples every second until `stop`, then a last time, and writes the
    /// minute being counted.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = stop.cancelled() => true,
            };
            self.sample();
            let (day, minute) = Day::of_unix(unix_secs());
            if stopping || (day, minute) != (self.current.day, self.current.minute) {
                let line = self.finish_minute(day, minute);
                if let Some((day, line)) = line {
                    let dir = self.data_dir.clone();
                    let written =
                        tokio::task::spawn_blocking(move || append(&dir, day, &line)).await;
                    match written {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!(
                            error = %e,
                            dir = %self.data_dir.join(DIR).display(),
                            "a minute of the daily report could not be written"
                        ),
                        Err(e) => tracing::warn!(error = %e, "report task failed"),
                    }
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// One sample: a 1-second bucket of the rate, the extremes gathered.
    fn sample(&mut self) {
        let now = self.counted.totals();
        let at = Instant::now();
        let requests = now.requests.wrapping_sub(self.last.requests);
        // A late tick spreads its requests over the seconds it covered.
        let secs = at.duration_since(self.last_at).as_secs_f64();
        let rate = if secs > 1.0 {
            (requests as f64 / secs).ceil() as u64
        } else {
            requests
        };
        self.current.peak_qps = self.current.peak_qps.max(rate);
        let (latency, registration) = self.counted.take_extremes();
        self.current.latency.merge(latency);
        self.current.registration.merge(registration);
        self.last = now;
        self.last_at = at;
    }

    /// The line of the minute being counted (`None` when it counted
    /// nothing) and its day; starts counting `minute` of `day`.
    fn finish_minute(&mut self, day: Day, minute: u32) -> Option<(Day, Minute)> {
        let c = std::mem::replace(
            &mut self.current,
            Current {
                day,
                minute,
                start: self.last,
                peak_qps: 0,
                latency: Extremes::default(),
                registration: Extremes::default(),
            },
        );
        let d = self.last.since(&c.start);
        let (latency_min_ns, latency_max_ns) = extremes(c.latency);
        let (registration_min_ns, registration_max_ns) = extremes(c.registration);
        let line = Minute {
            minute: minute_key(c.day, c.minute),
            requests: d.requests,
            succeeded: d.succeeded,
            timed: d.timed,
            latency_sum_ns: d.latency_sum_ns,
            latency_min_ns,
            latency_max_ns,
            peak_qps: c.peak_qps,
            registrations: d.registrations,
            registration_calls: d.registration_calls,
            registration_sum_ns: d.registration_sum_ns,
            registration_min_ns,
            registration_max_ns,
        };
        (!line.is_empty()).then_some((c.day, line))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn day(text: &str) -> Day {
        Day::parse(text).unwrap()
    }

    #[test]
    fn days_parse_strictly() {
        assert_eq!(
            day("2026-12-06"),
            Day {
                year: 2026,
                month: 12,
                day: 6
            }
        );
        assert_eq!(day("2024-02-29").to_string(), "2024-02-29");
        for bad in [
            "2026-13-01",
            "2026-02-29",
            "2026-04-31",
            "2026-00-10",
            "2026-12-00",
            "2026-1-06",
            "06-12-2026",
            "2026/12/06",
            "yesterday",
            "",
            "2026-12-06T00:00",
            "+026-12-06",
            "２０２６-12-06",
        ] {
            assert!(Day::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn unix_times_fall_on_their_utc_day_and_minute() {
        assert_eq!(Day::of_unix(0), (day("1970-01-01"), 0));
        // 2026-12-06T10:15:59Z
        assert_eq!(Day::of_unix(1_796_552_159), (day("2026-12-06"), 615));
        // 2024-02-29T23:59:59Z, then the next day.
        assert_eq!(Day::of_unix(1_709_251_199), (day("2024-02-29"), 1439));
        assert_eq!(Day::of_unix(1_709_251_200), (day("2024-03-01"), 0));
    }

    fn line(minute: &str, requests: u64, min: u64, max: u64, peak: u64) -> String {
        serde_json::to_string(&Minute {
            minute: minute.into(),
            requests,
            succeeded: requests / 2,
            timed: requests,
            latency_sum_ns: requests * 1_000_000,
            latency_min_ns: Some(min),
            latency_max_ns: Some(max),
            peak_qps: peak,
            registrations: 1,
            registration_calls: 1,
            registration_sum_ns: 2_000_000,
            registration_min_ns: Some(2_000_000),
            registration_max_ns: Some(2_000_000),
        })
        .unwrap()
    }

    #[test]
    fn lines_of_one_minute_add_up_and_a_torn_last_line_is_skipped() {
        let d = day("2026-12-06");
        let text = [
            line("2026-12-06T10:15Z", 10, 500_000, 3_000_000, 7),
            // The same minute again: the node restarted within it.
            line("2026-12-06T10:15Z", 4, 200_000, 1_000_000, 4),
            line("2026-12-06T10:17Z", 6, 900_000, 9_000_000, 6),
            // Another day's minute, and garbage.
            line("2026-12-07T00:00Z", 100, 1, 1, 100),
            "not json".into(),
            String::new(),
            // A line cut short by a crash.
            line("2026-12-06T10:18Z", 50, 1, 1, 50)[..40].to_owned(),
        ]
        .join("\n");
        let (minutes, skipped) = parse_minutes(&text, d);
        assert_eq!(skipped, 3);
        assert_eq!(minutes.len(), 2);
        let first = &minutes["2026-12-06T10:15Z"];
        assert_eq!(first.requests, 14);
        assert_eq!(first.latency_min_ns, Some(200_000));
        assert_eq!(first.latency_max_ns, Some(3_000_000));
        assert_eq!(first.peak_qps, 7);
        assert_eq!(first.registrations, 2);

        let report = DayReport::from_minutes(d, &minutes, skipped);
        assert_eq!(report.resolution_requests, 20);
        assert_eq!(report.successful_answers, 5 + 2 + 3);
        assert_eq!(report.registrations, 3);
        assert_eq!(report.peak_qps, 7);
        let latency = report.resolution_latency_ms.unwrap();
        assert_eq!((latency.min, latency.max), (0.2, 9.0));
        assert!((latency.average - 1.0).abs() < 1e-9, "{latency:?}");
        let registration = report.registration_latency_ms.unwrap();
        assert_eq!((registration.min, registration.max), (2.0, 2.0));
    }

    #[test]
    fn whatever_the_bytes_parsing_does_not_fail() {
        let d = day("2026-12-06");
        for text in [
            "{",
            "{\"minute\": 5}",
            "{\"minute\": \"2026-12-06T00:00Z\", \"requests\": -1}",
            "{\"minute\": \"2026-12-06T00:00Z\", \"requests\": 1e400}",
            "[]",
            "\u{0}\u{1}\u{2}",
            "null",
        ] {
            let (minutes, skipped) = parse_minutes(text, d);
            assert!(minutes.is_empty(), "{text:?}");
            assert_eq!(skipped, 1, "{text:?}");
        }
    }

    struct Fixed(std::sync::Mutex<Totals>);

    impl Counted for Fixed {
        fn totals(&self) -> Totals {
            *self.0.lock().unwrap()
        }
        fn take_extremes(&self) -> (Extremes, Extremes) {
            let mut e = Extremes::default();
            e.cover(1_000);
            (e, Extremes::default())
        }
    }

    #[test]
    fn minutes_written_are_read_back_and_a_torn_line_stays_alone() {
        let dir = tempfile::tempdir().unwrap();
        let counted = Arc::new(Fixed(std::sync::Mutex::new(Totals {
            registrations: 99, // before the sampler: not reported
            ..Totals::default()
        })));
        let mut sampler = Sampler::new(dir.path(), counted.clone());
        let (d, minute) = (sampler.current.day, sampler.current.minute);
        *counted.0.lock().unwrap() = Totals {
            requests: 5,
            succeeded: 3,
            timed: 5,
            latency_sum_ns: 5_000,
            registrations: 101,
            registration_calls: 1,
            registration_sum_ns: 7,
        };
        sampler.sample();
        let (_, written) = sampler.finish_minute(d, minute).unwrap();
        assert_eq!(written.requests, 5);
        assert_eq!(written.registrations, 2);
        assert_eq!(written.peak_qps, 5);
        // Nothing counted since: no line.
        assert!(sampler.finish_minute(d, minute).is_none());
        // A torn line (a crash while writing), then the next write.
        let path = d.file(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{\"minute\":\"20").unwrap();
        append(dir.path(), d, &written).unwrap();
        append(dir.path(), d, &written).unwrap();
        let report = read_day(dir.path(), d).unwrap().unwrap();
        assert_eq!(report.skipped_lines, 1);
        assert_eq!(report.resolution_requests, 10);
        assert_eq!(report.registrations, 4);
        assert_eq!(report.peak_qps, 5);
        let other = Day::parse("2001-01-01").unwrap();
        assert!(read_day(dir.path(), other).unwrap().is_none());
    }
}
