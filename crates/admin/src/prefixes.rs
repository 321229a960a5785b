//! The `idnode.v1.Prefixes` service.

use crate::auth::Auth;
use crate::convert;
use crate::error::blocking;
use crate::proto;
use crate::proto::prefixes_server::Prefixes;
use idnode_registry::Registry;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// TTL of delegation values when the request gives none: a day.
const DEFAULT_DELEGATION_TTL: u32 = 86_400;

/// Prefixes homed on this node, and the ones it delegates: create,
/// delegate, read, list, delete.
#[derive(Debug, Clone)]
pub struct PrefixesService {
    registry: Arc<Registry>,
    auth: Arc<Auth>,
}

impl PrefixesService {
    pub fn new(registry: Arc<Registry>, auth: Arc<Auth>) -> Self {
        Self { registry, auth }
    }
}

#[tonic::async_trait]
impl Prefixes for PrefixesService {
    async fn create_prefix(
        &self,
        request: Request<proto::CreatePrefixRequest>,
    ) -> Result<Response<proto::Prefix>, Status> {
        self.auth.require_admin(request.metadata())?;
        let prefix = request.into_inner().prefix;
        let info = blocking(&self.registry, move |r| r.create_prefix(&prefix)).await?;
        Ok(Response::new(info.into()))
    }

    async fn get_prefix(
        &self,
        request: Request<proto::GetPrefixRequest>,
    ) -> Result<Response<proto::Prefix>, Status> {
        self.auth.caller(request.metadata())?;
        let prefix = request.into_inner().prefix;
        let info = blocking(&self.registry, move |r| r.get_prefix(&prefix)).await?;
        Ok(Response::new(info.into()))
    }

    async fn list_prefixes(
        &self,
        request: Request<proto::ListPrefixesRequest>,
    ) -> Result<Response<proto::ListPrefixesResponse>, Status> {
        self.auth.caller(request.metadata())?;
        let prefixes = blocking(&self.registry, |r| r.list_prefixes()).await?;
        Ok(Response::new(proto::ListPrefixesResponse {
            prefixes: prefixes.into_iter().map(Into::into).collect(),
        }))
    }

    async fn delegate_prefix(
        &self,
        request: Request<proto::DelegatePrefixRequest>,
    ) -> Result<Response<proto::Prefix>, Status> {
        self.auth.require_admin(request.metadata())?;
        let request = request.into_inner();
        let ttl = request.ttl.unwrap_or(DEFAULT_DELEGATION_TTL);
        let prefix = request.prefix;
        let info = if request.service.is_empty() {
            let sites = convert::sites(request.sites)?;
            blocking(&self.registry, move |r| {
                r.delegate_prefix(&prefix, sites, ttl)
            })
            .await?
        } else {
            if !request.sites.is_empty() {
                return Err(Status::invalid_argument(
                    "sites: give either sites or a service handle, not both",
                ));
            }
            let service = request.service;
            blocking(&self.registry, move |r| {
                r.delegate_prefix_to_service(&prefix, &service, ttl)
            })
            .await?
        };
        Ok(Response::new(info.into()))
    }

    async fn delete_prefix(
        &self,
        request: Request<proto::DeletePrefixRequest>,
    ) -> Result<Response<proto::DeletePrefixResponse>, Status> {
        self.auth.require_admin(request.metadata())?;
        let prefix = request.into_inner().prefix;
        blocking(&self.registry, move |r| r.delete_prefix(&prefix)).await?;
        Ok(Response::new(proto::DeletePrefixResponse {}))
    }
}
