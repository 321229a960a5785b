//! The node's TLS identity, shared by the listeners that need TLS (Handle
//! over QUIC, DNS over QUIC).
//!
//! Either the operator names a certificate chain and key (PEM files), or the
//! node generates a self-signed certificate on first start and keeps it in
//! `<data_dir>/tls/` (`cert.pem`, and `key.pem` readable by its owner only),
//! so a restart presents the same certificate. Clients pin its SHA-256
//! fingerprint, which `idnode serve` prints, or trust `cert.pem` as a CA.
//!
//! The crypto provider is *ring*, named explicitly: nothing here depends on
//! a process-wide default provider being installed.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The folder under the data directory that holds a generated certificate.
pub const TLS_DIR: &str = "tls";
pub const CERT_FILE: &str = "cert.pem";
pub const KEY_FILE: &str = "key.pem";

/// Names every generated certificate carries, besides the configured ones.
const DEFAULT_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The crypto provider of every TLS configuration the node builds.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub use idnode_handle::quic::Fingerprint;

/// Where the certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertificateSource {
    /// PEM certificate chain (leaf first) and PEM private key. Both or
    /// neither: with neither, a self-signed certificate is generated.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Subject alternative names of a generated certificate, besides
    /// `localhost`, `127.0.0.1` and `::1` (DNS names or IP addresses).
    pub names: Vec<String>,
}

impl CertificateSource {
    /// The PEM files of this certificate, with its fingerprint: the
    /// configured files, or those kept under `data_dir` (generated there
    /// on first use, as [`TlsIdentity::load`] does). For TLS stacks that
    /// take PEM files (the gRPC API's).
    pub fn pem_files(&self, data_dir: &Path) -> io::Result<(PathBuf, PathBuf, Fingerprint)> {
        let identity = TlsIdentity::load(self, data_dir)?;
        let (cert, key) = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => {
                let dir = data_dir.join(TLS_DIR);
                (dir.join(CERT_FILE), dir.join(KEY_FILE))
            }
        };
        Ok((cert, key, identity.fingerprint))
    }
}

/// A certificate chain and its private key.
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Of the leaf certificate.
    pub fingerprint: Fingerprint,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certificates", &self.chain.len())
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint,
        }
    }
}

impl TlsIdentity {
    /// The configured files, or the certificate kept under `data_dir`
    /// (generated there on first use).
    pub fn load(source: &CertificateSource, data_dir: &Path) -> io::Result<Self> {
        match (&source.cert, &source.key) {
            (Some(cert), Some(key)) => Self::from_files(cert, key),
            (None, None) => Self::load_or_generate(&data_dir.join(TLS_DIR), &source.names),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TLS certificate needs both `cert` and `key` (or neither, to generate one)",
            )),
        }
    }

    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    pub fn from_files(cert: &Path, key: &Path) -> io::Result<Self> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| pem_error(cert, e))?;
        if chain.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no certificate in the file", cert.display()),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
        let fingerprint = Fingerprint::of(&chain[0]);
        Ok(Self {
            chain,
            key,
            fingerprint,
        })
    }

    /// Loads `dir/cert.pem` and `dir/key.pem`, or generates a self-signed
    /// certificate for `names` (and the local names) and writes them there
    /// first. The key file is created with mode 0600, the folder 0700.
    ///
    /// `cert.pem` is written last (by rename), so a crash while generating
    /// leaves no half identity behind: the next start generates again.
    pub fn load_or_generate(dir: &Path, names: &[String]) -> io::Result<Self> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if cert_path.exists() {
            return Self::from_files(&cert_path, &key_path);
        }
        let mut all: Vec<String> = DEFAULT_NAMES.iter().map(|n| n.to_string()).collect();
        for name in names {
            if !all.contains(name) {
                all.push(name.clone());
            }
        }
        let mut params = rcgen::CertificateParams::new(all).map_err(rcgen_error)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "idnode");
        let key_pair = rcgen::KeyPair::generate().map_err(rcgen_error)?;
        let cert = params.self_signed(&key_pair).map_err(rcgen_error)?;

        create_private_dir(dir)?;
        write_file(&key_path, key_pair.serialize_pem().as_bytes(), true)?;
        write_file(&cert_path, cert.pem().as_bytes(), false)?;
        tracing::info!(path = %cert_path.display(), "generated a self-signed TLS certificate");
        Self::from_files(&cert_path, &key_path)
    }

    /// A rustls server configuration for this identity: TLS 1.3 only (QUIC
    /// needs it), the given ALPN protocols, no client certificates, and
    /// session resumption through stateless tickets (rotated every 6
    /// hours), so resumption works across worker endpoints without shared
    /// server-side state. 0-RTT stays off.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        config.max_early_data_size = 0;
        Ok(config)
    }
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> io::Error {
    let kind = match &e {
        rustls::pki_types::pem::Error::Io(io) => io.kind(),
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, format!("{}: {e}", path.display()))
}

fn rcgen_error(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("cannot generate a TLS certificate: {e}"))
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames
/// it over `path`.
fn write_file(path: &Path, bytes: &[u8], private: bool) -> io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("pem.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_with_a_private_key_file() {
        let dir = std::env::temp_dir().join(format!("idnode-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let names = vec!["node.example".to_string(), "10.1.2.3".to_string()];
        let first = TlsIdentity::load_or_generate(&dir, &names).unwrap();
        let again = TlsIdentity::load_or_generate(&dir, &[]).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert_eq!(first.chain, again.chain);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!dir.join("key.pem.tmp").exists());
        first.server_config(&[b"hdl"]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pem_files_are_the_generated_pair_or_the_configured_one() {
        let dir = std::env::temp_dir().join(format!("idnode-tls-pem-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (cert, key, fingerprint) = CertificateSource::default().pem_files(&dir).unwrap();
        assert_eq!(cert, dir.join(TLS_DIR).join(CERT_FILE));
        assert_eq!(key, dir.join(TLS_DIR).join(KEY_FILE));
        let configured = CertificateSource {
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            names: Vec::new(),
        };
        let (c, k, f) = configured.pem_files(Path::new("/nonexistent")).unwrap();
        assert_eq!((c, k, f), (cert, key, fingerprint));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn half_configured_files_are_rejected() {
        let source = CertificateSource {
            cert: Some("/nonexistent/cert.pem".into()),
            ..Default::default()
        };
        let err = TlsIdentity::load(&source, Path::new("/nonexistent")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = TlsIdentity::from_files(
            Path::new("/nonexistent/cert.pem"),
            Path::new("/nonexistent/key.pem"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }

    #[test]
    fn fingerprint_prints_as_colon_separated_hex() {
        let f = Fingerprint([0xab; 32]);
        let s = f.to_string();
        assert_eq!(s.len(), 32 * 3 - 1);
        assert!(s.starts_with("AB:AB:"));
    }
}
