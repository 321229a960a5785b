//! The load generator of idnode: `idnode bench`.
//!
//! This crate owns driving a Handle server over UDP, TCP and QUIC (closed
//! loop with a fixed number of requests outstanding, open loop at a fixed
//! rate with latency counted from the intended send time), the question mix
//! (synthetic identifiers or a file, unknown names, type filters), the
//! reports (HdrHistogram percentiles, responses by code, what the run cost
//! the machine in CPU, text and JSON),
//! rate sweeps drawn as SVG, registering the synthetic data set through the
//! gRPC API, and the echo server that measures the ceiling of loopback UDP
//! request/response with idnode's worker model.
//!
//! It speaks only the wire protocols (`idnode-handle` for Handle, the QUIC
//! connection setup of `idnode-client`, the generated client of
//! `idnode-admin` for gRPC). It must not depend on a storage engine (no
//! RocksDB) nor on the CLI crate: `idnode-cli` calls [`command`] with the
//! arguments it parsed ([`BenchArgs`]).
//!
//! # Performance-critical path
//! The driver threads ([`driver`]): picking a question
//! ([`Workload::next`]), encoding it into a reused buffer, one send
//! syscall, [`InFlight`] bookkeeping, reading the answer's envelope and
//! header, one histogram record. Nothing there allocates once buffers have
//! grown; there is no task per request and no lock shared between channels.
//! QUIC is the exception by nature ([`quic`]): quinn wants a stream and a
//! task per request, run on each connection's own thread, and a request and
//! its answer are each one allocation.

pub mod args;
pub mod cpu;
pub mod driver;
pub mod echo;
pub mod inflight;
pub mod load;
pub mod quic;
pub mod report;
pub mod svg;
pub mod sweep;
pub mod transport;
pub mod workload;

pub use args::{
    AdminTarget, BenchArgs, BenchCommand, EchoArgs, LoadArgs, RunArgs, SweepArgs, TransportKind,
};
pub use cpu::CpuUse;
pub use driver::{Plan, run_blocking};
pub use echo::{EchoOptions, EchoServer};
pub use idnode_client::{Fingerprint, TlsOptions};
pub use inflight::InFlight;
pub use load::LoadSummary;
pub use quic::Quic;
pub use report::{Latency, Load, Report};
pub use transport::{Tcp, Transport, Udp};
pub use workload::{Identifiers, Synthetic, Workload};

use anyhow::Context;
use std::process::ExitCode;

/// A failure caused by what the user gave (options, files): `idnode`
/// exits with 2 for it, as for its own bad input.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

fn bad_input(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(BadInput(format!("{e:#}")))
}

/// Runs `plan` on its own threads without blocking the async runtime.
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    tokio::task::spawn_blocking(move || run_blocking(&plan))
        .await
        .context("the load generator stopped unexpectedly")?
}

/// `idnode bench [OPTIONS]`: one run, its report printed.
pub async fn run_command(args: RunArgs) -> anyhow::Result<Report> {
    let plan = args.plan().and_then(|p| p.check().map(|()| p));
    let plan = plan.map_err(bad_input)?;
    warn_if_remote(&plan);
    if !args.json {
        eprintln!(
            "driving {} {} for {} (+{} warmup)...",
            plan.transport.name(),
            plan.transport.server(),
            humantime::format_duration(plan.duration),
            humantime::format_duration(plan.warmup)
        );
    }
    let report = run(plan).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    Ok(report)
}

/// `idnode bench sweep`: the steps' table (or JSON), and the SVG.
pub async fn sweep_command(args: SweepArgs) -> anyhow::Result<Vec<Report>> {
    let plan = args
        .target
        .plan(&args.workload, Load::Open { rate: 1.0 })
        .and_then(|mut plan| {
            plan.warmup = args.warmup;
            plan.duration = args.duration;
            plan.pace = args.pace;
            for &rate in &args.rates {
                Plan {
                    load: Load::Open { rate },
                    ..plan.clone()
                }
                .check()?;
            }
            Ok(plan)
        })
        .map_err(bad_input)?;
    warn_if_remote(&plan);
    let json = args.json;
    let rates = args.rates.clone();
    if !json {
        println!(
            "sweep of {} {}: {} steps of {} (+{} warmup)",
            plan.transport.name(),
            plan.transport.server(),
            rates.len(),
            humantime::format_duration(plan.duration),
            humantime::format_duration(plan.warmup)
        );
        println!("{}", sweep::TABLE_HEADER);
    }
    let steps = tokio::task::spawn_blocking(move || {
        sweep::sweep_blocking(&plan, &rates, |r| {
            if !json {
                println!("{}", sweep::table_row(r));
            }
        })
    })
    .await
    .context("the load generator stopped unexpectedly")??;
    if json {
        let text = serde_json::to_string_pretty(&serde_json::json!({ "steps": steps }))?;
        println!("{text}");
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, sweep::chart(&steps))
            .with_context(|| format!("cannot write {}", path.display()))?;
        if !json {
            println!("latency against throughput: {}", path.display());
        }
    }
    Ok(steps)
}

/// `idnode bench load`.
pub async fn load_command(args: LoadArgs, admin: &AdminTarget) -> anyhow::Result<()> {
    let set = args.data_set.synthetic().map_err(bad_input)?;
    if let Some(path) = &args.jsonl {
        let prefixes = load::write_files(&set, path)?;
        println!(
            "wrote {} identifiers to {} and {} prefixes to {}\nregister them with:\n  \
             grep -v '^#' {} | xargs -n1 idnode prefix create && idnode import {}",
            set.count,
            path.display(),
            set.prefixes,
            prefixes.display(),
            prefixes.display(),
            path.display()
        );
        return Ok(());
    }
    let summary = load::register(set, admin, args.quiet).await?;
    print!("{summary}");
    anyhow::ensure!(
        summary.failed == 0,
        "{} identifiers failed to register",
        summary.failed
    );
    if args.compact {
        println!("compacting the node's store (its records merged into one sorted run)...");
        let took = load::compact(admin).await?;
        println!("compacted the store in {:.2}s", took.as_secs_f64());
    }
    Ok(())
}

/// `idnode bench echo-server`: answers until Ctrl-C or `--duration`.
pub async fn echo_command(args: EchoArgs) -> anyhow::Result<()> {
    let options = EchoOptions {
        listen: args.listen,
        workers: args.workers,
        pin: args.pin_workers,
        data_set: args.data_set.synthetic().map_err(bad_input)?,
    };
    let server = EchoServer::start(&options)
        .with_context(|| format!("cannot listen on udp {}", args.listen))?;
    let addr = server.local_addr();
    println!(
        "echo server on udp {addr}: {} workers, answers of {} bytes; drive it with\n  \
         idnode bench --server {addr}\nCtrl-C stops it",
        server.workers(),
        server.response_len()
    );
    match args.duration {
        Some(d) => tokio::time::sleep(d).await,
        None => tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?,
    }
    let answered = server.answered();
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .context("the echo server did not stop cleanly")?;
    println!("echo server answered {answered} requests");
    Ok(())
}

/// Runs `idnode bench ...` as parsed; `admin` carries the global `--grpc`,
/// `--token` and `--token-file` for `bench load`.
pub async fn command(args: BenchArgs, admin: &AdminTarget) -> anyhow::Result<ExitCode> {
    match args.command {
        None => {
            let report = run_command(args.run).await?;
            if report.answered == 0 {
                eprintln!("error: nothing was answered: is a Handle server listening there?");
                return Ok(ExitCode::FAILURE);
            }
        }
        Some(BenchCommand::Sweep(a)) => {
            sweep_command(*a).await?;
        }
        Some(BenchCommand::Load(a)) => load_command(a, admin).await?,
        Some(BenchCommand::EchoServer(a)) => echo_command(a).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Load tests belong on machines one owns: say so when the target is not
/// on this host.
fn warn_if_remote(plan: &Plan) {
    let ip = plan.transport.server().ip();
    if !ip.is_loopback() {
        eprintln!(
            "note: {ip} is not a loopback address; drive only servers you run (and may load)"
        );
    }
}
