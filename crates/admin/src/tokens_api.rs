//! The `idnode.v1.Tokens` service: making, listing and revoking scoped
//! tokens. Operator only.

use crate::auth::{Auth, new_token, sha256};
use crate::proto;
use crate::proto::tokens_server::Tokens;
use crate::tokens::{
    self, ADMIN_ID, MAX_NAME_BYTES, MAX_PREFIXES, TokenRecord, parse_permissions, scope_names,
    valid_id,
};
use bytes::Bytes;
use idnode_core::Prefix;
use idnode_registry::Registry;
use idnode_store::{Space, Store, StoreError};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Scoped tokens: create (the secret shown once), list, revoke.
#[derive(Debug, Clone)]
pub struct TokensService {
    registry: Arc<Registry>,
    auth: Arc<Auth>,
}

impl TokensService {
    pub fn new(registry: Arc<Registry>, auth: Arc<Auth>) -> Self {
        Self { registry, auth }
    }

    fn require_operator<T>(&self, request: &Request<T>, what: &str) -> Result<(), Status> {
        self.auth
            .caller(request.metadata(), &**self.registry.store())?
            .grant(what)?
            .require_operator(what)
    }

    /// Runs a store call on a blocking thread (token writes are durable).
    async fn store<T, F>(&self, call: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, Failure> + Send + 'static,
    {
        let store = Arc::clone(self.registry.store());
        match tokio::task::spawn_blocking(move || call(&*store)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Failure::Status(status))) => Err(status),
            Ok(Err(Failure::Store(StoreError::ReadOnly(message)))) => {
                Err(Status::failed_precondition(message))
            }
            Ok(Err(Failure::Store(e @ StoreError::NoSpace(_)))) => {
                tracing::warn!(error = %e, "a token call refused: the disk is full");
                Err(Status::resource_exhausted(idnode_store::NO_SPACE))
            }
            Ok(Err(Failure::Store(e))) => {
                tracing::error!(error = %e, "a token call failed in the store");
                Err(Status::internal(
                    "internal storage error; the node's log has the details",
                ))
            }
            Err(e) => {
                tracing::error!(error = %e, "a token call panicked or was cancelled");
                Err(Status::internal("the request failed inside the node"))
            }
        }
    }
}

/// Why a token call failed on its blocking thread.
enum Failure {
    Status(Status),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// The API form of a stored token.
fn token(id: String, record: TokenRecord, created: u64) -> proto::Token {
    proto::Token {
        id,
        name: record.name,
        prefixes: record.prefixes,
        permissions: scope_names(record.scope),
        created: record.created,
        expires: record.expires.unwrap_or(0),
        max_identifiers: record.max_identifiers,
        identifiers_created: created,
        revoked: record.revoked,
    }
}

/// Checks a CreateToken request and makes its record (hash still empty).
fn record_from(request: &proto::CreateTokenRequest, now: u64) -> Result<TokenRecord, Status> {
    let invalid =
        |field: &str, message: String| Status::invalid_argument(format!("{field}: {message}"));
    if request.name.len() > MAX_NAME_BYTES {
        return Err(invalid(
            "name",
            format!("{} bytes, more than {MAX_NAME_BYTES}", request.name.len()),
        ));
    }
    if request.name.chars().any(char::is_control) {
        return Err(invalid("name", "has a control character".into()));
    }
    let scope = parse_permissions(request.permissions.iter().map(String::as_str))
        .map_err(|e| invalid("permissions", e))?;
    if scope.bits == 0 && !scope.operator && !scope.replicate {
        return Err(invalid(
            "permissions",
            "give at least one (add_handle, add_value, read_value, list_handles..., \
             operator, or replicate)"
                .into(),
        ));
    }
    if scope.replicate && (scope.bits != 0 || scope.operator) {
        return Err(invalid(
            "permissions",
            "replicate makes a token that only follows the change log (a mirror's): give \
             it alone"
                .into(),
        ));
    }
    if scope.replicate && !request.prefixes.is_empty() {
        return Err(invalid(
            "prefixes",
            "a replicate token follows the whole store: give none".into(),
        ));
    }
    if scope.operator && !request.prefixes.is_empty() {
        return Err(invalid(
            "prefixes",
            "an operator token covers every prefix: give none".into(),
        ));
    }
    if !scope.operator && !scope.replicate && request.prefixes.is_empty() {
        return Err(invalid(
            "prefixes",
            "give at least one prefix the token covers".into(),
        ));
    }
    if request.prefixes.len() > MAX_PREFIXES {
        return Err(invalid(
            "prefixes",
            format!(
                "{} prefixes, more than {MAX_PREFIXES}",
                request.prefixes.len()
            ),
        ));
    }
    let mut prefixes = Vec::with_capacity(request.prefixes.len());
    for (at, text) in request.prefixes.iter().enumerate() {
        let prefix = Prefix::parse(text.trim())
            .map_err(|e| invalid(&format!("prefixes[{at}]"), e.to_string()))?;
        prefixes.push(prefix.as_str().to_owned());
    }
    let expires = match request.expires_in_seconds {
        0 => None,
        seconds => Some(now.saturating_add(seconds)),
    };
    Ok(TokenRecord {
        hash: [0; 32],
        name: request.name.clone(),
        scope,
        prefixes,
        created: now,
        expires,
        max_identifiers: request.max_identifiers,
        revoked: false,
    })
}

/// A new token id: 8 random hex digits.
fn new_id() -> String {
    let mut bytes = [0u8; 4];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

#[tonic::async_trait]
impl Tokens for TokensService {
    async fn create_token(
        &self,
        request: Request<proto::CreateTokenRequest>,
    ) -> Result<Response<proto::CreateTokenResponse>, Status> {
        self.require_operator(&request, "making tokens")?;
        let request = request.into_inner();
        let record = record_from(&request, self.auth.now())?;
        let (id, secret, record) = self
            .store(move |store| {
                // Ids are random; on the rare clash, draw again.
                for _ in 0..8 {
                    let id = new_id();
                    let key = tokens::token_key(&id);
                    let mut txn = store.begin()?;
                    if txn.get(Space::Meta, &key)?.is_some() {
                        continue;
                    }
                    let secret = format!("{id}.{}", new_token());
                    let record = TokenRecord {
                        hash: sha256(&secret),
                        ..record.clone()
                    };
                    txn.put(Space::Meta, &key, Bytes::from(record.encode()));
                    txn.commit()?;
                    return Ok((id, secret, record));
                }
                Err(Failure::Status(Status::internal(
                    "could not draw an unused token id",
                )))
            })
            .await?;
        tracing::info!(
            token = id,
            name = record.name,
            prefixes = ?record.prefixes,
            permissions = ?scope_names(record.scope),
            "token created"
        );
        Ok(Response::new(proto::CreateTokenResponse {
            token: Some(token(id, record, 0)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<proto::ListTokensRequest>,
    ) -> Result<Response<proto::ListTokensResponse>, Status> {
        self.require_operator(&request, "listing tokens")?;
        let listed = self
            .store(|store| {
                let mut out = Vec::new();
                for (id, record) in tokens::list(store)? {
                    let created = tokens::created_count(store, &id)?;
                    out.push(token(id, record, created));
                }
                Ok(out)
            })
            .await?;
        Ok(Response::new(proto::ListTokensResponse { tokens: listed }))
    }

    async fn rotate_operator_token(
        &self,
        request: Request<proto::RotateOperatorTokenRequest>,
    ) -> Result<Response<proto::RotateOperatorTokenResponse>, Status> {
        self.require_operator(&request, "replacing the operator token")?;
        let auth = Arc::clone(&self.auth);
        let (token, file) = self
            .store(move |store| {
                auth.rotate_admin(store).map_err(|e| match e {
                    crate::Error::Store(e) => Failure::Store(e),
                    other => Failure::Status(Status::internal(format!(
                        "the new operator token is in force but could not be written: {other}"
                    ))),
                })
            })
            .await?;
        tracing::warn!(
            file = ?file.as_deref().map(|p| p.display().to_string()),
            "the operator token was replaced; the old one is refused from now on"
        );
        Ok(Response::new(proto::RotateOperatorTokenResponse {
            token,
            file: file.map(|p| p.display().to_string()).unwrap_or_default(),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<proto::RevokeTokenRequest>,
    ) -> Result<Response<proto::Token>, Status> {
        self.require_operator(&request, "revoking tokens")?;
        let id = request.into_inner().id.trim().to_ascii_lowercase();
        if id == ADMIN_ID {
            return Err(Status::failed_precondition(
                "token admin is the node's own operator token (admin.token in its data \
                 directory) and cannot be revoked",
            ));
        }
        if !valid_id(&id) {
            return Err(Status::invalid_argument(format!(
                "id: `{id}` is not a token id (hex digits, as `idnode token list` shows)"
            )));
        }
        let (id, record, created) = self
            .store(move |store| {
                let key = tokens::token_key(&id);
                let mut txn = store.begin()?;
                let Some(bytes) = txn.get(Space::Meta, &key)? else {
                    return Err(Failure::Status(Status::not_found(format!(
                        "token {id} not found"
                    ))));
                };
                let mut record = TokenRecord::decode(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("token {id}: {e}")))?;
                if record.revoked {
                    drop(txn);
                } else {
                    record.revoked = true;
                    txn.put(Space::Meta, &key, Bytes::from(record.encode()));
                    txn.commit()?;
                }
                let created = tokens::created_count(store, &id)?;
                Ok((id, record, created))
            })
            .await?;
        tracing::info!(token = id, "token revoked");
        Ok(Response::new(token(id, record, created)))
    }
}
