//! The admin token: made once per node, kept as a hash, checked on every
//! mutating call.
//!
//! A new node writes a random token to `<data_dir>/admin.token` (mode
//! 0600, readable only by its owner) and keeps the token's SHA-256 in the
//! store's meta key space. The hash, not the file, is what counts: a
//! deleted file does not make a second token appear.

use crate::error::Error;
use bytes::Bytes;
use idnode_store::{Space, Store};
use sha2::{Digest, Sha256};
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Name of the token file inside the data directory.
pub const TOKEN_FILE: &str = "admin.token";
/// Key of the token's SHA-256 in [`Space::Meta`].
pub const TOKEN_HASH_KEY: &[u8] = b"admin_token_sha256";

/// Who is calling, as far as the admin token tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Sent the admin token: may write and read every value.
    Admin,
    /// Sent no token: may read, and sees only publicly readable values.
    Anonymous,
}

/// Checks callers against the SHA-256 of the node's admin token.
pub struct Auth {
    hash: [u8; 32],
    token_file: Option<PathBuf>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

fn sha256(token: &str) -> [u8; 32] {
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
    /// The node's admin auth: loads the token hash from `store`, or on a
    /// new node makes a token, writes it to `<data_dir>/admin.token` (mode
    /// 0600) and keeps its hash in the store.
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
            return Ok(Self {
                hash,
                token_file: Some(path),
            });
        }
        let token = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let token = text.trim();
                if token.is_empty() {
                    return Err(Error::EmptyTokenFile(path));
                }
                tracing::info!(path = %path.display(), "adopting the existing admin token file");
                warn_if_readable_by_others(&path);
                token.to_owned()
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let token = new_token();
                write_token_file(data_dir, &path, &token)?;
                tracing::info!(path = %path.display(), "wrote a new admin token");
                token
            }
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        let hash = sha256(&token);
        let mut txn = store.begin()?;
        txn.put(Space::Meta, TOKEN_HASH_KEY, Bytes::copy_from_slice(&hash));
        txn.commit()?;
        Ok(Self {
            hash,
            token_file: Some(path),
        })
    }

    /// Auth for a known token, kept nowhere (tests, embedded use).
    pub fn from_token(token: &str) -> Self {
        Self {
            hash: sha256(token),
            token_file: None,
        }
    }

    /// Where the token was written, when it came from a data directory.
    pub fn token_file(&self) -> Option<&Path> {
        self.token_file.as_deref()
    }

    /// Whether `token` is the admin token (compared in constant time).
    pub fn accepts(&self, token: &str) -> bool {
        sha256(token).ct_eq(&self.hash).into()
    }

    /// Who sent `metadata`: no `authorization` means [`Caller::Anonymous`];
    /// a malformed or wrong one is UNAUTHENTICATED, so that a caller who
    /// meant to be admin learns it is not.
    pub fn caller(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
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
            Ok(Caller::Admin)
        } else {
            Err(Status::unauthenticated(
                "the admin token is not valid for this node",
            ))
        }
    }

    /// Refuses a mutating call that does not carry the admin token.
    pub fn require_admin(&self, metadata: &MetadataMap) -> Result<(), Status> {
        match self.caller(metadata)? {
            Caller::Admin => Ok(()),
            Caller::Anonymous => Err(Status::unauthenticated(
                "this call changes the node and needs `authorization: Bearer <token>` metadata \
                 (the token is in admin.token in the node's data directory)",
            )),
        }
    }
}

/// 32 random bytes from the thread's CSPRNG, in hex.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

fn write_token_file(data_dir: &Path, path: &Path, token: &str) -> Result<(), Error> {
    std::fs::create_dir_all(data_dir).map_err(io_error("create", data_dir))?;
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

        // Restart: same token.
        let again = Auth::load_or_create(dir.path(), &store).unwrap();
        assert!(again.accepts(&token));
        // File deleted: the hash stays, no second token appears.
        std::fs::remove_file(&path).unwrap();
        let after = Auth::load_or_create(dir.path(), &store).unwrap();
        assert!(after.accepts(&token));
        assert!(!path.exists());
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
        let auth = Auth::from_token("secret");
        assert_eq!(auth.caller(&MetadataMap::new()).unwrap(), Caller::Anonymous);
        assert_eq!(
            auth.caller(&with_auth("Bearer secret")).unwrap(),
            Caller::Admin
        );
        assert_eq!(
            auth.caller(&with_auth("bearer  secret ")).unwrap(),
            Caller::Admin
        );
        for bad in ["secret", "Basic secret", "Bearer ", "Bearer wrong"] {
            let e = auth.caller(&with_auth(bad)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        let e = auth.require_admin(&MetadataMap::new()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("Bearer"));
    }
}
