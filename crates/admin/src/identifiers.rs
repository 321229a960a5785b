//! The `idnode.v1.Identifiers` service (its streaming BatchCreate is in
//! `batch.rs`).

use crate::auth::{Auth, Caller};
use crate::batch::{self, BatchStream};
use crate::error::blocking;
use crate::proto::identifiers_server::Identifiers;
use crate::site::SitePeers;
use crate::{convert, proto};
use idnode_registry::{BatchItem, Registry, public_view};
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// Identifiers and their values.
#[derive(Debug, Clone)]
pub struct IdentifiersService {
    registry: Arc<Registry>,
    auth: Arc<Auth>,
    site: Option<Arc<SitePeers>>,
}

impl IdentifiersService {
    pub fn new(registry: Arc<Registry>, auth: Arc<Auth>) -> Self {
        Self {
            registry,
            auth,
            site: None,
        }
    }

    /// A service on one server of a multi-server site: calls about
    /// identifiers that hash to another server are forwarded there.
    pub fn with_site(registry: Arc<Registry>, auth: Arc<Auth>, site: Arc<SitePeers>) -> Self {
        Self {
            registry,
            auth,
            site: Some(site),
        }
    }

    /// The site server that owns `identifier` when it is not this one.
    async fn elsewhere(&self, identifier: &str) -> Result<Option<Owner>, Status> {
        match &self.site {
            Some(site) => site.owner(identifier).await,
            None => Ok(None),
        }
    }
}

type Owner = crate::proto::identifiers_client::IdentifiersClient<crate::AdminChannel>;

fn identifier(record: idnode_core::Record) -> Response<proto::Identifier> {
    Response::new(record.into())
}

#[tonic::async_trait]
impl Identifiers for IdentifiersService {
    async fn create_identifier(
        &self,
        request: Request<proto::CreateIdentifierRequest>,
    ) -> Result<Response<proto::Identifier>, Status> {
        self.auth.require_admin(request.metadata())?;
        let request = request.into_inner();
        if let Some(mut owner) = self.elsewhere(&request.identifier).await? {
            return owner.create_identifier(request).await;
        }
        let item = BatchItem::try_from(request)?;
        let record = blocking(&self.registry, move |r| {
            r.create_identifier(&item.identifier, item.values, item.overwrite)
        })
        .await?;
        Ok(identifier(record))
    }

    async fn get_identifier(
        &self,
        request: Request<proto::GetIdentifierRequest>,
    ) -> Result<Response<proto::Identifier>, Status> {
        let caller = self.auth.caller(request.metadata())?;
        let request = request.into_inner();
        if let Some(mut owner) = self.elsewhere(&request.identifier).await? {
            let mut found = owner.get_identifier(request).await?;
            if caller == Caller::Anonymous {
                // The owner answered an admin: keep what the public sees.
                let values = &mut found.get_mut().values;
                values.retain(|v| v.permissions.unwrap_or(0x0e) & 0x02 != 0);
            }
            return Ok(found);
        }
        let id = request.identifier;
        let record = blocking(&self.registry, move |r| r.get_identifier(&id)).await?;
        Ok(identifier(match caller {
            Caller::Admin => record,
            Caller::Anonymous => public_view(record),
        }))
    }

    async fn delete_identifier(
        &self,
        request: Request<proto::DeleteIdentifierRequest>,
    ) -> Result<Response<proto::DeleteIdentifierResponse>, Status> {
        self.auth.require_admin(request.metadata())?;
        let request = request.into_inner();
        if let Some(mut owner) = self.elsewhere(&request.identifier).await? {
            return owner.delete_identifier(request).await;
        }
        let id = request.identifier;
        blocking(&self.registry, move |r| r.delete_identifier(&id)).await?;
        Ok(Response::new(proto::DeleteIdentifierResponse {}))
    }

    async fn add_values(
        &self,
        request: Request<proto::AddValuesRequest>,
    ) -> Result<Response<proto::Identifier>, Status> {
        self.auth.require_admin(request.metadata())?;
        let request = request.into_inner();
        if let Some(mut owner) = self.elsewhere(&request.identifier).await? {
            return owner.add_values(request).await;
        }
        let values = convert::values(request.values)?;
        let id = request.identifier;
        let record = blocking(&self.registry, move |r| r.add_values(&id, values)).await?;
        Ok(identifier(record))
    }

    async fn modify_values(
        &self,
        request: Request<proto::ModifyValuesRequest>,
    ) -> Result<Response<proto::Identifier>, Status> {
        self.auth.require_admin(request.metadata())?;
        let request = request.into_inner();
        if let Some(mut owner) = self.elsewhere(&request.identifier).await? {
            return owner.modify_values(request).await;
        }
        let values = convert::values(request.values)?;
        let id = request.identifier;
        let record = blocking(&self.registry, move |r| r.modify_values(&id, values)).await?;
        Ok(identifier(record))
    }

    async fn remove_values(
        &self,
        request: Request<proto::RemoveValuesRequest>,
    ) -> Result<Response<proto::Identifier>, Status> {
        self.auth.require_admin(request.metadata())?;
        let request = request.into_inner();
        if let Some(mut owner) = self.elsewhere(&request.identifier).await? {
            return owner.remove_values(request).await;
        }
        let (id, indexes) = (request.identifier, request.indexes);
        let record = blocking(&self.registry, move |r| r.remove_values(&id, &indexes)).await?;
        Ok(identifier(record))
    }

    async fn list_identifiers(
        &self,
        request: Request<proto::ListIdentifiersRequest>,
    ) -> Result<Response<proto::ListIdentifiersResponse>, Status> {
        self.auth.caller(request.metadata())?;
        let request = request.into_inner();
        let page = blocking(&self.registry, move |r| {
            r.list_identifiers(&request.prefix, request.page_size, &request.page_token)
        })
        .await?;
        Ok(Response::new(proto::ListIdentifiersResponse {
            identifiers: page.identifiers,
            next_page_token: page.next_page_token,
        }))
    }

    async fn compact(
        &self,
        request: Request<proto::CompactRequest>,
    ) -> Result<Response<proto::CompactResponse>, Status> {
        self.auth.require_admin(request.metadata())?;
        let started = std::time::Instant::now();
        blocking(&self.registry, |r| Ok(r.store().compact()?)).await?;
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(duration_ms, "store compacted");
        Ok(Response::new(proto::CompactResponse { duration_ms }))
    }

    type BatchCreateStream = BatchStream;

    async fn batch_create(
        &self,
        request: Request<Streaming<proto::CreateIdentifierRequest>>,
    ) -> Result<Response<BatchStream>, Status> {
        self.auth.require_admin(request.metadata())?;
        Ok(Response::new(batch::start(
            Arc::clone(&self.registry),
            self.site.clone(),
            request.into_inner(),
        )))
    }
}
