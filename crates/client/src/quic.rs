//! Handle over QUIC (ALPN `hdl`, idnode's extension): one request per
//! bidirectional stream, many streams in flight on one connection. The
//! answer is matched by its stream; the server finishes the stream after
//! the answer.
//!
//! Reconnecting keeps the endpoint and its TLS configuration, so the new
//! handshake resumes the earlier TLS session when the server allows it.
//!
//! [`connect_endpoint`] is the connection setup alone, for code that drives
//! quinn itself (the load generator, `idnode bench -t quic`).

use crate::tls::{TlsOptions, client_config};
use crate::{ClientError, set_request_id};
use idnode_handle::{ENVELOPE_LEN, MAX_MESSAGE_LEN};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint, ReadError, ReadToEndError, VarInt, WriteError};
use std::net::SocketAddr;
use std::sync::Arc;

pub use idnode_handle::quic::ALPN;

/// The most bytes an answer stream may carry: one whole message.
pub const ANSWER_LIMIT: usize = ENVELOPE_LEN + MAX_MESSAGE_LEN;

#[derive(Debug)]
pub(crate) struct QuicChannel {
    server: SocketAddr,
    server_name: String,
    endpoint: Endpoint,
    connection: Connection,
}

impl QuicChannel {
    pub(crate) async fn connect(server: SocketAddr, tls: &TlsOptions) -> Result<Self, ClientError> {
        let (endpoint, connection) = connect_endpoint(server, tls).await?;
        Ok(Self {
            server,
            server_name: server_name(server, tls),
            endpoint,
            connection,
        })
    }

    /// A new connection to the same server from the same endpoint.
    pub(crate) async fn reconnect(&self) -> Result<Self, ClientError> {
        let connection = dial(&self.endpoint, self.server, &self.server_name).await?;
        Ok(Self {
            server: self.server,
            server_name: self.server_name.clone(),
            endpoint: self.endpoint.clone(),
            connection,
        })
    }

    pub(crate) fn is_open(&self) -> bool {
        self.connection.close_reason().is_none()
    }

    /// Sends `message` on a new stream (under request id `id`) and reads
    /// the answer to the end of the stream. The caller bounds the wait.
    pub(crate) async fn exchange(
        &self,
        message: &mut [u8],
        id: u32,
    ) -> Result<Vec<u8>, ClientError> {
        set_request_id(message, id);
        let (mut send, mut recv) = self.connection.open_bi().await.map_err(|_| self.closed())?;
        send.write_all(message).await.map_err(|e| match e {
            WriteError::Stopped(code) => self.reset(code),
            _ => self.closed(),
        })?;
        // Only fails when the stream is closed already: the read says why.
        let _ = send.finish();
        recv.read_to_end(ANSWER_LIMIT).await.map_err(|e| match e {
            ReadToEndError::TooLong => ClientError::Decode {
                addr: self.server,
                error: idnode_handle::DecodeError::TooLong("answer", ANSWER_LIMIT as u32),
            },
            ReadToEndError::Read(ReadError::Reset(code)) => self.reset(code),
            ReadToEndError::Read(_) => self.closed(),
        })
    }

    fn closed(&self) -> ClientError {
        ClientError::Closed { addr: self.server }
    }

    fn reset(&self, code: VarInt) -> ClientError {
        ClientError::StreamReset {
            addr: self.server,
            code: code.into_inner(),
        }
    }
}

/// A QUIC connection to the Handle server at `server` (ALPN [`ALPN`]), on
/// an endpoint (a UDP socket) of its own, the server checked as `tls` says
/// and named `tls.server_name` (by default its IP address). The handshake
/// is done when this returns; the caller bounds the wait.
///
/// The connection takes no streams from the server. Send each request on a
/// stream of its own ([`Connection::open_bi`]), finish the stream, and read
/// the answer to the end of the stream (at most [`ANSWER_LIMIT`] bytes).
/// A connection per endpoint also spreads connections over the server's
/// SO_REUSEPORT workers, which pick a socket by the client's address.
pub async fn connect_endpoint(
    server: SocketAddr,
    tls: &TlsOptions,
) -> Result<(Endpoint, Connection), ClientError> {
    let crypto = client_config(tls, ALPN)?;
    let crypto = QuicClientConfig::try_from(crypto).map_err(|e| ClientError::Tls {
        message: e.to_string(),
    })?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // The server never opens streams towards us.
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    config.transport_config(Arc::new(transport));
    let bind = if server.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    };
    let mut endpoint = Endpoint::client(bind).map_err(|source| ClientError::Io {
        addr: server,
        source,
    })?;
    endpoint.set_default_client_config(config);
    let connection = dial(&endpoint, server, &server_name(server, tls)).await?;
    Ok((endpoint, connection))
}

fn server_name(server: SocketAddr, tls: &TlsOptions) -> String {
    tls.server_name
        .clone()
        .unwrap_or_else(|| server.ip().to_string())
}

async fn dial(
    endpoint: &Endpoint,
    server: SocketAddr,
    server_name: &str,
) -> Result<Connection, ClientError> {
    let failed = |message: String| ClientError::Quic {
        addr: server,
        message,
    };
    endpoint
        .connect(server, server_name)
        .map_err(|e| failed(e.to_string()))?
        .await
        .map_err(|e| failed(e.to_string()))
}
