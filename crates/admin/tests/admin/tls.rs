//! The API over TLS: a client that pins the server's fingerprint or trusts
//! its certificate gets through; plain HTTP/2, a wrong pin, an https
//! endpoint without a way to check it do not; with a client CA, only a
//! client holding a certificate it signed is served.

use crate::support::TOKEN;
use idnode_admin::proto::ListPrefixesRequest;
use idnode_admin::{
    Auth, ClientTls, Error, Fingerprint, ServerTls, ServerTrust, connect, connect_with,
    serve_tls_in_site,
};
use idnode_registry::Registry;
use idnode_store::MemoryStore;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A self-signed server certificate for 127.0.0.1, and a CA that signs
/// client certificates, written as PEM files into a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
    server_fingerprint: Fingerprint,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        write(dir.path(), "server.pem", &cert.pem());
        write(dir.path(), "server.key", &key.serialize_pem());

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        write(dir.path(), "ca.pem", &ca.pem());
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(vec!["operator".into()]).unwrap();
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &ca).unwrap();
        write(dir.path(), "client.pem", &client_cert.pem());
        write(dir.path(), "client.key", &client_key.serialize_pem());

        // A client certificate nobody trusts: self-signed.
        let stranger_key = KeyPair::generate().unwrap();
        let mut stranger = CertificateParams::new(vec!["stranger".into()]).unwrap();
        stranger.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let stranger_cert = stranger.self_signed(&stranger_key).unwrap();
        write(dir.path(), "stranger.pem", &stranger_cert.pem());
        write(dir.path(), "stranger.key", &stranger_key.serialize_pem());

        Self {
            server_fingerprint: Fingerprint::of(cert.der()),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server_tls(&self, client_auth: bool) -> ServerTls {
        let ca = self.path("ca.pem");
        ServerTls::from_files(
            &self.path("server.pem"),
            &self.path("server.key"),
            client_auth.then_some(ca.as_path()),
        )
        .unwrap()
    }

    fn pinned(&self) -> ClientTls {
        ClientTls {
            trust: Some(ServerTrust::Pin(self.server_fingerprint)),
            identity: None,
        }
    }

    fn with_identity(&self, tls: ClientTls, name: &str) -> ClientTls {
        ClientTls {
            identity: Some((
                self.path(&format!("{name}.pem")),
                self.path(&format!("{name}.key")),
            )),
            ..tls
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// Serves the API over `tls` on a free port until the sender is dropped.
async fn serve(tls: ServerTls) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = Arc::new(Registry::new(Arc::new(MemoryStore::new())));
    let auth = Arc::new(Auth::from_token(TOKEN));
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(serve_tls_in_site(
        listener,
        registry,
        auth,
        None,
        Some(tls),
        idnode_admin::Limits::default(),
        Arc::default(),
        async move {
            let _ = rx.await;
        },
    ));
    (addr, tx)
}

/// Whether a ListPrefixes call through `tls` succeeds; the error text when not.
async fn call(endpoint: &str, tls: &ClientTls) -> Result<(), String> {
    let (mut prefixes, _) = connect_with(endpoint, Some(TOKEN.into()), tls)
        .await
        .map_err(|e| e.to_string())?;
    prefixes
        .list_prefixes(ListPrefixesRequest {})
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_pinned_or_trusted_certificate_gets_through_and_nothing_else_does() {
    let pki = Pki::new();
    let tls = pki.server_tls(false);
    assert_eq!(tls.fingerprint, pki.server_fingerprint);
    assert!(!tls.requires_client_certificate());
    let (addr, _stop) = serve(tls).await;
    let https = format!("https://{addr}");

    call(&https, &pki.pinned()).await.unwrap();
    let ca_file = ClientTls {
        trust: Some(ServerTrust::CaFile(pki.path("server.pem"))),
        identity: None,
    };
    call(&https, &ca_file).await.unwrap();

    let wrong = ClientTls {
        trust: Some(ServerTrust::Pin(Fingerprint([7; 32]))),
        identity: None,
    };
    let err = call(&https, &wrong).await.unwrap_err();
    assert!(err.contains("not the pinned one"), "{err}");

    // No way to check the server: refused before connecting.
    let err = connect_with(&https, None, &ClientTls::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err}");
    assert!(err.to_string().contains("fingerprint"), "{err}");
    // TLS settings with a plain endpoint are a mistake, not ignored.
    let err = connect_with(&format!("http://{addr}"), None, &pki.pinned())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidEndpoint { .. }), "{err}");

    // Plain HTTP/2 to the TLS port is not served.
    let plain = match connect(&format!("http://{addr}"), Some(TOKEN.into())).await {
        Err(_) => Ok(()),
        Ok((mut prefixes, _)) => prefixes
            .list_prefixes(ListPrefixesRequest {})
            .await
            .map(|_| ()),
    };
    assert!(plain.is_err(), "plain HTTP/2 was served");
}

#[tokio::test]
async fn with_a_client_ca_only_its_certificates_are_served() {
    let pki = Pki::new();
    let tls = pki.server_tls(true);
    assert!(tls.requires_client_certificate());
    let (addr, _stop) = serve(tls).await;
    let https = format!("https://{addr}");

    call(&https, &pki.with_identity(pki.pinned(), "client"))
        .await
        .unwrap();
    assert!(call(&https, &pki.pinned()).await.is_err());
    assert!(
        call(&https, &pki.with_identity(pki.pinned(), "stranger"))
            .await
            .is_err()
    );
}

#[test]
fn unusable_files_are_named() {
    let pki = Pki::new();
    let err = ServerTls::new(b"not pem".to_vec(), b"nor this".to_vec(), None).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    let cert = std::fs::read(pki.path("server.pem")).unwrap();
    // The client's key does not go with the server's certificate.
    let other_key = std::fs::read(pki.path("client.key")).unwrap();
    assert!(ServerTls::new(cert.clone(), other_key, None).is_err());
    let key = std::fs::read(pki.path("server.key")).unwrap();
    let err = ServerTls::new(cert, key, Some(b"no ca here".to_vec())).unwrap_err();
    assert!(err.to_string().contains("client CA"), "{err}");
    let err = ServerTls::from_files(
        Path::new("/nonexistent/c.pem"),
        &pki.path("server.key"),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/c.pem"), "{err}");
}
