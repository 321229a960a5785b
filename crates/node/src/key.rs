//! The node's signing key: the private half signs certified answers (CT),
//! the public half is published in the node's own HS_SITE server record and
//! in GET_SITE_INFO, where clients and parent nodes take it from.
//!
//! Made at first start (RSA 2048, what CNRI's servers generate) and kept as
//! PKCS#8 PEM in `<data_dir>/server-key.pem`, readable by the owner only;
//! `[site] key_file` names another file instead (a key shared by the
//! servers of a site, or a new key when rotating).

use idnode_handle::ServerKey;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The key file in the data directory.
pub const KEY_FILE: &str = "server-key.pem";

/// The key at `configured`, or the data directory's, made on first use.
/// Errors say which file and why.
pub fn load_or_create(data_dir: &Path, configured: Option<&Path>) -> anyhow::Result<ServerKey> {
    if let Some(path) = configured {
        return load(path);
    }
    let path = data_dir.join(KEY_FILE);
    if path.exists() {
        return load(&path);
    }
    let key = ServerKey::generate_rsa(idnode_handle::keys::DEFAULT_RSA_BITS)
        .map_err(|e| anyhow::anyhow!("cannot generate the node's signing key: {e}"))?;
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| anyhow::anyhow!("cannot encode the node's signing key: {e}"))?;
    write_private(&path, pem.as_bytes())?;
    tracing::info!(path = %path.display(), "generated the node's signing key (RSA 2048)");
    Ok(key)
}

fn load(path: &Path) -> anyhow::Result<ServerKey> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the signing key {}: {e}", path.display()))?;
    ServerKey::from_pkcs8_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a PKCS#8 RSA or DSA private key: {e}",
            path.display()
        )
    })
}

/// Writes `bytes` to a new file only the owner may read, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp: PathBuf = path.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| anyhow::anyhow!("cannot write the signing key {}: {e}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn made_once_private_and_loaded_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path(), None).unwrap();
        let path = dir.path().join(KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = load_or_create(dir.path(), None).unwrap();
        assert_eq!(again.public_key().encode(), first.public_key().encode());
        // A configured file wins; a bad one is an error naming it.
        let other = dir.path().join("other.pem");
        std::fs::write(&other, "not a key").unwrap();
        let err = load_or_create(dir.path(), Some(&other)).unwrap_err();
        assert!(err.to_string().contains("other.pem"), "{err}");
        let missing = load_or_create(dir.path(), Some(&dir.path().join("none.pem"))).unwrap_err();
        assert!(missing.to_string().contains("none.pem"), "{missing}");
    }
}
