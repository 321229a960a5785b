//! A node serving the admin API on a free local port.

use idnode_admin::proto::identifiers_client::IdentifiersClient;
use idnode_admin::proto::prefixes_client::PrefixesClient;
use idnode_admin::{AdminChannel, Auth, connect, proto, serve};
use idnode_registry::Registry;
use idnode_store::{MemoryStore, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "test-admin-token";
pub const NOW: u32 = 1_700_000_000;

pub struct Node {
    pub addr: SocketAddr,
    pub store: Arc<MemoryStore>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), idnode_admin::Error>>>,
}

impl Node {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = Arc::new(MemoryStore::new());
        let registry = Arc::new(Registry::with_clock(store.clone(), || NOW));
        let auth = Arc::new(Auth::from_token(TOKEN));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, registry, auth, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            store,
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
