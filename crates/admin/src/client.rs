//! A small client for the CLI: the services on one channel, with a token
//! attached to every call.

use crate::error::Error;
use crate::proto::identifiers_client::IdentifiersClient;
use crate::proto::prefixes_client::PrefixesClient;
use crate::proto::tokens_client::TokensClient;
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
/// sharing one connection and sending `token` on every call.
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
    let (channel, interceptor) = channel(endpoint, token).await?;
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
    let (channel, interceptor) = channel(endpoint, token).await?;
    Ok(TokensClient::with_interceptor(channel, interceptor))
}

async fn channel(endpoint: &str, token: Option<String>) -> Result<(Channel, BearerToken), Error> {
    let interceptor = BearerToken::new(token.as_deref())?;
    let uri = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let channel = Endpoint::from_shared(uri)
        .map_err(|e| Error::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?
        .connect()
        .await?;
    Ok((channel, interceptor))
}
