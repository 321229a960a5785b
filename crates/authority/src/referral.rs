//! Questions with no record here: where the identifier belongs (homed,
//! delegated, unknown) and the 303 referral to a delegated prefix's sites.
//!
//! As the global Handle system answers (and as CNRI's client expects): a
//! 303 refers only a prefix record (`0.NA/88.100.1`) that this node does not
//! hold, with an empty handle and the prefix-type values (HS_SITE.PREFIX,
//! HS_SERV.PREFIX, HS_NA_DELEGATE) of the nearest delegated prefix above
//! it; the client looks the prefix record up at those sites, then asks the
//! sites that record names. An ordinary identifier under a prefix that is
//! not homed here gets 301 SERVER_NOT_RESP (CNRI's client does not follow a
//! 303 there).

use crate::answer::{internal_error, reply_to};
use crate::service::{HandleService, Outcome};
use crate::upstream::MAX_RECURSION;
use idnode_core::PrefixInfo;
use idnode_core::wire::RecordView;
use idnode_handle::{
    ResponseContext, code, encode_error_response, encode_values_response, flags, opcode,
};
use idnode_store::{Space, StoreError};

/// Where a question this node has no record for belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Disposition {
    /// Its prefix is homed here: the identifier does not exist.
    Homed,
    /// Its prefix (or a prefix above it) is delegated elsewhere: refer to
    /// the sites on this prefix's record.
    Delegated(String),
    /// This node is not responsible for it.
    Unknown(String),
}

impl HandleService {
    /// The outcome once the record was looked for: a reply when it was
    /// found (`Ok(true)`), the answer by where the identifier belongs when
    /// it does not exist, an internal error when the store failed.
    pub(crate) fn or_not_here(
        &self,
        loaded: Result<bool, StoreError>,
        header: &idnode_handle::Header,
        ctx: &ResponseContext,
        key: &[u8],
        out: &mut Vec<u8>,
    ) -> Outcome {
        let outcome = match loaded {
            Ok(true) => Ok(reply_to(header)),
            // No record here: answer by where the identifier belongs.
            Ok(false) => self.not_here(header, ctx, key, out),
            Err(e) => Err(e),
        };
        outcome.unwrap_or_else(|e| internal_error(&e, header, ctx, out))
    }

    /// The answer for a question with no record here: 100 under a prefix
    /// homed here, 303 with the sites of a delegated prefix, 301 when this
    /// node is not responsible, or recursion when asked for and allowed.
    fn not_here(
        &self,
        header: &idnode_handle::Header,
        ctx: &ResponseContext,
        key: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Outcome, StoreError> {
        let reply = reply_to(header);
        let op = opcode::RESOLUTION;
        let disposition = self.disposition(key)?;
        if disposition != Disposition::Homed
            && self.upstream.is_some()
            && header.op_flags & flags::REC != 0
        {
            if header.recursion >= MAX_RECURSION {
                let msg = format!("recursion count {} is at the limit", header.recursion);
                encode_error_response(out, ctx, op, code::RECURSION_COUNT_TOO_HIGH, &msg);
                return Ok(reply);
            }
            out.clear();
            return Ok(Outcome::Recurse {
                keep_open: header.op_flags & flags::KC != 0,
            });
        }
        match disposition {
            // The answer (HANDLE_NOT_FOUND) is already in `out`.
            Disposition::Homed => {}
            Disposition::Delegated(prefix) if !is_prefix_record(key) => {
                let msg = format!(
                    "prefix {prefix} is delegated to another node: look up 0.NA/{prefix} for \
                     its sites"
                );
                encode_error_response(out, ctx, op, code::SERVER_NOT_RESP, &msg);
            }
            Disposition::Delegated(prefix) if header.op_flags & flags::DNR == 0 => {
                if !self.refer(ctx, &prefix, out)? {
                    let msg = format!(
                        "prefix {prefix} is delegated but its record has no HS_SITE.PREFIX value"
                    );
                    encode_error_response(out, ctx, op, code::SERVER_NOT_RESP, &msg);
                }
            }
            Disposition::Delegated(prefix) => {
                let msg = format!(
                    "prefix {prefix} is delegated to another node and the request forbids \
                     referrals (DNR)"
                );
                encode_error_response(out, ctx, op, code::SERVER_NOT_RESP, &msg);
            }
            Disposition::Unknown(prefix) => {
                let msg = format!("this node is not responsible for prefix {prefix}");
                encode_error_response(out, ctx, op, code::SERVER_NOT_RESP, &msg);
            }
        }
        Ok(reply)
    }

    /// Where `key` (a normalized identifier) belongs, from the prefixes
    /// this node knows: the nearest known prefix at or above the
    /// identifier's prefix decides. For a prefix record `0.NA/P`, P is the
    /// prefix looked at; an ancestor of P homed here means P's record would
    /// be here.
    fn disposition(&self, key: &[u8]) -> Result<Disposition, StoreError> {
        let Some(slash) = key.iter().position(|&b| b == b'/') else {
            return Ok(Disposition::Unknown(String::new()));
        };
        let (prefix, suffix) = (&key[..slash], &key[slash + 1..]);
        let is_prefix_record = prefix == b"0.NA";
        let named = if is_prefix_record { suffix } else { prefix };
        let mut at = named;
        loop {
            if let Some(info) = self.store.get(Space::Prefixes, at)? {
                let homed = PrefixInfo::homed_in(&info).unwrap_or(false);
                let name = String::from_utf8_lossy(at).into_owned();
                return Ok(match (homed, at.len() == named.len()) {
                    (true, true) => Disposition::Homed,
                    (true, false) if is_prefix_record => Disposition::Homed,
                    (true, false) => {
                        Disposition::Unknown(String::from_utf8_lossy(named).into_owned())
                    }
                    (false, _) => Disposition::Delegated(name),
                });
            }
            match at.iter().rposition(|&b| b == b'.') {
                Some(dot) => at = &at[..dot],
                None => {
                    return Ok(Disposition::Unknown(
                        String::from_utf8_lossy(named).into_owned(),
                    ));
                }
            }
        }
    }

    /// Writes a 303 PREFIX_REFERRAL with an empty handle carrying the public
    /// prefix-type values (HS_SITE.PREFIX, HS_SERV.PREFIX, HS_NA_DELEGATE)
    /// of the record `0.NA/<prefix>`. False when the record has none.
    fn refer(
        &self,
        ctx: &ResponseContext,
        prefix: &str,
        out: &mut Vec<u8>,
    ) -> Result<bool, StoreError> {
        let key = format!("0.NA/{prefix}");
        let Some(stored) = self.store.get(Space::Records, key.as_bytes())? else {
            return Ok(false);
        };
        let view = RecordView::parse(&stored)
            .map_err(|e| StoreError::Corrupt(format!("record does not decode: {e}")))?;
        let mut sites = Vec::new();
        for value in view.values() {
            let value =
                value.map_err(|e| StoreError::Corrupt(format!("value does not decode: {e}")))?;
            if value.permissions.public_read() && is_prefix_type(value.kind) {
                sites.push(value.raw);
            }
        }
        if sites.is_empty() {
            return Ok(false);
        }
        encode_values_response(
            out,
            ctx,
            opcode::RESOLUTION,
            code::PREFIX_REFERRAL,
            b"",
            sites,
        );
        Ok(true)
    }
}

/// Whether `key` (a normalized identifier) is a prefix record `0.NA/...`.
fn is_prefix_record(key: &[u8]) -> bool {
    key.starts_with(b"0.NA/")
}

/// The value types that refer the prefixes below a prefix elsewhere.
fn is_prefix_type(kind: &[u8]) -> bool {
    [&b"HS_SITE.PREFIX"[..], b"HS_SERV.PREFIX", b"HS_NA_DELEGATE"]
        .iter()
        .any(|t| kind.eq_ignore_ascii_case(t))
}
