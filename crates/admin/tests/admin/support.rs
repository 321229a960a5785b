//! A node serving the admin API on a free local port.

use idnode_admin::proto::identifiers_client::IdentifiersClient;
use idnode_admin::proto::prefixes_client::PrefixesClient;
use idnode_admin::proto::tokens_client::TokensClient;
use idnode_admin::{AdminChannel, Auth, connect, connect_tokens, proto, serve};
use idnode_registry::Registry;
use idnode_store::{MemoryStore, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "test-admin-token";
pub const NOW: u32 = 1_700_000_000;

pub struct Node {
    pub addr: SocketAddr,
    pub store: Arc<MemoryStore>,
    /// The clock tokens expire by (unix seconds), starting at [`NOW`].
    pub clock: Arc<AtomicU64>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), idnode_admin::Error>>>,
}

impl Node {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = Arc::new(MemoryStore::new());
        let registry = Arc::new(Registry::with_clock(store.clone(), || NOW));
        let clock = Arc::new(AtomicU64::new(u64::from(NOW)));
        let reading = clock.clone();
        let auth =
            Arc::new(Auth::from_token(TOKEN).with_clock(move || reading.load(Ordering::SeqCst)));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, registry, auth, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            store,
            clock,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Clients sending `token` (none when `None`).
    pub async fn clients(
        &self,
        token: Option<&str>,
    ) -> (
        PrefixesClient<AdminChannel>,
        IdentifiersClient<AdminChannel>,
    ) {
        connect(&self.endpoint(), token.map(str::to_owned))
            .await
            .unwrap()
    }

    pub async fn admin(
        &self,
    ) -> (
        PrefixesClient<AdminChannel>,
        IdentifiersClient<AdminChannel>,
    ) {
        self.clients(Some(TOKEN)).await
    }

    /// A Tokens client sending `token`.
    pub async fn tokens(&self, token: Option<&str>) -> TokensClient<AdminChannel> {
        connect_tokens(&self.endpoint(), token.map(str::to_owned))
            .await
            .unwrap()
    }

    /// Makes a token (with the admin token) and returns its secret.
    pub async fn token(
        &self,
        prefixes: &[&str],
        permissions: &str,
        max_identifiers: Option<u64>,
    ) -> String {
        self.tokens(Some(TOKEN))
            .await
            .create_token(proto::CreateTokenRequest {
                name: format!("{permissions} on {prefixes:?}"),
                prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
                permissions: vec![permissions.to_owned()],
                expires_in_seconds: 0,
                max_identifiers,
            })
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    /// Moves the tokens' clock on by `seconds`.
    pub fn advance(&self, seconds: u64) {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
    }

    pub fn sequence(&self) -> u64 {
        self.store.last_sequence()
    }

    /// Stops the server and waits for it to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

pub fn url(index: u32, data: &str) -> proto::Value {
    proto::Value {
        index,
        r#type: "URL".into(),
        data: data.to_owned().into(),
        ..Default::default()
    }
}

pub fn create(identifier: &str, values: Vec<proto::Value>) -> proto::CreateIdentifierRequest {
    proto::CreateIdentifierRequest {
        identifier: identifier.into(),
        values,
        overwrite: false,
    }
}

pub fn prefix(p: &str) -> proto::CreatePrefixRequest {
    proto::CreatePrefixRequest { prefix: p.into() }
}
