//! The Rust client of idnode: resolves identifiers over the Handle
//! protocol, on UDP (with multi-packet reassembly), TCP, or QUIC (ALPN
//! `hdl`, idnode's extension).
//!
//! A [`Client`] keeps one UDP socket, TCP connection or QUIC connection and
//! pipelines on it: many requests in flight at once from many tasks,
//! answers matched by request id (UDP, TCP) or by stream (QUIC). It
//! reconnects when the server closed the connection. Over UDP an
//! unanswered request is sent once more after half the timeout; falling
//! back to TCP (for answers UDP cannot carry, or after timeouts) is the
//! caller's choice.
//!
//! It speaks only the wire protocol (through `idnode-handle`), never the
//! server's internals, so it works against any Handle server.

mod pending;
pub mod quic;
mod site;
mod tcp;
mod tls;
mod udp;

pub use quic::ALPN;
pub use site::{SiteClient, SiteError};
pub use tls::{Fingerprint, ServerAuth, TlsOptions, pinned_verifier};

use idnode_handle::{
    DecodeError, RequestParams, Response, decode_response, encode_resolution_request, flags,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;

/// How to reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// Needs [`TlsOptions::auth`].
    Quic,
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            "quic" => Ok(Transport::Quic),
            other => Err(format!(
                "unknown transport `{other}` (expected udp, tcp or quic)"
            )),
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
    #[error("the connection to {addr} closed before the answer came")]
    Closed { addr: SocketAddr },
    #[error("TLS: {message}")]
    Tls { message: String },
    #[error("QUIC connection to {addr} failed: {message}")]
    Quic { addr: SocketAddr, message: String },
    /// idnode resets a stream with 1 (request timeout), 2 (request too
    /// long) or 3 (not a message it can answer).
    #[error("{addr} reset the request stream (code {code})")]
    StreamReset { addr: SocketAddr, code: u64 },
    #[error("the request to {addr} was abandoned (its task ended)")]
    Abandoned { addr: SocketAddr },
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

/// Where and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub server: SocketAddr,
    pub transport: Transport,
    /// Time allowed for one request, connecting included. UDP sends the
    /// request again when half of it passed without an answer.
    pub timeout: Duration,
    pub tls: TlsOptions,
}

impl Default for ClientOptions {
    /// 127.0.0.1:2641 over UDP, 5 seconds.
    fn default() -> Self {
        Self {
            server: SocketAddr::from(([127, 0, 0, 1], 2641)),
            transport: Transport::Udp,
            timeout: DEFAULT_TIMEOUT,
            tls: TlsOptions::default(),
        }
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// A Handle protocol client with one connection, shared by its clones.
///
/// Set the public fields before the first request: a later change of
/// `server`, `transport` or `tls` opens a new connection.
#[derive(Clone)]
pub struct Client {
    pub server: SocketAddr,
    pub transport: Transport,
    pub timeout: Duration,
    pub tls: TlsOptions,
    /// Requests [`resolve_many`](Self::resolve_many) keeps in flight.
    pub max_in_flight: usize,
    /// Ask the server to resolve on our behalf (op flag REC), as CNRI's
    /// clients always do. Default true; a recursive node asking upstream
    /// sets it false.
    pub recursion_desired: bool,
    /// Ask for certified (signed) answers: sets CT on resolutions. The
    /// caller checks the signature ([`Client::resolve_raw`] gives the bytes
    /// it covers).
    pub certified: bool,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("transport", &self.transport)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The connection and request ids, shared by a client's clones.
#[derive(Debug)]
struct Shared {
    channel: RwLock<Option<Arc<Channel>>>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    next_id: AtomicU32,
}

#[derive(Debug)]
struct Channel {
    server: SocketAddr,
    transport: Transport,
    tls: TlsOptions,
    kind: ChannelKind,
}

#[derive(Debug)]
enum ChannelKind {
    Udp(udp::UdpChannel),
    Tcp(tcp::TcpChannel),
    Quic(quic::QuicChannel),
}

impl Channel {
    fn is_open(&self) -> bool {
        match &self.kind {
            ChannelKind::Udp(c) => c.is_open(),
            ChannelKind::Tcp(c) => c.is_open(),
            ChannelKind::Quic(c) => c.is_open(),
        }
    }

    fn serves(&self, client: &Client) -> bool {
        self.server == client.server
            && self.transport == client.transport
            && (self.transport != Transport::Quic || self.tls == client.tls)
    }
}

impl Client {
    /// A client that connects on its first request.
    pub fn new(server: SocketAddr, transport: Transport) -> Self {
        Self::from_options(ClientOptions {
            server,
            transport,
            ..ClientOptions::default()
        })
    }

    /// A client connected now (the QUIC handshake done, the TCP connection
    /// open), so a bad address or certificate shows at once.
    pub async fn connect(options: ClientOptions) -> Result<Self, ClientError> {
        let client = Self::from_options(options);
        tokio::time::timeout(client.timeout, client.channel())
            .await
            .map_err(|_| client.timed_out())??;
        Ok(client)
    }

    fn from_options(options: ClientOptions) -> Self {
        Self {
            server: options.server,
            transport: options.transport,
            timeout: options.timeout,
            tls: options.tls,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            recursion_desired: true,
            certified: false,
            shared: Arc::new(Shared {
                channel: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
                next_id: AtomicU32::new(rand::random()),
            }),
        }
    }

    /// Resolves one identifier. A Handle error (not found, ...) is an
    /// `Ok(Response)` whose header carries the response code.
    ///
    /// Takes `&self`: any number of tasks may resolve on one client at
    /// once. A request whose connection closed before the answer is sent
    /// once more on a new connection.
    pub async fn resolve(&self, query: &Query) -> Result<Response, ClientError> {
        self.resolve_raw(query).await.map(|(response, _)| response)
    }

    /// As [`resolve`](Self::resolve), with the bytes the answer came in
    /// (reassembled from its datagrams over UDP), for checking a signature.
    pub async fn resolve_raw(&self, query: &Query) -> Result<(Response, Vec<u8>), ClientError> {
        let message = self.encode(query);
        self.send(message).await
    }

    /// Asks the server for its site information (GET_SITE_INFO, as CNRI's
    /// tools send it: handle `/`, no recursion): the response's body is the
    /// encoded HS_SITE record ([`idnode_handle::ResponseBody::Other`]), on
    /// a 1 SUCCESS.
    pub async fn site_info(&self) -> Result<Response, ClientError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let mut message = Vec::with_capacity(64);
        let mut op_flags = flags::CA | flags::PO;
        if self.transport == Transport::Tcp {
            op_flags |= flags::KC;
        }
        idnode_handle::encode_request(
            &mut message,
            &RequestParams {
                request_id: 0,
                op_flags,
                handle: b"/",
                expiration: now.saturating_add(600),
                site_serial: -1,
                ..RequestParams::default()
            },
            &idnode_handle::RequestOptions::default(),
            idnode_handle::opcode::GET_SITE_INFO,
            &[],
        );
        self.send(message).await.map(|(response, _)| response)
    }

    /// Sends an encoded request (its request id is set here, per attempt)
    /// and returns the decoded response with the bytes it came in (a
    /// caller that checks a signature needs them). The request's own op
    /// flags, handle and body are sent as they are.
    pub async fn send(&self, mut message: Vec<u8>) -> Result<(Response, Vec<u8>), ClientError> {
        let work = async {
            let mut retried = false;
            loop {
                let channel = self.channel().await?;
                match self.exchange(&channel, &mut message).await {
                    Err(ClientError::Closed { .. }) if !retried => retried = true,
                    other => return other,
                }
            }
        };
        let (request_id, raw) = tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| self.timed_out())??;
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
        Ok((response, raw))
    }

    /// Resolves every query, with up to [`max_in_flight`](Self::max_in_flight)
    /// requests in flight at once on this client's connection. The answers
    /// come in the order of the queries.
    pub async fn resolve_many(&self, queries: &[Query]) -> Vec<Result<Response, ClientError>> {
        let limit = self.max_in_flight.max(1);
        let mut results: Vec<Option<Result<Response, ClientError>>> =
            (0..queries.len()).map(|_| None).collect();
        let mut tasks = JoinSet::new();
        let mut next = 0;
        loop {
            while next < queries.len() && tasks.len() < limit {
                let client = self.clone();
                let query = queries[next].clone();
                let index = next;
                tasks.spawn(async move { (index, client.resolve(&query).await) });
                next += 1;
            }
            match tasks.join_next().await {
                Some(Ok((index, result))) => results[index] = Some(result),
                Some(Err(_)) => {} // a panicked task: its slot reports Abandoned
                None => break,
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(ClientError::Abandoned { addr: self.server })))
            .collect()
    }

    fn encode(&self, query: &Query) -> Vec<u8> {
        let types: Vec<&[u8]> = query.types.iter().map(|t| t.as_bytes()).collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32);
        let mut op_flags = flags::PO;
        if self.transport == Transport::Tcp {
            op_flags |= flags::KC;
        }
        if self.recursion_desired {
            op_flags |= flags::REC;
        }
        if self.certified {
            op_flags |= flags::CT;
        }
        let mut message = Vec::with_capacity(64 + query.identifier.len());
        encode_resolution_request(
            &mut message,
            &RequestParams {
                // Each attempt sets its own (see set_request_id).
                request_id: 0,
                session_id: 0,
                op_flags,
                handle: query.identifier.as_bytes(),
                indexes: &query.indexes,
                types: &types,
                expiration: now.saturating_add(600),
                site_serial: -1,
            },
        );
        message
    }

    /// A request id not 0, below 2^31 (CNRI treats ids as signed ints).
    fn next_request_id(&self) -> u32 {
        loop {
            let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
            if id != 0 {
                return id;
            }
        }
    }

    async fn exchange(
        &self,
        channel: &Channel,
        message: &mut [u8],
    ) -> Result<(u32, Vec<u8>), ClientError> {
        let ids = || self.next_request_id();
        match &channel.kind {
            ChannelKind::Udp(c) => c.exchange(message, ids, self.timeout).await,
            ChannelKind::Tcp(c) => c.exchange(message, ids).await,
            ChannelKind::Quic(c) => {
                let id = self.next_request_id();
                c.exchange(message, id).await.map(|answer| (id, answer))
            }
        }
    }

    /// The open channel for the current settings, connecting (once, for
    /// all waiting tasks) when there is none.
    async fn channel(&self) -> Result<Arc<Channel>, ClientError> {
        if let Some(channel) = self.current() {
            return Ok(channel);
        }
        let _connecting = self.shared.connecting.lock().await;
        if let Some(channel) = self.current() {
            return Ok(channel);
        }
        let previous = self
            .shared
            .channel
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let kind = match (&previous, self.transport) {
            // Same endpoint and TLS configuration: the TLS session resumes.
            (Some(p), Transport::Quic) if p.serves(self) => match &p.kind {
                ChannelKind::Quic(q) => ChannelKind::Quic(q.reconnect().await?),
                _ => self.connect_kind().await?,
            },
            _ => self.connect_kind().await?,
        };
        let channel = Arc::new(Channel {
            server: self.server,
            transport: self.transport,
            tls: self.tls.clone(),
            kind,
        });
        *self
            .shared
            .channel
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(channel.clone());
        Ok(channel)
    }

    fn current(&self) -> Option<Arc<Channel>> {
        // The lock only guards an Option<Arc>: a poisoned one is still sound.
        let channel = self
            .shared
            .channel
            .read()
            .unwrap_or_else(|p| p.into_inner());
        channel
            .as_ref()
            .filter(|c| c.serves(self) && c.is_open())
            .cloned()
    }

    async fn connect_kind(&self) -> Result<ChannelKind, ClientError> {
        Ok(match self.transport {
            Transport::Udp => ChannelKind::Udp(udp::UdpChannel::connect(self.server).await?),
            Transport::Tcp => ChannelKind::Tcp(tcp::TcpChannel::connect(self.server).await?),
            Transport::Quic => {
                ChannelKind::Quic(quic::QuicChannel::connect(self.server, &self.tls).await?)
            }
        })
    }

    fn timed_out(&self) -> ClientError {
        ClientError::Timeout {
            addr: self.server,
            timeout: self.timeout,
        }
    }
}

/// Writes `id` into the envelope of an encoded request.
pub(crate) fn set_request_id(message: &mut [u8], id: u32) {
    if let Some(field) = message.get_mut(8..12) {
        field.copy_from_slice(&id.to_be_bytes());
    }
}

/// Aborts a background task when its owner goes.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn sent_flags(client: &Client) -> u32 {
        let message = client.encode(&Query {
            identifier: "88.100.1/x".into(),
            ..Query::default()
        });
        idnode_handle::Header::decode(&message[idnode_handle::ENVELOPE_LEN..])
            .unwrap()
            .op_flags
    }

    #[test]
    fn recursion_desired_sets_rec() {
        let mut client = Client::new(SocketAddr::from(([127, 0, 0, 1], 2641)), Transport::Udp);
        assert!(client.recursion_desired, "on by default, as CNRI's clients");
        assert_eq!(sent_flags(&client), flags::REC | flags::PO);
        client.recursion_desired = false;
        assert_eq!(sent_flags(&client), flags::PO);
        client.transport = Transport::Tcp;
        assert_eq!(sent_flags(&client), flags::PO | flags::KC);
    }
}
