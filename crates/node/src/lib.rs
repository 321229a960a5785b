//! One place assembles a node: [`build`] turns a [`Config`] into a running
//! [`Node`] (the RocksDB store behind an observed store, the response
//! cache and the DNS's map of delegated prefixes, the registry, the Handle and DNS services, the
//! recursive role, every listener and the gRPC management API), and
//! [`Node::run`] serves until asked to stop, then shuts everything down.
//!
//! This is the only crate that knows the store is RocksDB. It also owns the
//! configuration file ([`config`]), the node's place in the hierarchy
//! ([`site`]), the demo data ([`demo`]), what `idnode status` reports
//! ([`status`]), and the daily report's minute files ([`report`]).

pub mod config;
pub mod demo;
pub mod key;
pub mod metrics;
pub mod report;
pub mod site;
pub mod status;

pub use config::{Config, ConfigError, LogConfig, LogFormat};

use anyhow::Context;
use idnode_authority::{HandleService, ResponseCache};
use idnode_dns::{Cuts, DnsService, Zones};
use idnode_registry::Registry;
use idnode_server::{DnsListeners, HandleListeners, QuicListener};
use idnode_store::{CommitObserver, ObservedStore, Store};
use idnode_store_rocksdb::{RocksOptions, RocksStore};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// A configuration the node cannot run with (a bad `[section]` value): the
/// command line reports it as a usage error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadConfig(pub String);

/// The store is damaged (an SST file with a bad block, a file the store
/// lists and that is missing): the node does not start on it, so that it
/// never serves what it cannot read whole. The command line reports it as
/// a usage error, with the way out.
#[derive(Debug, thiserror::Error)]
#[error(
    "the store in {} is damaged, so the node does not serve it: {detail}\n\
     Stop here, keep a copy of the data directory, then either run `idnode repair --data-dir {}` \
     (RocksDB's repair: keeps every entry of the files it can read whole, moves the others into \
     {}/lost/ and says what is left) or restore a backup (`idnode restore`, docs/backups.md)",
    db.display(), data_dir.display(), db.display()
)]
pub struct DamagedStore {
    pub data_dir: PathBuf,
    pub db: PathBuf,
    /// RocksDB's words, naming the file.
    pub detail: String,
}

/// What `repair` left in a store.
pub use idnode_store_rocksdb::Repaired;

/// What [`repair`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    pub repaired: Repaired,
    /// The highest version (the change sequence it was written at) of a
    /// record in the store: above `repaired.last_sequence` when change-log
    /// entries were in the files set aside, so that the change sequence
    /// now counts from lower than before.
    pub newest_record: u64,
}

/// Runs RocksDB's repair on the store of the data directory `data_dir`
/// (no node may be running on it), then opens it and says what it holds.
pub fn repair(data_dir: &std::path::Path) -> anyhow::Result<RepairReport> {
    let db = data_dir.join("db");
    if !db.is_dir() {
        return Err(BadConfig(format!(
            "{} holds no store to repair ({} is not a directory)",
            data_dir.display(),
            db.display()
        ))
        .into());
    }
    let options = RocksOptions {
        block_cache_bytes: 8 << 20,
        ..RocksOptions::default()
    };
    let damaged = |e: idnode_store::StoreError| match e {
        idnode_store::StoreError::Corrupt(detail) => DamagedStore {
            data_dir: data_dir.to_path_buf(),
            db: db.clone(),
            detail: format!("still after the repair: {detail}"),
        }
        .into(),
        other => anyhow::Error::new(other),
    };
    let repaired = RocksStore::repair(&db, &options).map_err(damaged)?;
    let store = RocksStore::open(&db, &options).map_err(damaged)?;
    let mut newest_record = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(idnode_store::Space::Records, b"", after.as_deref(), 1000)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (key, bytes) in &page {
            let record = idnode_core::Record::decode(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "record {} does not decode after the repair: {e}",
                    String::from_utf8_lossy(key)
                )
            })?;
            newest_record = newest_record.max(record.version);
        }
    }
    Ok(RepairReport {
        repaired,
        newest_record,
    })
}

/// Where a running node listens, and where its state is: what `idnode
/// serve` prints and writes to `--ready-file` (as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Addresses {
    pub data_dir: PathBuf,
    pub admin_token_file: PathBuf,
    pub handle_udp: SocketAddr,
    pub handle_tcp: SocketAddr,
    pub handle_quic: Option<SocketAddr>,
    pub dns_udp: Option<SocketAddr>,
    pub dns_tcp: Option<SocketAddr>,
    pub dns_quic: Option<SocketAddr>,
    pub grpc: SocketAddr,
    /// The web listener (REST API and browser proxy), when `[http]` is on.
    pub http: Option<SocketAddr>,
    /// The QUIC listeners' certificate (PEM) and its SHA-256 fingerprint.
    pub tls_certificate: Option<PathBuf>,
    pub tls_sha256: Option<String>,
    /// With `[grpc] tls`: the gRPC API's certificate (PEM) and its SHA-256
    /// fingerprint (the API is then `https://`).
    pub grpc_tls_certificate: Option<PathBuf>,
    pub grpc_tls_sha256: Option<String>,
    /// With `[http] tls`: the HTTPS listener's certificate (PEM) and its
    /// SHA-256 fingerprint.
    pub http_tls_certificate: Option<PathBuf>,
    pub http_tls_sha256: Option<String>,
    /// The root servers of a recursive node.
    pub recursion_roots: Vec<String>,
    /// The store's change sequence at start (the DNS SOA serial).
    pub change_sequence: u64,
    /// On a mirror: its primary's gRPC address.
    pub mirror_of: Option<String>,
    /// The node's public key as HS_PUBKEY data in base64, as
    /// `[[site.servers]] public_key` takes it.
    pub public_key: String,
}

/// A node whose listeners are bound and serving.
pub struct Node {
    addresses: Addresses,
    shutdown: CancellationToken,
    handle: HandleListeners,
    quic: Option<QuicListener>,
    dns: Option<DnsListeners>,
    dns_quic: Option<QuicListener>,
    grpc: tokio::task::JoinHandle<Result<(), idnode_admin::Error>>,
    http: Option<tokio::task::JoinHandle<()>>,
    /// The daily report's sampler, stopped once the listeners are.
    report: (CancellationToken, tokio::task::JoinHandle<()>),
    /// A mirror's task following its primary.
    mirror: Option<tokio::task::JoinHandle<()>>,
    store: Arc<dyn Store>,
}

/// Opens the store in `db` (a restored backup) to check that it is one,
/// and returns the sequence number of its last change.
pub fn restored_sequence(db: &std::path::Path) -> anyhow::Result<u64> {
    let options = RocksOptions {
        block_cache_bytes: 8 << 20,
        ..RocksOptions::default()
    };
    let store = RocksStore::open(db, &options)
        .with_context(|| format!("{} is not a store idnode can open", db.display()))?;
    Ok(store.last_sequence())
}

/// Makes the data directory the node's alone: from now on the process
/// creates files 0600 and directories 0700 (umask 077: RocksDB's WAL and
/// SST files hold private values), and a data directory that exists with
/// group or other permissions is narrowed to 0700 (logged), which closes
/// the files already in it to other users whatever their own modes.
fn private_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use nix::sys::stat::{Mode, umask};
    use std::os::unix::fs::PermissionsExt;
    // Process-wide, before the store or any other file is opened.
    umask(Mode::from_bits_truncate(0o077));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read data directory {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "cannot make data directory {} private (0700)",
                    dir.display()
                )
            },
        )?;
        tracing::warn!(
            dir = %dir.display(),
            was = format_args!("{:04o}", mode & 0o7777),
            "the data directory was open to other users; made it 0700"
        );
    }
    Ok(())
}

/// The checks of a configuration that need neither its files nor the
/// network: what [`build`] refuses before it opens the store or binds a
/// listener (the gRPC and HTTP options, the rate limiter's networks, the
/// DNS zones and TSIG keys, the recursion roots and clients, the site).
pub fn check_config(config: &Config) -> Result<(), BadConfig> {
    if config.storage.write_buffer_mb == 0 {
        return Err(BadConfig(
            "[storage] write_buffer_mb must be 1 or more".into(),
        ));
    }
    config.grpc.check().map_err(BadConfig)?;
    config.http.check().map_err(BadConfig)?;
    config.rate_limit.options().map_err(BadConfig)?;
    if config.dns.enabled {
        Zones::from_config(&config.dns.dns_config())
            .map_err(|e| BadConfig(format!("[dns]: {e}")))?;
        config
            .dns
            .listener_options()
            .map_err(|e| BadConfig(format!("invalid [dns] configuration: {e}")))?;
    }
    site::upstream(&config.recursion)
        .map_err(|e| BadConfig(format!("invalid [recursion] configuration: {e}")))?;
    config::parse_cidrs("recursion", &config.recursion.clients)
        .map_err(|e| BadConfig(format!("invalid [recursion] clients: {e}")))?;
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    site::own_site(&config.site, any, any, &[])
        .map_err(|e| BadConfig(format!("invalid [site] configuration: {e}")))?;
    site::peers(&config.site)
        .map_err(|e| BadConfig(format!("invalid [site] configuration: {e}")))?;
    config.mirror.check().map_err(BadConfig)?;
    if config.mirror.enabled() && config.demo {
        return Err(BadConfig(
            "a mirror ([mirror] of) holds its primary's data: it cannot load the demo data \
             (demo = false, no --demo)"
                .into(),
        ));
    }
    Ok(())
}

/// Opens the store (seeding it with the demo data when `config.demo` and
/// the store is new), builds the services and binds every listener the
/// configuration asks for. The node serves from the moment this returns.
pub async fn build(config: Config) -> anyhow::Result<Node> {
    check_config(&config)?;
    private_data_dir(&config.data_dir)?;
    let db_path = config.data_dir.join("db");
    let options = RocksOptions {
        block_cache_bytes: config.storage.block_cache_mb << 20,
        sync: config.storage.sync,
        write_buffer_bytes: config.storage.write_buffer_mb << 20,
    };
    let opened = {
        let db_path = db_path.clone();
        tokio::task::spawn_blocking(move || RocksStore::open(&db_path, &options))
            .await
            .context("store open task failed")?
    };
    let rocks: Arc<dyn Store> = match opened {
        Ok(store) => Arc::new(store),
        Err(idnode_store::StoreError::Corrupt(detail)) => {
            return Err(DamagedStore {
                data_dir: config.data_dir.clone(),
                db: db_path,
                detail,
            }
            .into());
        }
        Err(e) => return Err(e.into()),
    };
    // Every write goes through the observed store, so the response cache
    // (which the DNS answers from too) and the DNS's map of delegated
    // prefixes hear of it before the write is acknowledged.
    let cache = (config.cache.budget_mb > 0).then(|| {
        Arc::new(ResponseCache::new(
            config.cache.budget_mb << 20,
            config.cache.shards,
        ))
    });
    let dns_zones = if config.dns.enabled {
        let zones = Zones::from_config(&config.dns.dns_config())
            .map_err(|e| BadConfig(format!("[dns]: {e}")))?;
        Some(Arc::new(zones))
    } else {
        None
    };
    if config.dns.cache_mb.is_some() {
        tracing::warn!(
            "[dns] cache_mb is no longer used: the DNS answers from the response cache, \
             sized by [cache] budget_mb"
        );
    }
    // The DNS answers identifiers' TXT questions from the response cache
    // and needs the delegated prefixes at hand for it.
    let cuts = match (&dns_zones, &cache) {
        (Some(_), Some(_)) => Some(Arc::new(Cuts::load(rocks.clone())?)),
        _ => None,
    };
    let mut observers: Vec<Arc<dyn CommitObserver>> = Vec::new();
    if let Some(c) = &cache {
        observers.push(c.clone());
    }
    if let Some(c) = &cuts {
        observers.push(c.clone());
    }
    let observed: Arc<dyn Store> = Arc::new(ObservedStore::new(rocks, observers));
    // A mirror's callers see a store that refuses writes, naming the
    // primary; the mirror task applies the primary's changes to the
    // observed store underneath (so the caches hear of them).
    let mirror = match config.mirror.enabled() {
        true => {
            let source = config.mirror.source().map_err(BadConfig)?;
            let state = Arc::new(idnode_admin::MirrorState::new(source.primary.clone()));
            Some((source, state))
        }
        false => None,
    };
    let store: Arc<dyn Store> = match &mirror {
        Some((source, _)) => Arc::new(idnode_store::ReadOnlyStore::new(
            observed.clone(),
            format!(
                "this node is a mirror of {}; write to the primary",
                source.primary
            ),
        )),
        None => observed.clone(),
    };
    let registry = Arc::new(Registry::new(store.clone()));
    registry.set_retention(config.storage.retention());
    if config.demo {
        let registry = registry.clone();
        let store = store.clone();
        tokio::task::spawn_blocking(move || demo::load_if_new(&*store, &registry))
            .await
            .context("demo data task failed")??;
    }
    let auth = Arc::new({
        let mut auth = match &mirror {
            Some(_) => idnode_admin::Auth::for_mirror(&config.data_dir),
            None => idnode_admin::Auth::load_or_create(&config.data_dir, &*store),
        }
        .context("cannot set up the admin token")?;
        auth.limit_token_writes(config.grpc.token_writes_per_second);
        auth
    });

    let key = {
        let (dir, file) = (config.data_dir.clone(), config.site.key_file.clone());
        tokio::task::spawn_blocking(move || key::load_or_create(&dir, file.as_deref()))
            .await
            .context("signing key task failed")??
    };
    let public_key = key.public_key().encode();

    let shutdown = CancellationToken::new();
    let mut service = match &cache {
        Some(cache) => HandleService::with_cache(store.clone(), cache.clone()),
        None => HandleService::new(store.clone()),
    };
    service.set_signer(Arc::new(key));
    if let Some(upstream) = site::upstream(&config.recursion)
        .map_err(|e| BadConfig(format!("invalid [recursion] configuration: {e}")))?
    {
        service.set_upstream(upstream);
        let clients = config::parse_cidrs("recursion", &config.recursion.clients)
            .map_err(|e| BadConfig(format!("invalid [recursion] clients: {e}")))?;
        service.set_recursion_clients(clients);
    }
    if site::serves_handle_admin(&config.site) {
        // Handle administration (docs/handle-admin.md) writes through the
        // same registry as gRPC.
        service.set_registry(registry.clone());
    }
    let service = Arc::new(service);
    if config.cache.prewarm && cache.is_some() {
        prewarm_in_background(service.clone(), shutdown.clone());
    }
    check_identifiers_in_background(store.clone(), shutdown.clone());
    trim_change_log_periodically(registry.clone(), shutdown.clone());
    let rate_limit = Arc::new(config.rate_limit.options().map_err(BadConfig)?);
    let counting = config.metrics.enabled;
    let handle_options = idnode_server::HandleListenerOptions {
        rate_limit: rate_limit.clone(),
        metrics: counting,
        ..config.handle.listener_options()
    };
    let handle = HandleListeners::start(&handle_options, service.clone(), shutdown.clone())
        .await
        .with_context(|| {
            format!(
                "cannot listen for Handle requests on {}",
                config.handle.listen
            )
        })?;
    let mut own_site = site::own_site(&config.site, handle.udp, handle.tcp, &public_key)
        .map_err(|e| BadConfig(format!("invalid [site] configuration: {e}")))?;
    // A mirror's site holds replicated data and is not primary: Handle
    // clients send administration elsewhere.
    own_site.primary = mirror.is_none();
    let own_site = own_site.encode();
    service.set_site_info(own_site.clone());
    // The prefix records say where each prefix lives: this site for the
    // prefixes homed here (delegations written before HS_SITE copies were
    // kept get them now). Not on a mirror: its prefix records are the
    // primary's.
    if mirror.is_none() {
        let registry = registry.clone();
        let site = own_site.clone();
        let done = tokio::task::spawn_blocking(move || registry.publish_site(&site))
            .await
            .context("site publication task failed")?
            .context("cannot write this node's site on its prefix records")?;
        if done != idnode_registry::SiteSync::default() {
            tracing::info!(
                homed = done.homed,
                delegations = done.delegations,
                "prefix records updated with this node's site"
            );
        }
    }
    let site_peers = site::peers(&config.site)
        .map_err(|e| BadConfig(format!("invalid [site] configuration: {e}")))?;
    let quic = if config.quic.enabled {
        let listener = QuicListener::start(
            &idnode_server::QuicOptions {
                metrics: counting,
                ..config.quic.listener_options()
            },
            service.clone(),
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
        Arc::new(match (&cache, &cuts) {
            (Some(cache), Some(cuts)) => {
                DnsService::with_cache(store.clone(), zones, cache.clone(), cuts.clone())
            }
            _ => DnsService::new(store.clone(), zones),
        })
    });
    let dns = match &dns_service {
        Some(service) => {
            let options = idnode_server::DnsListenerOptions {
                rate_limit: rate_limit.clone(),
                metrics: counting,
                ..config
                    .dns
                    .listener_options()
                    .map_err(|e| BadConfig(format!("invalid [dns] configuration: {e}")))?
            };
            Some(
                DnsListeners::start(&options, service.clone(), shutdown.clone())
                    .await
                    .with_context(|| format!("cannot listen for DNS on {}", config.dns.listen))?,
            )
        }
        None => None,
    };
    let dns_quic = match &dns_service {
        Some(service) if config.dns.quic => Some(
            QuicListener::start_dns(
                &idnode_server::QuicOptions {
                    metrics: counting,
                    ..config.dns.quic_options(&config.quic)
                },
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
    config.grpc.check().map_err(BadConfig)?;
    config.http.check().map_err(BadConfig)?;
    let grpc_tls = match config.grpc.tls {
        true => Some(grpc_tls(&config)?),
        false => None,
    };
    let grpc_listener = tokio::net::TcpListener::bind(config.grpc.listen)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", config.grpc.listen))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let grpc_certificate = grpc_tls
        .as_ref()
        .map(|(path, tls)| (path.clone(), tls.fingerprint));
    let grpc_counts = Arc::new(idnode_admin::CallCounts::default());
    // The UDP listeners' counters, for /metrics and `idnode status`.
    let mut counted = vec![handle.counts.clone()];
    counted.extend(dns.as_ref().map(|d| d.counts.clone()));
    // The stream listeners' counters, for /metrics and the daily report.
    let mut streams = vec![handle.tcp_counts.clone()];
    streams.extend(quic.as_ref().map(|q| q.counts.clone()));
    streams.extend(dns.as_ref().map(|d| d.tcp_counts.clone()));
    streams.extend(dns_quic.as_ref().map(|q| q.counts.clone()));
    let node_status = status::NodeStatus::new(status::Parts {
        registry: registry.clone(),
        db_dir: config.data_dir.join("db"),
        recursion_roots: config.recursion.roots.clone(),
        site_servers: config.site.servers.len(),
        response_cache: cache.clone().map(|c| (c, config.cache.budget_mb << 20)),
        counted: counted.clone(),
        mirror: mirror.as_ref().map(|(_, state)| state.clone()),
    });
    node_status.sample_in_background(shutdown.clone());
    let http = if config.http.enabled {
        let workers = match config.http.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let listeners = idnode_http::bind_workers(config.http.listen, workers)
            .with_context(|| format!("cannot listen for HTTP on {}", config.http.listen))?;
        let addr = listeners[0].local_addr()?;
        let tls = match config.http.tls {
            true => Some(http_tls(&config)?),
            false => None,
        };
        let web = idnode_http::Web::new(service.clone(), registry.clone(), auth.clone())
            .with_base_url(config.http.base_url.clone());
        let http_counts = web.counts();
        let router = web
            .with_metrics(metrics::renderer(metrics::NodeMetrics {
                listeners: counted.clone(),
                streams: streams.clone(),
                registry: registry.clone(),
                store: store.clone(),
                status: node_status.clone(),
                http: Some(http_counts.clone()),
                grpc: grpc_counts.clone(),
            }))
            .router();
        let certificate = tls
            .as_ref()
            .map(|(path, fingerprint, _)| (path.clone(), *fingerprint));
        let task = tokio::spawn(idnode_http::serve_workers(
            listeners,
            router,
            config.http.limits(),
            tls.map(|(_, _, config)| config),
            http_counts.clone(),
            shutdown.clone(),
        ));
        Some((addr, task, certificate, http_counts))
    } else {
        None
    };
    // From here on, what the node counts goes into the daily report
    // (the demo data loaded above is not in it).
    let report = {
        let counts = report::NodeCounts {
            udp: counted,
            streams,
            http: http.as_ref().map(|(_, _, _, counts)| counts.clone()),
            registry: registry.clone(),
        };
        let sampler = report::Sampler::new(&config.data_dir, Arc::new(counts));
        let stop = CancellationToken::new();
        (stop.clone(), tokio::spawn(sampler.run(stop)))
    };
    let (stop_streams, streams_stop) = tokio::sync::watch::channel(false);
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            let _ = stop_streams.send(true);
        });
    }
    let routes = idnode_admin::router_with_status(
        registry.clone(),
        auth.clone(),
        site_peers,
        Some(node_status.clone() as Arc<dyn idnode_admin::NodeStatus>),
        config.grpc.limits().max_message_bytes,
    )
    .await?
    .add_service(idnode_admin::replication_service(
        registry,
        auth,
        streams_stop,
    ));
    let mirror_task = mirror.map(|(source, state)| {
        idnode_admin::spawn_mirror(
            source,
            observed.clone(),
            state,
            shutdown.clone().cancelled_owned(),
        )
    });
    let grpc = tokio::spawn(idnode_admin::serve_routes(
        grpc_listener,
        routes,
        grpc_tls.map(|(_, tls)| tls),
        config.grpc.limits(),
        grpc_counts,
        shutdown.clone().cancelled_owned(),
    ));
    // Both QUIC listeners present the node's one certificate.
    let tls = quic.as_ref().or(dns_quic.as_ref());
    let addresses = Addresses {
        data_dir: config.data_dir.clone(),
        admin_token_file: config.data_dir.join(idnode_admin::TOKEN_FILE),
        handle_udp: handle.udp,
        handle_tcp: handle.tcp,
        handle_quic: quic.as_ref().map(|q| q.addr),
        dns_udp: dns.as_ref().map(|d| d.udp),
        dns_tcp: dns.as_ref().map(|d| d.tcp),
        dns_quic: dns_quic.as_ref().map(|q| q.addr),
        grpc: grpc_addr,
        http: http.as_ref().map(|(addr, _, _, _)| *addr),
        http_tls_certificate: http
            .as_ref()
            .and_then(|(_, _, c, _)| c.as_ref().map(|(path, _)| path.clone())),
        http_tls_sha256: http
            .as_ref()
            .and_then(|(_, _, c, _)| c.as_ref().map(|(_, f)| f.to_string())),
        tls_certificate: tls.map(|q| q.certificate.clone()),
        tls_sha256: tls.map(|q| q.fingerprint.to_string()),
        grpc_tls_sha256: grpc_certificate.as_ref().map(|(_, f)| f.to_string()),
        grpc_tls_certificate: grpc_certificate.map(|(path, _)| path),
        recursion_roots: config.recursion.roots.clone(),
        change_sequence: store.last_sequence(),
        mirror_of: config
            .mirror
            .enabled()
            .then(|| config.mirror.of.trim().to_owned()),
        public_key: {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&public_key)
        },
    };
    node_status.set_listeners(addresses.listeners());
    Ok(Node {
        addresses,
        shutdown,
        handle,
        quic,
        dns,
        dns_quic,
        grpc,
        http: http.map(|(_, task, _, _)| task),
        report,
        mirror: mirror_task,
        store,
    })
}

/// The gRPC API's TLS (`[grpc] tls`): its own certificate files or the
/// node's (`[quic]`, generated into the data directory on first use), and
/// the client CA. Returns the certificate file too, for the banner.
fn grpc_tls(config: &Config) -> anyhow::Result<(PathBuf, idnode_admin::ServerTls)> {
    let source = config.grpc.certificate(&config.quic);
    let (cert, key, _) = source
        .pem_files(&config.data_dir)
        .map_err(|e| BadConfig(format!("[grpc] TLS certificate: {e}")))?;
    let tls = idnode_admin::ServerTls::from_files(&cert, &key, config.grpc.client_ca.as_deref())
        .map_err(|e| BadConfig(format!("[grpc] TLS: {e}")))?;
    Ok((cert, tls))
}

/// The HTTPS listener's TLS (`[http] tls`): its own certificate files or
/// the node's, with HTTP/2 and HTTP/1.1 offered by ALPN. Returns the
/// certificate file and its fingerprint too, for the banner.
fn http_tls(
    config: &Config,
) -> anyhow::Result<(
    PathBuf,
    idnode_server::Fingerprint,
    Arc<rustls::ServerConfig>,
)> {
    let source = config.http.certificate(&config.quic);
    let (cert, _, _) = source
        .pem_files(&config.data_dir)
        .map_err(|e| BadConfig(format!("[http] TLS certificate: {e}")))?;
    let identity = idnode_server::TlsIdentity::load(&source, &config.data_dir)
        .map_err(|e| BadConfig(format!("[http] TLS certificate: {e}")))?;
    let tls = identity
        .server_config(&[b"h2", b"http/1.1"])
        .map_err(|e| BadConfig(format!("[http] TLS: {e}")))?;
    Ok((cert, identity.fingerprint, Arc::new(tls)))
}

/// Reports, in the background, the stored identifiers that today's rules
/// would not let in (written before a rule existed; see
/// `idnode_registry::policy`): they keep working, but a suffix not in NFC
/// is no longer found by its name, and the operator should re-register
/// them.
fn check_identifiers_in_background(store: Arc<dyn Store>, shutdown: CancellationToken) {
    tokio::task::spawn_blocking(move || {
        match idnode_registry::policy::check_stored(&*store, || !shutdown.is_cancelled()) {
            Ok(report) if report.refused > 0 => {
                for (key, why) in &report.examples {
                    tracing::warn!(
                        identifier = ?key,
                        why = %why,
                        "a stored identifier breaks the identifier rules"
                    );
                }
                tracing::warn!(
                    checked = report.checked,
                    refused = report.refused,
                    "stored identifiers that the identifier rules would refuse today: \
                     export them, delete them and import them under their NFC or ASCII names \
                     (docs/handle-protocol.md)"
                );
            }
            Ok(report) => tracing::info!(
                checked = report.checked,
                "every stored identifier meets the identifier rules"
            ),
            Err(e) => tracing::warn!(error = %e, "the check of stored identifiers stopped"),
        }
    });
}

/// First pass of the change log's trim after start, then the time between
/// passes.
const TRIM_FIRST: std::time::Duration = std::time::Duration::from_secs(60);
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Trims the change log by its retention policy
/// (`idnode_registry::retention`) a minute after start and every quarter
/// of an hour, until shutdown.
fn trim_change_log_periodically(registry: Arc<Registry>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut wait = TRIM_FIRST;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = TRIM_EVERY;
            let registry = registry.clone();
            match tokio::task::spawn_blocking(move || registry.trim_change_log()).await {
                Ok(Ok(t)) if t.removed > 0 => tracing::info!(
                    removed = t.removed,
                    first_left = t.first_left,
                    "change log trimmed"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "the change log's trim failed"),
                Err(e) => tracing::warn!(error = %e, "the change log's trim stopped"),
            }
        }
    });
}

/// Fills the response cache from the stored records in the background: the
/// node answers meanwhile, from the store.
fn prewarm_in_background(service: Arc<HandleService>, shutdown: CancellationToken) {
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

impl Addresses {
    /// Every listener, named as `idnode status` shows it.
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr)> {
        let mut all = vec![
            ("handle udp", self.handle_udp),
            ("handle tcp", self.handle_tcp),
        ];
        let optional = [
            ("handle quic", self.handle_quic),
            ("dns udp", self.dns_udp),
            ("dns tcp", self.dns_tcp),
            ("dns quic", self.dns_quic),
            ("grpc", Some(self.grpc)),
            ("http", self.http),
        ];
        all.extend(optional.into_iter().filter_map(|(n, a)| a.map(|a| (n, a))));
        all
    }
}

impl Node {
    /// Where the node listens.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// Serves until `stop` resolves, then stops every listener, waits for
    /// them and closes the store.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        stop.await;
        self.shutdown.cancel();
        self.handle.join().await;
        if let Some(q) = self.quic {
            q.join().await;
        }
        if let Some(d) = self.dns {
            d.join().await;
        }
        if let Some(q) = self.dns_quic {
            q.join().await;
        }
        if let Some(http) = self.http
            && let Err(e) = http.await
        {
            tracing::warn!(error = %e, "HTTP task failed");
        }
        match self.grpc.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "gRPC task failed"),
        }
        if let Some(mirror) = self.mirror
            && let Err(e) = mirror.await
        {
            tracing::warn!(error = %e, "the mirror task failed");
        }
        // Every listener has stopped: the report's last minute is whole.
        let (stop, sampler) = self.report;
        stop.cancel();
        if let Err(e) = sampler.await {
            tracing::warn!(error = %e, "daily report task failed");
        }
        drop(self.store);
    }
}

/// Listens for SIGINT and SIGTERM from now on (the handlers are installed
/// before this returns, so a signal that arrives before the returned
/// future is awaited is not lost, nor does it kill the process), and
/// resolves when one arrives.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_data_directory_is_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        // An existing directory open to everyone is narrowed.
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_data_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
        // A new one is created private, and so is what is created in it.
        let new = tmp.path().join("new/data");
        private_data_dir(&new).unwrap();
        assert_eq!(mode(&new), 0o700);
        std::fs::write(new.join("file"), b"x").unwrap();
        std::fs::create_dir(new.join("sub")).unwrap();
        assert_eq!(mode(&new.join("file")), 0o600);
        assert_eq!(mode(&new.join("sub")), 0o700);
    }
}
