//! The arguments as the `idnode` command will hold them: a `bench`
//! variant beside the global `--grpc`, `--token`, `--token-file`.

use clap::{CommandFactory, Parser, Subcommand};
use idnode_bench::{BenchArgs, BenchCommand, Load, TransportKind};
use std::path::PathBuf;
use std::time::Duration;

/// A copy of the shape of `idnode-cli`'s `Cli`.
#[derive(Debug, Parser)]
#[command(name = "idnode")]
struct Cli {
    #[arg(long, global = true, default_value = "http://127.0.0.1:50051")]
    grpc: String,
    #[arg(long, global = true)]
    token: Option<String>,
    #[arg(long, global = true, default_value = "./data/admin.token")]
    token_file: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Bench(BenchArgs),
}

/// What `idnode <line>` parses to: the global options and the bench args.
struct Parsed {
    grpc: String,
    token: Option<String>,
}

fn bench(line: &str) -> Result<(Parsed, BenchArgs), clap::Error> {
    let cli = Cli::try_parse_from(line.split_whitespace())?;
    let Command::Bench(args) = cli.command;
    let _ = cli.token_file;
    Ok((
        Parsed {
            grpc: cli.grpc,
            token: cli.token,
        },
        args,
    ))
}

#[test]
fn definitions_are_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn plain_bench_is_a_closed_loop_run() {
    let (_, args) = bench("idnode bench").unwrap();
    assert!(args.command.is_none());
    let plan = args.run.plan().unwrap();
    assert_eq!(plan.load, Load::Closed { concurrency: 64 });
    assert_eq!(plan.duration, Duration::from_secs(10));
    assert_eq!(plan.transport.server().to_string(), "127.0.0.1:2641");
    assert_eq!(plan.transport.name(), "udp");

    let (_, args) = bench(
        "idnode bench --rate 50000 --duration 300ms --warmup 0s -t tcp -s 127.0.0.1:9 \
         --synthetic --count 500 --prefixes 5 --miss-ratio 0.1 --filter-ratio 0.2 --json",
    )
    .unwrap();
    let run = &args.run;
    assert!(run.json);
    assert_eq!(run.target.transport, TransportKind::Tcp);
    let plan = run.plan().unwrap();
    assert_eq!(plan.load, Load::Open { rate: 50000.0 });
    assert_eq!(plan.duration, Duration::from_millis(300));
    assert_eq!(plan.warmup, Duration::ZERO);
    assert_eq!(plan.workload.miss_ratio, 0.1);
    assert_eq!(plan.transport.name(), "tcp");
    assert_eq!(plan.pace, Duration::ZERO);

    let (_, args) = bench("idnode bench --rate 108000 --pace 50us").unwrap();
    assert_eq!(args.run.plan().unwrap().pace, Duration::from_micros(50));
}

#[test]
fn quic_takes_a_way_to_check_the_server() {
    let pin = "AB:".repeat(31) + "AB";
    let (_, args) = bench(&format!(
        "idnode bench -t quic --pin {pin} --concurrency 64 --connections 2"
    ))
    .unwrap();
    assert_eq!(args.run.target.transport, TransportKind::Quic);
    assert_eq!(args.run.target.pin.unwrap().0, [0xab; 32]);
    let plan = args.run.plan().unwrap();
    assert_eq!(plan.transport.name(), "quic");
    // The node's QUIC port when --server is not given.
    assert_eq!(plan.transport.server().to_string(), "127.0.0.1:2642");
    assert_eq!(
        (plan.load, plan.channels),
        (Load::Closed { concurrency: 64 }, 2)
    );

    for line in [
        "idnode bench -t quic --insecure -s 127.0.0.1:9",
        "idnode bench -t quic --ca-file cert.pem --rate 1000",
    ] {
        let (_, args) = bench(line).unwrap();
        assert_eq!(args.run.plan().unwrap().transport.name(), "quic", "{line}");
    }
    // Refused when planned: no way to check the server, or QUIC options
    // on another transport.
    for line in [
        "idnode bench -t quic",
        "idnode bench --insecure",
        "idnode bench -t tcp --ca-file cert.pem",
    ] {
        let (_, args) = bench(line).unwrap();
        let e = args.run.plan().unwrap_err().to_string();
        assert!(e.contains("quic"), "{line}: {e}");
    }
    // Refused when parsed: two ways at once, a malformed pin.
    for line in [
        "idnode bench -t quic --insecure --ca-file cert.pem".to_owned(),
        format!("idnode bench -t quic --insecure --pin {pin}"),
        format!("idnode bench -t quic --pin {pin} --ca-file cert.pem"),
        "idnode bench -t quic --pin 12".to_owned(),
    ] {
        assert!(bench(&line).is_err(), "{line}");
    }
}

#[test]
fn bad_combinations_are_refused() {
    for line in [
        "idnode bench --rate 10 --concurrency 5",
        "idnode bench --ids f.txt --synthetic",
        "idnode bench --duration 10",
        "idnode bench sweep",
        "idnode bench --rate 10 load",
        "idnode bench --pace 50us",
        "idnode bench --rate 10 --pace fast",
    ] {
        assert!(bench(line).is_err(), "{line}");
    }
    let (_, args) = bench("idnode bench --miss-ratio 2").unwrap();
    assert!(args.run.plan().is_err());
}

#[test]
fn subcommands_parse_with_the_global_options() {
    let (cli, args) =
        bench("idnode bench load --count 10 --prefixes 2 --grpc http://127.0.0.1:1 --token t")
            .unwrap();
    assert_eq!(cli.grpc, "http://127.0.0.1:1");
    assert_eq!(cli.token.as_deref(), Some("t"));
    let Some(BenchCommand::Load(load)) = args.command else {
        panic!("not load");
    };
    assert_eq!((load.data_set.count, load.data_set.prefixes), (10, 2));

    let (_, args) =
        bench("idnode bench sweep --rates 10000,20000,40000 --svg out.svg --duration 2s").unwrap();
    let Some(BenchCommand::Sweep(sweep)) = args.command else {
        panic!("not sweep");
    };
    assert_eq!(sweep.rates, [10000.0, 20000.0, 40000.0]);
    assert_eq!(sweep.svg, Some(PathBuf::from("out.svg")));
    assert_eq!(sweep.pace, Duration::ZERO);
    let (_, args) = bench("idnode bench sweep --rates 1000 --pace 100us").unwrap();
    let Some(BenchCommand::Sweep(sweep)) = args.command else {
        panic!("not sweep");
    };
    assert_eq!(sweep.pace, Duration::from_micros(100));

    let (_, args) = bench("idnode bench echo-server --listen 127.0.0.1:0 --workers 2").unwrap();
    let Some(BenchCommand::EchoServer(echo)) = args.command else {
        panic!("not echo-server");
    };
    assert_eq!(echo.listen.to_string(), "127.0.0.1:0");
    assert_eq!(echo.workers, 2);
}
