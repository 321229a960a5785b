//! The Rust client of idnode: resolves identifiers over the Handle
//! protocol, on UDP (with multi-packet reassembly) or TCP.
//!
//! It speaks only the wire protocol (through `idnode-handle`), never the
//! server's internals, so it works against any Handle server.

use idnode_handle::{
    DecodeError, ENVELOPE_LEN, Envelope, Reassembly, RequestParams, Response, decode_response,
    encode_resolution_request, flags, frame_len,
};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How to reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            other => Err(format!("unknown transport `{other}` (expected udp or tcp)")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("network error talking to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("the answer from {addr} does not decode: {error}")]
    Decode {
        addr: SocketAddr,
        error: DecodeError,
    },
    #[error("the answer from {addr} carries request id {got}, not {expected}")]
    WrongRequestId {
        addr: SocketAddr,
        got: u32,
        expected: u32,
    },
}

/// What to ask.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub identifier: String,
    /// Empty: every index.
    pub indexes: Vec<u32>,
    /// Empty: every type. A type ending in `.` names a family.
    pub types: Vec<String>,
}

/// A Handle protocol client.
#[derive(Debug, Clone)]
pub struct Client {
    pub server: SocketAddr,
    pub transport: Transport,
    pub timeout: Duration,
}

impl Client {
    pub fn new(server: SocketAddr, transport: Transport) -> Self {
        Self {
            server,
            transport,
            timeout: Duration::from_secs(5),
        }
    }

    /// Resolves one identifier. A Handle error (not found, ...) is an
    /// `Ok(Response)` whose header carries the response code.
    pub async fn resolve(&self, query: &Query) -> Result<Response, ClientError> {
        let request_id = rand::random::<u32>() & 0x7fff_ffff;
        let types: Vec<&[u8]> = query.types.iter().map(|t| t.as_bytes()).collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let mut message = Vec::with_capacity(128);
        let mut op_flags = flags::PO;
        if self.transport == Transport::Tcp {
            op_flags |= flags::KC;
        }
        encode_resolution_request(
            &mut message,
            &RequestParams {
                request_id,
                session_id: 0,
                op_flags,
                handle: query.identifier.as_bytes(),
                indexes: &query.indexes,
                types: &types,
                expiration: now.saturating_add(600),
                site_serial: -1,
            },
        );
        let work = async {
            match self.transport {
                Transport::Udp => self.exchange_udp(&message).await,
                Transport::Tcp => self.exchange_tcp(&message).await,
            }
        };
        let raw = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ClientError::Timeout {
                addr: self.server,
                timeout: self.timeout,
            })??;
        let response = decode_response(&raw).map_err(|error| ClientError::Decode {
            addr: self.server,
            error,
        })?;
        if response.envelope.request_id != request_id {
            return Err(ClientError::WrongRequestId {
                addr: self.server,
                got: response.envelope.request_id,
                expected: request_id,
            });
        }
        Ok(response)
    }

    fn io(&self) -> impl Fn(std::io::Error) -> ClientError + '_ {
        move |source| ClientError::Io {
            addr: self.server,
            source,
        }
    }

    async fn exchange_udp(&self, message: &[u8]) -> Result<Vec<u8>, ClientError> {
        let bind: SocketAddr = if self.server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .map_err(|_| ClientError::Timeout {
            addr: self.server,
            timeout: self.timeout,
        })?;
        let socket = UdpSocket::bind(bind).await.map_err(self.io())?;
        socket.connect(self.server).await.map_err(self.io())?;
        let mut datagrams = Vec::with_capacity(1);
        idnode_handle::for_each_datagram(message, |d| datagrams.push(d.to_vec()));
        for d in &datagrams {
            socket.send(d).await.map_err(self.io())?;
        }
        let mut buf = vec![0u8; 65536];
        let mut reassembly: Option<Reassembly> = None;
        loop {
            let n = socket.recv(&mut buf).await.map_err(self.io())?;
            let datagram = &buf[..n];
            let Ok(envelope) = Envelope::decode(datagram) else {
                continue;
            };
            if ENVELOPE_LEN + envelope.message_length as usize == n {
                return Ok(datagram.to_vec());
            }
            let r = match &mut reassembly {
                Some(r) => r,
                None => match Reassembly::new(datagram) {
                    Ok(r) => reassembly.insert(r),
                    Err(_) => continue,
                },
            };
            if let Ok(Some(whole)) = r.insert(datagram) {
                return Ok(whole);
            }
        }
    }

    async fn exchange_tcp(&self, message: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut stream = TcpStream::connect(self.server).await.map_err(self.io())?;
        let _ = stream.set_nodelay(true);
        stream.write_all(message).await.map_err(self.io())?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match frame_len(&buf) {
                Ok(Some(n)) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Ok(None) => {}
                Err(error) => {
                    return Err(ClientError::Decode {
                        addr: self.server,
                        error,
                    });
                }
            }
            let n = stream.read(&mut chunk).await.map_err(self.io())?;
            if n == 0 {
                return Err(ClientError::Io {
                    addr: self.server,
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}
