//! The command line of `idnode bench` (clap derive), and its conversion
//! into a [`Plan`].
//!
//! `--grpc`, `--token` and `--token-file` are the `idnode` command's global
//! options: `bench load` gets them through [`AdminTarget`], so they are not
//! declared again here.

use crate::driver::Plan;
use crate::quic::Quic;
use crate::report::Load;
use crate::transport::{Tcp, Transport, Udp};
use crate::workload::{Identifiers, Synthetic, Workload};
use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use idnode_client::{Fingerprint, TlsOptions};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `idnode bench [OPTIONS]` drives a Handle server and reports; the
/// subcommands load a data set, sweep rates, or run the echo server.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:\n  \
        idnode bench --concurrency 64 --duration 10s             closed loop against 127.0.0.1:2641\n  \
        idnode bench --rate 50000 --miss-ratio 0.1 --json        open loop, 10% unknown identifiers\n  \
        idnode bench -t quic --pin <sha256> --concurrency 64     QUIC against 127.0.0.1:2642\n  \
        idnode bench load --count 1000000 --prefixes 100          register the synthetic data set\n  \
        idnode bench sweep --rates 20000,40000,80000 --svg out.svg\n  \
        idnode bench echo-server                                  the ceiling, on 127.0.0.1:2642"
)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Register the synthetic data set through the gRPC API (BatchCreate),
    /// or write it as JSONL for `idnode import`.
    Load(LoadArgs),
    /// Open-loop runs at several rates; prints a table and draws latency
    /// against throughput as SVG.
    Sweep(Box<SweepArgs>),
    /// A minimal UDP responder with idnode's worker model: the ceiling to
    /// compare idnode against.
    EchoServer(EchoArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    Udp,
    Tcp,
    /// Handle over QUIC (ALPN hdl): one request per stream, needs --pin,
    /// --ca-file or --insecure.
    Quic,
}

/// Which server, over what.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Handle server to drive (host:port) [default: 127.0.0.1:2641, with
    /// -t quic 127.0.0.1:2642].
    #[arg(long, short = 's')]
    pub server: Option<String>,
    /// Transport.
    #[arg(long, short = 't', value_enum, default_value_t = TransportKind::Udp)]
    pub transport: TransportKind,
    /// UDP sockets, TCP or QUIC connections [default: closed-loop UDP and
    /// QUIC two per core, 4 to 8; otherwise one per core, 2 to 4]. A
    /// server that picks its SO_REUSEPORT worker at random per connection
    /// or by a hash of each socket's address (idnode's QUIC endpoints,
    /// other servers' UDP) puts two on the same worker half the time; four
    /// or more spread over the workers. QUIC keeps the concurrency's share of each as streams
    /// in flight.
    #[arg(long)]
    pub connections: Option<usize>,
    /// A request unanswered this long counts as a timeout.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// QUIC: accept any certificate (encrypted, but the server is not
    /// authenticated). For loopback runs and first contact.
    #[arg(long, conflicts_with_all = ["pin", "ca_file"])]
    pub insecure: bool,
    /// QUIC: the SHA-256 fingerprint of the server's certificate, 64 hex
    /// digits with or without colons (as `idnode serve` prints it).
    #[arg(long, value_name = "SHA256", conflicts_with = "ca_file")]
    pub pin: Option<Fingerprint>,
    /// QUIC: trust certificates that chain to this PEM file (a CA, or the
    /// node's own `<data-dir>/tls/cert.pem`); the name checked is the host
    /// of --server.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
}

/// The size of the synthetic data set (`88.<p>.<x>/BENCH-<n>`).
#[derive(Debug, Clone, Copy, Args)]
pub struct DataSetArgs {
    /// Identifiers in the synthetic data set.
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// Prefixes they are spread over (88.900.1, 88.900.2, ...).
    #[arg(long, default_value_t = 100)]
    pub prefixes: u32,
}

impl DataSetArgs {
    pub fn synthetic(&self) -> anyhow::Result<Synthetic> {
        Synthetic::new(self.count, self.prefixes)
    }
}

/// What to ask.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Identifiers to ask, one a line (or the JSONL of `idnode import`).
    #[arg(long, conflicts_with = "synthetic")]
    pub ids: Option<PathBuf>,
    /// Ask the synthetic data set of `bench load` (the default without --ids).
    #[arg(long)]
    pub synthetic: bool,
    #[command(flatten)]
    pub data_set: DataSetArgs,
    /// Fraction of queries for identifiers that do not exist.
    #[arg(long, default_value_t = 0.0)]
    pub miss_ratio: f64,
    /// Fraction of queries that ask only for values of --filter-type.
    #[arg(long, default_value_t = 0.0)]
    pub filter_ratio: f64,
    /// Type asked by filtered queries.
    #[arg(long, default_value = "URL")]
    pub filter_type: String,
    /// Seed of the question stream (same seed, same questions).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl WorkloadArgs {
    pub fn workload(&self) -> anyhow::Result<Workload> {
        let identifiers = match &self.ids {
            Some(path) => Identifiers::from_file(path)?,
            None => Identifiers::Synthetic(self.data_set.synthetic()?),
        };
        let workload = Workload {
            identifiers,
            miss_ratio: self.miss_ratio,
            filter_ratio: self.filter_ratio,
            filter_type: self.filter_type.clone(),
        };
        workload.check()?;
        Ok(workload)
    }
}

/// One run: closed loop by default, open loop with --rate.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Closed loop: requests kept outstanding, over all sockets or
    /// connections (QUIC: streams in flight) [default: 64].
    #[arg(long, short = 'c', conflicts_with = "rate")]
    pub concurrency: Option<usize>,
    /// Open loop: queries a second, sent on schedule whatever the answers
    /// do; latency counts from the intended send time.
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Open loop over UDP: send on a clock of this period (e.g. 50us)
    /// instead of at each request's own time. The generator wakes once a
    /// period, so it takes less of a machine it shares with the server; a
    /// request waits up to a period to go out, counted in its latency.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, requires = "rate")]
    pub pace: Duration,
    /// How long to measure.
    #[arg(long, short = 'd', default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Load before measuring (not counted).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Open-loop steps at increasing rates.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Offered rates, queries a second, e.g. 10000,20000,40000.
    #[arg(long, required = true, value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// How long each step measures.
    #[arg(long, short = 'd', default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Load before each step's measurement.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Over UDP: send on a clock of this period (see `idnode bench --pace`).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub pace: Duration,
    /// Write latency (p50, p99) against achieved throughput here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Print every step's report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Register the synthetic data set, or write it as JSONL.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    pub data_set: DataSetArgs,
    /// Write the data set to this JSONL file (and its prefixes beside it,
    /// `<file>.prefixes.txt`) instead of registering it.
    #[arg(long)]
    pub jsonl: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Compact the node's store once the data set is in (as `idnode
    /// compact`): lookups then search one sorted run, as on a node in
    /// service. It rewrites all the stored records.
    #[arg(long, conflicts_with = "jsonl")]
    pub compact: bool,
}

/// The echo server.
#[derive(Debug, Clone, Args)]
pub struct EchoArgs {
    /// UDP address to answer on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:2642")]
    pub listen: SocketAddr,
    /// Worker sockets (0 = one per core, as idnode).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Run each worker only on the CPUs whose datagrams it receives (as
    /// `idnode serve --udp-pin`).
    #[arg(long)]
    pub pin_workers: bool,
    /// Answer for this long, then stop [default: until Ctrl-C].
    #[arg(long, short = 'd', value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// The data set whose typical answer the response imitates.
    #[command(flatten)]
    pub data_set: DataSetArgs,
}

/// Where `bench load` registers: the `idnode` command's global options.
#[derive(Debug, Clone)]
pub struct AdminTarget {
    /// gRPC endpoint, e.g. `http://127.0.0.1:50051`.
    pub grpc: String,
    pub token: Option<String>,
    /// Read when `token` is `None`.
    pub token_file: PathBuf,
}

/// Sockets or connections when not given: for a closed-loop UDP or QUIC
/// run two per core, 4 to 8 (so that a server that picks its SO_REUSEPORT
/// worker by a hash of the address sees them spread); otherwise one per
/// core, 2 to 4 (an open-loop TCP or QUIC run has two threads per
/// connection).
fn default_channels(transport: TransportKind, load: &Load) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    match (transport, load) {
        (TransportKind::Udp | TransportKind::Quic, Load::Closed { .. }) => (2 * cores).clamp(4, 8),
        _ => cores.clamp(2, 4),
    }
}

impl TargetArgs {
    /// `--server`, or the default port of the transport on loopback.
    pub fn server(&self) -> &str {
        match (&self.server, self.transport) {
            (Some(s), _) => s,
            (None, TransportKind::Quic) => "127.0.0.1:2642",
            (None, _) => "127.0.0.1:2641",
        }
    }

    pub fn transport(&self) -> anyhow::Result<Arc<dyn Transport>> {
        let text = self.server();
        let server: SocketAddr = text
            .to_socket_addrs()
            .with_context(|| format!("--server `{text}` is not host:port"))?
            .next()
            .with_context(|| format!("--server `{text}` has no address"))?;
        Ok(match self.transport {
            TransportKind::Udp => {
                self.no_tls_options()?;
                Arc::new(Udp { server })
            }
            TransportKind::Tcp => {
                self.no_tls_options()?;
                Arc::new(Tcp { server })
            }
            TransportKind::Quic => Arc::new(Quic {
                server,
                tls: self.tls()?,
                timeout: self.timeout,
            }),
        })
    }

    /// How a QUIC run checks the server.
    fn tls(&self) -> anyhow::Result<TlsOptions> {
        let mut tls = match (&self.pin, &self.ca_file, self.insecure) {
            (Some(pin), _, _) => TlsOptions::pinned(*pin),
            (None, Some(path), _) => TlsOptions::ca_file(path),
            (None, None, true) => TlsOptions::insecure(),
            (None, None, false) => anyhow::bail!(
                "-t quic needs a way to check the server: --pin SHA256 (the fingerprint \
                 `idnode serve` prints), --ca-file PEM, or --insecure"
            ),
        };
        // A host name in --server is the name sent and checked; an address
        // stays the default (the IP address itself).
        if let Some((host, _port)) = self.server().rsplit_once(':') {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.parse::<IpAddr>().is_err() {
                tls.server_name = Some(host.to_owned());
            }
        }
        Ok(tls)
    }

    fn no_tls_options(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.insecure && self.pin.is_none() && self.ca_file.is_none(),
            "--insecure, --pin and --ca-file are for -t quic"
        );
        Ok(())
    }

    /// A plan for this target; the caller sets `load`, durations.
    pub fn plan(&self, workload: &WorkloadArgs, load: Load) -> anyhow::Result<Plan> {
        Ok(Plan {
            transport: self.transport()?,
            channels: self
                .connections
                .unwrap_or_else(|| default_channels(self.transport, &load)),
            load,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(10),
            timeout: self.timeout,
            workload: workload.workload()?,
            seed: workload.seed,
            pace: Duration::ZERO,
        })
    }
}

impl RunArgs {
    pub fn plan(&self) -> anyhow::Result<Plan> {
        let load = match (self.rate, self.concurrency) {
            (Some(rate), _) => Load::Open { rate },
            (None, c) => Load::Closed {
                concurrency: c.unwrap_or(64),
            },
        };
        let mut plan = self.target.plan(&self.workload, load)?;
        plan.warmup = self.warmup;
        plan.duration = self.duration;
        plan.pace = self.pace;
        Ok(plan)
    }
}
