//! `idnode audit`: the audit trail, through the gRPC Audit service
//! (docs/credentials.md, "Audit trail").

use crate::args::AdminArgs;
use crate::manage::{admin_token, status};
use crate::token::parse_duration;
use crate::{shown, usage};
use clap::Args;
use idnode_admin::proto;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The identifier whose history to show (88.100.1/ABC-123).
    pub identifier: Option<String>,
    /// Only changes made by this credential: a token id as `idnode token
    /// list` shows it (`admin` is the operator token), or a Handle
    /// administrator as `handle:300:0.NA/88.100.1`.
    #[arg(long, value_name = "ID")]
    pub by: Option<String>,
    /// Only changes of the last DURATION: 90s, 45m, 24h, 7d, 2w.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// At most this many changes, the newest.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// One JSON object a line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The actor a `--by` names: a bare token id is `token:<id>`.
fn actor(by: &str) -> String {
    if by.starts_with("token:") || by.starts_with("handle:") {
        by.to_owned()
    } else {
        format!("token:{by}")
    }
}

fn when(time: u64) -> String {
    match time {
        0 => "-".to_owned(),
        t => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
        )
        .to_string(),
    }
}

pub async fn audit(args: &AdminArgs, a: AuditArgs) -> anyhow::Result<ExitCode> {
    let identifier = a.identifier.unwrap_or_default();
    let by = a.by.as_deref().map(str::trim).unwrap_or_default();
    if identifier.is_empty() && by.is_empty() {
        usage!("name an identifier, or a credential with --by (or both)");
    }
    if !identifier.is_empty()
        && let Err(e) = idnode_core::Identifier::parse(&identifier)
    {
        usage!("`{identifier}`: {e}");
    }
    if a.limit == 0 || a.limit > 10_000 {
        usage!("--limit: from 1 to 10000");
    }
    let since = match a.since.as_deref().map(parse_duration) {
        None => 0,
        Some(Ok(secs)) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(secs),
        Some(Err(e)) => usage!("{}", e.replace("--expires", "--since")),
    };
    let request = proto::HistoryRequest {
        identifier,
        actor: if by.is_empty() {
            String::new()
        } else {
            actor(by)
        },
        since,
        limit: a.limit,
    };
    let token = admin_token(args, Some("the audit trail needs a token"))?;
    let tls = crate::grpc::client_tls(args)?;
    let mut client = idnode_admin::connect_audit_with(&args.grpc, token, &tls)
        .await
        .map_err(|e| crate::grpc::connect_error(args, e))?;
    let entries = client
        .history(request)
        .await
        .map_err(status)?
        .into_inner()
        .entries;
    if a.json {
        for e in &entries {
            let line = serde_json::json!({
                "sequence": e.sequence,
                "time": e.time,
                "action": e.action,
                "kind": e.kind,
                "subject": e.subject,
                "actor": e.actor,
                "surface": e.surface,
                "address": e.address,
            });
            println!("{}", shown::json(&line));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        eprintln!("no changes recorded");
        return Ok(ExitCode::SUCCESS);
    }
    println!("SEQUENCE\tTIME\tACTION\tSUBJECT\tBY\tSURFACE\tADDRESS");
    for e in entries {
        let dash = |s: String| match s.is_empty() {
            true => "-".to_owned(),
            false => shown::text(&s).into_owned(),
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            e.sequence,
            when(e.time),
            shown::text(&e.action),
            shown::text(&e.subject),
            dash(e.actor),
            dash(e.surface),
            dash(e.address)
        );
    }
    Ok(ExitCode::SUCCESS)
}
