//! The admin crate's error, and how registry errors become gRPC statuses.

use idnode_registry::{Registry, RegistryError};
use idnode_store::StoreError;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;
use tonic::{Code, Status};

/// Why the admin service could not start, or the client could not connect.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored admin token hash has {0} bytes, not 32: the meta key space is corrupt")]
    CorruptTokenHash(usize),
    #[error("{} holds no admin token; delete it to have a new one made", .0.display())]
    EmptyTokenFile(PathBuf),
    #[error("the admin token cannot be sent as gRPC metadata: {0}")]
    InvalidToken(String),
    #[error("invalid endpoint {endpoint}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The gRPC code for a registry error.
pub(crate) fn code(error: &RegistryError) -> Code {
    match error {
        RegistryError::InvalidArgument { .. } => Code::InvalidArgument,
        RegistryError::AlreadyExists(_) => Code::AlreadyExists,
        RegistryError::NotFound(_) => Code::NotFound,
        RegistryError::FailedPrecondition(_) => Code::FailedPrecondition,
        e if e.is_no_space() => Code::ResourceExhausted,
        e if e.read_only().is_some() => Code::FailedPrecondition,
        _ => Code::Internal,
    }
}

/// The message a caller sees for a registry error. Store failures are
/// logged here and shown only as a pointer to the log; a full disk is
/// named (and logged by the caller, once per request or batch chunk: a
/// chunk's items all fail with it).
pub(crate) fn message(error: &RegistryError) -> String {
    if error.is_no_space() {
        return idnode_store::NO_SPACE.to_owned();
    }
    match code(error) {
        Code::Internal => {
            tracing::error!(error = %error, code = error.code(), "admin request failed in the store");
            "internal storage error; the node's log has the details".to_owned()
        }
        _ => error.to_string(),
    }
}

/// A registry error as a gRPC status: INVALID_ARGUMENT carries
/// `field: message` (`values[0].type: value type is empty`).
pub(crate) fn status(error: RegistryError) -> Status {
    if error.is_no_space() {
        tracing::warn!(error = %error, "admin write refused: the disk is full");
    }
    Status::new(code(&error), message(&error))
}

/// Runs a registry call on a blocking thread (registry calls do durable
/// writes) and maps its error to a status.
pub(crate) async fn blocking<T, F>(registry: &Arc<Registry>, call: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
{
    let registry = Arc::clone(registry);
    match tokio::task::spawn_blocking(move || call(&registry)).await {
        Ok(result) => result.map_err(status),
        Err(e) => {
            tracing::error!(error = %e, "a registry call panicked or was cancelled");
            Err(Status::internal("the request failed inside the node"))
        }
    }
}

/// [`blocking`] for a write: the registry records `origin` (who, over
/// which surface, from where) with each change it makes.
pub(crate) async fn blocking_as<T, F>(
    registry: &Arc<Registry>,
    origin: idnode_registry::Origin,
    call: F,
) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&Registry) -> Result<T, RegistryError> + Send + 'static,
{
    blocking(registry, move |r| {
        idnode_registry::with_origin(origin, || call(r))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_resource_exhausted_and_says_so() {
        let full = RegistryError::Store(StoreError::NoSpace("IO error: No space left".into()));
        let status = status(full);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), idnode_store::NO_SPACE);
        let broken = RegistryError::Store(StoreError::Engine("IO error: EIO".into()));
        assert_eq!(code(&broken), Code::Internal);
    }
}
