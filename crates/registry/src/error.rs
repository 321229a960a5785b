//! What a registry operation can refuse, and why.

use idnode_store::StoreError;
use thiserror::Error;

/// Why a registry operation failed.
///
/// Each message says what was wrong, so the management API can show it to
/// the caller as it is; [`RegistryError::code`] is a stable name for logs
/// and for mapping onto protocol status codes.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A field of the request breaks a rule: `field` names it as the
    /// request spells it (`identifier`, `values[3].data`, `page_token`).
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    /// The thing to create is there already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The thing to read or change is not there.
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but the node's state does not allow it
    /// (a prefix not homed here, a prefix that still holds identifiers).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The store failed or holds corrupt data.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// A stable name per variant, for logs and status mapping.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::InvalidArgument { .. } => "invalid_argument",
            RegistryError::AlreadyExists(_) => "already_exists",
            RegistryError::NotFound(_) => "not_found",
            RegistryError::FailedPrecondition(_) => "failed_precondition",
            RegistryError::Store(_) => "store",
        }
    }

    /// Whether the store refused the write for a full disk
    /// ([`StoreError::NoSpace`]): a state that passes, not a failure of the
    /// request; callers answer with [`idnode_store::NO_SPACE`].
    pub fn is_no_space(&self) -> bool {
        matches!(self, RegistryError::Store(StoreError::NoSpace(_)))
    }

    /// What the store says when it refuses writes (a mirror: where to
    /// write instead, [`StoreError::ReadOnly`]); callers show it as it is.
    pub fn read_only(&self) -> Option<&str> {
        match self {
            RegistryError::Store(StoreError::ReadOnly(message)) => Some(message),
            _ => None,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl ToString) -> Self {
        RegistryError::InvalidArgument {
            field: field.into(),
            message: message.to_string(),
        }
    }

    /// A copy, for reporting one store failure against several batch items
    /// (`StoreError` is not `Clone`).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            RegistryError::InvalidArgument { field, message } => RegistryError::InvalidArgument {
                field: field.clone(),
                message: message.clone(),
            },
            RegistryError::AlreadyExists(m) => RegistryError::AlreadyExists(m.clone()),
            RegistryError::NotFound(m) => RegistryError::NotFound(m.clone()),
            RegistryError::FailedPrecondition(m) => RegistryError::FailedPrecondition(m.clone()),
            RegistryError::Store(e) => RegistryError::Store(match e {
                StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
                StoreError::NoSpace(m) => StoreError::NoSpace(m.clone()),
                StoreError::ReadOnly(m) => StoreError::ReadOnly(m.clone()),
                other => StoreError::Engine(other.to_string()),
            }),
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
