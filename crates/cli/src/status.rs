//! `idnode status`: what a running node is and how it is doing, from the
//! gRPC `Node.Status` call (operator token): its role, listeners, store,
//! caches and the rates of its UDP listeners over about the last minute.

use crate::args::AdminArgs;
use crate::log::say;
use crate::manage::{admin_token, status};
use crate::{shown, usage};
use clap::Args;
use idnode_admin::proto;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// At most a few names, then how many more.
fn some(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| shown::text(n).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

fn role(s: &proto::StatusResponse) -> String {
    let mut parts = Vec::new();
    match s.homed_prefixes.len() {
        0 => parts.push("homes no prefix".to_owned()),
        n => parts.push(format!("homes {n} ({})", some(&s.homed_prefixes))),
    }
    if !s.delegated_prefixes.is_empty() {
        parts.push(format!(
            "delegates {} ({})",
            s.delegated_prefixes.len(),
            some(&s.delegated_prefixes)
        ));
    }
    match s.recursion_roots.len() {
        0 => parts.push("not recursive".to_owned()),
        _ => parts.push(format!("recursive from {}", some(&s.recursion_roots))),
    }
    if s.site_servers > 1 {
        parts.push(format!("one of a site of {} servers", s.site_servers));
    }
    parts.join("; ")
}

/// A mirror's line: whom it follows, how far behind, since when.
fn mirror_line(m: &proto::MirrorStatus) -> String {
    let mut line = format!(
        "of {}, {}; applied {} of the primary's {} ({} behind)",
        shown::text(&m.primary),
        if m.connected {
            "following"
        } else {
            "not connected"
        },
        m.applied_sequence,
        m.primary_sequence,
        m.lag_changes
    );
    match m.seconds_since_contact {
        Some(s) => line.push_str(&format!("; last heard {s:.1} s ago")),
        None => line.push_str("; never heard from the primary"),
    }
    if m.snapshots_loaded > 0 {
        line.push_str(&format!("; {} copies loaded", m.snapshots_loaded));
    }
    if !m.last_error.is_empty() {
        line.push_str(&format!("; last error: {}", shown::text(&m.last_error)));
    }
    line
}

fn cache_line(c: &proto::CacheStatus) -> String {
    if !c.enabled {
        return "off".to_owned();
    }
    let fill = match c.budget_bytes {
        0 => 0.0,
        b => 100.0 * c.used_bytes as f64 / b as f64,
    };
    let mut line = format!(
        "{} entries, {} of {} ({fill:.1} %)",
        c.entries,
        mib(c.used_bytes),
        mib(c.budget_bytes)
    );
    if c.hits + c.misses > 0 {
        line.push_str(&format!(
            "; {} hits, {} misses since the start",
            c.hits, c.misses
        ));
    }
    line
}

fn cache_json(c: &proto::CacheStatus) -> serde_json::Value {
    serde_json::json!({
        "enabled": c.enabled,
        "budget_bytes": c.budget_bytes,
        "used_bytes": c.used_bytes,
        "entries": c.entries,
        "hits": c.hits,
        "misses": c.misses,
    })
}

fn to_json(s: &proto::StatusResponse) -> serde_json::Value {
    let none = proto::CacheStatus::default();
    serde_json::json!({
        "version": s.version,
        "uptime_secs": s.uptime_secs,
        "homed_prefixes": s.homed_prefixes,
        "delegated_prefixes": s.delegated_prefixes,
        "recursion_roots": s.recursion_roots,
        "site_servers": s.site_servers,
        "listeners": s.listeners.iter().map(|l| serde_json::json!({
            "name": l.name, "address": l.address,
        })).collect::<Vec<_>>(),
        "change_sequence": s.change_sequence,
        "store_bytes": s.store_bytes,
        "mirror": s.mirror.as_ref().map(|m| serde_json::json!({
            "primary": m.primary,
            "connected": m.connected,
            "applied_sequence": m.applied_sequence,
            "primary_sequence": m.primary_sequence,
            "lag_changes": m.lag_changes,
            "seconds_since_contact": m.seconds_since_contact,
            "snapshots_loaded": m.snapshots_loaded,
            "last_error": m.last_error,
        })),
        "response_cache": cache_json(s.response_cache.as_ref().unwrap_or(&none)),
        "surfaces": s.surfaces.iter().map(|u| serde_json::json!({
            "surface": u.surface,
            "window_secs": u.window_secs,
            "requests": u.requests,
            "requests_per_sec": u.requests_per_sec,
            "responses": u.responses.iter().map(|c| serde_json::json!({
                "code": c.code, "count": c.count, "per_sec": c.per_sec,
            })).collect::<Vec<_>>(),
            "rate_limited": u.rate_limited,
            "rate_limited_per_sec": u.rate_limited_per_sec,
        })).collect::<Vec<_>>(),
    })
}

pub async fn run(args: &AdminArgs, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let Some(token) = admin_token(args, Some("the node's status needs the operator token"))? else {
        usage!("the node's status needs the operator token");
    };
    let channel = crate::grpc::channel(args).await?;
    let mut request = tonic::Request::new(proto::StatusRequest {});
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|_| crate::UsageError("the token has invalid characters".into()))?;
    request.metadata_mut().insert("authorization", bearer);
    let s = proto::node_client::NodeClient::new(channel)
        .status(request)
        .await
        .map_err(status)?
        .into_inner();
    if a.json {
        say!("{}", shown::json(&to_json(&s)));
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "idnode {}, up {}",
        shown::text(&s.version),
        duration(s.uptime_secs)
    );
    say!("role        {}", role(&s));
    for (i, l) in s.listeners.iter().enumerate() {
        let head = if i == 0 { "listeners" } else { "" };
        say!(
            "{head:<11} {:<12}{}",
            shown::text(&l.name),
            shown::text(&l.address)
        );
    }
    say!(
        "store       change sequence {}, {} on disk",
        s.change_sequence,
        mib(s.store_bytes)
    );
    if let Some(m) = &s.mirror {
        say!("mirror      {}", mirror_line(m));
    }
    let none = proto::CacheStatus::default();
    say!(
        "cache       {}",
        cache_line(s.response_cache.as_ref().unwrap_or(&none))
    );
    for u in &s.surfaces {
        let answers = u
            .responses
            .iter()
            .filter(|c| c.count > 0)
            .map(|c| format!("{} {:.1}/s", shown::text(&c.code), c.per_sec))
            .collect::<Vec<_>>()
            .join(", ");
        say!(
            "{:<11} {:.1} requests/s over the last {:.0} s ({} since the start); answers by code: {}; rate limited {:.1}/s",
            shown::text(&u.surface),
            u.requests_per_sec,
            u.window_secs,
            u.requests,
            if answers.is_empty() { "none" } else { &answers },
            u.rate_limited_per_sec
        );
    }
    Ok(ExitCode::SUCCESS)
}
