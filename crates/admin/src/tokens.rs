//! Scoped credentials: what a token may do, how it is kept in the store's
//! meta key space, and the names of its permissions (docs/credentials.md).
//!
//! A token is kept under `token/<id>` as a small versioned binary record
//! holding the SHA-256 of its secret, never the secret. The secret handed
//! out is `<id>.<64 hex digits>`, so that a call finds its token with one
//! point lookup and compares hashes in constant time. How many identifiers
//! a token created is kept apart, under `token_count/<id>` (eight bytes,
//! big-endian), so that counting never races with a revocation.

use idnode_core::Prefix;
use idnode_store::{Space, Store, StoreError};

/// The HS_ADMIN permission bits, in CNRI's order, by their names.
pub const PERMISSIONS: [(&str, u16); 12] = [
    ("add_handle", 0x0001),
    ("delete_handle", 0x0002),
    ("add_derived_prefix", 0x0004),
    ("delete_derived_prefix", 0x0008),
    ("modify_value", 0x0010),
    ("remove_value", 0x0020),
    ("add_value", 0x0040),
    ("modify_admin", 0x0080),
    ("remove_admin", 0x0100),
    ("add_admin", 0x0200),
    ("read_value", 0x0400),
    ("list_handles", 0x0800),
];

/// Short names accepted for the permissions (and `all`, every HS_ADMIN
/// bit; `operator` is the operator scope).
const ALIASES: [(&str, u16); 17] = [
    ("add_identifier", 0x0001),
    ("create", 0x0001),
    ("delete_identifier", 0x0002),
    ("delete", 0x0002),
    ("add_prefix", 0x0004),
    ("create_prefix", 0x0004),
    ("delete_prefix", 0x0008),
    ("modify_values", 0x0010),
    ("modify", 0x0010),
    ("remove_values", 0x0020),
    ("remove", 0x0020),
    ("add_values", 0x0040),
    ("read", 0x0400),
    ("read_values", 0x0400),
    ("list", 0x0800),
    ("list_identifiers", 0x0800),
    ("all", ALL_BITS),
];

/// Every HS_ADMIN permission bit.
pub const ALL_BITS: u16 = 0x0fff;

/// The name of the operator scope.
pub const OPERATOR: &str = "operator";
/// The name of the scope that may only follow the change log (mirrors).
pub const REPLICATE: &str = "replicate";

pub const ADD_HANDLE: u16 = 0x0001;
pub const DELETE_HANDLE: u16 = 0x0002;
pub const ADD_DERIVED_PREFIX: u16 = 0x0004;
pub const DELETE_DERIVED_PREFIX: u16 = 0x0008;
pub const MODIFY_VALUE: u16 = 0x0010;
pub const REMOVE_VALUE: u16 = 0x0020;
pub const ADD_VALUE: u16 = 0x0040;
pub const MODIFY_ADMIN: u16 = 0x0080;
pub const REMOVE_ADMIN: u16 = 0x0100;
pub const ADD_ADMIN: u16 = 0x0200;
pub const READ_VALUE: u16 = 0x0400;
pub const LIST_HANDLES: u16 = 0x0800;

/// Most prefixes one token may name.
pub const MAX_PREFIXES: usize = 64;
/// Most bytes of a token's name.
pub const MAX_NAME_BYTES: usize = 256;
/// The id of the node's admin token (the operator token of
/// `<data_dir>/admin.token`).
pub const ADMIN_ID: &str = "admin";

/// What a token may do: operator, or HS_ADMIN bits on some prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scope {
    pub bits: u16,
    pub operator: bool,
    /// May follow the change log (a mirror's credential): the whole
    /// store, read only, and nothing else.
    pub replicate: bool,
}

/// Parses permission names (`add_value`, `read`, `list`, `operator`,
/// `all`...; case and `-` versus `_` do not matter). Each item may itself
/// be a comma-separated list.
pub fn parse_permissions<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scope, String> {
    let mut scope = Scope::default();
    for item in names {
        for name in item.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.to_ascii_lowercase().replace('-', "_");
            if name == OPERATOR {
                scope.operator = true;
                continue;
            }
            if name == REPLICATE {
                scope.replicate = true;
                continue;
            }
            let bit = PERMISSIONS
                .iter()
                .chain(ALIASES.iter())
                .find(|(n, _)| *n == name)
                .map(|(_, bit)| *bit);
            match bit {
                Some(bit) => scope.bits |= bit,
                None => {
                    let known: Vec<&str> = PERMISSIONS.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "unknown permission `{name}`; known: {}, operator, replicate (short: \
                         add_value, read, list, all...)",
                        known.join(", ")
                    ));
                }
            }
        }
    }
    Ok(scope)
}

/// The name of one permission bit.
pub fn permission_name(bit: u16) -> &'static str {
    PERMISSIONS
        .iter()
        .find(|(_, b)| *b == bit)
        .map_or("unknown", |(n, _)| n)
}

/// The canonical names of a scope, in bit order (`operator` first).
pub fn scope_names(scope: Scope) -> Vec<String> {
    let mut names = Vec::new();
    if scope.operator {
        names.push(OPERATOR.to_owned());
    }
    if scope.replicate {
        names.push(REPLICATE.to_owned());
    }
    for (name, bit) in PERMISSIONS {
        if scope.bits & bit != 0 {
            names.push(name.to_owned());
        }
    }
    names
}

/// One token as stored (without its id, which is the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
    pub name: String,
    pub scope: Scope,
    pub prefixes: Vec<String>,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds after which it is refused; `None`: never.
    pub expires: Option<u64>,
    /// Most identifiers it may create; `None`: no limit.
    pub max_identifiers: Option<u64>,
    pub revoked: bool,
}

const VERSION: u8 = 1;
const FLAG_OPERATOR: u8 = 0x01;
const FLAG_REVOKED: u8 = 0x02;
const FLAG_EXPIRES: u8 = 0x04;
const FLAG_MAX: u8 = 0x08;
const FLAG_REPLICATE: u8 = 0x10;
/// Longest prefix text kept (longer ones cannot parse anyway).
const MAX_PREFIX_BYTES: usize = 1024;

impl TokenRecord {
    /// The stored form: version 1, flags, hash, bits, created, then the
    /// optional expiry and quota, the name and the prefixes (lengths as
    /// big-endian u16).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.name.len() + 16 * self.prefixes.len());
        out.push(VERSION);
        let mut flags = 0;
        if self.scope.operator {
            flags |= FLAG_OPERATOR;
        }
        if self.revoked {
            flags |= FLAG_REVOKED;
        }
        if self.expires.is_some() {
            flags |= FLAG_EXPIRES;
        }
        if self.max_identifiers.is_some() {
            flags |= FLAG_MAX;
        }
        if self.scope.replicate {
            flags |= FLAG_REPLICATE;
        }
        out.push(flags);
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.scope.bits.to_be_bytes());
        out.extend_from_slice(&self.created.to_be_bytes());
        if let Some(t) = self.expires {
            out.extend_from_slice(&t.to_be_bytes());
        }
        if let Some(n) = self.max_identifiers {
            out.extend_from_slice(&n.to_be_bytes());
        }
        put_text(&mut out, &self.name, MAX_NAME_BYTES);
        let count = self.prefixes.len().min(MAX_PREFIXES);
        out.extend_from_slice(&(count as u16).to_be_bytes());
        for p in self.prefixes.iter().take(count) {
            put_text(&mut out, p, MAX_PREFIX_BYTES);
        }
        out
    }

    /// Decodes the stored form; every length is checked against what is
    /// left and against the limits, so a corrupt entry fails cleanly.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(format!("unknown token record version {version}"));
        }
        let flags = r.u8()?;
        let hash: [u8; 32] = r
            .take(32)?
            .try_into()
            .map_err(|_| "short hash".to_owned())?;
        let bits = u16::from_be_bytes(r.array()?);
        let created = u64::from_be_bytes(r.array()?);
        let expires = match flags & FLAG_EXPIRES {
            0 => None,
            _ => Some(u64::from_be_bytes(r.array()?)),
        };
        let max_identifiers = match flags & FLAG_MAX {
            0 => None,
            _ => Some(u64::from_be_bytes(r.array()?)),
        };
        let name = r.text(MAX_NAME_BYTES)?;
        let count = usize::from(u16::from_be_bytes(r.array()?));
        if count > MAX_PREFIXES {
            return Err(format!("{count} prefixes, more than {MAX_PREFIXES}"));
        }
        let mut prefixes = Vec::with_capacity(count);
        for _ in 0..count {
            prefixes.push(r.text(MAX_PREFIX_BYTES)?);
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes after the record", r.0.len()));
        }
        Ok(Self {
            hash,
            name,
            scope: Scope {
                bits: bits & ALL_BITS,
                operator: flags & FLAG_OPERATOR != 0,
                replicate: flags & FLAG_REPLICATE != 0,
            },
            prefixes,
            created,
            expires,
            max_identifiers,
            revoked: flags & FLAG_REVOKED != 0,
        })
    }

    /// The prefixes, parsed (a stored one that no longer parses is
    /// dropped: it covers nothing).
    pub fn parsed_prefixes(&self) -> Vec<Prefix> {
        self.prefixes
            .iter()
            .filter_map(|p| Prefix::parse(p).ok())
            .collect()
    }
}

fn put_text(out: &mut Vec<u8>, text: &str, max: usize) {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_be_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "truncated: {n} bytes needed, {} left",
                self.0.len()
            ));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        self.take(N)?.try_into().map_err(|_| "truncated".to_owned())
    }

    fn text(&mut self, max: usize) -> Result<String, String> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        if len > max {
            return Err(format!("a text of {len} bytes, more than {max}"));
        }
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| "a text is not UTF-8".to_owned())
    }
}

/// The meta key of token `id`.
pub fn token_key(id: &str) -> Vec<u8> {
    format!("token/{id}").into_bytes()
}

/// The meta key of the count of identifiers token `id` created.
pub fn count_key(id: &str) -> Vec<u8> {
    format!("token_count/{id}").into_bytes()
}

/// Whether `id` has the form of a token id (1 to 32 lowercase hex digits,
/// or `admin`).
pub fn valid_id(id: &str) -> bool {
    id == ADMIN_ID
        || (!id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Token `id`, if stored.
pub fn load(store: &dyn Store, id: &str) -> Result<Option<TokenRecord>, StoreError> {
    store
        .get(Space::Meta, &token_key(id))?
        .map(|bytes| {
            TokenRecord::decode(&bytes).map_err(|e| StoreError::Corrupt(format!("token {id}: {e}")))
        })
        .transpose()
}

/// Every stored token, in id order.
pub fn list(store: &dyn Store) -> Result<Vec<(String, TokenRecord)>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan(Space::Meta, b"token/", after.as_deref(), 500)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (key, bytes) in &page {
            let id = String::from_utf8_lossy(&key[b"token/".len()..]).into_owned();
            let record = TokenRecord::decode(bytes)
                .map_err(|e| StoreError::Corrupt(format!("token {id}: {e}")))?;
            out.push((id, record));
        }
        if page.len() < 500 {
            break;
        }
    }
    Ok(out)
}

/// How many identifiers token `id` created.
pub fn created_count(store: &dyn Store, id: &str) -> Result<u64, StoreError> {
    Ok(store
        .get(Space::Meta, &count_key(id))?
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Adds `n` to the count of identifiers token `id` created (one
/// read-modify-write transaction; transactions are serialized).
pub fn add_created(store: &dyn Store, id: &str, n: u64) -> Result<u64, StoreError> {
    if n == 0 {
        return created_count(store, id);
    }
    let key = count_key(id);
    let mut txn = store.begin()?;
    let now = txn
        .get(Space::Meta, &key)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map_or(0, u64::from_be_bytes)
        .saturating_add(n);
    txn.put(
        Space::Meta,
        &key,
        bytes::Bytes::copy_from_slice(&now.to_be_bytes()),
    );
    txn.commit()?;
    Ok(now)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn sample() -> TokenRecord {
        TokenRecord {
            hash: [7; 32],
            name: "acme plant 1".into(),
            scope: Scope {
                bits: ADD_HANDLE | READ_VALUE,
                operator: false,
                replicate: false,
            },
            prefixes: vec!["88.100.1".into(), "88.200".into()],
            created: 1_700_000_000,
            expires: Some(1_800_000_000),
            max_identifiers: Some(10),
            revoked: false,
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let t = sample();
        let bytes = t.encode();
        assert_eq!(TokenRecord::decode(&bytes).unwrap(), t);
        let plain = TokenRecord {
            expires: None,
            max_identifiers: None,
            revoked: true,
            ..t
        };
        assert_eq!(TokenRecord::decode(&plain.encode()).unwrap(), plain);
        for cut in 0..bytes.len() {
            assert!(TokenRecord::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(TokenRecord::decode(&long).is_err());
        let mut other = bytes;
        other[0] = 9;
        assert!(TokenRecord::decode(&other).is_err());
    }

    #[test]
    fn parses_names_and_aliases() {
        let s = parse_permissions(["add_handle,add-value", "READ", "list"]).unwrap();
        assert_eq!(s.bits, ADD_HANDLE | ADD_VALUE | READ_VALUE | LIST_HANDLES);
        assert!(!s.operator);
        assert!(parse_permissions(["operator"]).unwrap().operator);
        assert_eq!(parse_permissions(["all"]).unwrap().bits, ALL_BITS);
        let e = parse_permissions(["add_value,fly"]).unwrap_err();
        assert!(e.contains("`fly`"), "{e}");
        assert_eq!(
            scope_names(s),
            ["add_handle", "add_value", "read_value", "list_handles"]
        );
        for (name, bit) in PERMISSIONS {
            assert_eq!(permission_name(bit), name);
        }
    }

    #[test]
    fn ids() {
        assert!(valid_id("0a1b2c3d") && valid_id("admin"));
        assert!(!valid_id("") && !valid_id("../x") && !valid_id("ABC"));
    }
}
