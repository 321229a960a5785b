//! A small client for the CLI: the services on one channel, with a token
//! attached to every call.

use crate::error::Error;
use crate::proto::identifiers_client::IdentifiersClient;
use crate::proto::prefixes_client::PrefixesClient;
use crate::proto::tokens_client::TokensClient;
use crate::tls::{ClientTls, chain_text};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Adds `authorization: Bearer <token>` to each request, when it has one.
#[derive(Debug, Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl BearerToken {
    /// An interceptor sending `token`, or nothing when `None`.
    pub fn new(token: Option<&str>) -> Result<Self, Error> {
        token
            .map(|t| {
                MetadataValue::try_from(format!("Bearer {}", t.trim()))
                    .map_err(|e| Error::InvalidToken(e.to_string()))
            })
            .transpose()
            .map(Self)
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// The channel type of the clients [`connect`] returns.
pub type AdminChannel = InterceptedService<Channel, BearerToken>;

/// Connects to an admin endpoint (`http://127.0.0.1:50051`; a bare
/// `host:port` means plain HTTP/2) and returns clients for both services,
/// sharing one connection and sending `token` on every call. An
/// `https://` endpoint needs [`connect_with`] and a [`ClientTls`].
pub async fn connect(
    endpoint: &str,
    token: Option<String>,
) -> Result<
    (
        PrefixesClient<AdminChannel>,
        IdentifiersClient<AdminChannel>,
    ),
    Error,
> {
    connect_with(endpoint, token, &ClientTls::default()).await
}

/// [`connect`], over TLS when `endpoint` is `https://` (checked as `tls`
/// says).
pub async fn connect_with(
    endpoint: &str,
    token: Option<String>,
    tls: &ClientTls,
) -> Result<
    (
        PrefixesClient<AdminChannel>,
        IdentifiersClient<AdminChannel>,
    ),
    Error,
> {
    let interceptor = BearerToken::new(token.as_deref())?;
    let channel = open_channel(endpoint, tls).await?;
    Ok((
        PrefixesClient::with_interceptor(channel.clone(), interceptor.clone()),
        IdentifiersClient::with_interceptor(channel, interceptor),
    ))
}

/// Connects to an admin endpoint as [`connect`] does and returns a client
/// of the Tokens service.
pub async fn connect_tokens(
    endpoint: &str,
    token: Option<String>,
) -> Result<TokensClient<AdminChannel>, Error> {
    connect_tokens_with(endpoint, token, &ClientTls::default()).await
}

/// [`connect_tokens`], over TLS when `endpoint` is `https://`.
pub async fn connect_tokens_with(
    endpoint: &str,
    token: Option<String>,
    tls: &ClientTls,
) -> Result<TokensClient<AdminChannel>, Error> {
    let interceptor = BearerToken::new(token.as_deref())?;
    let channel = open_channel(endpoint, tls).await?;
    Ok(TokensClient::with_interceptor(channel, interceptor))
}

/// A client of the `Audit` service (the audit trail), over TLS when
/// `endpoint` is `https://`.
pub async fn connect_audit_with(
    endpoint: &str,
    token: Option<String>,
    tls: &ClientTls,
) -> Result<crate::proto::audit_client::AuditClient<AdminChannel>, Error> {
    let interceptor = BearerToken::new(token.as_deref())?;
    let channel = open_channel(endpoint, tls).await?;
    Ok(crate::proto::audit_client::AuditClient::with_interceptor(
        channel,
        interceptor,
    ))
}

/// One connection to an admin endpoint: plain HTTP/2 for `http://` (or a
/// bare `host:port`), TLS for `https://`, where `tls` must say how to
/// check the server. TLS settings with an `http://` endpoint are an error
/// rather than silently unused.
pub async fn open_channel(endpoint: &str, tls: &ClientTls) -> Result<Channel, Error> {
    let uri = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let invalid = |reason: String| Error::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let mut builder = Endpoint::from_shared(uri).map_err(|e| invalid(e.to_string()))?;
    match builder.uri().scheme_str() {
        Some("https") => builder = tls.apply(builder, endpoint)?,
        Some("http") if tls.is_empty() => {}
        Some("http") => {
            return Err(invalid(
                "TLS settings (a CA file, a pinned fingerprint or a client certificate) \
                 apply to https:// endpoints only"
                    .into(),
            ));
        }
        _ => return Err(invalid("the scheme must be http or https".into())),
    }
    builder.connect().await.map_err(|e| Error::Connect {
        endpoint: endpoint.to_owned(),
        reason: chain_text(&e),
    })
}
