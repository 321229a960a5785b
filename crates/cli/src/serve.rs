//! `idnode serve`: the configuration from the file and the flags, then the
//! node `idnode-node` assembles; prints where it listens (and writes it to
//! `--ready-file` as JSON), and stops cleanly on SIGINT or SIGTERM. The log
//! goes to stderr through [`crate::log`], which drops what it cannot write;
//! the lines on stdout are lost, not fatal, when stdout is gone.

use crate::args::ServeArgs;
use crate::log::say;
use crate::usage;
use anyhow::Context;
use idnode_node::{Addresses, BadConfig, Config};

fn load_config(args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => usage!("{e}"),
        },
        None => Config::default(),
    };
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(addr) = args.handle_listen {
        config.handle.listen = addr;
    }
    if let Some(addr) = args.grpc_listen {
        config.grpc.listen = addr;
    }
    if let Some(addr) = args.http_listen {
        config.http.listen = addr;
    }
    if args.no_http {
        config.http.enabled = false;
    }
    if args.http_tls {
        config.http.tls = true;
    }
    if let Some(n) = args.udp_workers {
        config.handle.udp_workers = n;
    }
    if args.udp_pin {
        config.handle.pin_udp_workers = true;
        config.dns.pin_udp_workers = true;
    }
    if let Some(addr) = args.quic_listen {
        config.quic.listen = addr;
    }
    if !args.roots.is_empty() {
        config.recursion.roots = args.roots.clone();
    }
    if let Some(primary) = &args.mirror_of {
        config.mirror.of = primary.clone();
    }
    if let Some(path) = &args.mirror_token_file {
        config.mirror.token_file = Some(path.clone());
        config.mirror.token = None;
    }
    if let Some(pin) = &args.mirror_pin {
        config.mirror.pin = Some(pin.clone());
    }
    if args.no_quic {
        config.quic.enabled = false;
    }
    if let Some(addr) = args.dns_listen {
        config.dns.listen = addr;
    }
    if let Some(addr) = args.dns_quic_listen {
        config.dns.quic_listen = addr;
    }
    if args.no_dns {
        config.dns.enabled = false;
    }
    if args.demo {
        config.demo = true;
    }
    if args.insecure_grpc {
        config.grpc.insecure = true;
    }
    // Before anything is opened or bound: a node that would expose tokens
    // in clear does not start at all.
    if let Err(e) = config.grpc.check() {
        usage!("{e}");
    }
    if let Err(e) = config.http.check() {
        usage!("{e}");
    }
    Ok(config)
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    crate::log::init(&config.log);
    let node = match idnode_node::build(config).await {
        Ok(node) => node,
        Err(e) => match e.downcast::<BadConfig>() {
            Ok(bad) => usage!("{bad}"),
            Err(e) => match e.downcast::<idnode_node::DamagedStore>() {
                Ok(damaged) => usage!("{damaged}"),
                Err(e) => return Err(e),
            },
        },
    };
    // Installed before `ready` is printed: a supervisor (or a test) may
    // send SIGTERM as soon as it reads that line or the ready file.
    let shutdown_requested = idnode_node::shutdown_signal();
    print_banner(node.addresses());
    if let Some(path) = &args.ready_file {
        write_ready_file(path, node.addresses())
            .with_context(|| format!("cannot write the ready file {}", path.display()))?;
    }
    say!("ready");
    node.run(async {
        shutdown_requested.await;
        say!("shutting down");
    })
    .await;
    say!("stopped");
    if crate::log::dropped() > 0 {
        say!(
            "{} log lines could not be written to stderr and were dropped",
            crate::log::dropped()
        );
    }
    Ok(())
}

fn print_banner(a: &Addresses) {
    say!("idnode {} is running", env!("CARGO_PKG_VERSION"));
    say!("  data        {}", a.data_dir.display());
    say!("  handle udp  {}", a.handle_udp);
    say!("  handle tcp  {}", a.handle_tcp);
    if let Some(addr) = a.handle_quic {
        say!("  handle quic {addr} (ALPN hdl)");
    }
    if let (Some(cert), Some(sha256)) = (&a.tls_certificate, &a.tls_sha256) {
        say!("  tls cert    {}", cert.display());
        say!("  tls sha256  {sha256}");
    }
    if let (Some(udp), Some(tcp)) = (a.dns_udp, a.dns_tcp) {
        say!("  dns udp     {udp}");
        say!("  dns tcp     {tcp}");
    }
    if let Some(addr) = a.dns_quic {
        say!("  dns quic    {addr} (ALPN doq)");
    }
    if !a.recursion_roots.is_empty() {
        say!("  recursion   roots {}", a.recursion_roots.join(" "));
    }
    if let Some(primary) = &a.mirror_of {
        say!("  mirror of   {primary} (writes refused here)");
    }
    match &a.grpc_tls_sha256 {
        Some(sha256) => {
            say!("  grpc        https://{}", a.grpc);
            if let Some(cert) = &a.grpc_tls_certificate {
                say!("  grpc cert   {}", cert.display());
            }
            say!("  grpc sha256 {sha256}");
        }
        None => say!("  grpc        http://{}", a.grpc),
    }
    match (a.http, &a.http_tls_sha256) {
        (Some(addr), Some(sha256)) => {
            say!("  http        https://{addr} (REST API /api/handles, browser proxy /)");
            if let Some(cert) = &a.http_tls_certificate {
                say!("  http cert   {}", cert.display());
            }
            say!("  http sha256 {sha256}");
        }
        (Some(addr), None) => {
            say!("  http        http://{addr} (REST API /api/handles, browser proxy /)")
        }
        (None, _) => {}
    }
    say!("  admin token {}", a.admin_token_file.display());
    say!("  records     change sequence {}", a.change_sequence);
    let mut reach = a.handle_udp;
    if reach.ip().is_unspecified() {
        reach.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    say!("try: idnode resolve --server {reach} 88.100.1/CNC-LATHE-202600000");
}

/// Writes the addresses as one JSON object, atomically (a reader that sees
/// the file sees all of it).
fn write_ready_file(path: &std::path::Path, addresses: &Addresses) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(addresses)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
