//! The `idnode.v1.Audit` service: the audit trail of an identifier or of a
//! credential, read from the change log (`idnode_registry::Registry::audit`).

use crate::auth::{Auth, Caller};
use crate::error::blocking;
use crate::proto;
use crate::proto::audit_server::Audit;
use crate::tokens::READ_VALUE;
use idnode_registry::{AuditFilter, Registry};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Largest `limit` of a history call.
pub const MAX_HISTORY: u32 = 10_000;

/// Who changed what.
#[derive(Debug, Clone)]
pub struct AuditService {
    registry: Arc<Registry>,
    auth: Arc<Auth>,
}

impl AuditService {
    pub fn new(registry: Arc<Registry>, auth: Arc<Auth>) -> Self {
        Self { registry, auth }
    }
}

fn allowed(caller: &Caller, request: &proto::HistoryRequest) -> Result<(), Status> {
    let grant = caller.grant("reading the audit trail")?;
    if grant.is_operator() {
        return Ok(());
    }
    if !request.actor.is_empty() && request.actor != format!("token:{}", grant.id()) {
        return Err(Status::permission_denied(
            "another credential's audit trail needs the operator scope",
        ));
    }
    if !request.identifier.is_empty() {
        grant.check_identifier(&request.identifier, READ_VALUE)?;
    } else if request.actor.is_empty() {
        return Err(Status::permission_denied(
            "the whole audit trail needs the operator scope: name an identifier or your own token",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn history(
        &self,
        request: Request<proto::HistoryRequest>,
    ) -> Result<Response<proto::HistoryResponse>, Status> {
        let caller = self
            .auth
            .caller(request.metadata(), &**self.registry.store())?;
        let request = request.into_inner();
        allowed(&caller, &request)?;
        if request.limit > MAX_HISTORY {
            return Err(Status::invalid_argument(format!(
                "limit: at most {MAX_HISTORY}"
            )));
        }
        if !request.identifier.is_empty() {
            idnode_core::Identifier::parse(&request.identifier)
                .map_err(|e| Status::invalid_argument(format!("identifier: {e}")))?;
        }
        let filter = AuditFilter {
            identifier: (!request.identifier.is_empty()).then_some(request.identifier),
            actor: (!request.actor.is_empty()).then_some(request.actor),
            since: (request.since != 0).then_some(request.since),
            limit: request.limit as usize,
        };
        let entries = blocking(&self.registry, move |r| r.audit(&filter)).await?;
        Ok(Response::new(proto::HistoryResponse {
            entries: entries
                .into_iter()
                .map(|e| {
                    let origin = e.origin.unwrap_or_default();
                    proto::AuditEntry {
                        sequence: e.sequence,
                        subject: e.subject,
                        kind: e.kind.to_owned(),
                        action: e.action.as_str().to_owned(),
                        time: origin.time,
                        actor: origin.actor,
                        surface: origin.surface,
                        address: origin.address,
                    }
                })
                .collect(),
        }))
    }
}
