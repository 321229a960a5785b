//! Handle over QUIC (ALPN `hdl`, idnode's extension): one request per
//! bidirectional stream, many streams in flight on one connection. The
//! answer is matched by its stream; the server finishes the stream after
//! the answer.
//!
//! Reconnecting keeps the endpoint and its TLS configuration, so the new
//! handshake resumes the earlier TLS session when the server allows it.

use crate::tls::{TlsOptions, client_config};
use crate::{ClientError, set_request_id};
use idnode_handle::{ENVELOPE_LEN, MAX_MESSAGE_LEN};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::{Connection, Endpoint, ReadError, ReadToEndError, VarInt, WriteError};
use std::net::SocketAddr;
use std::sync::Arc;

/// The ALPN protocol name of Handle over QUIC.
pub const ALPN: &[u8] = b"hdl";

/// The most bytes an answer stream may carry: one whole message.
const ANSWER_LIMIT: usize = ENVELOPE_LEN + MAX_MESSAGE_LEN;

#[derive(Debug)]
pub(crate) struct QuicChannel {
    server: SocketAddr,
    server_name: String,
    endpoint: Endpoint,
    connection: Connection,
}

impl QuicChannel {
    pub(crate) async fn connect(server: SocketAddr, tls: &TlsOptions) -> Result<Self, ClientError> {
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
        let server_name = tls
            .server_name
            .clone()
            .unwrap_or_else(|| server.ip().to_string());
        let connection = dial(&endpoint, server, &server_name).await?;
        Ok(Self {
            server,
            server_name,
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
