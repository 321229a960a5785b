//! How a QUIC client decides to trust the server: a pinned SHA-256
//! fingerprint of its certificate, a CA (or the server's own self-signed
//! certificate) from a PEM file, or nothing at all (insecure, for tests and
//! first contact).

use crate::ClientError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use idnode_handle::quic::Fingerprint;

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAuth {
    /// The leaf certificate's SHA-256 must be this (what `idnode serve`
    /// prints). Name and validity dates are not checked: the pin is the
    /// trust.
    Fingerprint(Fingerprint),
    /// The certificate must chain to one in this PEM file (a CA, or the
    /// node's own self-signed `cert.pem`) and name the server.
    CaFile(PathBuf),
    /// Any certificate: the connection is encrypted but the server is not
    /// authenticated. For tests and first contact only.
    Insecure,
}

/// TLS settings of a QUIC client (unused on UDP and TCP).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Required for QUIC.
    pub auth: Option<ServerAuth>,
    /// The name sent (SNI) and checked with [`ServerAuth::CaFile`]; by
    /// default the server's IP address.
    pub server_name: Option<String>,
}

impl TlsOptions {
    pub fn pinned(fingerprint: Fingerprint) -> Self {
        Self {
            auth: Some(ServerAuth::Fingerprint(fingerprint)),
            server_name: None,
        }
    }

    pub fn ca_file(path: impl Into<PathBuf>) -> Self {
        Self {
            auth: Some(ServerAuth::CaFile(path.into())),
            server_name: None,
        }
    }

    pub fn insecure() -> Self {
        Self {
            auth: Some(ServerAuth::Insecure),
            server_name: None,
        }
    }
}

/// A rustls client configuration for `options`, offering `alpn`. TLS 1.3
/// only; sessions are kept in memory for resumption.
pub(crate) fn client_config(
    options: &TlsOptions,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, ClientError> {
    let tls_error = |message: String| ClientError::Tls { message };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error(e.to_string()))?;
    let mut config = match &options.auth {
        None => {
            return Err(tls_error(
                "QUIC needs a way to check the server: a pinned certificate fingerprint, \
                 a CA file, or insecure mode"
                    .into(),
            ));
        }
        Some(ServerAuth::CaFile(path)) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(tls_error(format!(
                    "{}: no usable certificate in the file",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Some(ServerAuth::Fingerprint(fingerprint)) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(
                Some(*fingerprint),
                &provider,
            )))
            .with_no_client_auth(),
        Some(ServerAuth::Insecure) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(None, &provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// A verifier that accepts only the certificate whose SHA-256 is `pinned`
/// (whatever its name and dates: the pin is the trust) and checks that the
/// server holds its key; with *ring*'s algorithms. The gRPC client of
/// `idnode-admin` pins with it too.
pub fn pinned_verifier(pinned: Fingerprint) -> Arc<dyn ServerCertVerifier> {
    Arc::new(PinnedVerifier::new(
        Some(pinned),
        &rustls::crypto::ring::default_provider(),
    ))
}

/// Accepts the certificate whose fingerprint is pinned (any, when none is),
/// and still checks that the server holds its key (handshake signatures).
#[derive(Debug)]
struct PinnedVerifier {
    pinned: Option<Fingerprint>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    fn new(pinned: Option<Fingerprint>, provider: &CryptoProvider) -> Self {
        Self {
            pinned,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

struct FingerprintMismatch {
    got: Fingerprint,
}

// rustls shows this error with `Debug`: make that the readable message.
impl fmt::Debug for FingerprintMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for FingerprintMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's certificate has SHA-256 fingerprint {}, not the pinned one",
            self.got
        )
    }
}

impl std::error::Error for FingerprintMismatch {}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pinned) = self.pinned else {
            return Ok(ServerCertVerified::assertion());
        };
        let got = Fingerprint::of(end_entity);
        if got == pinned {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(FingerprintMismatch { got })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let f = Fingerprint([0x0f; 32]);
        let colons = f.to_string();
        assert_eq!(colons.parse::<Fingerprint>().unwrap(), f);
        let plain = colons.replace(':', "").to_lowercase();
        assert_eq!(plain.parse::<Fingerprint>().unwrap(), f);
        assert!("abc".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
    }

    #[test]
    fn quic_without_a_way_to_trust_the_server_is_refused() {
        let err = client_config(&TlsOptions::default(), b"hdl").unwrap_err();
        assert!(err.to_string().contains("fingerprint"), "{err}");
        let err = client_config(&TlsOptions::ca_file("/nonexistent.pem"), b"hdl").unwrap_err();
        assert!(err.to_string().contains("/nonexistent.pem"), "{err}");
        client_config(&TlsOptions::insecure(), b"hdl").unwrap();
    }
}
