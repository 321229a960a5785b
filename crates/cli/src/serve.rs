//! `idnode serve`: open the store, seed a new node, start every listener
//! (Handle on UDP, TCP and QUIC; DNS on UDP, TCP and QUIC; gRPC), and stop
//! cleanly on SIGINT or SIGTERM.

use crate::args::ServeArgs;
use crate::{seed, usage};
use anyhow::Context;
use idnode_dns::{AnswerCache, DnsService, Zones};
use idnode_registry::Registry;
use idnode_resolver::{HandleService, ResponseCache};
use idnode_server::{Config, DnsListeners, HandleListeners, QuicListener};
use idnode_store::{CommitObserver, ObservedStore, Store};
use idnode_store_rocksdb::{RocksOptions, RocksStore};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
    if args.no_seed {
        config.seed = false;
    }
    Ok(config)
}

fn init_logging(filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    init_logging(&config.log);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let db_path = config.data_dir.join("db");
    let options = RocksOptions {
        block_cache_bytes: config.storage.block_cache_mb << 20,
        sync: config.storage.sync,
    };
    let rocks: Arc<dyn Store> = Arc::new(
        tokio::task::spawn_blocking(move || RocksStore::open(&db_path, &options))
            .await
            .context("store open task failed")??,
    );
    // Every write goes through the observed store, so the response cache
    // and the DNS answer cache hear of it before the write is acknowledged.
    let cache = (config.cache.budget_mb > 0).then(|| {
        Arc::new(ResponseCache::new(
            config.cache.budget_mb << 20,
            config.cache.shards,
        ))
    });
    let dns_zones = if config.dns.enabled {
        match Zones::from_config(&config.dns.dns_config()) {
            Ok(zones) => Some(Arc::new(zones)),
            Err(e) => usage!("[dns]: {e}"),
        }
    } else {
        None
    };
    let dns_cache = dns_zones
        .as_ref()
        .filter(|_| config.dns.cache_mb > 0)
        .map(|zones| {
            Arc::new(AnswerCache::new(
                zones.clone(),
                config.dns.cache_mb << 20,
                config.cache.shards,
            ))
        });
    let mut observers: Vec<Arc<dyn CommitObserver>> = Vec::new();
    if let Some(c) = &cache {
        observers.push(c.clone());
    }
    if let Some(c) = &dns_cache {
        observers.push(c.clone());
    }
    let store: Arc<dyn Store> = Arc::new(ObservedStore::new(rocks, observers));
    let registry = Arc::new(Registry::new(store.clone()));
    if config.seed {
        let registry = registry.clone();
        let store = store.clone();
        tokio::task::spawn_blocking(move || seed::seed_if_new(&*store, &registry))
            .await
            .context("seeding task failed")??;
    }
    let auth = Arc::new(
        idnode_admin::Auth::load_or_create(&config.data_dir, &*store)
            .context("cannot set up the admin token")?,
    );

    let shutdown = CancellationToken::new();
    let mut service = match &cache {
        Some(cache) => HandleService::with_cache(store.clone(), cache.clone()),
        None => HandleService::new(store.clone()),
    };
    let recursive = match idnode_server::recursion::upstream(&config.recursion) {
        Ok(Some(upstream)) => {
            service.set_upstream(upstream);
            true
        }
        Ok(None) => false,
        Err(e) => anyhow::bail!("invalid [recursion] configuration: {e}"),
    };
    let service = Arc::new(service);
    if config.cache.prewarm && cache.is_some() {
        // In the background: the node answers meanwhile, from the store.
        let (service, shutdown) = (service.clone(), shutdown.clone());
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match service.prewarm(|| !shutdown.is_cancelled()) {
                Ok(done) => tracing::info!(
                    records = done.records,
                    cached = done.cached,
                    seconds = started.elapsed().as_secs_f32(),
                    "response cache prewarmed"
                ),
                Err(e) => tracing::warn!(error = %e, "response cache prewarm stopped"),
            }
        });
    }
    let listeners = HandleListeners::start(
        &config.handle.listener_options(),
        service.clone(),
        shutdown.clone(),
    )
    .await
    .with_context(|| {
        format!(
            "cannot listen for Handle requests on {}",
            config.handle.listen
        )
    })?;
    let site = idnode_server::recursion::own_site(&config.site, listeners.udp, listeners.tcp)
        .map_err(|e| anyhow::anyhow!("invalid [site] configuration: {e}"))?;
    service.set_site_info(site.encode());
    let site_peers = site_peers(&config.site)?;
    let quic = if config.quic.enabled {
        let listener = QuicListener::start(
            &config.quic.listener_options(),
            service,
            &config.data_dir,
            shutdown.clone(),
        )
        .await
        .with_context(|| {
            format!(
                "cannot listen for Handle over QUIC on {}",
                config.quic.listen
            )
        })?;
        Some(listener)
    } else {
        None
    };
    let dns_service = dns_zones.map(|zones| {
        Arc::new(match &dns_cache {
            Some(cache) => DnsService::with_cache(store.clone(), cache.clone()),
            None => DnsService::new(store.clone(), zones),
        })
    });
    let dns = match &dns_service {
        Some(service) => Some(
            DnsListeners::start(
                &config
                    .dns
                    .listener_options()
                    .map_err(|e| anyhow::anyhow!("invalid [dns] configuration: {e}"))?,
                service.clone(),
                shutdown.clone(),
            )
            .await
            .with_context(|| format!("cannot listen for DNS on {}", config.dns.listen))?,
        ),
        None => None,
    };
    let dns_quic = match &dns_service {
        Some(service) if config.dns.quic => Some(
            QuicListener::start_dns(
                &config.dns.quic_options(&config.quic),
                service.clone(),
                &config.data_dir,
                shutdown.clone(),
            )
            .await
            .with_context(|| {
                format!(
                    "cannot listen for DNS over QUIC on {}",
                    config.dns.quic_listen
                )
            })?,
        ),
        _ => None,
    };
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc.listen)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc.listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let grpc = tokio::spawn(idnode_admin::serve_in_site(
        grpc_listener,
        registry,
        auth,
        site_peers,
        shutdown.clone().cancelled_owned(),
    ));

    // Installed before `ready` is printed: a supervisor (or a test) may
    // send SIGTERM as soon as it reads that line.
    let shutdown_requested = idnode_server::shutdown_signal();
    let token_file = config.data_dir.join("admin.token");
    println!("idnode {} is running", env!("CARGO_PKG_VERSION"));
    println!("  data        {}", config.data_dir.display());
    println!("  handle udp  {}", listeners.udp);
    println!("  handle tcp  {}", listeners.tcp);
    let print_tls = |q: &QuicListener| {
        println!("  tls cert    {}", q.certificate.display());
        println!("  tls sha256  {}", q.fingerprint);
    };
    if let Some(q) = &quic {
        println!("  handle quic {} (ALPN hdl)", q.addr);
        print_tls(q);
    }
    if let Some(d) = &dns {
        println!("  dns udp     {}", d.udp);
        println!("  dns tcp     {}", d.tcp);
    }
    if let Some(q) = &dns_quic {
        println!("  dns quic    {} (ALPN doq)", q.addr);
        // Both QUIC listeners present the node's one certificate.
        if quic.is_none() {
            print_tls(q);
        }
    }
    if recursive {
        println!("  recursion   roots {}", config.recursion.roots.join(" "));
    }
    println!("  grpc        http://{grpc_addr}");
    println!("  admin token {}", token_file.display());
    println!("  records     change sequence {}", store.last_sequence());
    let mut reach = listeners.udp;
    if reach.ip().is_unspecified() {
        reach.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    println!("try: idnode resolve --server {reach} 88.100.1/CNC-LATHE-202600000");
    println!("ready");

    shutdown_requested.await;
    println!("shutting down");
    shutdown.cancel();
    listeners.join().await;
    if let Some(q) = quic {
        q.join().await;
    }
    if let Some(d) = dns {
        d.join().await;
    }
    if let Some(q) = dns_quic {
        q.join().await;
    }
    match grpc.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server ended with an error"),
        Err(e) => tracing::warn!(error = %e, "gRPC task failed"),
    }
    drop(store);
    println!("stopped");
    Ok(())
}

/// The other servers of a multi-server `[site]`, for forwarding
/// registrations to the server that owns each identifier.
fn site_peers(
    config: &idnode_server::config::SiteConfig,
) -> anyhow::Result<Option<Arc<idnode_admin::SitePeers>>> {
    if config.servers.is_empty() {
        return Ok(None);
    }
    let hash = idnode_server::recursion::site_hash(config)
        .map_err(|e| anyhow::anyhow!("invalid [site] configuration: {e}"))?;
    let peers = config
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (i + 1 != config.server_id).then(|| idnode_admin::PeerConfig {
                grpc: s.grpc.clone(),
                token_file: s.token_file.clone(),
            })
        })
        .collect();
    Ok(Some(Arc::new(idnode_admin::SitePeers::new(hash, peers))))
}
