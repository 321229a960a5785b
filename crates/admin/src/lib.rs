//! The gRPC management API of idnode (proto/idnode/v1/admin.proto).
//!
//! This crate owns the `idnode.v1.Prefixes`, `idnode.v1.Identifiers` and
//! `idnode.v1.Tokens` services, their bearer-token auth ([`Auth`]: the
//! node's operator token and the scoped tokens of [`tokens`], checked on
//! every call), the conversions between
//! generated protobuf types and domain types (done here, at the edge:
//! nothing generated goes inward), the health and reflection services,
//! TLS on either side ([`ServerTls`], [`ClientTls`]: a CA file or a pinned
//! fingerprint, client certificates), and a small client for the CLI
//! ([`connect`], [`connect_with`]). Writes are the registry's
//! (`idnode-registry`), run on blocking threads. On a server of a
//! multi-server site ([`SitePeers`], [`serve_in_site`]), calls about
//! identifiers that hash to another server are forwarded to it. The
//! `idnode.v1.Node` service ([`NodeService`]) reports what the node that
//! embeds this crate tells it ([`NodeStatus`]).
//!
//! It must not depend on a storage engine (no RocksDB): it sees the store
//! only through the `Store` trait.

mod audit;
mod auth;
mod batch;
mod client;
mod convert;
mod error;
mod identifiers;
mod limits;
mod prefixes;
mod quota;
mod replication;
mod site;
mod status;
mod tls;
pub mod tokens;
mod tokens_api;

/// The generated protobuf messages, servers and clients of `idnode.v1`.
#[allow(clippy::all, clippy::unwrap_used, missing_docs)]
pub mod proto {
    tonic::include_proto!("idnode.v1");

    /// The encoded file descriptor set of `idnode.v1`, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/idnode_v1_descriptor.bin"));
}

pub use audit::AuditService;
pub use auth::{Auth, Caller, Grant, TOKEN_FILE, TOKEN_HASH_KEY};
pub use batch::{MAX_CHUNK, MAX_CHUNK_BYTES};
pub use client::{
    AdminChannel, BearerToken, connect, connect_audit_with, connect_tokens, connect_tokens_with,
    connect_with, open_channel,
};
pub use convert::{FieldError, template_from_proto};
pub use error::Error;
pub use identifiers::IdentifiersService;
pub use limits::{CallCounts, Limits};
pub use prefixes::PrefixesService;
pub use replication::{MirrorSource, MirrorState, ReplicationService, spawn_mirror};
pub use site::{PeerConfig, SitePeers};
pub use status::{NodeService, NodeStatus};
pub use tls::{ClientTls, Fingerprint, ServerTls, ServerTrust};
pub use tokens_api::TokensService;
/// gRPC metadata, as [`Auth::caller`] reads it (for other front ends that
/// check the same tokens).
pub use tonic::metadata::MetadataMap;

use idnode_registry::Registry;
use proto::audit_server::AuditServer;
use proto::identifiers_server::IdentifiersServer;
use proto::node_server::NodeServer;
use proto::prefixes_server::PrefixesServer;
use proto::tokens_server::TokensServer;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// The admin services, health (`grpc.health.v1`, SERVING for each) and
/// reflection (`grpc.reflection.v1`), ready to add to a tonic server.
/// Requests larger than `max_message_bytes` are refused.
pub async fn router(
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    site: Option<Arc<SitePeers>>,
    max_message_bytes: usize,
) -> Result<Routes, Error> {
    router_with_status(registry, auth, site, None, max_message_bytes).await
}

/// [`router`], with the `idnode.v1.Node` service when `status` is given.
pub async fn router_with_status(
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    site: Option<Arc<SitePeers>>,
    status: Option<Arc<dyn NodeStatus>>,
    max_message_bytes: usize,
) -> Result<Routes, Error> {
    let node = status.map(|s| {
        NodeServer::new(NodeService::new(registry.clone(), auth.clone(), s))
            .max_decoding_message_size(max_message_bytes)
    });
    let prefixes = PrefixesServer::new(PrefixesService::new(registry.clone(), auth.clone()))
        .max_decoding_message_size(max_message_bytes);
    let tokens = TokensServer::new(TokensService::new(registry.clone(), auth.clone()))
        .max_decoding_message_size(max_message_bytes);
    let audit = AuditServer::new(AuditService::new(registry.clone(), auth.clone()))
        .max_decoding_message_size(max_message_bytes);
    let identifiers = IdentifiersServer::new(match site {
        Some(site) => IdentifiersService::with_site(registry, auth, site),
        None => IdentifiersService::new(registry, auth),
    })
    .max_decoding_message_size(max_message_bytes);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<PrefixesServer<PrefixesService>>()
        .await;
    reporter
        .set_serving::<IdentifiersServer<IdentifiersService>>()
        .await;
    reporter.set_serving::<TokensServer<TokensService>>().await;
    reporter.set_serving::<AuditServer<AuditService>>().await;
    if node.is_some() {
        reporter.set_serving::<NodeServer<NodeService>>().await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let routes = Routes::new(prefixes)
        .add_service(identifiers)
        .add_service(tokens)
        .add_service(audit)
        .add_service(health)
        .add_service(reflection);
    Ok(match node {
        Some(node) => routes.add_service(node),
        None => routes,
    })
}

/// The Replication service (mirrors follow this node's change log), to
/// add to the routes of [`router_with_status`]; its streams end when
/// `stop` turns true.
pub fn replication_service(
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> proto::replication_server::ReplicationServer<ReplicationService> {
    proto::replication_server::ReplicationServer::new(ReplicationService::new(registry, auth, stop))
}

/// Serves the admin API on `listener` until `shutdown` completes, then
/// stops accepting and lets calls in flight finish.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    serve_in_site(listener, registry, auth, None, shutdown).await
}

/// [`serve`] on one server of a multi-server site: calls about identifiers
/// that hash to another server of `site` are forwarded to it.
pub async fn serve_in_site(
    listener: TcpListener,
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    site: Option<Arc<SitePeers>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    serve_tls_in_site(
        listener,
        registry,
        auth,
        site,
        None,
        Limits::default(),
        Arc::default(),
        shutdown,
    )
    .await
}

/// [`serve_in_site`], over TLS when `tls` is given (and then asking clients
/// for a certificate when it names a client CA). A client that fails the
/// handshake is dropped; the others are served meanwhile. `limits` caps
/// the messages and the calls in flight; `counts` counts the calls.
#[allow(clippy::too_many_arguments)]
pub async fn serve_tls_in_site(
    listener: TcpListener,
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    site: Option<Arc<SitePeers>>,
    tls: Option<ServerTls>,
    limits: Limits,
    counts: Arc<CallCounts>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let routes = router(registry, auth, site, limits.max_message_bytes).await?;
    serve_routes(listener, routes, tls, limits, counts, shutdown).await
}

/// Serves `routes` (from [`router`] or [`router_with_status`]) on
/// `listener` as [`serve_tls_in_site`] does.
pub async fn serve_routes(
    listener: TcpListener,
    routes: Routes,
    tls: Option<ServerTls>,
    limits: Limits,
    counts: Arc<CallCounts>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut server = Server::builder();
    if let Some(tls) = &tls {
        server = server.tls_config(tls.tonic_config())?;
    }
    server
        .layer(limits::CallLimit::new(limits.max_concurrent_calls, counts))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
