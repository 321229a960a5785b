//! Who is calling: nobody, a scoped token (`Authorization: Bearer`), or a
//! Handle administrator proving itself with its secret key
//! (`Authorization: Basic`, user = percent-encoded `index:handle`, password
//! = the HS_SECKEY value's data), as Handle.Net's HTTP interface accepts.

use crate::Web;
use crate::api::ApiError;
use axum::http::HeaderMap;
use base64::Engine as _;
use idnode_admin::{Caller, Grant};
use idnode_handle::admin::AdminRef;
use subtle::ConstantTimeEq as _;

/// A caller, authenticated.
#[derive(Debug, Clone)]
pub(crate) enum Credential {
    Anonymous,
    Token(Grant),
    Handle(AdminRef),
}

impl Credential {
    /// The actor of the audit trail.
    pub(crate) fn actor(&self) -> String {
        match self {
            Self::Anonymous => "anonymous".to_owned(),
            Self::Token(grant) => format!("token:{}", grant.id()),
            Self::Handle(who) => format!("handle:{}:{}", who.index, who.handle),
        }
    }
}

/// Longest Basic credential read (user and password together).
const MAX_BASIC: usize = 4096;

/// Reads and checks the `Authorization` header. A token is checked like a
/// gRPC call's (revoked, expired: 401); a Basic identity against the
/// HS_SECKEY at its index (403 when it does not match).
pub(crate) async fn credential(web: &Web, headers: &HeaderMap) -> Result<Credential, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(Credential::Anonymous);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let (who, secret) = basic(rest.trim())?;
        let registry = web.registry.clone();
        let checked = {
            let who = who.clone();
            tokio::task::spawn_blocking(move || secret_matches(&registry, &who, &secret)).await
        };
        return match checked {
            Ok(true) => Ok(Credential::Handle(who)),
            Ok(false) => Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                idnode_handle::code::AUTHENTICATION_FAILED,
                format!(
                    "no HS_SECKEY at index {} of {} matches the password",
                    who.index, who.handle
                ),
            )),
            Err(_) => Err(ApiError::internal()),
        };
    }
    let metadata = tonic_metadata(headers);
    match web.auth.caller(&metadata, &**web.registry.store()) {
        Ok(Caller::Token(grant)) => Ok(Credential::Token(grant)),
        Ok(Caller::Anonymous) => Ok(Credential::Anonymous),
        Err(status) => Err(ApiError::unauthorized(status.message())),
    }
}

/// The gRPC metadata of the `Authorization` header alone, for the token
/// checks the gRPC API shares.
/// Only the Authorization header of a request, which is all [`credential`]
/// reads: a read's extractor, so that the other headers are not copied.
pub(crate) struct AuthHeader(pub HeaderMap);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AuthHeader {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let mut only = HeaderMap::new();
        if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION) {
            only.insert(axum::http::header::AUTHORIZATION, v.clone());
        }
        Ok(Self(only))
    }
}

fn tonic_metadata(headers: &HeaderMap) -> idnode_admin::MetadataMap {
    let mut only = HeaderMap::new();
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        only.insert(axum::http::header::AUTHORIZATION, v.clone());
    }
    idnode_admin::MetadataMap::from_headers(only)
}

fn basic(encoded: &str) -> Result<(AdminRef, Vec<u8>), ApiError> {
    let malformed = || {
        ApiError::unauthorized(
            "malformed Basic credentials: expected base64 of `index:handle` (percent-encoded) \
             and `:` and the secret key",
        )
    };
    if encoded.len() > MAX_BASIC {
        return Err(malformed());
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| malformed())?;
    let colon = raw.iter().position(|&b| b == b':').ok_or_else(malformed)?;
    let mut user_end = colon;
    if raw[..colon].iter().all(u8::is_ascii_digit) {
        // `index:handle:secret` sent without percent-encoding the user.
        user_end = colon
            + 1
            + raw[colon + 1..]
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(malformed)?;
    }
    let (user, password) = (&raw[..user_end], &raw[user_end + 1..]);
    let user = percent_encoding::percent_decode(user)
        .decode_utf8()
        .map_err(|_| malformed())?;
    let (index, handle) = user.split_once(':').ok_or_else(malformed)?;
    let index: u32 = index.trim().parse().map_err(|_| malformed())?;
    if handle.is_empty() {
        return Err(malformed());
    }
    Ok((AdminRef::new(handle, index), password.to_vec()))
}

/// Whether `secret` is the data of the HS_SECKEY value at `who`'s index.
fn secret_matches(registry: &idnode_registry::Registry, who: &AdminRef, secret: &[u8]) -> bool {
    let Ok(record) = registry.get_identifier(&who.handle) else {
        return false;
    };
    record
        .values
        .iter()
        .find(|v| v.index == who.index && v.kind == "HS_SECKEY")
        .is_some_and(|v| bool::from(v.data.as_ref().ct_eq(secret)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_index_handle_and_secret() {
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let (who, secret) = basic(&enc("300%3A0.NA%2F88.100.1:s3:cret")).unwrap();
        assert_eq!(who, AdminRef::new("0.NA/88.100.1", 300));
        assert_eq!(secret, b"s3:cret");
        let (who, _) = basic(&enc("300:0.NA/88.100.1:x")).unwrap();
        assert_eq!(who.index, 300);
        assert_eq!(who.handle, "0.NA/88.100.1");
        for bad in [
            "",
            "%%%",
            &enc("nocolon"),
            &enc("x%3A0.NA%2F1:s"),
            &enc("300%3A:s"),
        ] {
            assert!(basic(bad).is_err(), "{bad}");
        }
    }
}
