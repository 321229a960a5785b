//! Driving a server: blocking threads around the channels of a
//! [`Transport`], never a task per request (performance-critical path).
//!
//! - Closed loop: one thread a channel keeps its share of `concurrency`
//!   requests outstanding: every answer (or timeout) sends the next request
//!   at once. Latency is measured from the actual send. Over QUIC the
//!   connections are driven on their own runtimes instead, one thread a
//!   core, one question loop a stream in flight (`quic_closed_loop`).
//! - Open loop: per channel, requests are sent on a fixed schedule
//!   (`rate / channels` a second, the channels' schedules interleaved) and
//!   answers matched by request id; over UDP one thread a channel does
//!   both (sends what is due, then `ppoll`s for answers until the next is
//!   due), over TCP and QUIC a sender thread and a receiver thread. Latency is measured
//!   from the *intended* send time, so a stalled server (or generator) is
//!   charged for every request it delayed, not only the first (no
//!   coordinated omission); the generator's own lateness is reported apart
//!   as send lag.
//! - Latency ends when the answer arrived: over UDP at the kernel's
//!   receive timestamp of its datagram (`SO_TIMESTAMPNS`), so the time a
//!   generator thread waits for a core (shared with the server on a small
//!   machine) before reading it is not charged to the server; over TCP
//!   and QUIC when the generator reads it.
//!
//! Requests are encoded with `idnode-handle` into a reused buffer; answers
//! are read only as far as the envelope and header (request id, response
//! code).

use crate::inflight::{InFlight, Sent};
use crate::quic::{Quic, ask};
use crate::report::{Load, Report, ReportHeader, Tally};
use crate::transport::{Arrival, Channel, Recv, Transport};
use crate::workload::{Pick, Rng, Workload};
use anyhow::Context;
use idnode_handle::{
    ENVELOPE_LEN, Envelope, Header, RequestParams, encode_resolution_request, flags,
};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub transport: Arc<dyn Transport>,
    /// UDP sockets, TCP or QUIC connections.
    pub channels: usize,
    pub load: Load,
    /// Requests sent during the warmup are answered but not counted.
    pub warmup: Duration,
    pub duration: Duration,
    /// A request unanswered this long counts as a timeout.
    pub timeout: Duration,
    pub workload: Workload,
    /// Seed of the question stream (channel `i` uses `seed + i`).
    pub seed: u64,
    /// Open loop over UDP: send on a clock of this period instead of at
    /// each request's own time (zero): see `idnode bench --pace`.
    pub pace: Duration,
}

impl Plan {
    /// Whether the plan can run: what the options say, checked before
    /// anything is sent.
    pub fn check(&self) -> anyhow::Result<()> {
        self.workload.check()?;
        anyhow::ensure!(self.channels > 0, "at least one socket or connection");
        anyhow::ensure!(!self.duration.is_zero(), "--duration must be more than 0");
        anyhow::ensure!(!self.timeout.is_zero(), "--timeout must be more than 0");
        match self.load {
            Load::Closed { concurrency } => {
                anyhow::ensure!(concurrency > 0, "--concurrency must be at least 1");
            }
            Load::Open { rate } => {
                anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate must be more than 0");
            }
        }
        anyhow::ensure!(
            self.pace.is_zero()
                || (matches!(self.load, Load::Open { .. }) && self.transport.name() == "udp"),
            "--pace is for an open loop (--rate) over UDP"
        );
        Ok(())
    }
}

/// Pause before reopening a closed channel.
const REOPEN_PAUSE: Duration = Duration::from_millis(100);

/// The run's clock: nanoseconds since the start, and its milestones.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    base: Instant,
    /// `base` in nanoseconds since the Unix epoch, to place the kernel's
    /// receive timestamps ([`Arrival`]) on this timeline.
    epoch_base: u64,
    /// Requests from here on are counted.
    measure_from: u64,
    /// No request is sent from here on.
    end: u64,
    /// Unanswered requests are given up here.
    drain_until: u64,
    timeout: u64,
}

impl Timeline {
    /// From now: `warmup`, then `duration`, then up to `timeout` to drain.
    fn start(plan: &Plan) -> Self {
        let warmup = nanos(plan.warmup);
        let end = warmup.saturating_add(nanos(plan.duration));
        let base = Instant::now();
        let epoch_base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, nanos);
        Self {
            base,
            epoch_base,
            measure_from: warmup,
            end,
            drain_until: end.saturating_add(nanos(plan.timeout)),
            timeout: nanos(plan.timeout),
        }
    }

    fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// When a message read at `now` arrived: its kernel timestamp on this
    /// timeline, or `now` when there is none or it does not fit (before
    /// the start, or after `now`: the wall clock was stepped).
    fn arrived(&self, arrival: Arrival, now: u64) -> u64 {
        arrival
            .and_then(|a| a.checked_sub(self.epoch_base))
            .filter(|&a| a <= now)
            .unwrap_or(now)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Picks the next question and encodes it into a reused buffer.
struct Requests<'w> {
    workload: &'w Workload,
    rng: Rng,
    name: Vec<u8>,
    out: Vec<u8>,
    op_flags: u32,
    expiration: u32,
}

impl<'w> Requests<'w> {
    fn new(plan: &'w Plan, channel: usize) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let run = (plan.warmup + plan.duration + plan.timeout).as_secs();
        Self {
            workload: &plan.workload,
            rng: Rng::new(plan.seed.wrapping_add(channel as u64)),
            name: Vec::with_capacity(256),
            out: Vec::with_capacity(512),
            op_flags: flags::PO | plan.transport.op_flags(),
            expiration: u32::try_from(now + run + 3600).unwrap_or(u32::MAX),
        }
    }

    fn pick(&mut self) -> Pick {
        self.workload.next(&mut self.rng, &mut self.name)
    }

    /// Encodes the picked question as request `id` and returns its bytes.
    fn encode(&mut self, id: u32, pick: Pick) -> &[u8] {
        let filter = [self.workload.filter_type.as_bytes()];
        let types: &[&[u8]] = if pick.filtered { &filter } else { &[] };
        encode_resolution_request(
            &mut self.out,
            &RequestParams {
                request_id: id,
                session_id: 0,
                op_flags: self.op_flags,
                site_serial: -1,
                expiration: self.expiration,
                handle: &self.name,
                indexes: &[],
                types,
            },
        );
        &self.out
    }
}

/// The request id and response code of an answer.
fn read_answer(message: &[u8]) -> Result<(u32, u32), String> {
    let envelope = Envelope::decode(message).map_err(|e| format!("undecodable answer: {e}"))?;
    let header =
        Header::decode(&message[ENVELOPE_LEN..]).map_err(|e| format!("undecodable answer: {e}"))?;
    Ok((envelope.request_id, header.response_code))
}

/// Counts one received message against the requests in flight.
fn on_answer(
    message: &[u8],
    arrival: Arrival,
    inflight: &mut InFlight,
    tally: &mut Tally,
    timeline: &Timeline,
) {
    match read_answer(message) {
        Ok((id, code)) => match inflight.answer(id) {
            Some(sent) if sent.measured => {
                let latency = timeline
                    .arrived(arrival, timeline.now())
                    .saturating_sub(sent.at);
                tally.answer(code, latency);
            }
            Some(_) => {}
            None => tally.late += 1,
        },
        Err(e) => tally.channel_error(|| e),
    }
}

/// Counts a request the transport reports failed on its own.
fn on_failure(request_id: u32, error: &std::io::Error, inflight: &mut InFlight, tally: &mut Tally) {
    // Already expired (counted as a timeout): only the message is kept.
    let measured = inflight.answer(request_id).is_some_and(|s| s.measured);
    tally.failed(measured, || format!("request failed: {error}"));
}

fn count_pick(tally: &mut Tally, pick: Pick) {
    tally.sent += 1;
    tally.unknown += u64::from(pick.unknown);
    tally.filtered += u64::from(pick.filtered);
}

/// Runs `plan` on blocking threads and returns when every thread is done:
/// after warmup + duration, plus up to `timeout` for the last answers.
pub fn run_blocking(plan: &Plan) -> anyhow::Result<Report> {
    plan.check()?;
    let channels = match plan.load {
        Load::Closed { concurrency } => plan.channels.min(concurrency),
        Load::Open { .. } => plan.channels,
    };
    let server = plan.transport.server();
    let meter = crate::cpu::CpuMeter::start();
    let total = match (plan.load, plan.transport.quic()) {
        (Load::Closed { concurrency }, Some(quic)) => {
            quic_closed_loop(plan, quic, channels, concurrency, Timeline::start(plan))?
        }
        _ => run_channels(plan, channels)?,
    };
    let header = ReportHeader {
        transport: plan.transport.name().to_owned(),
        server: server.to_string(),
        load: plan.load,
        channels,
        pace: plan.pace,
    };
    Ok(Report::new(
        header,
        plan.duration,
        plan.warmup,
        plan.timeout,
        total,
        meter.stop(),
    ))
}

/// Runs `plan` over `channels` [`Channel`]s of its transport, a thread (or
/// two) each, or grouped on one thread a core for an open loop over UDP.
fn run_channels(plan: &Plan, channels: usize) -> anyhow::Result<Tally> {
    let server = plan.transport.server();
    let mut opened = Vec::with_capacity(channels);
    for _ in 0..channels {
        let channel = plan.transport.open().with_context(|| {
            format!(
                "cannot open a {} channel to {server}",
                plan.transport.name()
            )
        })?;
        opened.push(channel);
    }
    let timeline = Timeline::start(plan);
    let mut total = Tally::new();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut threads = Vec::new();
        let polled = opened.iter().all(|c| c.receiver.readiness().is_some());
        if let (Load::Open { rate }, true) = (plan.load, polled) {
            // One thread per core at most, each with its share of the
            // sockets: many sockets spread over the workers of a server
            // that picks one by a hash of the address, few threads leave
            // the cores to the server.
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let groups = channels.min(cores.clamp(1, 4));
            let mut grouped: Vec<Vec<Channel>> = (0..groups).map(|_| Vec::new()).collect();
            for (i, channel) in opened.into_iter().enumerate() {
                grouped[i % groups].push(channel);
            }
            for (i, group) in grouped.into_iter().enumerate() {
                let schedule = Schedule::interleaved(rate, i, groups);
                threads.push(spawn_in(s, format!("bench-{i}"), move || {
                    open_loop_polled(plan, i, group, schedule, timeline)
                })?);
            }
            opened = Vec::new();
        }
        for (i, channel) in opened.into_iter().enumerate() {
            match plan.load {
                Load::Closed { concurrency } => {
                    let window = share(concurrency, channels, i);
                    threads.push(spawn_in(s, format!("bench-{i}"), move || {
                        closed_loop(plan, i, channel, window, timeline)
                    })?);
                }
                Load::Open { rate } => {
                    let schedule = Schedule::interleaved(rate, i, channels);
                    let shared = Arc::new(Shared::default());
                    let Channel { sender, receiver } = channel;
                    let sender_shared = shared.clone();
                    threads.push(spawn_in(s, format!("bench-send-{i}"), move || {
                        open_sender(plan, i, sender, &sender_shared, schedule, timeline)
                    })?);
                    threads.push(spawn_in(s, format!("bench-recv-{i}"), move || {
                        open_receiver(receiver, &shared, timeline)
                    })?);
                }
            }
        }
        for t in threads {
            match t.join() {
                Ok(tally) => total.merge(tally),
                Err(_) => anyhow::bail!("a load generator thread panicked"),
            }
        }
        Ok(())
    })?;
    Ok(total)
}

/// Closed loop over QUIC without [`Channel`]s: one thread a core (at most)
/// runs a single-threaded runtime with its share of the connections, and
/// on each connection its share of `concurrency` loops, each asking one
/// question per stream and the next as soon as the answer is in. The
/// channel form (a driver thread and a connection thread per connection,
/// a task and two channel hops per request) took as much CPU as the node.
fn quic_closed_loop(
    plan: &Plan,
    quic: &Quic,
    connections: usize,
    concurrency: usize,
    t: Timeline,
) -> anyhow::Result<Tally> {
    anyhow::ensure!(concurrency > 0, "--concurrency must be at least 1");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = connections.min(cores.clamp(1, 4));
    let windows: Vec<usize> = (0..connections)
        .map(|c| share(concurrency, connections, c))
        .collect();
    let mut total = Tally::new();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for i in 0..threads {
            let mine: Vec<usize> = windows.iter().copied().skip(i).step_by(threads).collect();
            handles.push(spawn_in(s, format!("bench-quic-{i}"), move || {
                quic_thread(plan, quic, i, &mine, t)
            })?);
        }
        let mut failed = None;
        for h in handles {
            match h.join() {
                Ok(Ok(tally)) => total.merge(tally),
                Ok(Err(e)) => failed = Some(e),
                Err(_) => anyhow::bail!("a load generator thread panicked"),
            }
        }
        match failed {
            Some(e) => {
                Err(e).with_context(|| format!("cannot open a quic channel to {}", quic.server))
            }
            None => Ok(()),
        }
    })?;
    Ok(total)
}

/// One thread of [`quic_closed_loop`]: a connection per entry of
/// `windows`, that many question loops on it. Fails when a connection
/// cannot be opened at the start; one lost later is opened again (the
/// requests in flight on it count as errors).
fn quic_thread(
    plan: &Plan,
    quic: &Quic,
    i: usize,
    windows: &[usize],
    t: Timeline,
) -> std::io::Result<Tally> {
    let tally = RefCell::new(Tally::new());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let requests = RefCell::new(Requests::new(plan, i));
    runtime.block_on(async {
        let mut open = Vec::new();
        for _ in windows {
            match quic.connect().await {
                Ok(pair) => open.push(pair),
                Err(e) => {
                    for (endpoint, connection) in &open {
                        Quic::close(endpoint, connection).await;
                    }
                    return Err(e);
                }
            }
        }
        let drivers = open.into_iter().zip(windows).map(|(connected, &window)| {
            drive_connection(quic, connected, window, &requests, &tally, t)
        });
        futures_util::future::join_all(drivers).await;
        Ok(())
    })?;
    Ok(tally.into_inner())
}

/// Runs `window` question loops on a connection until the run ends; when
/// the connection is lost, opens a new one (after [`REOPEN_PAUSE`]) and
/// goes on.
async fn drive_connection(
    quic: &Quic,
    connected: (quinn::Endpoint, quinn::Connection),
    window: usize,
    requests: &RefCell<Requests<'_>>,
    tally: &RefCell<Tally>,
    t: Timeline,
) {
    let mut current = Some(connected);
    loop {
        let (endpoint, connection) = match current.take() {
            Some(pair) => pair,
            None => {
                tokio::time::sleep(REOPEN_PAUSE).await;
                if t.now() >= t.end {
                    return;
                }
                match quic.connect().await {
                    Ok(pair) => pair,
                    Err(e) => {
                        tally
                            .borrow_mut()
                            .channel_error(|| format!("cannot reopen a channel: {e}"));
                        continue;
                    }
                }
            }
        };
        let loops = (0..window).map(|_| ask_loop(connection.clone(), requests, tally, t));
        futures_util::future::join_all(loops).await;
        Quic::close(&endpoint, &connection).await;
        if t.now() >= t.end {
            return;
        }
    }
}

/// Asks questions on `connection`, one stream each, one at a time, until
/// the run ends or the connection is lost.
async fn ask_loop(
    connection: quinn::Connection,
    requests: &RefCell<Requests<'_>>,
    tally: &RefCell<Tally>,
    t: Timeline,
) {
    let mut message = Vec::with_capacity(512);
    let mut id: u32 = 0;
    loop {
        let sent = t.now();
        if sent >= t.end {
            return;
        }
        let measured = sent >= t.measure_from;
        {
            let mut requests = requests.borrow_mut();
            let pick = requests.pick();
            if measured {
                count_pick(&mut tally.borrow_mut(), pick);
            }
            id = id.wrapping_add(1);
            message.clear();
            message.extend_from_slice(requests.encode(id, pick));
        }
        let asked =
            tokio::time::timeout(Duration::from_nanos(t.timeout), ask(&connection, &message));
        let answer = asked.await;
        let mut tally = tally.borrow_mut();
        match answer {
            Ok(Ok(answer)) => match read_answer(&answer) {
                Ok((answered, code)) if answered == id => {
                    if measured {
                        tally.answer(code, t.now().saturating_sub(sent));
                    }
                }
                Ok(_) => tally.failed(measured, || "an answer to another request".to_owned()),
                Err(e) => tally.failed(measured, || e),
            },
            Ok(Err(Some(error))) => tally.failed(measured, || format!("request failed: {error}")),
            Ok(Err(None)) => {
                tally.failed(measured, || match connection.close_reason() {
                    Some(reason) => format!("QUIC connection closed: {reason}"),
                    None => "QUIC connection closed".to_owned(),
                });
                return;
            }
            Err(_) => tally.timeouts += u64::from(measured),
        }
    }
}

/// Starts a named generator thread in `scope`.
fn spawn_in<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: String,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::io::Result<std::thread::ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .name(name)
        .spawn_scoped(scope, f)
}

/// Part `i` of `total` split over `n` parts (the first `total % n` parts
/// get one more).
fn share(total: usize, n: usize, i: usize) -> usize {
    total / n + usize::from(i < total % n)
}

/// Closed loop on one channel with `window` requests outstanding.
fn closed_loop(plan: &Plan, i: usize, channel: Channel, window: usize, t: Timeline) -> Tally {
    let mut tally = Tally::new();
    let mut requests = Requests::new(plan, i);
    let mut inflight = InFlight::new();
    let mut channel = Some(channel);
    loop {
        let now = t.now();
        if now >= t.end && (inflight.is_empty() || now >= t.drain_until) {
            break;
        }
        let Some(Channel { sender, receiver }) = channel.as_mut() else {
            std::thread::sleep(REOPEN_PAUSE);
            match plan.transport.open() {
                Ok(c) => channel = Some(c),
                Err(e) => tally.channel_error(|| format!("cannot reopen a channel: {e}")),
            }
            continue;
        };
        let (mut broken, mut send_failed) = (None, None);
        if now < t.end {
            while inflight.outstanding() < window {
                let pick = requests.pick();
                let measured = now >= t.measure_from;
                if measured {
                    count_pick(&mut tally, pick);
                }
                let id = inflight.push(Sent { at: now, measured });
                if let Err(e) = sender.send(requests.encode(id, pick)) {
                    send_failed = Some(e);
                    break;
                }
            }
            if send_failed.is_none() {
                send_failed = sender.flush().err();
            }
        }
        if let Some(e) = send_failed {
            // Datagrams that did not go out time out; a stream is closed.
            if plan.transport.is_stream() {
                broken = Some(e);
            } else {
                tally.channel_error(|| format!("send failed: {e}"));
            }
        }
        if broken.is_none() {
            match receiver.recv(&mut |m, a| on_answer(m, a, &mut inflight, &mut tally, &t)) {
                Ok(Recv::Messages(_) | Recv::Idle) => {}
                Ok(Recv::Error(e)) => tally.channel_error(|| format!("receive failed: {e}")),
                Ok(Recv::Failed { request_id, error }) => {
                    on_failure(request_id, &error, &mut inflight, &mut tally);
                }
                Err(e) => broken = Some(e),
            }
        }
        if let Some(e) = broken {
            tally.channel_error(|| format!("channel closed: {e}"));
            inflight.clear(|s| tally.errors += u64::from(s.measured));
            channel = None;
            continue;
        }
        inflight.expire(t.now().saturating_sub(t.timeout), |s| {
            tally.timeouts += u64::from(s.measured);
        });
    }
    inflight.clear(|s| tally.timeouts += u64::from(s.measured));
    tally
}

/// When the requests of an open-loop channel are due: request `k` at
/// `first + k * interval` nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    first: f64,
    interval: f64,
}

impl Schedule {
    /// The share of `rate` of sender `i` of `senders`, their requests
    /// interleaved.
    fn interleaved(rate: f64, i: usize, senders: usize) -> Self {
        let interval = senders as f64 * 1e9 / rate;
        Self {
            first: interval * i as f64 / senders as f64,
            interval,
        }
    }

    fn due(&self, k: u64) -> u64 {
        (self.first + k as f64 * self.interval) as u64
    }
}

/// Open loop on one thread over a group of UDP sockets: sends every
/// request that is due (round robin over the sockets), then waits in
/// `ppoll` for answers until the next one is due, and reads what came.
/// Half the threads of the two-thread form and no lock between them: on a
/// machine the generator shares with the node, every runnable thread more
/// is latency charged to the node.
///
/// With a pace (`plan.pace`), it sleeps instead until the next multiple of
/// the pace on the run's clock, then reads what came (each answer's
/// latency ends at its kernel receive timestamp, not when it is read) and
/// sends what is due: a wake-up a period rather than one or two a request,
/// and the requests of a period in one `sendmmsg`. A request waits up to a
/// period for its send; that wait is in its send lag and its latency.
fn open_loop_polled(
    plan: &Plan,
    i: usize,
    mut group: Vec<Channel>,
    schedule: Schedule,
    t: Timeline,
) -> Tally {
    use nix::poll::{PollFd, PollFlags, ppoll};
    use nix::sys::time::TimeSpec;

    let mut tally = Tally::new();
    let mut requests = Requests::new(plan, i);
    let mut inflight = InFlight::new();
    let mut k: u64 = 0;
    let mut unflushed = vec![false; group.len()];
    let mut ready = vec![false; group.len()];
    // Wake on time: the default 50 us timer slack would be charged to
    // every request as send lag.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_timerslack(1);
    let pace = nanos(plan.pace);
    loop {
        let now = t.now();
        // Send what is due: paced, what was due by the last tick.
        let horizon = now.checked_div(pace).map_or(now, |ticks| ticks * pace);
        loop {
            let due = schedule.due(k);
            if due >= t.end || due > horizon {
                break;
            }
            let socket = (k % group.len() as u64) as usize;
            k += 1;
            let pick = requests.pick();
            let measured = due >= t.measure_from;
            if measured {
                count_pick(&mut tally, pick);
                tally.lag.saturating_record((now - due).max(1));
            }
            let id = inflight.push(Sent { at: due, measured });
            if let Err(e) = group[socket].sender.send(requests.encode(id, pick)) {
                // It (or its batch) times out.
                tally.channel_error(|| format!("send failed: {e}"));
            }
            unflushed[socket] = true;
        }
        for (channel, unflushed) in group.iter_mut().zip(unflushed.iter_mut()) {
            if std::mem::take(unflushed)
                && let Err(e) = channel.sender.flush()
            {
                tally.channel_error(|| format!("send failed: {e}"));
            }
        }
        let sending = schedule.due(k) < t.end;
        if !sending && (inflight.is_empty() || now >= t.drain_until) {
            break;
        }
        // Wait for answers until the next request is due (or, once all
        // are sent, until the drain ends).
        let until = if sending {
            schedule.due(k)
        } else {
            t.drain_until
        };
        let until = if pace > 0 {
            until.div_ceil(pace) * pace
        } else {
            until
        };
        let mut wait = until.saturating_sub(t.now()).min(nanos(POLL_CAP));
        if pace > 0 {
            std::thread::sleep(Duration::from_nanos(wait));
            wait = 0; // just look at what came
        }
        // Paced, answers are read once a period: read until none is left
        // (a period can bring more than one receive batch a socket).
        for _ in 0..DRAIN_PASSES {
            ready.fill(false);
            {
                let mut fds: Vec<PollFd<'_>> = group
                    .iter()
                    .filter_map(|c| c.receiver.readiness())
                    .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                    .collect();
                let timeout = TimeSpec::from_duration(Duration::from_nanos(wait));
                if ppoll(&mut fds, Some(timeout), None).is_ok_and(|n| n > 0) {
                    for (r, fd) in ready.iter_mut().zip(&fds) {
                        *r = fd.revents().is_some_and(|e| !e.is_empty());
                    }
                }
            }
            for (channel, _) in group.iter_mut().zip(&ready).filter(|(_, r)| **r) {
                let answers = &mut |m: &[u8], a| on_answer(m, a, &mut inflight, &mut tally, &t);
                match channel.receiver.recv(answers) {
                    Ok(Recv::Messages(_) | Recv::Idle) => {}
                    Ok(Recv::Error(e)) => tally.channel_error(|| format!("receive failed: {e}")),
                    Ok(Recv::Failed { request_id, error }) => {
                        on_failure(request_id, &error, &mut inflight, &mut tally);
                    }
                    Err(e) => {
                        // A UDP socket does not close under us; count it and
                        // let the outstanding requests time out.
                        tally.channel_error(|| format!("receive failed: {e}"));
                    }
                }
            }
            // (Paced, `wait` is already 0: each pass only looks.)
            if pace == 0 || !ready.contains(&true) {
                break;
            }
        }
        inflight.expire(t.now().saturating_sub(t.timeout), |s| {
            tally.timeouts += u64::from(s.measured);
        });
    }
    inflight.clear(|s| tally.timeouts += u64::from(s.measured));
    tally
}

/// Paced, the most receive passes over the sockets in one period.
const DRAIN_PASSES: usize = 64;

/// Longest single wait of [`open_loop_polled`], so timeouts are checked.
const POLL_CAP: Duration = Duration::from_millis(5);

/// What the two threads of an open-loop channel share.
#[derive(Debug, Default)]
struct Shared {
    inflight: Mutex<InFlight>,
    /// The sender has sent its last request.
    done: AtomicBool,
    /// The receiver saw the channel close.
    closed: AtomicBool,
}

impl Shared {
    fn inflight(&self) -> MutexGuard<'_, InFlight> {
        // A panicking peer thread fails the run anyway; keep counting.
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Open loop, sending side: request `k` is due at `schedule.due(k)`.
fn open_sender(
    plan: &Plan,
    i: usize,
    mut sender: Box<dyn crate::transport::SendHalf>,
    shared: &Shared,
    schedule: Schedule,
    t: Timeline,
) -> Tally {
    let mut tally = Tally::new();
    let mut requests = Requests::new(plan, i);
    let mut k: u64 = 0;
    // Wake on time: the default 50 us timer slack would be charged to
    // every request as send lag.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_timerslack(1);
    loop {
        let due = schedule.due(k);
        if due >= t.end {
            break;
        }
        let now = t.now();
        if due > now {
            if let Err(e) = sender.flush() {
                tally.channel_error(|| format!("send failed: {e}"));
            }
            std::thread::sleep(Duration::from_nanos(due - now));
            continue;
        }
        k += 1;
        let pick = requests.pick();
        let measured = due >= t.measure_from;
        if measured {
            count_pick(&mut tally, pick);
            tally.lag.saturating_record((now - due).max(1));
        }
        if shared.closed.load(Ordering::Acquire) {
            tally.failed(measured, || "channel closed".to_owned());
            continue;
        }
        let id = shared.inflight().push(Sent { at: due, measured });
        if let Err(e) = sender.send(requests.encode(id, pick)) {
            // It (or its batch) times out unless the channel closes.
            tally.channel_error(|| format!("send failed: {e}"));
        }
    }
    if let Err(e) = sender.flush() {
        tally.channel_error(|| format!("send failed: {e}"));
    }
    shared.done.store(true, Ordering::Release);
    tally
}

/// Open loop, receiving side: matches answers until the sender is done and
/// nothing is outstanding, or the last request has timed out.
fn open_receiver(
    mut receiver: Box<dyn crate::transport::RecvHalf>,
    shared: &Shared,
    t: Timeline,
) -> Tally {
    let mut tally = Tally::new();
    loop {
        let result =
            receiver.recv(&mut |m, a| on_answer(m, a, &mut shared.inflight(), &mut tally, &t));
        match result {
            Ok(Recv::Messages(_) | Recv::Idle) => {}
            Ok(Recv::Error(e)) => tally.channel_error(|| format!("receive failed: {e}")),
            Ok(Recv::Failed { request_id, error }) => {
                on_failure(request_id, &error, &mut shared.inflight(), &mut tally);
            }
            Err(e) => {
                tally.channel_error(|| format!("channel closed: {e}"));
                shared.closed.store(true, Ordering::Release);
                // Requests the sender pushed before it saw `closed` are
                // lost too: wait for it to finish, then count them all.
                while !shared.done.load(Ordering::Acquire) {
                    std::thread::sleep(crate::transport::POLL);
                }
                shared
                    .inflight()
                    .clear(|s| tally.errors += u64::from(s.measured));
                break;
            }
        }
        let now = t.now();
        let done = shared.done.load(Ordering::Acquire);
        let mut inflight = shared.inflight();
        inflight.expire(now.saturating_sub(t.timeout), |s| {
            tally.timeouts += u64::from(s.measured);
        });
        if (done && inflight.is_empty()) || now >= t.drain_until {
            inflight.clear(|s| tally.timeouts += u64::from(s.measured));
            break;
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arrival_is_placed_on_the_timeline_or_the_reading_time_is_taken() {
        let t = Timeline {
            base: Instant::now(),
            epoch_base: 1_000_000,
            measure_from: 0,
            end: 10_000,
            drain_until: 20_000,
            timeout: 10_000,
        };
        assert_eq!(t.arrived(Some(1_000_500), 900), 500);
        assert_eq!(t.arrived(Some(1_000_900), 900), 900);
        assert_eq!(t.arrived(None, 900), 900);
        // Before the run started, or after the reading: the wall clock
        // was stepped; the reading time is all there is.
        assert_eq!(t.arrived(Some(999_999), 900), 900);
        assert_eq!(t.arrived(Some(1_000_901), 900), 900);
    }
}
