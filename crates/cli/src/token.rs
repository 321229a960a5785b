//! `idnode token`: scoped credentials, through the gRPC Tokens service
//! (operator only; docs/credentials.md).

use crate::args::AdminArgs;
use crate::manage::{admin_token, status};
use crate::usage;
use clap::Subcommand;
use idnode_admin::proto;
use idnode_admin::tokens::parse_permissions;
use idnode_core::Prefix;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token limited to some prefixes and permissions; prints its
    /// secret, which cannot be shown again.
    ///
    /// Example: idnode token create --prefix 88.100.1 --perm add_handle,add_value,read_value,list_handles --expires 30d --max-identifiers 100000 --name "ACME plant 1"
    Create {
        /// A prefix it covers, with the prefixes below it (repeatable).
        #[arg(long = "prefix", value_name = "PREFIX")]
        prefixes: Vec<String>,
        /// Permissions, comma-separated (repeatable): add_handle,
        /// delete_handle, add_derived_prefix, delete_derived_prefix,
        /// modify_value, remove_value, add_value, read_value, modify_admin,
        /// remove_admin, add_admin, list_handles; short: read, list, create,
        /// delete, all; or operator (everything, no --prefix); or replicate
        /// (only following the change log: a mirror's token, no --prefix).
        #[arg(long = "perm", value_name = "NAMES", required = true)]
        permissions: Vec<String>,
        /// Lifetime: 3600, 90s, 45m, 12h, 30d or 2w (default: never
        /// expires).
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// Most identifiers it may create.
        #[arg(long, value_name = "N")]
        max_identifiers: Option<u64>,
        /// What it is for (shown by `idnode token list`).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List the node's tokens (without secrets).
    List,
    /// Revoke a token: its next call is refused.
    Revoke {
        /// The token's id, as `idnode token list` shows it.
        id: String,
    },
    /// Replace the node's own operator token (admin.token): the node makes
    /// a new one, writes it over its admin.token file and refuses the old
    /// one from now on. Give the new one to whoever used the old.
    RotateOperator {
        /// Print the new token too (it is in the node's admin.token).
        #[arg(long)]
        show: bool,
    },
}

/// Seconds in `text`: a number with an optional unit (s, m, h, d, w).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("--expires `{text}`: expected a number of s, m, h, d or w (30d)");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(unit) {
        Some(0) => Err(format!(
            "--expires `{text}`: a token must live longer than 0 s"
        )),
        Some(s) => Ok(s),
        None => Err(bad()),
    }
}

fn expiry(expires: u64) -> String {
    match expires {
        0 => "never".to_owned(),
        t => format!("unix time {t}"),
    }
}

pub async fn token(args: &AdminArgs, command: TokenCommand) -> anyhow::Result<ExitCode> {
    // Check what can be checked here first: bad input exits 2 before any
    // connection.
    let action = match command {
        TokenCommand::Create {
            prefixes,
            permissions,
            expires,
            max_identifiers,
            name,
        } => {
            let scope = match parse_permissions(permissions.iter().map(String::as_str)) {
                Ok(scope) => scope,
                Err(e) => usage!("--perm: {e}"),
            };
            if scope.bits == 0 && !scope.operator && !scope.replicate {
                usage!("--perm: give at least one permission");
            }
            if scope.replicate && (scope.bits != 0 || scope.operator || !prefixes.is_empty()) {
                usage!(
                    "--perm replicate makes a token that only follows the change log (a \
                     mirror's): give it alone, with no --prefix"
                );
            }
            if !scope.operator && !scope.replicate && prefixes.is_empty() {
                usage!("give at least one --prefix the token covers (or --perm operator)");
            }
            if scope.operator && !prefixes.is_empty() {
                usage!("an operator token covers every prefix: give no --prefix");
            }
            for p in &prefixes {
                if let Err(e) = Prefix::parse(p) {
                    usage!("--prefix `{p}`: {e}");
                }
            }
            let expires_in_seconds = match expires.as_deref().map(parse_duration) {
                None => 0,
                Some(Ok(s)) => s,
                Some(Err(e)) => usage!("{e}"),
            };
            Action::Create(proto::CreateTokenRequest {
                name,
                prefixes,
                permissions,
                expires_in_seconds,
                max_identifiers,
            })
        }
        TokenCommand::List => Action::List,
        TokenCommand::Revoke { id } if id.trim().is_empty() => usage!("give the token's id"),
        TokenCommand::Revoke { id } => Action::Revoke(id),
        TokenCommand::RotateOperator { show } => Action::RotateOperator { show },
    };
    let token = admin_token(args, Some("managing tokens needs the operator token"))?;
    let tls = crate::grpc::client_tls(args)?;
    let mut client = idnode_admin::connect_tokens_with(&args.grpc, token, &tls)
        .await
        .map_err(|e| crate::grpc::connect_error(args, e))?;
    match action {
        Action::Create(request) => create(&mut client, request).await?,
        Action::List => {
            let listed = client
                .list_tokens(proto::ListTokensRequest {})
                .await
                .map_err(status)?
                .into_inner();
            println!("ID\tSTATE\tPREFIXES\tPERMISSIONS\tCREATED/QUOTA\tEXPIRES\tNAME");
            for t in listed.tokens {
                let state = if t.revoked { "revoked" } else { "active" };
                let prefixes = match t.prefixes.is_empty() {
                    true => "*".to_owned(),
                    false => crate::shown::text(&t.prefixes.join(",")).into_owned(),
                };
                let quota = match t.max_identifiers {
                    Some(max) => format!("{}/{max}", t.identifiers_created),
                    None => format!("{}/-", t.identifiers_created),
                };
                println!(
                    "{}\t{state}\t{prefixes}\t{}\t{quota}\t{}\t{}",
                    crate::shown::text(&t.id),
                    t.permissions.join(","),
                    expiry(t.expires),
                    crate::shown::text(&t.name)
                );
            }
        }
        Action::Revoke(id) => {
            let t = client
                .revoke_token(proto::RevokeTokenRequest { id })
                .await
                .map_err(status)?
                .into_inner();
            println!("revoked token {}{}", t.id, named(&t.name));
        }
        Action::RotateOperator { show } => {
            let made = client
                .rotate_operator_token(proto::RotateOperatorTokenRequest {})
                .await
                .map_err(status)?
                .into_inner();
            match made.file.as_str() {
                "" => println!("the operator token was replaced; the old one is refused"),
                file => println!(
                    "the operator token was replaced and written to {}; the old one is refused",
                    crate::shown::text(file)
                ),
            }
            if show || made.file.is_empty() {
                println!("{}", made.token);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `idnode token` was asked to do, checked.
enum Action {
    Create(proto::CreateTokenRequest),
    List,
    Revoke(String),
    RotateOperator { show: bool },
}

type Client = proto::tokens_client::TokensClient<idnode_admin::AdminChannel>;

async fn create(client: &mut Client, request: proto::CreateTokenRequest) -> anyhow::Result<()> {
    let made = client
        .create_token(request)
        .await
        .map_err(status)?
        .into_inner();
    let Some(info) = made.token else {
        anyhow::bail!("the node answered without the token");
    };
    println!("created token {}{}", info.id, named(&info.name));
    if !info.prefixes.is_empty() {
        println!("  prefixes:    {}", info.prefixes.join(", "));
    }
    println!("  permissions: {}", info.permissions.join(", "));
    println!("  expires:     {}", expiry(info.expires));
    if let Some(max) = info.max_identifiers {
        println!("  quota:       {max} identifiers");
    }
    println!();
    println!("secret (shown only now; the node keeps only its hash):");
    println!("  {}", made.secret);
    println!();
    println!("use it as the token of the idnode commands, for example:");
    println!("  export IDNODE_TOKEN={}", made.secret);
    println!("or send `authorization: Bearer <secret>` metadata to the gRPC API.");
    Ok(())
}

fn named(name: &str) -> String {
    match name.is_empty() {
        true => String::new(),
        false => format!(" ({})", crate::shown::text(name)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3600").unwrap(), 3600);
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("45m").unwrap(), 2700);
        assert_eq!(parse_duration("12h").unwrap(), 43_200);
        assert_eq!(parse_duration("30d").unwrap(), 2_592_000);
        assert_eq!(parse_duration("2w").unwrap(), 1_209_600);
        for bad in ["", "d", "30x", "-1d", "0", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
