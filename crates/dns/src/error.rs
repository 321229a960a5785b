//! Errors of this crate.

use idnode_store::StoreError;

/// Why a DNS operation failed. Answers to queries never fail this way:
/// [`DnsService::respond`](crate::DnsService::respond) turns every problem
/// into a response code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// A configured name (apex, name server, hostmaster) is not a valid
    /// absolute domain name.
    #[error("invalid domain name {name:?} in the DNS configuration: {reason}")]
    InvalidName { name: String, reason: String },
    /// The configuration is inconsistent.
    #[error("invalid DNS configuration: {0}")]
    InvalidConfig(String),
    /// The name of an identifier or prefix would pass 255 octets.
    #[error("the DNS name of {0:?} would be longer than 255 octets")]
    NameTooLong(String),
    /// A zone transfer answer could not be made (no such zone, a record
    /// that does not encode or fit a message).
    #[error("zone transfer: {0}")]
    Transfer(String),
    /// The store failed, or holds a record that does not decode.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DnsError {
    /// A stable code for logs and status messages.
    pub fn code(&self) -> &'static str {
        match self {
            DnsError::InvalidName { .. } => "DNS_INVALID_NAME",
            DnsError::InvalidConfig(_) => "DNS_INVALID_CONFIG",
            DnsError::NameTooLong(_) => "DNS_NAME_TOO_LONG",
            DnsError::Transfer(_) => "DNS_TRANSFER",
            DnsError::Store(_) => "DNS_STORE",
        }
    }
}

/// A stored record that does not decode, as a store error.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("record does not decode: {what}"))
}
