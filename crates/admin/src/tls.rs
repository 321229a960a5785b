//! TLS for the management API: the server's certificate and the optional
//! CA its clients' certificates must chain to ([`ServerTls`]), and how a
//! client checks an `https://` endpoint ([`ClientTls`]: a CA file, or the
//! SHA-256 fingerprint `idnode serve` prints, pinned).
//!
//! tonic does the handshakes (rustls with *ring*); this module reads and
//! checks the PEM files first, so a bad file is named when the node starts
//! or the client connects, not at the first handshake.

use crate::error::Error;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, Server, ServerTlsConfig};

pub use idnode_handle::quic::Fingerprint;

/// How long a TLS handshake may take, on either side.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS side of the gRPC server: its certificate chain and key, and,
/// for client-certificate auth, the CA certificates a client's certificate
/// must chain to.
#[derive(Clone)]
pub struct ServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
    /// Of the leaf certificate.
    pub fingerprint: Fingerprint,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("fingerprint", &self.fingerprint)
            .field("client_auth", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// A PEM certificate chain (leaf first) and PEM private key; with
    /// `client_ca_pem`, clients must present a certificate that chains to
    /// one of its certificates. Checked here: a file that holds no
    /// certificate or key, or a key that does not fit, is an error now.
    pub fn new(
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
        client_ca_pem: Option<Vec<u8>>,
    ) -> Result<Self, Error> {
        let chain = pem_certificates(&cert_pem, "the gRPC certificate")?;
        PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| Error::Tls(format!("the gRPC private key: {e}")))?;
        if let Some(ca) = &client_ca_pem {
            pem_certificates(ca, "the gRPC client CA")?;
        }
        let tls = Self {
            fingerprint: Fingerprint::of(&chain[0]),
            cert_pem,
            key_pem,
            client_ca_pem,
        };
        // tonic's server takes the process's default crypto provider: make
        // it *ring*, as everywhere in the node (a no-op when one is set).
        let _ = rustls::crypto::ring::default_provider().install_default();
        // tonic builds the rustls configuration here: a key that does not
        // match the certificate, or a CA rustls cannot use, fails now.
        Server::builder()
            .tls_config(tls.tonic_config())
            .map_err(|e| Error::Tls(format!("the gRPC TLS configuration: {}", chain_text(&e))))?;
        Ok(tls)
    }

    /// [`ServerTls::new`] from files.
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, Error> {
        let client_ca = client_ca.map(read).transpose()?;
        Self::new(read(cert)?, read(key)?, client_ca)
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificate(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    pub(crate) fn tonic_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca)),
            None => config,
        }
    }
}

/// How a client checks the server's certificate on an `https://` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// The certificate must chain to one in this PEM file (a CA, or the
    /// node's own self-signed `cert.pem`) and name the host of the
    /// endpoint.
    CaFile(PathBuf),
    /// The leaf certificate's SHA-256 must be this (what `idnode serve`
    /// prints). Name and dates are not checked: the pin is the trust.
    Pin(Fingerprint),
}

/// TLS settings of a management client; all `None` for `http://`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Required for `https://`.
    pub trust: Option<ServerTrust>,
    /// A client certificate chain and key (PEM files), for a node that
    /// asks for one (`[grpc] client_ca`).
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    pub fn is_empty(&self) -> bool {
        self.trust.is_none() && self.identity.is_none()
    }

    /// The tonic endpoint for `uri` (https), or an error naming what is
    /// missing or unreadable.
    pub(crate) fn apply(
        &self,
        endpoint: tonic::transport::Endpoint,
        shown: &str,
    ) -> Result<tonic::transport::Endpoint, Error> {
        let mut config = ClientTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
        if let Some((cert, key)) = &self.identity {
            let (cert_pem, key_pem) = (read(cert)?, read(key)?);
            pem_certificates(&cert_pem, &format!("client certificate {}", cert.display()))?;
            PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| Error::Tls(format!("client key {}: {e}", key.display())))?;
            config = config.identity(Identity::from_pem(cert_pem, key_pem));
        }
        let configured = match &self.trust {
            None => {
                return Err(Error::Tls(format!(
                    "{shown} uses TLS: give a way to check its certificate, a CA file \
                     (or the node's cert.pem) or its SHA-256 fingerprint"
                )));
            }
            Some(ServerTrust::CaFile(path)) => {
                let pem = read(path)?;
                pem_certificates(&pem, &format!("CA file {}", path.display()))?;
                endpoint.tls_config(config.ca_certificate(Certificate::from_pem(pem)))
            }
            Some(ServerTrust::Pin(fingerprint)) => endpoint
                .tls_config_with_verifier(config, idnode_client::pinned_verifier(*fingerprint)),
        };
        configured.map_err(|e| Error::Tls(format!("{shown}: {}", chain_text(&e))))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// The certificates of a PEM text; none is an error naming `what`.
fn pem_certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{what}: no PEM certificate in it")));
    }
    Ok(certs)
}

/// An error and its sources, one after the other (tonic's own message is
/// only "transport error").
pub(crate) fn chain_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
