//! How the management commands reach the node's gRPC API: plain HTTP/2 for
//! `http://`, TLS for `https://` checked with `--grpc-ca-file` or
//! `--grpc-pin` (and a client certificate from `--grpc-cert` /
//! `--grpc-key` when the node asks for one).

use crate::args::AdminArgs;
use crate::usage;
use idnode_admin::{ClientTls, Fingerprint, ServerTrust};

/// The TLS settings the flags give, checked against the endpoint's scheme.
pub fn client_tls(args: &AdminArgs) -> anyhow::Result<ClientTls> {
    let trust = match (&args.grpc_ca_file, &args.grpc_pin) {
        (Some(path), _) => Some(ServerTrust::CaFile(path.clone())),
        (None, Some(pin)) => match pin.parse::<Fingerprint>() {
            Ok(f) => Some(ServerTrust::Pin(f)),
            Err(e) => usage!("--grpc-pin: {e}"),
        },
        (None, None) => None,
    };
    let identity = args.grpc_cert.clone().zip(args.grpc_key.clone());
    let https = args
        .grpc
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("https://");
    if https && trust.is_none() {
        usage!(
            "--grpc {} uses TLS: pass --grpc-ca-file with the node's certificate (or its CA), \
             or --grpc-pin with the `grpc sha256` fingerprint `idnode serve` prints",
            args.grpc
        );
    }
    if !https && (trust.is_some() || identity.is_some()) {
        usage!(
            "--grpc-ca-file, --grpc-pin, --grpc-cert and --grpc-key need an https:// \
             --grpc endpoint, not {}",
            args.grpc
        );
    }
    Ok(ClientTls { trust, identity })
}

/// Turns a connection error into the command's error: a bad endpoint or a
/// file that cannot be used exits 2.
pub fn connect_error(args: &AdminArgs, e: idnode_admin::Error) -> anyhow::Error {
    match e {
        e @ (idnode_admin::Error::InvalidEndpoint { .. }
        | idnode_admin::Error::InvalidToken(_)
        | idnode_admin::Error::Io { .. }
        | idnode_admin::Error::Tls(_)) => anyhow::Error::new(crate::UsageError(e.to_string())),
        e @ idnode_admin::Error::Connect { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e)
            .context(format!("cannot reach the node's gRPC API at {}", args.grpc)),
    }
}

/// One connection to the node's API, as the flags say.
pub async fn channel(args: &AdminArgs) -> anyhow::Result<tonic::transport::Channel> {
    let tls = client_tls(args)?;
    idnode_admin::open_channel(&args.grpc, &tls)
        .await
        .map_err(|e| connect_error(args, e))
}
