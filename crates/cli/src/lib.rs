//! The `idnode` command line: one binary for every role.
//!
//! `serve` reads the configuration and flags and runs the node that
//! `idnode-node` assembles; the other commands are clients: `resolve`
//! speaks the Handle protocol, `prefix`, `id`, `import`, `export`,
//! `compact`, `backup`, `token`, `audit` and `status` call the gRPC
//! management API (`id qr`
//! prints the QR codes of proxy URLs for labels), `restore` prepares a data
//! directory from a backup, `report` prints the daily report from the data
//! directory's minute files, `bench` is the load generator.

mod args;
mod audit;
mod grpc;
mod log;
mod manage;
mod qr;
mod report;
mod resolve;
mod serve;
mod shown;
mod status;
mod token;

use clap::Parser;
use std::io::Write as _;
use std::process::ExitCode;

/// A failure caused by what the user typed or gave us (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Returns a [`UsageError`] from the enclosing function.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::UsageError(format!($($arg)*))))
    };
}
pub(crate) use usage;

/// Runs the command line and returns the process exit code: 0 success,
/// 1 failure, 2 bad input (arguments, files, identifiers).
pub fn main() -> ExitCode {
    let cli = args::Cli::parse();
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
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Not `eprintln!`: it panics when stderr cannot be written.
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                shown::lines(&format!("{e:#}"))
            );
            if e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<idnode_bench::BadInput>().is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

async fn run(cli: args::Cli) -> anyhow::Result<ExitCode> {
    use args::Command;
    match cli.command {
        Command::Serve(a) => serve::run(a).await.map(|()| ExitCode::SUCCESS),
        Command::Resolve(a) => resolve::run(a).await,
        Command::Prefix(a) => manage::prefix(&cli.admin, a).await,
        Command::Id(a) => manage::identifier(&cli.admin, a).await,
        Command::Import(a) => manage::import(&cli.admin, a).await,
        Command::Compact => manage::compact(&cli.admin).await,
        Command::Backup(a) => manage::backup(&cli.admin, a).await,
        Command::Restore(a) => manage::restore(a),
        Command::Repair(a) => manage::repair(a),
        Command::Export(a) => manage::export(&cli.admin, a).await,
        Command::Token(a) => token::token(&cli.admin, a).await,
        Command::Audit(a) => audit::audit(&cli.admin, a).await,
        Command::Status(a) => status::run(&cli.admin, a).await,
        Command::Report(a) => report::run(a),
        Command::Bench(a) => {
            let admin = idnode_bench::AdminTarget {
                grpc: cli.admin.grpc.clone(),
                token: cli.admin.token.clone(),
                token_file: cli.admin.token_file.clone(),
            };
            idnode_bench::command(a, &admin).await
        }
    }
}
