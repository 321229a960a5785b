//! The `idnode.v1.Prefixes` service.

use crate::auth::{Auth, Caller};
use crate::convert;
use crate::error::{blocking, blocking_as};
use crate::proto;
use crate::proto::prefixes_server::Prefixes;
use crate::tokens::{ADD_DERIVED_PREFIX, DELETE_DERIVED_PREFIX};
use idnode_core::Prefix;
use idnode_registry::Registry;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// TTL of delegation values when the request gives none: a day.
const DEFAULT_DELEGATION_TTL: u32 = 86_400;

/// Prefixes homed on this node, and the ones it delegates: create,
/// delegate, read, list, delete; their metadata templates.
#[derive(Debug, Clone)]
pub struct PrefixesService {
    registry: Arc<Registry>,
    auth: Arc<Auth>,
}

impl PrefixesService {
    pub fn new(registry: Arc<Registry>, auth: Arc<Auth>) -> Self {
        Self { registry, auth }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        self.auth
            .caller(request.metadata(), &**self.registry.store())
    }
}

/// `prefix` parsed, for checking a scoped token against it.
fn parsed(prefix: &str) -> Result<Prefix, Status> {
    Prefix::parse(prefix).map_err(|e| Status::invalid_argument(format!("prefix: {e}")))
}

#[tonic::async_trait]
impl Prefixes for PrefixesService {
    async fn create_prefix(
        &self,
        request: Request<proto::CreatePrefixRequest>,
    ) -> Result<Response<proto::Prefix>, Status> {
        let caller = self.caller(&request)?;
        let origin = crate::auth::origin_of(&caller, &request);
        let grant = caller.grant("creating a prefix")?;
        let prefix = request.into_inner().prefix;
        if !grant.is_operator() {
            grant.check_derived(&parsed(&prefix)?, ADD_DERIVED_PREFIX)?;
        }
        let info = blocking_as(&self.registry, origin, move |r| r.create_prefix(&prefix)).await?;
        Ok(Response::new(info.into()))
    }

    async fn get_prefix(
        &self,
        request: Request<proto::GetPrefixRequest>,
    ) -> Result<Response<proto::Prefix>, Status> {
        self.caller(&request)?;
        let prefix = request.into_inner().prefix;
        let info = blocking(&self.registry, move |r| r.get_prefix(&prefix)).await?;
        Ok(Response::new(info.into()))
    }

    async fn list_prefixes(
        &self,
        request: Request<proto::ListPrefixesRequest>,
    ) -> Result<Response<proto::ListPrefixesResponse>, Status> {
        self.caller(&request)?;
        let prefixes = blocking(&self.registry, |r| r.list_prefixes()).await?;
        Ok(Response::new(proto::ListPrefixesResponse {
            prefixes: prefixes.into_iter().map(Into::into).collect(),
        }))
    }

    async fn delegate_prefix(
        &self,
        request: Request<proto::DelegatePrefixRequest>,
    ) -> Result<Response<proto::Prefix>, Status> {
        let caller = self.caller(&request)?;
        caller
            .grant("delegating a prefix")?
            .require_operator("delegating a prefix")?;
        let origin = crate::auth::origin_of(&caller, &request);
        let request = request.into_inner();
        let ttl = request.ttl.unwrap_or(DEFAULT_DELEGATION_TTL);
        let prefix = request.prefix;
        let info = if request.service.is_empty() {
            let sites = convert::sites(request.sites)?;
            blocking_as(&self.registry, origin, move |r| {
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
            blocking_as(&self.registry, origin, move |r| {
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
        let caller = self.caller(&request)?;
        let origin = crate::auth::origin_of(&caller, &request);
        let grant = caller.grant("deleting a prefix")?;
        let prefix = request.into_inner().prefix;
        if !grant.is_operator() {
            grant.check_derived(&parsed(&prefix)?, DELETE_DERIVED_PREFIX)?;
        }
        blocking_as(&self.registry, origin, move |r| r.delete_prefix(&prefix)).await?;
        Ok(Response::new(proto::DeletePrefixResponse {}))
    }

    async fn set_template(
        &self,
        request: Request<proto::SetTemplateRequest>,
    ) -> Result<Response<proto::TemplateInfo>, Status> {
        let caller = self.caller(&request)?;
        let origin = crate::auth::origin_of(&caller, &request);
        let grant = caller.grant("setting a template")?;
        let request = request.into_inner();
        let prefix = request.prefix;
        if !grant.is_operator() {
            grant.check_derived(&parsed(&prefix)?, ADD_DERIVED_PREFIX)?;
        }
        let template = convert::template_from_proto(request.template)?;
        let info = blocking_as(&self.registry, origin, move |r| {
            r.set_template(&prefix, template)
        })
        .await?;
        Ok(Response::new(proto::TemplateInfo {
            prefix: info.prefix.clone(),
            defined_at: info.prefix,
            template: info.template.map(Into::into),
        }))
    }

    async fn get_template(
        &self,
        request: Request<proto::GetTemplateRequest>,
    ) -> Result<Response<proto::TemplateInfo>, Status> {
        self.caller(&request)?;
        let prefix = request.into_inner().prefix;
        let asked = prefix.clone();
        let applied = blocking(&self.registry, move |r| r.template_for(&prefix)).await?;
        let Some(applied) = applied else {
            return Err(Status::not_found(format!(
                "no template applies to prefix {asked}: neither it nor a prefix above it has one"
            )));
        };
        Ok(Response::new(proto::TemplateInfo {
            prefix: asked,
            defined_at: applied.prefix,
            template: Some(applied.template.into()),
        }))
    }

    async fn delete_template(
        &self,
        request: Request<proto::DeleteTemplateRequest>,
    ) -> Result<Response<proto::DeleteTemplateResponse>, Status> {
        let caller = self.caller(&request)?;
        let origin = crate::auth::origin_of(&caller, &request);
        let grant = caller.grant("deleting a template")?;
        let prefix = request.into_inner().prefix;
        if !grant.is_operator() {
            grant.check_derived(&parsed(&prefix)?, ADD_DERIVED_PREFIX)?;
        }
        blocking_as(&self.registry, origin, move |r| r.delete_template(&prefix)).await?;
        Ok(Response::new(proto::DeleteTemplateResponse {}))
    }
}
