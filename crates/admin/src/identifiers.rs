//! The `idnode.v1.Identifiers` service (its streaming BatchCreate is in
//! `batch.rs`). Every call checks its caller's token against the
//! identifier's prefix first (docs/credentials.md).

use crate::auth::{Auth, Caller, Grant};
use crate::batch::{self, BatchStream};
use crate::error::{blocking, blocking_as};
use crate::proto::identifiers_server::Identifiers;
use crate::quota::{self, Quota};
use crate::site::SitePeers;
use crate::tokens::{
    ADD_ADMIN, ADD_HANDLE, ADD_VALUE, DELETE_HANDLE, LIST_HANDLES, MODIFY_ADMIN, MODIFY_VALUE,
    READ_VALUE, REMOVE_ADMIN, REMOVE_VALUE,
};
use crate::{convert, proto};
use idnode_core::{Identifier, Prefix};
use idnode_registry::{BatchItem, Registry, public_view};
use std::sync::Arc;
use tokio_stream::wrappers::ReceiverStream;
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
    /// identifiers that hash to another server are forwarded there (with
    /// that server's operator token, after this server checked the
    /// caller's).
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

    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        self.auth
            .caller(request.metadata(), &**self.registry.store())
    }

    /// The types of the values of `identifier` now, by index (empty when
    /// it cannot be read): whether a change touches HS_ADMIN values.
    async fn current_types(&self, identifier: &str) -> Vec<(u32, String)> {
        let record = match self.elsewhere(identifier).await {
            Ok(Some(mut owner)) => owner
                .get_identifier(proto::GetIdentifierRequest {
                    identifier: identifier.to_owned(),
                })
                .await
                .ok()
                .map(|r| {
                    r.into_inner()
                        .values
                        .into_iter()
                        .map(|v| (v.index, v.r#type))
                        .collect()
                }),
            Ok(None) => {
                let id = identifier.to_owned();
                blocking(&self.registry, move |r| r.get_identifier(&id))
                    .await
                    .ok()
                    .map(|r| r.values.into_iter().map(|v| (v.index, v.kind)).collect())
            }
            Err(_) => None,
        };
        record.unwrap_or_default()
    }

    /// Checks a change of the values at `changes` (index, and the new type
    /// for a modification): `value_bit` for an ordinary value,
    /// `admin_bit` for an HS_ADMIN one (as the value was or becomes), as
    /// CNRI's server does.
    async fn check_change(
        &self,
        grant: &Grant,
        identifier: &str,
        changes: &[(u32, Option<&str>)],
        value_bit: u16,
        admin_bit: u16,
    ) -> Result<(), Status> {
        if grant.is_operator() {
            return Ok(());
        }
        // Outside its prefixes a token learns nothing, not even the types
        // of the values.
        if grant.bits_on_identifier(identifier) & (value_bit | admin_bit) == 0 {
            let named = match changes.iter().any(|(_, t)| t.is_some_and(is_admin)) {
                true => admin_bit,
                false => value_bit,
            };
            return grant.check_identifier(identifier, named);
        }
        let current = self.current_types(identifier).await;
        let mut need = 0;
        for (index, new_type) in changes {
            let was_admin = current
                .iter()
                .any(|(at, kind)| at == index && is_admin(kind));
            need |= match was_admin || new_type.is_some_and(is_admin) {
                true => admin_bit,
                false => value_bit,
            };
        }
        // No values at all: the registry refuses it, if the token may.
        grant.check_identifier(identifier, if need == 0 { value_bit } else { need })
    }
}

fn is_admin(kind: &str) -> bool {
    kind.eq_ignore_ascii_case("HS_ADMIN")
}

/// Records per message of an export.
const EXPORT_PAGE: usize = 256;

/// The stream of an export.
pub type ExportStream = ReceiverStream<Result<proto::ExportResponse, Status>>;

/// The total size of the files in `dir` (a checkpoint: no subdirectories).
fn directory_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

type Owner = crate::proto::identifiers_client::IdentifiersClient<crate::AdminChannel>;

/// The record as a caller may see it: every value with `all` (read_value
/// in scope), else the publicly readable ones.
fn shown(all: bool, record: idnode_core::Record) -> Response<proto::Identifier> {
    identifier(match all {
        true => record,
        false => public_view(record),
    })
}

/// An answer forwarded from the server of the site that owns the
/// identifier (which answered an operator), as the caller may see it.
fn shown_forwarded(
    all: bool,
    mut found: Response<proto::Identifier>,
) -> Response<proto::Identifier> {
    if !all {
        let values = &mut found.get_mut().values;
        values.retain(|v| v.permissions.unwrap_or(0x0e) & 0x02 != 0);
    }
    found
}

fn identifier(record: idnode_core::Record) -> Response<proto::Identifier> {
    Response::new(record.into())
}

#[tonic::async_trait]
impl Identifiers for IdentifiersService {
    async fn create_identifier(
        &self,
        request: Request<proto::CreateIdentifierRequest>,
    ) -> Result<Response<proto::Identifier>, Status> {
        let caller = self.caller(&request)?;
        let origin = crate::auth::origin_of(&caller, &request);
        let grant = caller.grant("creating an identifier")?;
        let request = request.into_inner();
        let need = match request.overwrite {
            true => ADD_HANDLE | DELETE_HANDLE,
            false => ADD_HANDLE,
        };
        grant.check_identifier(&request.identifier, need)?;
        self.auth.take_write(grant)?;
        let quota = Quota::acquire(&self.auth, grant, self.registry.store()).await?;
        let owner = self.elsewhere(&request.identifier).await?;
        // Whether this create would add an identifier (what a quota counts).
        let new = match (&quota, &owner) {
            (None, _) => false,
            (Some(_), Some(_)) => true,
            (Some(_), None) => match Identifier::parse(&request.identifier) {
                Ok(id) => quota::absent(self.registry.store(), vec![id.key().to_owned()])
                    .await?
                    .first()
                    .copied()
                    .unwrap_or(true),
                Err(_) => false,
            },
        };
        if let Some(quota) = &quota
            && new
            && quota.left() == 0
        {
            return Err(quota.exhausted());
        }
        let made = match owner {
            Some(mut owner) => owner.create_identifier(request).await,
            None => {
                let item = BatchItem::try_from(request)?;
                blocking_as(&self.registry, origin, move |r| {
                    r.create_identifier(&item.identifier, item.values, item.overwrite)
                })
                .await
                .map(identifier)
            }
        };
        if let Some(quota) = quota {
            quota.add(u64::from(new && made.is_ok())).await;
        }
        made
    }

    async fn get_identifier(
        &self,
        request: Request<proto::GetIdentifierRequest>,
    ) -> Result<Response<proto::Identifier>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        // Private values need read_value on the identifier's prefix; any
        // other caller sees what the public sees.
        let all = caller.can_read(&request.identifier);
        if let Some(mut owner) = self.elsewhere(&request.identifier).await? {
            return Ok(shown_forwarded(all, owner.get_identifier(request).await?));
        }
        let id = request.identifier;
        let record = blocking(&self.registry, move |r| r.get_identifier(&id)).await?;
        Ok(shown(all, record))
    }

    async fn delete_identifier(
        &self,
        request: Request<proto::DeleteIdentifierRequest>,
    ) -> Result<Response<proto::DeleteIdentifierResponse>, Status> {
        let caller = self.caller(&request)?;
        let origin = crate::auth::origin_of(&caller, &request);
        let request = request.into_inner();
        let grant = caller.grant("deleting an identifier")?;
        grant.check_identifier(&request.identifier, DELETE_HANDLE)?;
        self.auth.take_write(grant)?;
        if let Some(mut owner) = self.elsewhere(&request.identifier).await? {
            return owner.delete_identifier(request).await;
        }
        let id = request.identifier;
        blocking_as(&self.registry, origin, move |r| r.delete_identifier(&id)).await?;
        Ok(Response::new(proto::DeleteIdentifierResponse {}))
    }

    async fn add_values(
        &self,
        request: Request<proto::AddValuesRequest>,
    ) -> Result<Response<proto::Identifier>, Status> {
        let caller = self.caller(&request)?;
        let origin = crate::auth::origin_of(&caller, &request);
        let grant = caller.grant("adding values")?;
        let request = request.into_inner();
        let need = request.values.iter().fold(0, |need, v| {
            need | if is_admin(&v.r#type) {
                ADD_ADMIN
            } else {
                ADD_VALUE
            }
        });
        let need = if need == 0 { ADD_VALUE } else { need };
        grant.check_identifier(&request.identifier, need)?;
        self.auth.take_write(grant)?;
        // The record in the answer shows private values only to a caller
        // that may read them, as GetIdentifier does.
        let all = caller.can_read(&request.identifier);
        if let Some(mut owner) = self.elsewhere(&request.identifier).await? {
            return Ok(shown_forwarded(all, owner.add_values(request).await?));
        }
        let values = convert::values(request.values)?;
        let id = request.identifier;
        let record =
            blocking_as(&self.registry, origin, move |r| r.add_values(&id, values)).await?;
        Ok(shown(all, record))
    }

    async fn modify_values(
        &self,
        request: Request<proto::ModifyValuesRequest>,
    ) -> Result<Response<proto::Identifier>, Status> {
        let caller = self.caller(&request)?;
        let origin = crate::auth::origin_of(&caller, &request);
        let grant = caller.grant("modifying values")?;
        let request = request.into_inner();
        let changes: Vec<(u32, Option<&str>)> = request
            .values
            .iter()
            .map(|v| (v.index, Some(v.r#type.as_str())))
            .collect();
        self.check_change(
            grant,
            &request.identifier,
            &changes,
            MODIFY_VALUE,
            MODIFY_ADMIN,
        )
        .await?;
        self.auth.take_write(grant)?;
        // The record in the answer shows private values only to a caller
        // that may read them, as GetIdentifier does.
        let all = caller.can_read(&request.identifier);
        if let Some(mut owner) = self.elsewhere(&request.identifier).await? {
            return Ok(shown_forwarded(all, owner.modify_values(request).await?));
        }
        let values = convert::values(request.values)?;
        let id = request.identifier;
        let record = blocking_as(&self.registry, origin, move |r| {
            r.modify_values(&id, values)
        })
        .await?;
        Ok(shown(all, record))
    }

    async fn remove_values(
        &self,
        request: Request<proto::RemoveValuesRequest>,
    ) -> Result<Response<proto::Identifier>, Status> {
        let caller = self.caller(&request)?;
        let origin = crate::auth::origin_of(&caller, &request);
        let grant = caller.grant("removing values")?;
        let request = request.into_inner();
        let changes: Vec<(u32, Option<&str>)> =
            request.indexes.iter().map(|&index| (index, None)).collect();
        self.check_change(
            grant,
            &request.identifier,
            &changes,
            REMOVE_VALUE,
            REMOVE_ADMIN,
        )
        .await?;
        self.auth.take_write(grant)?;
        // The record in the answer shows private values only to a caller
        // that may read them, as GetIdentifier does.
        let all = caller.can_read(&request.identifier);
        if let Some(mut owner) = self.elsewhere(&request.identifier).await? {
            return Ok(shown_forwarded(all, owner.remove_values(request).await?));
        }
        let (id, indexes) = (request.identifier, request.indexes);
        let record = blocking_as(&self.registry, origin, move |r| {
            r.remove_values(&id, &indexes)
        })
        .await?;
        Ok(shown(all, record))
    }

    async fn list_identifiers(
        &self,
        request: Request<proto::ListIdentifiersRequest>,
    ) -> Result<Response<proto::ListIdentifiersResponse>, Status> {
        let caller = self.caller(&request)?;
        let request = request.into_inner();
        let grant = caller.grant("listing identifiers")?;
        if !grant.is_operator() {
            let prefix = Prefix::parse(&request.prefix)
                .map_err(|e| Status::invalid_argument(format!("prefix: {e}")))?;
            grant.check(&prefix, LIST_HANDLES)?;
        }
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
        self.caller(&request)?
            .grant("compacting the store")?
            .require_operator("compacting the store")?;
        let started = std::time::Instant::now();
        // What the change log no longer keeps goes first, so that the
        // compaction drops it from the files too.
        let trimmed = blocking(&self.registry, |r| {
            let trimmed = r.trim_change_log()?;
            r.store().compact()?;
            Ok(trimmed)
        })
        .await?;
        if trimmed.removed > 0 {
            tracing::info!(
                removed = trimmed.removed,
                first_left = trimmed.first_left,
                "change log trimmed"
            );
        }
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(duration_ms, "store compacted");
        Ok(Response::new(proto::CompactResponse { duration_ms }))
    }

    type ExportStream = ExportStream;

    async fn export(
        &self,
        request: Request<proto::ExportRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        let caller = self.caller(&request)?;
        let grant = caller.grant("exporting identifiers")?;
        let prefix = request.into_inner().prefix;
        let prefix = match prefix.as_str() {
            "" => {
                grant.require_operator("exporting every record")?;
                None
            }
            text => {
                let parsed = Prefix::parse(text)
                    .map_err(|e| Status::invalid_argument(format!("prefix: {e}")))?;
                grant.check(&parsed, READ_VALUE)?;
                Some(prefix)
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let registry = Arc::clone(&self.registry);
        tokio::task::spawn_blocking(move || {
            let done = registry.export(prefix.as_deref(), EXPORT_PAGE, |sequence, records| {
                let message = proto::ExportResponse {
                    identifiers: records.into_iter().map(Into::into).collect(),
                    sequence,
                };
                // A closed channel: the client went away; stop reading.
                tx.blocking_send(Ok(message)).is_ok()
            });
            if let Err(e) = done {
                let _ = tx.blocking_send(Err(crate::error::status(e)));
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn backup(
        &self,
        request: Request<proto::BackupRequest>,
    ) -> Result<Response<proto::BackupResponse>, Status> {
        self.caller(&request)?
            .grant("backing up the store")?
            .require_operator("backing up the store")?;
        let directory = request.into_inner().directory;
        let path = std::path::PathBuf::from(&directory);
        if !path.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "directory: `{directory}` is not an absolute path (it names a directory on the \
                 server's machine)"
            )));
        }
        if path.symlink_metadata().is_ok() {
            return Err(Status::already_exists(format!(
                "directory: {directory} exists already on the server; a backup goes to a new \
                 directory"
            )));
        }
        if path.parent().is_none_or(|p| !p.is_dir()) {
            return Err(Status::failed_precondition(format!(
                "directory: the parent of {directory} is not a directory on the server"
            )));
        }
        let started = std::time::Instant::now();
        let dir = path.clone();
        let sequence = blocking(&self.registry, move |r| Ok(r.store().checkpoint(&dir)?)).await?;
        let bytes = directory_size(&path);
        tracing::info!(
            directory,
            bytes,
            sequence,
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "store backed up"
        );
        Ok(Response::new(proto::BackupResponse {
            directory,
            bytes,
            sequence,
        }))
    }

    type BatchCreateStream = BatchStream;

    async fn batch_create(
        &self,
        request: Request<Streaming<proto::CreateIdentifierRequest>>,
    ) -> Result<Response<BatchStream>, Status> {
        let caller = self.caller(&request)?;
        let grant = caller.grant("BatchCreate")?.clone();
        let origin = crate::auth::origin_of(&caller, &request);
        Ok(Response::new(batch::start(
            batch::Context {
                registry: Arc::clone(&self.registry),
                site: self.site.clone(),
                auth: Arc::clone(&self.auth),
                grant,
                origin,
            },
            request.into_inner(),
        )))
    }
}
