//! Command-line arguments.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "idnode",
    version,
    about = "Resolution node for industrial-internet identifiers (Handle protocol, gRPC management)",
    after_help = "Start a node with demo data: `idnode serve --demo`. Then: `idnode resolve 88.100.1/CNC-LATHE-202600000`."
)]
pub struct Cli {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How management commands reach a node.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// gRPC management endpoint of the node.
    #[arg(
        long,
        global = true,
        env = "IDNODE_GRPC",
        default_value = "http://127.0.0.1:50051"
    )]
    pub grpc: String,
    /// Token: the node's operator token or a scoped one from `idnode
    /// token create` (default: read from --token-file).
    #[arg(long, global = true, env = "IDNODE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the admin token, written by the node on first start.
    #[arg(
        long,
        global = true,
        env = "IDNODE_TOKEN_FILE",
        default_value = "./data/admin.token"
    )]
    pub token_file: PathBuf,
    /// With an https:// --grpc: a CA certificate (PEM) to check the node's
    /// certificate with, or the node's own self-signed `cert.pem`.
    #[arg(long, global = true, env = "IDNODE_GRPC_CA_FILE", value_name = "PEM")]
    pub grpc_ca_file: Option<PathBuf>,
    /// With an https:// --grpc: the SHA-256 fingerprint of the node's
    /// certificate, as `idnode serve` prints it (`grpc sha256`).
    #[arg(
        long,
        global = true,
        env = "IDNODE_GRPC_PIN",
        value_name = "SHA256",
        conflicts_with = "grpc_ca_file"
    )]
    pub grpc_pin: Option<String>,
    /// A client certificate chain (PEM), for a node that asks for one
    /// (`[grpc] client_ca`); with --grpc-key.
    #[arg(
        long,
        global = true,
        env = "IDNODE_GRPC_CERT",
        value_name = "PEM",
        requires = "grpc_key"
    )]
    pub grpc_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        env = "IDNODE_GRPC_KEY",
        value_name = "PEM",
        requires = "grpc_cert"
    )]
    pub grpc_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: Handle protocol on UDP, TCP and QUIC, DNS on UDP, TCP and
    /// QUIC, gRPC management API.
    Serve(ServeArgs),
    /// Resolve an identifier over the Handle protocol and print its values.
    Resolve(ResolveArgs),
    /// Manage prefixes (through the gRPC API).
    #[command(subcommand)]
    Prefix(PrefixCommand),
    /// Manage identifiers (through the gRPC API).
    #[command(subcommand)]
    Id(IdCommand),
    /// Register identifiers from a JSONL file (one identifier a line).
    Import(ImportArgs),
    /// Compact the node's store after a bulk load (through the gRPC API).
    ///
    /// Trims the change log by its retention ([storage] change_log_hours,
    /// change_log_min_entries), then merges the records into one sorted
    /// run, so that a lookup searches one file and replaced or deleted
    /// values leave the disk; the node keeps answering meanwhile. On a
    /// site of several servers, compacts the one that --grpc names.
    Compact,
    /// Back up the node's store while it serves (through the gRPC API;
    /// needs the operator token): a consistent RocksDB checkpoint written
    /// by the node into DIR on its own machine. Prints its size and change
    /// sequence. `idnode restore` makes a data directory of it.
    Backup(BackupArgs),
    /// Make a data directory from a backup: copies it into DATA_DIR/db
    /// (DATA_DIR must not hold a store yet). Runs on the machine of the
    /// backup, without a node.
    Restore(RestoreArgs),
    /// Repair a damaged store (a node refuses to start on one): RocksDB's
    /// repair keeps every entry of the files it can read whole and moves
    /// the others into DATA_DIR/db/lost/, then prints what the store holds.
    /// Runs without a node; stop the node and copy the data directory
    /// first. Restoring a backup (`idnode restore`) is the other way out.
    Repair(RepairArgs),
    /// Print every record under a prefix (every record without one) as the
    /// JSONL that `idnode import` reads, private values included (through
    /// the gRPC API; needs read_value on the prefix, the operator token
    /// without one).
    Export(ExportArgs),
    /// Manage scoped tokens: credentials limited to some prefixes and
    /// permissions (through the gRPC API; needs the operator token).
    #[command(subcommand)]
    Token(crate::token::TokenCommand),
    /// Show who changed what: an identifier's history, or what one
    /// credential changed (through the gRPC API).
    ///
    /// Examples: idnode audit 88.100.1/ABC-123;
    /// idnode audit --token 3fa2c1d0 --since 24h
    Audit(crate::audit::AuditArgs),
    /// Show a running node: its role (prefixes homed and delegated,
    /// recursion), listeners, store (change sequence, size on disk), cache
    /// fill, and the rates of its UDP listeners over about the last minute
    /// (through the gRPC API; needs the operator token).
    Status(crate::status::StatusArgs),
    /// Print the daily report of one UTC day: registrations, resolution
    /// requests, successful answers, resolution latency, peak queries per
    /// second, registration latency; read from the minute files in the
    /// data directory (DATA_DIR/report/), with or without the node running.
    ///
    /// Example: idnode report --day 2026-12-06 --data-dir /var/lib/idnode
    Report(crate::report::ReportArgs),
    /// Load generator: drive a Handle server (UDP/TCP, closed or open loop),
    /// load a synthetic data set, sweep rates into an SVG, run the echo server.
    Bench(idnode_bench::BenchArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file (see deploy/idnode.toml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (RocksDB, admin token).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Handle protocol address, UDP and TCP (port 0 picks a free port).
    #[arg(long)]
    pub handle_listen: Option<SocketAddr>,
    /// gRPC management address.
    #[arg(long)]
    pub grpc_listen: Option<SocketAddr>,
    /// HTTP address of the REST API and the browser proxy (port 0 picks a
    /// free port; default 127.0.0.1:8000).
    #[arg(long)]
    pub http_listen: Option<SocketAddr>,
    /// Do not serve HTTP.
    #[arg(long)]
    pub no_http: bool,
    /// Serve HTTPS on --http-listen (`[http] tls`), with the node's
    /// certificate unless `[http] cert` and `key` name others.
    #[arg(long, conflicts_with = "no_http")]
    pub http_tls: bool,
    /// UDP worker sockets (0 = one per core).
    #[arg(long)]
    pub udp_workers: Option<usize>,
    /// Run each UDP worker (Handle and DNS) only on the CPUs whose
    /// datagrams it receives (`pin_udp_workers` in the config; see
    /// deploy/idnode.toml for when it pays).
    #[arg(long)]
    pub udp_pin: bool,
    /// Handle over QUIC address (port 0 picks a free port).
    #[arg(long)]
    pub quic_listen: Option<SocketAddr>,
    /// Do not serve Handle over QUIC.
    #[arg(long)]
    pub no_quic: bool,
    /// DNS address, UDP and TCP (port 0 picks a free port).
    #[arg(long)]
    pub dns_listen: Option<SocketAddr>,
    /// DNS over QUIC address (port 0 picks a free port).
    #[arg(long)]
    pub dns_quic_listen: Option<SocketAddr>,
    /// Do not serve the DNS (UDP, TCP or QUIC).
    #[arg(long)]
    pub no_dns: bool,
    /// Load the demo data (seeds/) into a new, empty node (`demo` in the
    /// config). A node starts empty otherwise.
    #[arg(long)]
    pub demo: bool,
    /// Serve gRPC without TLS on a non-loopback --grpc-listen (`[grpc]
    /// insecure`): tokens then cross the network in clear. Without it the
    /// node refuses to start so.
    #[arg(long)]
    pub insecure_grpc: bool,
    /// Once every listener is bound, write their addresses (and the data
    /// directory, the admin token file, the TLS fingerprint) to this file as
    /// one JSON object; useful with port 0.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<std::path::PathBuf>,
    /// Resolve for clients (the recursive role): a server of the root node
    /// as `udp://IP:PORT,tcp://IP:PORT`; repeat for mirrors. Replaces the
    /// config's `[recursion] roots`.
    #[arg(long = "root", value_name = "URLS")]
    pub roots: Vec<String>,
    /// Be a mirror of the primary whose gRPC API is at ADDR (`host:port`,
    /// or `https://host:port` with --mirror-pin): follow its change log,
    /// serve reads, refuse writes naming it (`[mirror] of`).
    #[arg(long, value_name = "ADDR")]
    pub mirror_of: Option<String>,
    /// The file holding the token the primary accepts for following it
    /// (`[mirror] token_file`).
    #[arg(long, value_name = "PATH")]
    pub mirror_token_file: Option<PathBuf>,
    /// The primary's gRPC certificate fingerprint, for an https:// primary
    /// (`[mirror] pin`).
    #[arg(long, value_name = "SHA256")]
    pub mirror_pin: Option<String>,
}

impl ResolveArgs {
    /// `--server`, or the node's default port of the transport on loopback.
    pub fn server(&self) -> &str {
        match (&self.server, self.transport) {
            (Some(server), _) => server,
            (None, idnode_client::Transport::Quic) => "127.0.0.1:2642",
            (None, _) => "127.0.0.1:2641",
        }
    }
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The identifier, e.g. 88.100.1/CNC-LATHE-202600000.
    pub identifier: String,
    /// Handle server address (host:port) [default: 127.0.0.1:2641, with
    /// -t quic 127.0.0.1:2642].
    #[arg(long, short, env = "IDNODE_SERVER")]
    pub server: Option<String>,
    /// udp, tcp or quic (QUIC needs --pin, --ca-file or --insecure).
    #[arg(long, short, default_value = "udp")]
    pub transport: idnode_client::Transport,
    /// QUIC: the server certificate's SHA-256 fingerprint, as `idnode serve` prints it.
    #[arg(long)]
    pub pin: Option<String>,
    /// QUIC: a CA or server certificate (PEM) to trust.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// QUIC: accept any server certificate (testing only).
    #[arg(long)]
    pub insecure: bool,
    /// Only values of this type (repeatable; `HS_SITE.` names a family).
    #[arg(long = "type", short = 'T')]
    pub types: Vec<String>,
    /// Only the value at this index (repeatable).
    #[arg(long = "index", short = 'i')]
    pub indexes: Vec<u32>,
    /// Print JSON (the Handle REST API shape) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// Ask for a certified (signed) answer and check its signature with the
    /// public key the server publishes in its site information
    /// (GET_SITE_INFO); exit 1 when it does not verify.
    #[arg(long)]
    pub certified: bool,
}

#[derive(Debug, Subcommand)]
pub enum PrefixCommand {
    /// Home a prefix on the node (identifiers under it are stored here).
    #[command(visible_alias = "home")]
    Create { prefix: String },
    /// Delegate a prefix below one homed here to other servers: this node
    /// then refers questions under it there (303 PREFIX_REFERRAL).
    ///
    /// Example: idnode prefix delegate 88.100.1 --to udp://10.0.0.7:2641,tcp://10.0.0.7:2641
    Delegate {
        prefix: String,
        /// One server of the site, as its interfaces:
        /// `udp://IP:PORT,tcp://IP:PORT` (repeat for a site of several
        /// servers; each identifier then lives on the server its hash picks).
        #[arg(
            long = "to",
            value_name = "URLS",
            required_unless_present = "service",
            conflicts_with = "service"
        )]
        to: Vec<String>,
        /// A mirror of the site (`idnode serve --mirror-of`), as its one
        /// server's interfaces: another site of the delegation, with
        /// replicated data, that resolvers try when the --to site does not
        /// answer. Repeat for several mirrors.
        #[arg(long = "mirror", value_name = "URLS", conflicts_with = "service")]
        mirrors: Vec<String>,
        /// Delegate through a service handle instead (for example
        /// 88.100/SERVICE-1, a record holding the sites' HS_SITE values).
        #[arg(long, value_name = "HANDLE")]
        service: Option<String>,
        /// What picks the server in a site of several: prefix, suffix or
        /// whole (with --no-site-info; otherwise the site's own record says).
        #[arg(long, default_value = "prefix")]
        hash: String,
        /// Seconds resolvers may cache the referral.
        #[arg(long, default_value_t = 86_400)]
        ttl: u32,
        /// Do not ask the servers for their site record (GET_SITE_INFO);
        /// build it from --to alone. Such a delegation carries no public
        /// key, so certified resolution through it fails.
        #[arg(long)]
        no_site_info: bool,
    },
    /// Let a Handle-protocol client (an SDK) administer identifiers under
    /// a prefix: writes a secret key (HS_SECKEY) on an admin handle and an
    /// HS_ADMIN value on the prefix record naming it, with the given
    /// permissions. The SDK then authenticates as HANDLE at --index with
    /// that secret (docs/handle-admin.md).
    ///
    /// Example: idnode prefix admin 88.100.1 --handle 88.100.1/ADMIN --secret-file key.txt
    Admin {
        prefix: String,
        /// The admin handle that holds the key (created when missing; under
        /// a prefix homed here).
        #[arg(long)]
        handle: String,
        /// The index of the HS_SECKEY value on the admin handle.
        #[arg(long, default_value_t = 300)]
        index: u32,
        /// A file holding the secret (its bytes, a trailing newline cut).
        #[arg(long, value_name = "PATH")]
        secret_file: std::path::PathBuf,
        /// The HS_ADMIN permissions given (names as `idnode token create
        /// --perm` takes them).
        #[arg(
            long = "perm",
            default_value = "add_handle,delete_handle,add_value,remove_value,modify_value,read_value,list_handles"
        )]
        perms: Vec<String>,
    },
    /// Show a prefix.
    Get { prefix: String },
    /// List the prefixes the node knows.
    List,
    /// Delete a prefix (it must hold no identifiers).
    Delete { prefix: String },
    /// Manage a prefix's metadata template: the value types its
    /// identifiers must or may carry, and what their data must look like
    /// (docs/templates.md).
    #[command(subcommand)]
    Template(TemplateCommand),
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Give a prefix homed here a template (replacing its own, if any);
    /// the prefixes below it without one inherit it.
    ///
    /// Example: idnode prefix template set 88.100.1 --file template.json
    Set {
        prefix: String,
        /// The template in its JSON form (docs/templates.md); `-` reads
        /// standard input.
        #[arg(long, value_name = "PATH")]
        file: std::path::PathBuf,
    },
    /// Print the template that applies to a prefix (its own or the one it
    /// inherits) as JSON; where it comes from goes to standard error.
    Get { prefix: String },
    /// Remove a prefix's own template (it then inherits one from above).
    Delete { prefix: String },
}

#[derive(Debug, Subcommand)]
pub enum IdCommand {
    /// Register an identifier.
    Create {
        identifier: String,
        /// A value as INDEX:TYPE:DATA (repeatable), e.g. 1:URL:https://example.com
        #[arg(long = "value", short = 'v', required = true)]
        values: Vec<String>,
        /// Replace the identifier if it exists.
        #[arg(long)]
        overwrite: bool,
    },
    /// Show an identifier through the management API (all values with a token).
    Get {
        identifier: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete an identifier.
    Delete { identifier: String },
    /// List identifiers under a prefix.
    List {
        prefix: String,
        /// Most identifiers to print (0: all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Print QR codes of identifiers' proxy URLs (<base>/<identifier>),
    /// for labels: one identifier, or a batch (one file each) from a JSONL
    /// file or from every identifier under a prefix.
    ///
    /// Examples: idnode id qr 88.100.1/ABC-123 --base-url https://id.example.com --out label.svg;
    /// idnode id qr --prefix 88.100.1 --dir labels/ --png
    Qr(QrArgs),
}

#[derive(Debug, Args)]
pub struct QrArgs {
    /// The identifier, e.g. 88.100.1/ABC-123 (or --from, or --prefix).
    #[arg(required_unless_present_any = ["from", "prefix"], conflicts_with_all = ["from", "prefix", "dir"])]
    pub identifier: Option<String>,
    /// Where the node's HTTP proxy is reached (`[http] base_url`).
    #[arg(
        long,
        value_name = "URL",
        env = "IDNODE_BASE_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub base_url: String,
    /// Write the code to this file (default: standard output).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from", "prefix"])]
    pub out: Option<PathBuf>,
    /// PNG instead of SVG.
    #[arg(long)]
    pub png: bool,
    /// Smallest width and height of the image, in pixels (whole pixels per
    /// module, quiet zone included).
    #[arg(long, value_name = "N", default_value_t = idnode_http::qr::DEFAULT_SIZE)]
    pub size: u32,
    /// A JSONL file of identifiers (as `idnode import` reads it): one code
    /// each, into --dir.
    #[arg(long, value_name = "FILE", requires = "dir", conflicts_with = "prefix")]
    pub from: Option<PathBuf>,
    /// Every identifier under this prefix (listed through the gRPC API):
    /// one code each, into --dir.
    #[arg(long, requires = "dir")]
    pub prefix: Option<String>,
    /// The directory of a batch's files (created if missing), named after
    /// their identifiers: `88.100.1_ABC-123.svg`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// JSONL file: {"identifier": "...", "values": [{"index":1,"type":"URL","data":"..."}]}
    pub file: PathBuf,
    /// Identifiers read ahead of the stream, waiting to be sent (twice
    /// this many). The node commits what arrives in chunks of up to 4000.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Replace identifiers that exist with different values.
    #[arg(long)]
    pub overwrite: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Compact the node's store once the import is done (as `idnode
    /// compact`): lookups then search one sorted run. It rewrites all the
    /// stored records, so it takes longer the larger the store is.
    #[arg(long)]
    pub compact: bool,
    /// Skip the first N lines of the file: to resume an interrupted
    /// import, with the N it printed.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub skip: usize,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory to create on the node's machine (it must not exist; its
    /// parent must). A relative path is made absolute from the current
    /// directory.
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A directory written by `idnode backup`.
    pub backup: PathBuf,
    /// The data directory to prepare; it must not hold a store (db/) yet.
    #[arg(long)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    /// The data directory of the stopped node (its store is DATA_DIR/db).
    #[arg(long)]
    pub data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Only the records of this prefix and the prefixes below it.
    #[arg(long)]
    pub prefix: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use clap::Parser;

    fn resolve(args: &[&str]) -> ResolveArgs {
        let argv = ["idnode", "resolve"].iter().chain(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Resolve(r) => r,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn grpc_tls_flags_parse_and_conflict() {
        let cli = Cli::try_parse_from([
            "idnode",
            "--grpc",
            "https://10.0.0.1:50051",
            "--grpc-pin",
            "AB:CD",
            "prefix",
            "list",
        ])
        .unwrap();
        assert_eq!(cli.admin.grpc_pin.as_deref(), Some("AB:CD"));
        let both = [
            "idnode",
            "--grpc-pin",
            "x",
            "--grpc-ca-file",
            "ca.pem",
            "compact",
        ];
        assert!(Cli::try_parse_from(both).is_err());
        let half = ["idnode", "--grpc-cert", "c.pem", "compact"];
        assert!(Cli::try_parse_from(half).is_err());
        let serve = Cli::try_parse_from(["idnode", "serve", "--insecure-grpc"]).unwrap();
        assert!(matches!(serve.command, Command::Serve(s) if s.insecure_grpc));
    }

    fn qr(args: &[&str]) -> Result<QrArgs, clap::Error> {
        let argv = ["idnode", "id", "qr"].iter().chain(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Command::Id(IdCommand::Qr(q)) => q,
            other => panic!("parsed as {other:?}"),
        })
    }

    #[test]
    fn qr_takes_one_identifier_or_a_batch() {
        let one = qr(&["88.1/a", "--out", "a.svg"]).unwrap();
        assert_eq!(one.identifier.as_deref(), Some("88.1/a"));
        assert_eq!(one.size, idnode_http::qr::DEFAULT_SIZE);
        let batch = qr(&["--prefix", "88.1", "--dir", "labels", "--png"]).unwrap();
        assert!(batch.png && batch.identifier.is_none());
        assert!(qr(&["--from", "ids.jsonl", "--dir", "d"]).is_ok());
        for bad in [
            &[][..],
            &["--prefix", "88.1"],
            &["88.1/a", "--prefix", "88.1", "--dir", "d"],
            &["88.1/a", "--dir", "d"],
            &["--from", "f", "--prefix", "p", "--dir", "d"],
            &["--prefix", "p", "--dir", "d", "--out", "x"],
        ] {
            assert!(qr(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resolve_defaults_to_the_transports_port() {
        assert_eq!(resolve(&["88.1/a"]).server(), "127.0.0.1:2641");
        assert_eq!(resolve(&["-t", "tcp", "88.1/a"]).server(), "127.0.0.1:2641");
        assert_eq!(
            resolve(&["-t", "quic", "88.1/a"]).server(),
            "127.0.0.1:2642"
        );
        let given = resolve(&["-t", "quic", "--server", "10.0.0.1:9", "88.1/a"]);
        assert_eq!(given.server(), "10.0.0.1:9");
    }
}
