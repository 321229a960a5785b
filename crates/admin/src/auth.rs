//! Who is calling: the node's admin token and the scoped tokens
//! (docs/credentials.md).
//!
//! A new node writes a random token to `<data_dir>/admin.token` (mode
//! 0600, readable only by its owner) and keeps the token's SHA-256 in the
//! store's meta key space. The hash, not the file, is what counts: a
//! deleted file does not make a second token appear. That token has the
//! operator scope (it may do everything, including making the scoped
//! tokens of [`crate::tokens`]); it is listed as token `admin`.
//!
//! Every call looks its token up again (one point read of the meta key
//! space), so a revocation or an expiry takes effect on the next call.

use crate::error::Error;
use crate::tokens::{
    self, ADMIN_ID, ALL_BITS, READ_VALUE, Scope, TokenRecord, permission_name, valid_id,
};
use bytes::Bytes;
use idnode_core::{Identifier, Prefix};
use idnode_store::{Space, Store};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Name of the token file inside the data directory.
pub const TOKEN_FILE: &str = "admin.token";
/// Key of the admin token's SHA-256 in [`Space::Meta`].
pub const TOKEN_HASH_KEY: &[u8] = b"admin_token_sha256";

/// Who is calling, as far as the `authorization` metadata tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Sent a valid token: may do what its [`Grant`] allows.
    Token(Grant),
    /// Sent no token: may read, and sees only publicly readable values.
    Anonymous,
}

impl Caller {
    /// The grant of a caller that sent a token; UNAUTHENTICATED for an
    /// anonymous one (`what` names the call: "creating identifiers").
    pub fn grant(&self, what: &str) -> Result<&Grant, Status> {
        match self {
            Caller::Token(grant) => Ok(grant),
            Caller::Anonymous => Err(Status::unauthenticated(format!(
                "{what} needs a token: send `authorization: Bearer <token>` metadata (the \
                 operator token is in admin.token in the node's data directory; `idnode token \
                 create` makes scoped ones)"
            ))),
        }
    }

    /// Whether the caller holds the operator scope.
    pub fn is_operator(&self) -> bool {
        matches!(self, Caller::Token(g) if g.is_operator())
    }

    /// Whether the caller may read the private values of `identifier`
    /// (read_value on its prefix).
    pub fn can_read(&self, identifier: &str) -> bool {
        match self {
            Caller::Token(g) => {
                g.is_operator()
                    || scope_prefixes(identifier)
                        .is_some_and(|ps| ps.iter().any(|p| g.bits_on(p) & READ_VALUE != 0))
            }
            Caller::Anonymous => false,
        }
    }
}

/// The audit origin of a gRPC call: the token's id (`token:admin` for the
/// operator token, `anonymous` without one), `grpc`, the peer's address.
pub fn origin_of<T>(caller: &Caller, request: &tonic::Request<T>) -> idnode_registry::Origin {
    let actor = match caller {
        Caller::Token(grant) => format!("token:{}", grant.id()),
        Caller::Anonymous => "anonymous".to_owned(),
    };
    let address = request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    idnode_registry::Origin::now(actor, "grpc", address)
}

/// What a valid token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    id: String,
    scope: Scope,
    prefixes: Vec<Prefix>,
    max_identifiers: Option<u64>,
}

/// The prefixes whose permissions apply to `identifier`: its own prefix,
/// and for a prefix record `0.NA/<p>` also `p`. `None` when it does not
/// parse (the registry then names the problem).
pub(crate) fn scope_prefixes(identifier: &str) -> Option<Vec<Prefix>> {
    let id = Identifier::parse(identifier).ok()?;
    let mut out = vec![id.prefix_parsed()];
    if let Some(p) = id.as_prefix_record() {
        out.insert(0, p);
    }
    Some(out)
}

impl Grant {
    /// The operator grant of the node's admin token.
    fn admin() -> Self {
        Self {
            id: ADMIN_ID.to_owned(),
            scope: Scope {
                bits: ALL_BITS,
                operator: true,
                replicate: false,
            },
            prefixes: Vec::new(),
            max_identifiers: None,
        }
    }

    /// The token's id (`admin` for the node's admin token).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the token has the operator scope.
    pub fn is_operator(&self) -> bool {
        self.scope.operator
    }

    /// Most identifiers the token may create (`None`: no limit; the
    /// operator has none).
    pub fn max_identifiers(&self) -> Option<u64> {
        if self.is_operator() {
            None
        } else {
            self.max_identifiers
        }
    }

    /// The permission bits the token holds on `prefix`: its bits when one
    /// of its prefixes is `prefix` or above it, every bit for the
    /// operator, none otherwise.
    pub fn bits_on(&self, prefix: &Prefix) -> u16 {
        if self.is_operator() {
            ALL_BITS
        } else if self.prefixes.iter().any(|p| p.contains(prefix)) {
            self.scope.bits
        } else {
            0
        }
    }

    /// The bits the token holds on the prefix(es) of `identifier` (none
    /// when it does not parse).
    pub fn bits_on_identifier(&self, identifier: &str) -> u16 {
        if self.is_operator() {
            return ALL_BITS;
        }
        scope_prefixes(identifier)
            .map_or(0, |ps| ps.iter().fold(0, |bits, p| bits | self.bits_on(p)))
    }

    /// PERMISSION_DENIED unless the token holds every bit of `need` on
    /// `prefix`; the message names the token, the first missing permission
    /// and the prefix.
    pub fn check(&self, prefix: &Prefix, need: u16) -> Result<(), Status> {
        let missing = need & !self.bits_on(prefix);
        if missing == 0 {
            return Ok(());
        }
        Err(self.denied(missing, &format!("on {prefix}")))
    }

    /// [`Grant::check`] for the prefix(es) `identifier` lives under (a
    /// prefix record `0.NA/<p>` is under `p`). An identifier that does not
    /// parse is INVALID_ARGUMENT for a scoped token.
    pub fn check_identifier(&self, identifier: &str, need: u16) -> Result<(), Status> {
        if self.is_operator() {
            return Ok(());
        }
        let Some(prefixes) = scope_prefixes(identifier) else {
            return Err(invalid_identifier(identifier));
        };
        let held = prefixes.iter().fold(0, |bits, p| bits | self.bits_on(p));
        let missing = need & !held;
        if missing == 0 {
            return Ok(());
        }
        Err(self.denied(missing, &format!("on {}", prefixes[0])))
    }

    /// PERMISSION_DENIED unless the token holds `need` on a prefix strictly
    /// above `prefix` (creating or deleting a derived prefix).
    pub fn check_derived(&self, prefix: &Prefix, need: u16) -> Result<(), Status> {
        if self.is_operator() {
            return Ok(());
        }
        let above = self
            .prefixes
            .iter()
            .any(|p| p.contains(prefix) && p.key() != prefix.key());
        if above && need & !self.scope.bits == 0 {
            return Ok(());
        }
        let missing = match above {
            true => need & !self.scope.bits,
            false => need,
        };
        Err(self.denied(missing, &format!("on a prefix above {prefix}")))
    }

    /// PERMISSION_DENIED unless the token may follow the change log: an
    /// operator token, or one with the `replicate` scope (a mirror's).
    pub fn require_replicate(&self, what: &str) -> Result<(), Status> {
        if self.is_operator() || self.scope.replicate {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "token {} lacks replicate ({what} needs a token made with --perm replicate, or the \
             operator scope)",
            self.id
        )))
    }

    /// PERMISSION_DENIED unless the token is the operator's (`what` names
    /// the call: "delegating prefixes").
    pub fn require_operator(&self, what: &str) -> Result<(), Status> {
        if self.is_operator() {
            return Ok(());
        }
        Err(Status::permission_denied(format!(
            "token {} lacks operator ({what} needs the operator scope)",
            self.id
        )))
    }

    fn denied(&self, missing: u16, on: &str) -> Status {
        let first = 1u16 << missing.trailing_zeros();
        let covers = if self.prefixes.is_empty() {
            "no prefix".to_owned()
        } else {
            self.prefixes
                .iter()
                .map(Prefix::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Status::permission_denied(format!(
            "token {} lacks {} {on} (it holds {} on {covers})",
            self.id,
            permission_name(first),
            match tokens::scope_names(self.scope) {
                names if names.is_empty() => "nothing".to_owned(),
                names => names.join(","),
            }
        ))
    }
}

fn invalid_identifier(identifier: &str) -> Status {
    match Identifier::parse(identifier) {
        Err(e) => Status::invalid_argument(format!("identifier: {e}")),
        Ok(_) => Status::invalid_argument("identifier: not valid"),
    }
}

/// The clock tokens expire by, in unix seconds.
type Clock = Box<dyn Fn() -> u64 + Send + Sync>;

fn system_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks callers: the node's admin token (its SHA-256 kept here) and the
/// scoped tokens stored in the meta key space.
pub struct Auth {
    /// SHA-256 of the operator token; replaced by `rotate_admin`.
    hash: std::sync::RwLock<[u8; 32]>,
    token_file: Option<PathBuf>,
    clock: Clock,
    /// One lock per token with a quota: its creates run one at a time, so
    /// that together they cannot pass the quota.
    quota_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The writes a scoped token may make a second (`[grpc]
    /// token_writes_per_second`); `None`: unlimited.
    write_rate: Option<WriteRate>,
}

/// A token bucket per scoped token: `per_second` writes a second, up to a
/// second's worth saved up.
struct WriteRate {
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, std::time::Instant)>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

pub(crate) fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

impl Auth {
    fn new(hash: [u8; 32], token_file: Option<PathBuf>) -> Self {
        Self {
            hash: std::sync::RwLock::new(hash),
            token_file,
            clock: Box::new(system_seconds),
            quota_locks: Mutex::new(HashMap::new()),
            write_rate: None,
        }
    }

    /// Limits each scoped token to `per_second` writes a second (a write:
    /// one identifier created, deleted or changed; a batch item), with a
    /// second's worth of burst; 0 lifts the limit. Operator tokens are
    /// never limited.
    pub fn limit_token_writes(&mut self, per_second: u32) {
        self.write_rate = (per_second > 0).then(|| WriteRate {
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        });
    }

    /// Takes one write from `grant`'s rate, or RESOURCE_EXHAUSTED naming
    /// the limit and when to retry.
    pub fn take_write(&self, grant: &Grant) -> Result<(), Status> {
        let Some(rate) = &self.write_rate else {
            return Ok(());
        };
        if grant.is_operator() {
            return Ok(());
        }
        let now = std::time::Instant::now();
        let mut buckets = rate.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (level, last) = buckets
            .entry(grant.id().to_owned())
            .or_insert((rate.per_second, now));
        *level = (*level + now.duration_since(*last).as_secs_f64() * rate.per_second)
            .min(rate.per_second);
        *last = now;
        if *level >= 1.0 {
            *level -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - *level) / rate.per_second;
        Err(Status::resource_exhausted(format!(
            "token {} may write {} times a second on this node ([grpc] \
             token_writes_per_second); retry in {wait:.2} s",
            grant.id(),
            rate.per_second
        )))
    }

    /// The node's auth: loads the admin token hash from `store`, or on a
    /// new node makes a token, writes it to `<data_dir>/admin.token` (mode
    /// 0600) and keeps its hash in the store. The admin token is recorded
    /// as the operator token `admin` (a node made before scoped tokens
    /// gets that record on its next start).
    ///
    /// When the store has no hash but the file exists (a wiped store), the
    /// file's token is adopted. When the store has a hash but the file is
    /// gone, the hash is kept and a warning logged.
    pub fn load_or_create(data_dir: &Path, store: &dyn Store) -> Result<Self, Error> {
        let path = data_dir.join(TOKEN_FILE);
        if let Some(stored) = store.get(Space::Meta, TOKEN_HASH_KEY)? {
            let hash: [u8; 32] = stored
                .as_ref()
                .try_into()
                .map_err(|_| Error::CorruptTokenHash(stored.len()))?;
            check_file_against(&path, &hash);
            let auth = Self::new(hash, Some(path));
            auth.record_admin(store, None)?;
            return Ok(auth);
        }
        let token =
            read_or_make_token_file(data_dir, &path, "adopting the existing admin token file")?;
        let hash = sha256(&token);
        let auth = Self::new(hash, Some(path));
        auth.record_admin(store, Some((TOKEN_HASH_KEY, Bytes::copy_from_slice(&hash))))?;
        Ok(auth)
    }

    /// The auth of a mirror, whose store is a copy of its primary's and
    /// takes no writes from it: the operator token is the one in
    /// `<data_dir>/admin.token` (made there when missing), kept nowhere in
    /// the store; the scoped tokens are the primary's, as its copy holds
    /// them.
    pub fn for_mirror(data_dir: &Path) -> Result<Self, Error> {
        let path = data_dir.join(TOKEN_FILE);
        let token = read_or_make_token_file(data_dir, &path, "using the admin token file")?;
        Ok(Self::new(sha256(&token), Some(path)))
    }

    /// Writes the `admin` operator record when it is missing (and
    /// `also`, in the same transaction).
    fn record_admin(&self, store: &dyn Store, also: Option<(&[u8], Bytes)>) -> Result<(), Error> {
        let key = tokens::token_key(ADMIN_ID);
        let mut txn = store.begin()?;
        let mut changed = false;
        if let Some((k, v)) = also {
            txn.put(Space::Meta, k, v);
            changed = true;
        }
        let current = txn.get(Space::Meta, &key)?;
        let stale = match current.as_deref().map(TokenRecord::decode) {
            Some(Ok(record)) => record.hash != self.admin_hash(),
            _ => true,
        };
        if stale {
            let record = self.admin_record(self.admin_hash());
            txn.put(Space::Meta, &key, Bytes::from(record.encode()));
            changed = true;
        }
        if changed {
            txn.commit()?;
        }
        Ok(())
    }

    /// The operator token's record (`admin`) for the token hashed `hash`.
    fn admin_record(&self, hash: [u8; 32]) -> TokenRecord {
        TokenRecord {
            hash,
            name: format!("the node's admin token ({TOKEN_FILE} in its data directory)"),
            scope: Scope {
                bits: ALL_BITS,
                operator: true,
                replicate: false,
            },
            prefixes: Vec::new(),
            created: self.now(),
            expires: None,
            max_identifiers: None,
            revoked: false,
        }
    }

    fn admin_hash(&self) -> [u8; 32] {
        *self.hash.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the operator token: a new one is made, its hash kept in
    /// the store (the old token is refused from now on, also after a
    /// restart), and written to the token file in place of the old one
    /// (a new file renamed over it, mode 0600). Returns the new token and
    /// the file, if the auth has one.
    pub fn rotate_admin(&self, store: &dyn Store) -> Result<(String, Option<PathBuf>), Error> {
        let token = new_token();
        let hash = sha256(&token);
        let mut txn = store.begin()?;
        txn.put(Space::Meta, TOKEN_HASH_KEY, Bytes::copy_from_slice(&hash));
        txn.put(
            Space::Meta,
            &tokens::token_key(ADMIN_ID),
            Bytes::from(self.admin_record(hash).encode()),
        );
        txn.commit()?;
        *self.hash.write().unwrap_or_else(|e| e.into_inner()) = hash;
        if let Some(path) = &self.token_file {
            replace_token_file(path, &token)?;
        }
        Ok((token, self.token_file.clone()))
    }

    /// Auth for a known admin token, kept nowhere (tests, embedded use).
    pub fn from_token(token: &str) -> Self {
        Self::new(sha256(token), None)
    }

    /// The same auth with another clock (unix seconds) for expiry: tests.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Now, in unix seconds, by this auth's clock.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Where the token was written, when it came from a data directory.
    pub fn token_file(&self) -> Option<&Path> {
        self.token_file.as_deref()
    }

    /// Whether `token` is the admin token (compared in constant time).
    pub fn accepts(&self, token: &str) -> bool {
        sha256(token).ct_eq(&self.admin_hash()).into()
    }

    /// Who sent `metadata`: no `authorization` means [`Caller::Anonymous`];
    /// a malformed, unknown, revoked or expired token is UNAUTHENTICATED,
    /// so that a caller who meant to be someone learns it is not. Scoped
    /// tokens are looked up in `store` on every call.
    pub fn caller(&self, metadata: &MetadataMap, store: &dyn Store) -> Result<Caller, Status> {
        let Some(value) = metadata.get("authorization") else {
            return Ok(Caller::Anonymous);
        };
        let malformed = || {
            Status::unauthenticated("malformed authorization metadata: expected `Bearer <token>`")
        };
        let text = value.to_str().map_err(|_| malformed())?;
        let (scheme, token) = text.split_once(' ').ok_or_else(malformed)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(malformed());
        }
        if self.accepts(token) {
            return Ok(Caller::Token(Grant::admin()));
        }
        let unknown = || Status::unauthenticated("the token is not valid for this node");
        let Some((id, _)) = token.split_once('.') else {
            return Err(unknown());
        };
        if !valid_id(id) || id == ADMIN_ID {
            return Err(unknown());
        }
        let record = self.load(store, id)?.ok_or_else(unknown)?;
        if !bool::from(sha256(token).ct_eq(&record.hash)) {
            return Err(unknown());
        }
        self.grant(id, record).map(Caller::Token)
    }

    /// Looks `grant`'s token up again: UNAUTHENTICATED once it was revoked
    /// or expired (a long BatchCreate checks between chunks).
    pub fn recheck(&self, grant: &Grant, store: &dyn Store) -> Result<(), Status> {
        if grant.id == ADMIN_ID {
            return Ok(());
        }
        let record = self.load(store, &grant.id)?.ok_or_else(|| {
            Status::unauthenticated(format!("token {} is no longer valid", grant.id))
        })?;
        self.grant(&grant.id, record).map(|_| ())
    }

    fn load(&self, store: &dyn Store, id: &str) -> Result<Option<TokenRecord>, Status> {
        tokens::load(store, id).map_err(|e| {
            tracing::error!(error = %e, token = id, "cannot read a token");
            Status::internal("cannot read the token; the node's log has the details")
        })
    }

    fn grant(&self, id: &str, record: TokenRecord) -> Result<Grant, Status> {
        if record.revoked {
            return Err(Status::unauthenticated(format!("token {id} was revoked")));
        }
        if let Some(expires) = record.expires
            && self.now() >= expires
        {
            return Err(Status::unauthenticated(format!(
                "token {id} expired (at unix time {expires})"
            )));
        }
        let prefixes = record.parsed_prefixes();
        Ok(Grant {
            id: id.to_owned(),
            scope: record.scope,
            prefixes,
            max_identifiers: record.max_identifiers,
        })
    }

    /// The lock that serializes the creates of token `id` (see
    /// [`crate::quota`]).
    pub(crate) fn quota_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.quota_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_owned()).or_default().clone()
    }
}

/// 32 random bytes from the thread's CSPRNG, in hex.
pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// The token in the file at `path` (logged with `adopting`), or a new one
/// written there (in `data_dir`, made if missing) when there is no file.
fn read_or_make_token_file(data_dir: &Path, path: &Path, adopting: &str) -> Result<String, Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() {
                return Err(Error::EmptyTokenFile(path.to_owned()));
            }
            tracing::info!(path = %path.display(), "{adopting}");
            warn_if_readable_by_others(path);
            Ok(token.to_owned())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let token = new_token();
            std::fs::create_dir_all(data_dir).map_err(io_error("create", data_dir))?;
            create_token_file(path, &token)?;
            tracing::info!(path = %path.display(), "wrote a new admin token");
            Ok(token)
        }
        Err(e) => Err(io_error("read", path)(e)),
    }
}

/// Writes `token` to the new file `path` (mode 0600, synced); fails if
/// the file exists.
fn create_token_file(path: &Path, token: &str) -> Result<(), Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error("create", path))?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error("write", path))
}

/// Writes `token` to a new file beside `path` and renames it over `path`,
/// so that the file holds the old token or the new one, never a part.
fn replace_token_file(path: &Path, token: &str) -> Result<(), Error> {
    let fresh = path.with_extension("token.new");
    let _ = std::fs::remove_file(&fresh);
    create_token_file(&fresh, token)?;
    std::fs::rename(&fresh, path).map_err(io_error("replace", path))
}

/// Logs what is wrong with the token file of a node that has a token.
fn check_file_against(path: &Path, hash: &[u8; 32]) {
    match std::fs::read_to_string(path) {
        Ok(text) if bool::from(sha256(text.trim()).ct_eq(hash)) => warn_if_readable_by_others(path),
        Ok(_) => tracing::warn!(
            path = %path.display(),
            "the admin token file does not hold this node's admin token; the token in it will \
             be refused"
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => tracing::warn!(
            path = %path.display(),
            "the admin token file is gone; the token this node made stays valid (its hash is \
             kept in the store) and no new one is made"
        ),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the admin token file")
        }
    }
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the admin token file is readable by others than its owner; chmod 600 it"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use idnode_store::MemoryStore;
    use tonic::metadata::MetadataValue;

    fn with_auth(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", MetadataValue::try_from(value).unwrap());
        m
    }

    #[test]
    fn new_node_writes_a_private_token_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::new();
        let auth = Auth::load_or_create(dir.path(), &store).unwrap();
        let path = dir.path().join(TOKEN_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = std::fs::read_to_string(&path).unwrap().trim().to_owned();
        assert_eq!(token.len(), 64);
        assert!(auth.accepts(&token));
        assert!(!auth.accepts("nope"));
        let stored = store.get(Space::Meta, TOKEN_HASH_KEY).unwrap().unwrap();
        assert_eq!(stored.as_ref(), sha256(&token));
        let admin = tokens::load(&store, ADMIN_ID).unwrap().unwrap();
        assert!(admin.scope.operator && admin.hash == sha256(&token));
        let sequence = store.last_sequence();

        // Restart: same token, nothing written.
        let again = Auth::load_or_create(dir.path(), &store).unwrap();
        assert!(again.accepts(&token));
        assert_eq!(store.last_sequence(), sequence);
        // File deleted: the hash stays, no second token appears.
        std::fs::remove_file(&path).unwrap();
        let after = Auth::load_or_create(dir.path(), &store).unwrap();
        assert!(after.accepts(&token));
        assert!(!path.exists());
    }

    #[test]
    fn a_node_from_before_scoped_tokens_gets_its_admin_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::new();
        let mut txn = store.begin().unwrap();
        txn.put(
            Space::Meta,
            TOKEN_HASH_KEY,
            Bytes::copy_from_slice(&sha256("old")),
        );
        txn.commit().unwrap();
        let auth = Auth::load_or_create(dir.path(), &store).unwrap();
        assert!(auth.accepts("old"));
        let caller = auth.caller(&with_auth("Bearer old"), &store).unwrap();
        assert!(caller.is_operator());
        let admin = tokens::load(&store, ADMIN_ID).unwrap().unwrap();
        assert_eq!(admin.hash, sha256("old"));
    }

    #[test]
    fn wiped_store_adopts_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = Auth::load_or_create(dir.path(), &MemoryStore::new()).unwrap();
        let token = std::fs::read_to_string(dir.path().join(TOKEN_FILE)).unwrap();
        let second = Auth::load_or_create(dir.path(), &MemoryStore::new()).unwrap();
        assert!(first.accepts(token.trim()) && second.accepts(token.trim()));
    }

    #[test]
    fn parses_bearer_metadata() {
        let store = MemoryStore::new();
        let auth = Auth::from_token("secret");
        assert_eq!(
            auth.caller(&MetadataMap::new(), &store).unwrap(),
            Caller::Anonymous
        );
        assert!(
            auth.caller(&with_auth("Bearer secret"), &store)
                .unwrap()
                .is_operator()
        );
        assert!(
            auth.caller(&with_auth("bearer  secret "), &store)
                .unwrap()
                .is_operator()
        );
        for bad in [
            "secret",
            "Basic secret",
            "Bearer ",
            "Bearer wrong",
            "Bearer 0a1b.x",
            "Bearer admin.x",
        ] {
            let e = auth.caller(&with_auth(bad), &store).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        let e = Caller::Anonymous.grant("this call").unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("Bearer"));
    }

    #[test]
    fn grants_cover_sub_prefixes_and_prefix_records() {
        let grant = Grant {
            id: "ab12".into(),
            scope: Scope {
                bits: tokens::ADD_HANDLE | READ_VALUE,
                operator: false,
                replicate: false,
            },
            prefixes: vec![Prefix::parse("88.100.1").unwrap()],
            max_identifiers: None,
        };
        let p = |t: &str| Prefix::parse(t).unwrap();
        assert!(grant.check(&p("88.100.1"), tokens::ADD_HANDLE).is_ok());
        assert!(grant.check(&p("88.100.1.7"), tokens::ADD_HANDLE).is_ok());
        let e = grant
            .check(&p("88.100.10"), tokens::ADD_HANDLE)
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(
            e.message()
                .starts_with("token ab12 lacks add_handle on 88.100.10"),
            "{}",
            e.message()
        );
        let e = grant
            .check(&p("88.100.1"), tokens::ADD_VALUE | tokens::ADD_HANDLE)
            .unwrap_err();
        assert!(
            e.message()
                .starts_with("token ab12 lacks add_value on 88.100.1")
        );
        assert!(
            grant
                .check_identifier("0.NA/88.100.1.5", tokens::ADD_HANDLE)
                .is_ok()
        );
        assert!(
            grant
                .check_identifier("0.NA/88.100.2", tokens::ADD_HANDLE)
                .is_err()
        );
        let caller = Caller::Token(grant.clone());
        assert!(caller.can_read("88.100.1/x") && !caller.can_read("88.100.2/x"));
        let e = grant
            .check_derived(&p("88.100.1.5"), tokens::ADD_DERIVED_PREFIX)
            .unwrap_err();
        assert!(
            e.message()
                .contains("lacks add_derived_prefix on a prefix above 88.100.1.5")
        );
        assert!(grant.require_operator("compacting").is_err());
    }
}
