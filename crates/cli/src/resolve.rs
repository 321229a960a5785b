//! `idnode resolve`: a Handle protocol client on the command line.

use crate::args::ResolveArgs;
use crate::{shown, usage};
use anyhow::Context;
use idnode_client::{Client, Fingerprint, Query, TlsOptions};
use idnode_core::{Identifier, Ttl, Value};
use idnode_handle::site::SiteInfo;
use idnode_handle::{ResponseBody, code};
use std::process::ExitCode;
use std::time::Duration;

/// Checks the signature of `answer` with the key of `server` in the site
/// record it publishes; an error says why it cannot be trusted.
async fn check_signature(
    client: &Client,
    server: std::net::SocketAddr,
    answer: &[u8],
) -> anyhow::Result<()> {
    let info = client
        .site_info()
        .await
        .with_context(|| format!("asking {server} for its site information and key"))?;
    let ResponseBody::Other(bytes) = info.body else {
        anyhow::bail!("{server} did not answer GET_SITE_INFO with a site record");
    };
    let site = SiteInfo::decode(&bytes)
        .map_err(|e| anyhow::anyhow!("the site record of {server} does not decode: {e}"))?;
    let published = site
        .servers
        .iter()
        .find(|s| {
            s.address == server.ip()
                && s.interfaces
                    .iter()
                    .any(|i| i.port == u32::from(server.port()))
        })
        .or(site.servers.first())
        .ok_or_else(|| anyhow::anyhow!("the site record of {server} lists no server"))?;
    let key = idnode_handle::keys::PublicKey::decode(&published.public_key)
        .map_err(|e| anyhow::anyhow!("{server} publishes no usable public key: {e}"))?;
    idnode_handle::certify::verify_response(answer, &key)
        .map_err(|e| anyhow::anyhow!("the answer's signature does not verify: {e}"))?;
    eprintln!("signature verified with the key {server} publishes");
    Ok(())
}

pub async fn run(args: ResolveArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = Identifier::parse(&args.identifier) {
        usage!("`{}` is not an identifier: {e}", args.identifier);
    }
    let server = match tokio::net::lookup_host(args.server()).await {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => a,
            None => usage!("server `{}` has no address", args.server()),
        },
        Err(e) => usage!("server `{}` is not host:port: {e}", args.server()),
    };
    let mut client = Client::new(server, args.transport);
    client.timeout = Duration::from_secs(args.timeout.max(1));
    client.tls = match (&args.pin, &args.ca_file, args.insecure) {
        (Some(pin), None, false) => match pin.parse::<Fingerprint>() {
            Ok(f) => TlsOptions::pinned(f),
            Err(e) => usage!("--pin `{pin}` is not a SHA-256 fingerprint: {e}"),
        },
        (None, Some(path), false) => TlsOptions::ca_file(path),
        (None, None, true) => TlsOptions::insecure(),
        (None, None, false) => TlsOptions::default(),
        _ => usage!("give only one of --pin, --ca-file and --insecure"),
    };
    let query = Query {
        identifier: args.identifier.clone(),
        indexes: args.indexes.clone(),
        types: args.types.clone(),
    };
    client.certified = args.certified;
    let (response, raw) = client
        .resolve_raw(&query)
        .await
        .with_context(|| format!("resolving {}", args.identifier))?;
    if args.certified {
        check_signature(&client, server, &raw).await?;
    }
    let response_code = response.header.response_code;
    match response.body {
        ResponseBody::Resolution { handle, values } if response_code == code::SUCCESS => {
            if args.json {
                println!("{}", shown::json(&to_json(&handle, &values)));
            } else {
                print_table(&handle, &values);
            }
            Ok(ExitCode::SUCCESS)
        }
        ResponseBody::Referral { handle, values } => {
            if args.json {
                let mut json = to_json(&handle, &values);
                json["responseCode"] = response_code.into();
                println!("{}", shown::json(&json));
            } else {
                // CNRI's servers (and idnode) leave the handle of a 303
                // empty: the values are the sites to ask the same question.
                let shown = if handle.is_empty() {
                    args.identifier.as_str()
                } else {
                    handle.as_str()
                };
                println!(
                    "referral ({response_code} {}): ask these sites for {}",
                    code_name(response_code),
                    shown::text(shown)
                );
                print_table(shown, &values);
            }
            Ok(ExitCode::FAILURE)
        }
        ResponseBody::Error { message } => {
            if args.json {
                let json = serde_json::json!({
                    "responseCode": response_code,
                    "handle": args.identifier,
                    "message": message,
                });
                println!("{}", shown::json(&json));
            }
            eprintln!(
                "error: {}: {} (response code {response_code}: {})",
                shown::text(&args.identifier),
                shown::text(&message),
                code_name(response_code)
            );
            Ok(ExitCode::FAILURE)
        }
        _ => {
            eprintln!(
                "error: {}: unexpected answer (response code {response_code}: {})",
                shown::text(&args.identifier),
                code_name(response_code)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn code_name(c: u32) -> &'static str {
    match c {
        code::SUCCESS => "SUCCESS",
        code::ERROR => "ERROR",
        code::PROTOCOL_ERROR => "PROTOCOL_ERROR",
        code::OPERATION_NOT_SUPPORTED => "OPERATION_NOT_SUPPORTED",
        code::HANDLE_NOT_FOUND => "HANDLE_NOT_FOUND",
        code::INVALID_HANDLE => "INVALID_HANDLE",
        code::VALUES_NOT_FOUND => "VALUES_NOT_FOUND",
        code::RECURSION_COUNT_TOO_HIGH => "RECURSION_COUNT_TOO_HIGH",
        code::SERVER_NOT_RESP => "SERVER_NOT_RESP",
        code::SERVICE_REFERRAL => "SERVICE_REFERRAL",
        code::PREFIX_REFERRAL => "PREFIX_REFERRAL",
        _ => "other",
    }
}

fn data_text(v: &Value) -> Option<&str> {
    std::str::from_utf8(&v.data)
        .ok()
        .filter(|s| !s.chars().any(|c| c.is_control()))
}

fn print_table(handle: &str, values: &[Value]) {
    println!("{}", shown::text(handle));
    let width = values
        .iter()
        .map(|v| v.kind.len())
        .max()
        .unwrap_or(4)
        .max(4);
    for v in values {
        let site = v
            .kind
            .starts_with("HS_SITE")
            .then(|| SiteInfo::decode(&v.data).ok())
            .flatten();
        let data = match (site, data_text(v)) {
            (Some(site), _) => {
                let servers: Vec<String> = site.servers.iter().map(|s| s.urls()).collect();
                format!("site: {}", servers.join(" | "))
            }
            (None, Some(s)) => shown::text(s).into_owned(),
            (None, None) => format!("<{} bytes> {}", v.data.len(), hex(&v.data, 32)),
        };
        let data = shown::text(&data);
        println!("  {:>5}  {:<width$}  {data}", v.index, shown::text(&v.kind));
    }
}

fn hex(bytes: &[u8], max: usize) -> String {
    let mut s: String = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > max {
        s.push('…');
    }
    s
}

/// The Handle REST API's JSON shape (technical manual, chapter 14).
pub fn to_json(handle: &str, values: &[Value]) -> serde_json::Value {
    use base64::Engine;
    let values: Vec<_> = values
        .iter()
        .map(|v| {
            let data = match data_text(v) {
                Some(s) => serde_json::json!({"format": "string", "value": s}),
                None => serde_json::json!({
                    "format": "base64",
                    "value": base64::engine::general_purpose::STANDARD.encode(&v.data),
                }),
            };
            let mut obj = serde_json::json!({
                "index": v.index,
                "type": v.kind,
                "data": data,
                "timestamp": v.timestamp,
            });
            match v.ttl {
                Ttl::Relative(s) => obj["ttl"] = s.into(),
                Ttl::Absolute(t) => {
                    obj["ttl"] = t.into();
                    obj["ttlType"] = "absolute".into();
                }
            }
            obj
        })
        .collect();
    serde_json::json!({"responseCode": 1, "handle": handle, "values": values})
}
