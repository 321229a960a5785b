//! `idnode bench` without the rest of the `idnode` binary (no RocksDB to
//! build): the same command lines, for trying the load generator on its
//! own. For example:
//!
//! ```text
//! cargo run --release -p idnode-bench --example idnode -- bench echo-server --listen 127.0.0.1:2642
//! cargo run --release -p idnode-bench --example idnode -- bench --server 127.0.0.1:2642 --duration 5s
//! ```

use clap::{Parser, Subcommand};
use idnode_bench::{AdminTarget, BenchArgs};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "idnode", about = "The load generator of idnode, on its own")]
struct Cli {
    /// gRPC management endpoint of the node (for `bench load`).
    #[arg(
        long,
        global = true,
        env = "IDNODE_GRPC",
        default_value = "http://127.0.0.1:50051"
    )]
    grpc: String,
    /// Admin token (default: read from --token-file).
    #[arg(long, global = true, env = "IDNODE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the admin token, written by the node on first start.
    #[arg(
        long,
        global = true,
        env = "IDNODE_TOKEN_FILE",
        default_value = "./data/admin.token"
    )]
    token_file: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load generator: drive a Handle server, load a data set, sweep rates,
    /// run the echo server.
    Bench(BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let admin = AdminTarget {
        grpc: cli.grpc,
        token: cli.token,
        token_file: cli.token_file,
    };
    let Command::Bench(args) = cli.command;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(idnode_bench::command(args, &admin)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
