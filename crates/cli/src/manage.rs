//! `idnode prefix`, `idnode id` and `idnode import`: clients of the gRPC
//! management API.

use crate::args::{
    AdminArgs, BackupArgs, ExportArgs, IdCommand, ImportArgs, PrefixCommand, RepairArgs,
    RestoreArgs, TemplateCommand,
};
use crate::{shown, usage};
use idnode_admin::proto;
use idnode_core::{Permissions, Ttl, Value};
use idnode_handle::site::{InterfaceProtocol, ServerInfo, SiteInfo};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::BufRead;
use std::process::ExitCode;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

type Prefixes = proto::prefixes_client::PrefixesClient<Channel>;
type Identifiers = proto::identifiers_client::IdentifiersClient<Channel>;

struct Admin {
    channel: Channel,
    token: Option<String>,
}

impl Admin {
    async fn connect(args: &AdminArgs, need_token: bool) -> anyhow::Result<Self> {
        let needed = need_token.then_some("this command needs the admin token");
        let token = admin_token(args, needed)?;
        let channel = crate::grpc::channel(args).await?;
        Ok(Self { channel, token })
    }

    fn request<T>(&self, message: T) -> anyhow::Result<Request<T>> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            let value: MetadataValue<_> = format!("Bearer {token}")
                .parse()
                .map_err(|_| crate::UsageError("the admin token has invalid characters".into()))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    fn prefixes(&self) -> Prefixes {
        Prefixes::new(self.channel.clone())
    }

    fn identifiers(&self) -> Identifiers {
        Identifiers::new(self.channel.clone())
    }
}

/// The token from --token (IDNODE_TOKEN), else from --token-file. With
/// `needed` (why it is needed), a missing file is a usage error; without,
/// no token.
pub(crate) fn admin_token(
    args: &AdminArgs,
    needed: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if let Some(t) = &args.token {
        return Ok(Some(t.trim().to_owned()));
    }
    match std::fs::read_to_string(&args.token_file) {
        Ok(t) => Ok(Some(t.trim().to_owned())),
        Err(e) => match needed {
            Some(why) => usage!(
                "{why}: pass --token or IDNODE_TOKEN, or --token-file (cannot read {}: {e})",
                args.token_file.display()
            ),
            None => Ok(None),
        },
    }
}

/// Turns a gRPC status into an error; client-side mistakes exit with 2.
pub(crate) fn status(e: tonic::Status) -> anyhow::Error {
    let text = format!("{:?}: {}", e.code(), e.message());
    if is_usage(e.code()) {
        anyhow::Error::new(crate::UsageError(text))
    } else {
        anyhow::anyhow!(text)
    }
}

pub async fn prefix(args: &AdminArgs, command: PrefixCommand) -> anyhow::Result<ExitCode> {
    let mutating = matches!(
        command,
        PrefixCommand::Create { .. }
            | PrefixCommand::Delete { .. }
            | PrefixCommand::Delegate { .. }
            | PrefixCommand::Admin { .. }
            | PrefixCommand::Template(TemplateCommand::Set { .. } | TemplateCommand::Delete { .. })
    );
    let admin = Admin::connect(args, mutating).await?;
    let mut client = admin.prefixes();
    match command {
        PrefixCommand::Create { prefix } => {
            let p = client
                .create_prefix(admin.request(proto::CreatePrefixRequest { prefix })?)
                .await
                .map_err(status)?
                .into_inner();
            println!("created prefix {} (homed here)", shown::text(&p.prefix));
        }
        PrefixCommand::Delegate {
            prefix,
            to,
            mirrors,
            hash,
            ttl,
            no_site_info,
            service,
        } => {
            if let Some(service) = service {
                let p = client
                    .delegate_prefix(admin.request(proto::DelegatePrefixRequest {
                        prefix,
                        sites: Vec::new(),
                        ttl: Some(ttl),
                        service: service.clone(),
                    })?)
                    .await
                    .map_err(status)?
                    .into_inner();
                println!(
                    "delegated prefix {} to the sites of {}",
                    shown::text(&p.prefix),
                    shown::text(&service)
                );
                return Ok(ExitCode::SUCCESS);
            }
            let mut site = site_arg(&to, &hash)?;
            if !no_site_info {
                site = with_published_keys(site, &to).await;
            }
            let mut sites = vec![site];
            // Each mirror is a site of its own, after the primary's.
            for mirror in &mirrors {
                let one = std::slice::from_ref(mirror);
                let mut site = site_arg(one, &hash)?;
                if !no_site_info {
                    site = with_published_keys(site, one).await;
                }
                sites.push(site);
            }
            let mut described = to.join(" ");
            if !mirrors.is_empty() {
                described.push_str(&format!(" (mirrors {})", mirrors.join(" ")));
            }
            let p = client
                .delegate_prefix(admin.request(proto::DelegatePrefixRequest {
                    prefix,
                    sites,
                    ttl: Some(ttl),
                    service: String::new(),
                })?)
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "delegated prefix {} to {}",
                shown::text(&p.prefix),
                shown::text(&described)
            );
        }
        PrefixCommand::Get { prefix } => {
            let p = client
                .get_prefix(admin.request(proto::GetPrefixRequest { prefix })?)
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "{}\t{}",
                shown::text(&p.prefix),
                if p.homed { "homed" } else { "delegated" }
            );
            if p.has_template {
                println!(
                    "  template: its own (idnode prefix template get {})",
                    p.prefix
                );
            }
            if !p.homed {
                // Where to: the sites on its record 0.NA/<prefix>.
                let record = admin
                    .identifiers()
                    .get_identifier(admin.request(proto::GetIdentifierRequest {
                        identifier: format!("0.NA/{}", p.prefix),
                    })?)
                    .await
                    .map_err(status)?
                    .into_inner();
                // HS_SITE: the sites homing the prefix (the HS_SITE.PREFIX
                // copies, for the prefixes below, name the same sites).
                for value in record.values {
                    if value.r#type.eq_ignore_ascii_case("HS_SITE")
                        && let Ok(site) = SiteInfo::decode(&value.data)
                    {
                        let servers: Vec<String> = site.servers.iter().map(|s| s.urls()).collect();
                        let keyed = site.servers.iter().all(|s| !s.public_key.is_empty());
                        let key = if keyed { "" } else { " (no public key)" };
                        let servers = shown::text(&servers.join(" | ")).into_owned();
                        println!("  site {}: {servers}{key}", value.index);
                    } else if value.r#type.eq_ignore_ascii_case("HS_SERV") {
                        let named = shown::bytes(&value.data);
                        println!("  service {}: the sites of {named}", value.index);
                    }
                }
            }
        }
        PrefixCommand::List => {
            let list = client
                .list_prefixes(admin.request(proto::ListPrefixesRequest {})?)
                .await
                .map_err(status)?
                .into_inner();
            for p in list.prefixes {
                println!(
                    "{}\t{}",
                    shown::text(&p.prefix),
                    if p.homed { "homed" } else { "delegated" }
                );
            }
        }
        PrefixCommand::Admin {
            prefix,
            handle,
            index,
            secret_file,
            perms,
        } => {
            let secret = match std::fs::read(&secret_file) {
                Ok(mut bytes) => {
                    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                        bytes.pop();
                    }
                    bytes
                }
                Err(e) => usage!("cannot read {}: {e}", secret_file.display()),
            };
            if secret.is_empty() {
                usage!("{} holds no secret", secret_file.display());
            }
            let scope =
                match idnode_admin::tokens::parse_permissions(perms.iter().map(String::as_str)) {
                    Ok(scope) if !scope.operator && scope.bits != 0 => scope,
                    Ok(_) => usage!("--perm: give HS_ADMIN permissions (operator is not one)"),
                    Err(e) => usage!("--perm: {e}"),
                };
            if index == 0 {
                usage!("--index must be 1 or more");
            }
            handle_admin(&admin, &prefix, &handle, index, secret, scope.bits).await?;
        }
        PrefixCommand::Delete { prefix } => {
            client
                .delete_prefix(admin.request(proto::DeletePrefixRequest {
                    prefix: prefix.clone(),
                })?)
                .await
                .map_err(status)?;
            println!("deleted prefix {}", shown::text(&prefix));
        }
        PrefixCommand::Template(command) => template(&admin, client, command).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `idnode prefix template ...`.
async fn template(
    admin: &Admin,
    mut client: Prefixes,
    command: TemplateCommand,
) -> anyhow::Result<()> {
    match command {
        TemplateCommand::Set { prefix, file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|e| crate::UsageError(format!("cannot read standard input: {e}")))?
            } else {
                match std::fs::read_to_string(&file) {
                    Ok(text) => text,
                    Err(e) => usage!("cannot read {}: {e}", file.display()),
                }
            };
            let template = match idnode_core::Template::from_json(&text) {
                Ok(t) => t,
                Err(e) => usage!("{}: {e}", file.display()),
            };
            let fields = template.fields.len();
            let info = client
                .set_template(admin.request(proto::SetTemplateRequest {
                    prefix,
                    template: Some(template.into()),
                })?)
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "set the template of prefix {} ({fields} field{})",
                info.prefix,
                if fields == 1 { "" } else { "s" }
            );
        }
        TemplateCommand::Get { prefix } => {
            let info = client
                .get_template(admin.request(proto::GetTemplateRequest { prefix })?)
                .await
                .map_err(status)?
                .into_inner();
            let template = idnode_admin::template_from_proto(info.template).map_err(|e| {
                anyhow::anyhow!("the node sent a template that does not convert: {e}")
            })?;
            if info.defined_at != info.prefix {
                eprintln!(
                    "prefix {} has no template of its own; it inherits this one from {}",
                    info.prefix, info.defined_at
                );
            }
            println!("{}", template.to_json());
        }
        TemplateCommand::Delete { prefix } => {
            client
                .delete_template(admin.request(proto::DeleteTemplateRequest {
                    prefix: prefix.clone(),
                })?)
                .await
                .map_err(status)?;
            println!("deleted the template of prefix {prefix}");
        }
    }
    Ok(())
}

/// `prefix admin`: the admin handle gets the secret as HS_SECKEY at
/// `index` (admin read only, so no resolution returns it), and the prefix
/// record an HS_ADMIN value naming it with `bits`, at the first free index
/// from 101.
async fn handle_admin(
    admin: &Admin,
    prefix: &str,
    handle: &str,
    index: u32,
    secret: Vec<u8>,
    bits: u16,
) -> anyhow::Result<()> {
    let mut ids = admin.identifiers();
    let seckey = proto::Value {
        index,
        r#type: "HS_SECKEY".into(),
        data: secret.into(),
        // Admin read and write only.
        permissions: Some(0x0c),
        ..proto::Value::default()
    };
    let existing = ids
        .get_identifier(admin.request(proto::GetIdentifierRequest {
            identifier: handle.to_owned(),
        })?)
        .await;
    match existing {
        Ok(found) if found.get_ref().values.iter().any(|v| v.index == index) => {
            ids.modify_values(admin.request(proto::ModifyValuesRequest {
                identifier: handle.to_owned(),
                values: vec![seckey],
            })?)
            .await
            .map_err(status)?;
        }
        Ok(_) => {
            ids.add_values(admin.request(proto::AddValuesRequest {
                identifier: handle.to_owned(),
                values: vec![seckey],
            })?)
            .await
            .map_err(status)?;
        }
        Err(e) if e.code() == tonic::Code::NotFound => {
            ids.create_identifier(admin.request(proto::CreateIdentifierRequest {
                identifier: handle.to_owned(),
                values: vec![seckey],
                overwrite: false,
            })?)
            .await
            .map_err(status)?;
        }
        Err(e) => return Err(status(e)),
    }
    let record = format!("0.NA/{prefix}");
    let current = ids
        .get_identifier(admin.request(proto::GetIdentifierRequest {
            identifier: record.clone(),
        })?)
        .await
        .map_err(status)?
        .into_inner();
    let data = idnode_handle::admin::HsAdmin {
        permissions: idnode_handle::admin::AdminPerms(bits),
        admin: idnode_handle::admin::AdminRef::new(handle, index),
        legacy: false,
    }
    .encode();
    if current
        .values
        .iter()
        .any(|v| v.r#type.eq_ignore_ascii_case("HS_ADMIN") && v.data == data)
    {
        println!("{record} already names {handle} index {index} with these permissions");
    } else {
        let free = (101..)
            .find(|i| current.values.iter().all(|v| v.index != *i))
            .unwrap_or(101);
        ids.add_values(admin.request(proto::AddValuesRequest {
            identifier: record.clone(),
            values: vec![proto::Value {
                index: free,
                r#type: "HS_ADMIN".into(),
                data: data.into(),
                ..proto::Value::default()
            }],
        })?)
        .await
        .map_err(status)?;
        println!("{record}: HS_ADMIN at index {free} names {handle} index {index}");
    }
    println!(
        "a Handle client now authenticates as {handle} index {index} with that secret key \
         (HS_SECKEY) to administer identifiers under {prefix}, over TCP or QUIC"
    );
    Ok(())
}

/// The site to delegate to, with what its servers publish about
/// themselves (GET_SITE_INFO): for one `--to` server whose own record
/// lists it, that record as it is (its serial, attributes, every server of
/// its site and their public keys); otherwise the site built from `--to`
/// with each server's public key taken from its own record. A server that
/// does not answer leaves its key empty, with a warning: certified
/// resolution through it fails.
async fn with_published_keys(mut site: proto::Site, to: &[String]) -> proto::Site {
    let mut records = Vec::new();
    for text in to {
        match fetch_site_info(text).await {
            Ok(bytes) => records.push(Some(bytes)),
            Err(why) => {
                eprintln!(
                    "warning: {why}; its server record carries no public key, so certified \
                     resolution through this delegation will fail (delegate again once it \
                     answers, or pass --no-site-info to silence this)"
                );
                records.push(None);
            }
        }
    }
    if let ([Some(bytes)], [server]) = (records.as_slice(), site.servers.as_slice())
        && let Ok(record) = SiteInfo::decode(bytes)
        && record.servers.iter().any(|s| same_server(s, server))
    {
        return proto::Site {
            encoded: bytes.clone(),
            ..proto::Site::default()
        };
    }
    for (server, bytes) in site.servers.iter_mut().zip(&records) {
        let published = bytes
            .as_deref()
            .and_then(|b| SiteInfo::decode(b).ok())
            .and_then(|r| r.servers.into_iter().find(|s| same_server(s, server)));
        if let Some(published) = published {
            server.public_key = published.public_key;
        }
    }
    site
}

/// Whether a site record's server is the `--to` server (same address, and
/// its UDP or TCP port).
fn same_server(published: &ServerInfo, given: &proto::Server) -> bool {
    published.address.to_string() == given.address
        && given.interfaces.iter().any(|i| {
            published
                .interfaces
                .iter()
                .any(|p| p.port == i.port && p.protocol as i32 == i.protocol)
        })
}

/// The site record the server of `text` publishes (GET_SITE_INFO over
/// UDP, then TCP).
async fn fetch_site_info(text: &str) -> Result<Vec<u8>, String> {
    let mut tried = Vec::new();
    let server = ServerInfo::from_urls(1, text).map_err(|e| format!("--to {text}: {e}"))?;
    for (protocol, transport) in [
        (InterfaceProtocol::Udp, idnode_client::Transport::Udp),
        (InterfaceProtocol::Tcp, idnode_client::Transport::Tcp),
    ] {
        let Some(addr) = server.query_endpoint(protocol) else {
            continue;
        };
        let mut client = idnode_client::Client::new(addr, transport);
        client.timeout = std::time::Duration::from_secs(3);
        match client.site_info().await {
            Ok(r) if r.header.response_code == idnode_handle::code::SUCCESS => {
                if let idnode_handle::ResponseBody::Other(bytes) = r.body
                    && SiteInfo::decode(&bytes).is_ok()
                {
                    return Ok(bytes);
                }
                tried.push(format!("{addr}: not a site record"));
            }
            Ok(r) => tried.push(format!("{addr}: response code {}", r.header.response_code)),
            Err(e) => tried.push(format!("{addr}: {e}")),
        }
    }
    Err(format!(
        "{text} did not answer GET_SITE_INFO ({})",
        tried.join("; ")
    ))
}

/// A site from `--to` arguments (one server each) and `--hash`.
fn site_arg(to: &[String], hash: &str) -> anyhow::Result<proto::Site> {
    let hash = match hash.to_ascii_lowercase().as_str() {
        "prefix" => proto::HashOption::HashPrefix,
        "suffix" => proto::HashOption::HashSuffix,
        "whole" => proto::HashOption::HashWhole,
        other => anyhow::bail!("--hash {other}: expected prefix, suffix or whole"),
    };
    let servers = to
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let server = ServerInfo::from_urls(i as u32 + 1, text)
                .map_err(|e| anyhow::anyhow!("--to {text}: {e}"))?;
            let interfaces = server
                .interfaces
                .iter()
                .map(|interface| proto::Interface {
                    protocol: match interface.protocol {
                        InterfaceProtocol::Udp => proto::Protocol::Udp,
                        InterfaceProtocol::Tcp => proto::Protocol::Tcp,
                        InterfaceProtocol::Http => proto::Protocol::Http,
                        InterfaceProtocol::Https => proto::Protocol::Https,
                    } as i32,
                    port: interface.port,
                })
                .collect();
            Ok(proto::Server {
                id: server.id,
                address: server.address.to_string(),
                interfaces,
                public_key: Vec::new(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(proto::Site {
        servers,
        hash: hash as i32,
        encoded: Vec::new(),
    })
}

fn parse_value_arg(text: &str) -> anyhow::Result<proto::Value> {
    let mut parts = text.splitn(3, ':');
    let (Some(index), Some(kind), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
        usage!("--value `{text}` is not INDEX:TYPE:DATA");
    };
    let Ok(index) = index.parse::<u32>() else {
        usage!("--value `{text}`: index `{index}` is not a number");
    };
    Ok(proto::Value {
        index,
        r#type: kind.to_owned(),
        data: data.as_bytes().to_vec().into(),
        ..Default::default()
    })
}

/// A value as the gRPC API carries it.
fn into_proto(v: Value) -> proto::Value {
    proto::Value {
        index: v.index,
        r#type: v.kind,
        data: v.data,
        ttl: Some(proto::Ttl {
            kind: Some(match v.ttl {
                Ttl::Relative(s) => proto::ttl::Kind::Relative(s),
                Ttl::Absolute(t) => proto::ttl::Kind::Absolute(t),
            }),
        }),
        timestamp: v.timestamp,
        permissions: Some(v.permissions.0 as u32),
        references: v
            .references
            .into_iter()
            .map(|r| proto::Reference {
                identifier: r.identifier,
                index: r.index,
            })
            .collect(),
    }
}

fn from_proto(v: &proto::Value) -> Value {
    let mut value = Value::new(v.index, v.r#type.clone(), v.data.clone());
    value.timestamp = v.timestamp;
    if let Some(p) = v.permissions {
        value.permissions = Permissions(p as u8);
    }
    if let Some(proto::Ttl { kind: Some(k) }) = &v.ttl {
        value.ttl = match k {
            proto::ttl::Kind::Relative(s) => Ttl::Relative(*s),
            proto::ttl::Kind::Absolute(t) => Ttl::Absolute(*t),
        };
    }
    value.references = v
        .references
        .iter()
        .map(|r| idnode_core::Reference {
            identifier: r.identifier.clone(),
            index: r.index,
        })
        .collect();
    value
}

pub async fn identifier(args: &AdminArgs, command: IdCommand) -> anyhow::Result<ExitCode> {
    let command = match command {
        IdCommand::Qr(qr) => return crate::qr::run(args, qr).await,
        other => other,
    };
    let mutating = matches!(command, IdCommand::Create { .. } | IdCommand::Delete { .. });
    let admin = Admin::connect(args, mutating).await?;
    let mut client = admin.identifiers();
    match command {
        IdCommand::Create {
            identifier,
            values,
            overwrite,
        } => {
            let values = values
                .iter()
                .map(|v| parse_value_arg(v))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let created = client
                .create_identifier(admin.request(proto::CreateIdentifierRequest {
                    identifier,
                    values,
                    overwrite,
                })?)
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "registered {} ({} values, version {})",
                shown::text(&created.identifier),
                created.values.len(),
                created.version
            );
        }
        IdCommand::Get { identifier, json } => {
            let record = client
                .get_identifier(admin.request(proto::GetIdentifierRequest { identifier })?)
                .await
                .map_err(status)?
                .into_inner();
            let values: Vec<Value> = record.values.iter().map(from_proto).collect();
            if json {
                let json = crate::resolve::to_json(&record.identifier, &values);
                println!("{}", shown::json(&json));
            } else {
                println!(
                    "{} (version {})",
                    shown::text(&record.identifier),
                    record.version
                );
                for v in &values {
                    println!(
                        "  {:>5}  {:<16}  {}  [permissions {:#04x}]",
                        v.index,
                        shown::text(&v.kind),
                        shown::bytes(&v.data),
                        v.permissions.0
                    );
                }
            }
        }
        IdCommand::Delete { identifier } => {
            client
                .delete_identifier(admin.request(proto::DeleteIdentifierRequest {
                    identifier: identifier.clone(),
                })?)
                .await
                .map_err(status)?;
            println!("deleted {}", shown::text(&identifier));
        }
        IdCommand::Qr(_) => usage!("`idnode id qr` does not call the management API"),
        IdCommand::List { prefix, limit } => {
            let mut printed = 0usize;
            each_identifier(&admin, &mut client, &prefix, |id| {
                if limit != 0 && printed >= limit {
                    return false;
                }
                println!("{}", shown::text(&id));
                printed += 1;
                true
            })
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every identifier under `prefix`, a page of ListIdentifiers at a time.
pub(crate) async fn list_all(args: &AdminArgs, prefix: &str) -> anyhow::Result<Vec<String>> {
    let admin = Admin::connect(args, false).await?;
    let mut client = admin.identifiers();
    let mut all = Vec::new();
    each_identifier(&admin, &mut client, prefix, |id| {
        all.push(id);
        true
    })
    .await?;
    if all.is_empty() {
        usage!("no identifiers under {prefix}");
    }
    Ok(all)
}

/// Calls `f` with each identifier under `prefix`, in order, a page of
/// ListIdentifiers at a time, until it returns false.
async fn each_identifier(
    admin: &Admin,
    client: &mut Identifiers,
    prefix: &str,
    mut f: impl FnMut(String) -> bool,
) -> anyhow::Result<()> {
    let mut token = String::new();
    loop {
        let page = client
            .list_identifiers(admin.request(proto::ListIdentifiersRequest {
                prefix: prefix.to_owned(),
                page_size: 1000,
                page_token: token,
            })?)
            .await
            .map_err(status)?
            .into_inner();
        for id in page.identifiers {
            if !f(id) {
                return Ok(());
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        token = page.next_page_token;
    }
}

/// Items handed from the reading thread to the sender at a time.
const READ_BATCH: usize = 256;

/// What the thread reading the import file has found so far.
#[derive(Default)]
struct Reading {
    /// The line of each item sent, in the order sent (the node numbers its
    /// results by that order).
    lines: Vec<usize>,
    /// Lines that could not be read as identifiers.
    failures: Vec<(usize, String)>,
    lines_read: usize,
    /// Why reading stopped before the end of the file, with the line.
    broken: Option<(usize, String)>,
}

/// Reads the import file on its own thread while the items already read
/// are sent: parses each line, hands the items to `tx` in order, and
/// records their lines in `reading` before handing them on (so a result
/// always finds its line).
fn read_import(
    file: std::fs::File,
    skip: usize,
    overwrite: bool,
    tx: tokio::sync::mpsc::Sender<proto::CreateIdentifierRequest>,
    reading: &std::sync::Mutex<Reading>,
    progress: &ProgressBar,
) {
    let lock = || reading.lock().unwrap_or_else(|e| e.into_inner());
    let mut input = std::io::BufReader::with_capacity(1 << 20, file);
    let mut text = String::new();
    let (mut lines, mut items, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    let mut line_no = 0;
    let mut bytes = 0u64;
    // Records what was read so far, then sends its items; false once the
    // stream is gone.
    let hand_over = |(line_no, bytes): (usize, u64),
                     lines: &mut Vec<usize>,
                     failures: &mut Vec<(usize, String)>,
                     items: &mut Vec<proto::CreateIdentifierRequest>| {
        let mut shared = lock();
        shared.lines.append(lines);
        shared.failures.append(failures);
        shared.lines_read = line_no;
        drop(shared);
        progress.set_position(bytes);
        items.drain(..).all(|item| send(&tx, item))
    };
    loop {
        text.clear();
        let read = match input.read_line(&mut text) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                lock().broken = Some((line_no + 1, e.to_string()));
                break;
            }
        };
        line_no += 1;
        bytes += read as u64;
        if line_no > skip {
            let line = text.trim_end_matches(['\n', '\r']);
            match idnode_core::jsonl::parse_line(line) {
                Ok(None) => {}
                Ok(Some((parsed, values))) => {
                    lines.push(line_no);
                    items.push(proto::CreateIdentifierRequest {
                        identifier: parsed.identifier,
                        values: values.into_iter().map(into_proto).collect(),
                        overwrite: overwrite || parsed.overwrite,
                    });
                }
                Err(e) => failures.push((line_no, e)),
            }
        }
        if items.len() >= READ_BATCH
            && !hand_over((line_no, bytes), &mut lines, &mut failures, &mut items)
        {
            return; // the stream ended: the node stopped taking items
        }
    }
    hand_over((line_no, bytes), &mut lines, &mut failures, &mut items);
}

/// Hands an item to the sender, waiting only when the channel is full;
/// false once the stream is gone.
fn send<T>(tx: &tokio::sync::mpsc::Sender<T>, item: T) -> bool {
    match tx.try_send(item) {
        Ok(()) => true,
        Err(tokio::sync::mpsc::error::TrySendError::Full(item)) => tx.blocking_send(item).is_ok(),
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
    }
}

pub async fn import(args: &AdminArgs, import: ImportArgs) -> anyhow::Result<ExitCode> {
    let file = match std::fs::File::open(&import.file) {
        Ok(f) => f,
        Err(e) => usage!("cannot open {}: {e}", import.file.display()),
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let started = std::time::Instant::now();
    let admin = Admin::connect(args, true).await?;
    // Progress by the bytes of the file read: the number of identifiers is
    // known only at its end, and reading, checking and sending overlap.
    let progress = if import.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(size)
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} read, {msg} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let batch = import.batch.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::CreateIdentifierRequest>(batch * 2);
    let reading = std::sync::Arc::new(std::sync::Mutex::new(Reading::default()));
    let reader = {
        let (reading, progress) = (reading.clone(), progress.clone());
        let (skip, overwrite) = (import.skip, import.overwrite);
        std::thread::Builder::new()
            .name("import-reader".into())
            .spawn(move || read_import(file, skip, overwrite, tx, &reading, &progress))?
    };
    let request = admin.request(tokio_stream::wrappers::ReceiverStream::new(rx))?;
    let mut client = admin.identifiers();
    let line_of = |item: u64| {
        let shared = reading.lock().unwrap_or_else(|e| e.into_inner());
        shared.lines.get(item as usize).copied().unwrap_or(0)
    };
    // The node answers for an item once its chunk is committed (or the item
    // refused), and in the order sent: an acknowledged item is stored for
    // good, and the first item not answered is the next in order.
    let mut answered = 0u64;
    let mut ok = 0u64;
    let mut refused: Vec<(usize, String)> = Vec::new();
    let streamed: Result<(), tonic::Status> = async {
        let mut results = client.batch_create(request).await?.into_inner();
        while let Some(result) = results.message().await? {
            answered += 1;
            if result.code == 0 {
                ok += 1;
            } else {
                let line = line_of(result.item);
                refused.push((line, format!("{}: {}", result.identifier, result.message)));
            }
            if answered.is_multiple_of(4096) {
                progress.set_message(format!("{} identifiers registered", grouped(ok)));
            }
        }
        Ok(())
    }
    .await;
    // The reading thread ends once the file is read, or at its next send
    // now that the stream is gone.
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    progress.finish_and_clear();
    let shared = std::mem::take(&mut *reading.lock().unwrap_or_else(|e| e.into_inner()));
    let mut failures = shared.failures;
    failures.extend(refused);
    failures.sort_by_key(|(line, _)| *line);
    let sent = shared.lines.len() as u64;
    let unanswered = (answered < sent).then(|| shared.lines[answered as usize]);
    if let (Err(e), Some(line)) = (&streamed, unanswered) {
        if answered == 0 && is_usage(e.code()) {
            // Refused as a whole before anything was written (a token
            // without the right, for instance).
            return Err(status(e.clone()));
        }
        failures.retain(|(at, _)| *at < line);
        print_failures(&failures);
        anyhow::bail!(
            "import interrupted after {} acknowledged identifiers ({} imported, {} refused) \
             (line {} of {} is the first not acknowledged): {}; run again with --skip {}",
            grouped(answered),
            grouped(ok),
            grouped(answered.saturating_sub(ok)),
            grouped(line as u64),
            import.file.display(),
            broken(e),
            line - 1,
        );
    }
    if let Err(e) = &streamed {
        // Every item was answered; only the end of the stream was lost.
        eprintln!(
            "warning: the stream ended with an error after every item was acknowledged: {}",
            broken(e)
        );
    }
    if let Some((line, why)) = &shared.broken {
        print_failures(&failures);
        usage!(
            "{}: line {line}: {why}; the {} identifiers before it were imported (run again \
             from there with --skip {})",
            import.file.display(),
            grouped(ok),
            line - 1
        );
    }
    if import.skip > shared.lines_read {
        usage!(
            "--skip {}: {} has only {} lines",
            import.skip,
            import.file.display(),
            shared.lines_read
        );
    }
    let secs = started.elapsed().as_secs_f64();
    // The rate counts the whole command: reading and checking the file
    // is part of what an import costs (it overlaps the sending).
    println!(
        "imported {ok} identifiers from {} ({size} bytes) in {secs:.2}s ({:.0}/s); {} failed",
        import.file.display(),
        ok as f64 / secs.max(1e-9),
        failures.len()
    );
    print_failures(&failures);
    if import.compact {
        compact_with(&admin).await?;
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn print_failures(failures: &[(usize, String)]) {
    for (line, message) in failures.iter().take(50) {
        println!("  line {line}: {}", shown::text(message));
    }
    if failures.len() > 50 {
        println!("  ... and {} more", failures.len() - 50);
    }
}

/// Whether a status says the request was wrong (exit code 2), as
/// [`status`] decides.
fn is_usage(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::InvalidArgument
            | Code::AlreadyExists
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::Unauthenticated
            | Code::PermissionDenied
    )
}

/// Why a stream of results ended early, in words.
fn broken(e: &tonic::Status) -> String {
    let detail = format!("{:?}: {}", e.code(), shown::text(e.message()));
    let lower = e.message().to_ascii_lowercase();
    let transport = [
        "h2 protocol",
        "transport",
        "connection",
        "broken pipe",
        "reset",
    ]
    .iter()
    .any(|w| lower.contains(w));
    if transport || matches!(e.code(), tonic::Code::Unavailable | tonic::Code::Cancelled) {
        format!("the connection to the node broke (the node stopped or reset it: {detail})")
    } else {
        format!("the node ended the import with an error ({detail})")
    }
}

/// `65747` as `65,747`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// `idnode compact`.
pub async fn compact(args: &AdminArgs) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(args, true).await?;
    compact_with(&admin).await?;
    Ok(ExitCode::SUCCESS)
}

async fn compact_with(admin: &Admin) -> anyhow::Result<()> {
    println!("compacting the node's store (its records merged into one sorted run)...");
    let done = admin
        .identifiers()
        .compact(admin.request(proto::CompactRequest {})?)
        .await
        .map_err(status)?
        .into_inner();
    println!(
        "compacted the store in {:.2}s",
        done.duration_ms as f64 / 1000.0
    );
    Ok(())
}

/// `idnode backup DIR`.
pub async fn backup(args: &AdminArgs, backup: BackupArgs) -> anyhow::Result<ExitCode> {
    let dir = match std::path::absolute(&backup.dir) {
        Ok(dir) => dir,
        Err(e) => usage!("{}: {e}", backup.dir.display()),
    };
    let Some(directory) = dir.to_str().map(str::to_owned) else {
        usage!("{} is not UTF-8", dir.display());
    };
    let admin = Admin::connect(args, true).await?;
    let done = admin
        .identifiers()
        .backup(admin.request(proto::BackupRequest { directory })?)
        .await
        .map_err(status)?
        .into_inner();
    println!(
        "backed up the store to {} on the node: {} bytes, change sequence {}",
        shown::text(&done.directory),
        grouped(done.bytes),
        done.sequence
    );
    Ok(ExitCode::SUCCESS)
}

/// `idnode restore BACKUP --data-dir D`.
pub fn restore(restore: RestoreArgs) -> anyhow::Result<ExitCode> {
    let backup = &restore.backup;
    if !backup.join("CURRENT").is_file() {
        usage!(
            "{} is not a backup (no RocksDB CURRENT file in it; give the directory `idnode \
             backup` wrote)",
            backup.display()
        );
    }
    let db = restore.data_dir.join("db");
    if db.symlink_metadata().is_ok() {
        usage!(
            "{} holds a store already ({} exists); restore into a new data directory",
            restore.data_dir.display(),
            db.display()
        );
    }
    let private = |dir: &std::path::Path| {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    };
    if let Err(e) = private(&restore.data_dir) {
        usage!("cannot create {}: {e}", restore.data_dir.display());
    }
    let copied = (|| -> std::io::Result<u64> {
        use std::os::unix::fs::PermissionsExt;
        private(&db)?;
        let mut bytes = 0;
        for entry in std::fs::read_dir(backup)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let to = db.join(entry.file_name());
            bytes += std::fs::copy(entry.path(), &to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(bytes)
    })();
    let bytes = match copied {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&db);
            anyhow::bail!(
                "cannot copy {} into {}: {e}",
                backup.display(),
                db.display()
            );
        }
    };
    let sequence = match idnode_node::restored_sequence(&db) {
        Ok(sequence) => sequence,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&db);
            return Err(e);
        }
    };
    println!(
        "restored {} ({} bytes) into {}: change sequence {sequence}",
        backup.display(),
        grouped(bytes),
        db.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `idnode repair --data-dir D`: RocksDB's repair of D/db, then what the
/// store holds and what was set aside.
pub fn repair(repair: RepairArgs) -> anyhow::Result<ExitCode> {
    let report = match idnode_node::repair(&repair.data_dir) {
        Ok(report) => report,
        Err(e) => match e.downcast::<idnode_node::BadConfig>() {
            Ok(bad) => usage!("{bad}"),
            Err(e) => match e.downcast::<idnode_node::DamagedStore>() {
                Ok(damaged) => usage!("{damaged}"),
                Err(e) => return Err(e),
            },
        },
    };
    let repaired = &report.repaired;
    let held: Vec<String> = repaired
        .entries
        .iter()
        .map(|(space, n)| format!("{} {}", grouped(*n), space.name()))
        .collect();
    println!(
        "repaired the store in {}: {} entries; change sequence {}",
        repair.data_dir.join("db").display(),
        held.join(", "),
        repaired.last_sequence
    );
    if repaired.set_aside.is_empty() {
        println!("every file was read whole: nothing was set aside");
    } else {
        println!(
            "set aside, unreadable (their entries are not in the store; a backup or an \
             export may hold them):"
        );
        for file in &repaired.set_aside {
            println!("  {}", shown::lines(&file.display().to_string()));
        }
    }
    if report.newest_record > repaired.last_sequence {
        println!(
            "warning: records were written up to change {} but the change log now ends at {}: \
             change-log entries were in the files set aside. The change sequence (the DNS SOA \
             serial) counts on from {}; secondaries that follow the zone by IXFR need a full \
             transfer (AXFR)",
            report.newest_record, repaired.last_sequence, repaired.last_sequence
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `idnode export [--prefix P]`: JSONL on stdout, a summary on stderr.
pub async fn export(args: &AdminArgs, export: ExportArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let admin = Admin::connect(args, true).await?;
    let prefix = export.prefix.unwrap_or_default();
    let mut stream = admin
        .identifiers()
        .export(admin.request(proto::ExportRequest { prefix })?)
        .await
        .map_err(status)?
        .into_inner();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (mut count, mut sequence) = (0u64, 0u64);
    while let Some(page) = stream.message().await.map_err(|e| {
        anyhow::anyhow!(
            "the export ended early after {count} identifiers: {}",
            broken(&e)
        )
    })? {
        sequence = page.sequence;
        for record in page.identifiers {
            let values: Vec<Value> = record.values.iter().map(from_proto).collect();
            let line = idnode_core::jsonl::to_line(&record.identifier, &values);
            writeln!(out, "{line}").map_err(|e| anyhow::anyhow!("cannot write the export: {e}"))?;
            count += 1;
        }
    }
    out.flush()
        .map_err(|e| anyhow::anyhow!("cannot write the export: {e}"))?;
    let _ = writeln!(
        std::io::stderr(),
        "exported {} identifiers (change sequence {sequence})",
        grouped(count)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(65_747), "65,747");
        assert_eq!(grouped(1_000_000), "1,000,000");
    }

    #[test]
    fn a_broken_stream_is_told_from_a_refusal() {
        let reset =
            tonic::Status::unknown("h2 protocol error: error reading a body from connection");
        assert!(
            broken(&reset).starts_with("the connection to the node broke"),
            "{}",
            broken(&reset)
        );
        let failed = tonic::Status::internal("the batch failed inside the node");
        assert!(broken(&failed).starts_with("the node ended the import with an error"));
        assert!(is_usage(tonic::Code::PermissionDenied));
        assert!(!is_usage(tonic::Code::Unknown));
    }
}
