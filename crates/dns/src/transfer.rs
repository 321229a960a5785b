//! Zone transfers over TCP: AXFR (RFC 5936) and IXFR (RFC 1995) of an
//! apex zone, built from [`DnsService::zone`] and the store's change log.
//!
//! - Only peers whose address is in the allow list get a transfer; others
//!   get REFUSED.
//! - AXFR: SOA, every record of the zone, SOA again, packed into as few
//!   messages as fit 65535 octets each (same id, the question in the first
//!   message only, AA set). The zone iteration is no snapshot, so the whole
//!   answer is built first and built again (at most [`AXFR_ATTEMPTS`]
//!   times) when the serial moved meanwhile; then SERVFAIL. The answer is
//!   held in memory while it is sent.
//! - IXFR: the client's serial comes from the SOA in the query's authority
//!   section (none: FORMERR). The same or a newer serial (RFC 1982): the
//!   current SOA alone. Otherwise, when the change log holds every change
//!   from the client's serial on (at most [`MAX_IXFR_CHANGES`]) and the
//!   value each changed record had before: the incremental form, one
//!   difference sequence per change (old SOA, the record's old records,
//!   new SOA, its new records), between two copies of the current SOA. The
//!   value before a change is the one of the previous change of the same
//!   key, looked for at most [`LOOKBACK`] log entries back; when the log
//!   starts at sequence 1 and has no earlier change of the key, it did not
//!   exist. Anything else: the full zone, as AXFR sends it (RFC 1995
//!   section 4 allows that).
//!
//! - TSIG (RFC 8945, [`crate::tsig`]): with keys configured, a transfer
//!   must be signed with one of them (unsigned: REFUSED; bad key,
//!   signature or time: NOTAUTH), and every message of the answer is
//!   signed with it.
//!
//! Not done: transfers over UDP and QUIC (they get the service's NOTIMP),
//! and address ranges in the allow list.

use crate::tsig::{self, TsigKey, Verdict};
use crate::{DnsError, DnsService};
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use idnode_store::{Change, Space};
use std::collections::HashMap;
use std::net::IpAddr;

/// How often an AXFR is built again when the serial moved while reading.
pub const AXFR_ATTEMPTS: usize = 4;
/// More changes than this since the client's serial: the full zone.
pub const MAX_IXFR_CHANGES: u64 = 10_000;
/// How far back the change log is read for the values before a change.
pub const LOOKBACK: u64 = 200_000;
/// Change-log entries read at once.
const LOG_PAGE: usize = 4096;
/// Room left in each message for the header and question (a question is
/// at most 255 + 4 octets).
const MESSAGE_BUDGET: usize = u16::MAX as usize - 512;

/// Whether `peer` may transfer zones. IPv4-mapped IPv6 addresses count as
/// their IPv4 address.
pub fn allowed(peer: IpAddr, allow: &[IpAddr]) -> bool {
    let peer = peer.to_canonical();
    allow.iter().any(|a| a.to_canonical() == peer)
}

/// Who may transfer zones.
#[derive(Debug, Clone, Default)]
pub struct TransferPolicy {
    /// Peer addresses allowed.
    pub allow: Vec<IpAddr>,
    /// When not empty, a transfer must be signed with one of these keys.
    pub keys: Vec<TsigKey>,
}

/// The answer messages (unframed) to an AXFR or IXFR `query` of the apex
/// at `apex` from `peer`, signed when the query was. `fallback` is what to
/// send when the query cannot even be read back (the service's own
/// answer). Never panics.
pub fn transfer(
    service: &DnsService,
    query: &[u8],
    apex: usize,
    peer: IpAddr,
    policy: &TransferPolicy,
    now: u32,
    fallback: &[u8],
) -> Vec<Vec<u8>> {
    let mut signer = match tsig::verify(query, &policy.keys, u64::from(now)) {
        Verdict::Refused(answer) => return vec![answer],
        Verdict::Signed(signer) => Some(signer),
        Verdict::Unsigned => None,
    };
    let request = Request {
        query,
        apex,
        peer,
        now,
        fallback,
        signed: signer.is_some(),
    };
    let mut messages = transfer_unsigned(service, &request, policy);
    if let Some(signer) = &mut signer {
        for m in &mut messages {
            signer.sign(m);
        }
    }
    messages
}

/// One transfer request, as [`transfer`] got it.
struct Request<'a> {
    query: &'a [u8],
    apex: usize,
    peer: IpAddr,
    now: u32,
    fallback: &'a [u8],
    /// Whether its TSIG verified.
    signed: bool,
}

fn transfer_unsigned(
    service: &DnsService,
    r: &Request<'_>,
    policy: &TransferPolicy,
) -> Vec<Vec<u8>> {
    let Request {
        query,
        apex,
        peer,
        now,
        fallback,
        signed,
    } = *r;
    let Ok(request) = Message::from_vec(query) else {
        return vec![fallback.to_vec()];
    };
    let Some(question) = request.queries.first() else {
        return vec![fallback.to_vec()];
    };
    let qtype = question.query_type();
    let error = |code: ResponseCode| -> Vec<Vec<u8>> {
        let mut m = response_head(&request);
        m.metadata.response_code = code;
        m.metadata.authoritative = code != ResponseCode::Refused;
        m.queries = request.queries.clone();
        match m.to_vec() {
            Ok(bytes) => vec![bytes],
            Err(_) => vec![fallback.to_vec()],
        }
    };
    if !allowed(peer, &policy.allow) {
        tracing::info!(%peer, ?qtype, "zone transfer refused: peer not in allow_transfer");
        return error(ResponseCode::Refused);
    }
    if !policy.keys.is_empty() && !signed {
        tracing::info!(%peer, ?qtype, "zone transfer refused: no TSIG (keys are configured)");
        return error(ResponseCode::Refused);
    }
    let records = match qtype {
        RecordType::AXFR => axfr(service, apex, now),
        RecordType::IXFR => {
            let client = request.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa.serial),
                _ => None,
            });
            let Some(client) = client else {
                return error(ResponseCode::FormErr);
            };
            match ixfr(service, apex, client, now) {
                Ok(Some(records)) => Ok(records),
                Ok(None) => axfr(service, apex, now),
                Err(e) => Err(e),
            }
        }
        _ => return vec![fallback.to_vec()],
    };
    let records = match records {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "zone transfer failed");
            return error(ResponseCode::ServFail);
        }
    };
    match pack(&request, records) {
        Ok(messages) => messages,
        Err(e) => {
            tracing::error!(error = %e, "zone transfer failed: encoding");
            error(ResponseCode::ServFail)
        }
    }
}

/// A response header for `request`: same id and RD, opcode QUERY.
fn response_head(request: &Message) -> Message {
    let mut m = Message::response(request.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = request.metadata.recursion_desired;
    m
}

/// Packs `records` into messages of at most 65535 octets.
fn pack(request: &Message, records: Vec<Record>) -> Result<Vec<Vec<u8>>, String> {
    let mut messages = Vec::new();
    let mut current: Vec<Record> = Vec::new();
    let mut size = 0usize;
    let flush = |current: &mut Vec<Record>, messages: &mut Vec<Vec<u8>>| {
        let mut m = response_head(request);
        m.metadata.authoritative = true;
        if messages.is_empty() {
            m.queries = request.queries.clone();
        }
        m.answers = std::mem::take(current);
        let bytes = m.to_vec().map_err(|e| e.to_string())?;
        if bytes.len() > usize::from(u16::MAX) {
            return Err("a record does not fit one message".to_string());
        }
        messages.push(bytes);
        Ok::<(), String>(())
    };
    for record in records {
        // Its size alone: in a message, name compression only shrinks it.
        let len = record.to_bytes().map_err(|e| e.to_string())?.len();
        if !current.is_empty() && size + len > MESSAGE_BUDGET {
            flush(&mut current, &mut messages)?;
            size = 0;
        }
        size += len;
        current.push(record);
    }
    if !current.is_empty() || messages.is_empty() {
        flush(&mut current, &mut messages)?;
    }
    Ok(messages)
}

/// The whole zone: SOA, records, SOA; read again while the serial moves.
fn axfr(service: &DnsService, apex: usize, now: u32) -> Result<Vec<Record>, DnsError> {
    for _ in 0..AXFR_ATTEMPTS {
        let before = service.soa_serial();
        let mut records = Vec::new();
        for record in service.zone(apex, now) {
            records.push(record?);
        }
        let after = service.soa_serial();
        let Some(first) = records.first().cloned() else {
            break;
        };
        let first_serial = match &first.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        };
        if before == after && first_serial == Some(before) {
            records.push(first);
            return Ok(records);
        }
    }
    Err(DnsError::from(idnode_store::StoreError::Engine(
        "the zone kept changing during the transfer".into(),
    )))
}

/// The current SOA with another serial.
fn soa_with_serial(service: &DnsService, apex: usize, serial: u32) -> Option<Record> {
    let mut soa = service.soa_record(apex)?;
    if let RData::SOA(data) = &mut soa.data {
        data.serial = serial;
    }
    Some(soa)
}

/// Whether serial `a` is the same as or newer than `b` (RFC 1982).
fn serial_at_least(a: u32, b: u32) -> bool {
    a == b || (a.wrapping_sub(b) as i32) > 0
}

/// The IXFR answer from `client`'s serial, or `None` when only the full
/// zone can be sent.
fn ixfr(
    service: &DnsService,
    apex: usize,
    client: u32,
    now: u32,
) -> Result<Option<Vec<Record>>, DnsError> {
    let store = service.store();
    let last = store.last_sequence();
    let current = last as u32;
    let Some(current_soa) = soa_with_serial(service, apex, current) else {
        return Ok(None);
    };
    if serial_at_least(client, current) {
        return Ok(Some(vec![current_soa]));
    }
    let behind = u64::from(current.wrapping_sub(client));
    if behind > MAX_IXFR_CHANGES {
        return Ok(None);
    }
    let Some(from) = last.checked_sub(behind) else {
        return Ok(None);
    };
    let window = store.changes_since(from, behind as usize)?;
    let contiguous = window.len() as u64 == behind
        && window
            .iter()
            .zip(from + 1..)
            .all(|(c, sequence)| c.sequence == sequence);
    if !contiguous {
        return Ok(None);
    }
    let Some(mut before) = values_before(store, from, &window)? else {
        return Ok(None);
    };
    let mut out = vec![current_soa.clone()];
    for change in &window {
        let (Some(old_soa), Some(new_soa)) = (
            soa_with_serial(service, apex, (change.sequence - 1) as u32),
            soa_with_serial(service, apex, change.sequence as u32),
        ) else {
            return Ok(None);
        };
        out.push(old_soa);
        if change.space == Space::Records
            && let Some(Some(old)) = before.get(&change.key)
        {
            out.extend(service.record_set(apex, old, now)?);
        }
        out.push(new_soa);
        if change.space == Space::Records {
            if let Some(new) = &change.value {
                out.extend(service.record_set(apex, new, now)?);
            }
            before.insert(
                change.key.clone(),
                change.value.as_ref().map(|v| v.to_vec()),
            );
        }
    }
    out.push(current_soa);
    Ok(Some(out))
}

/// The value each record key changed in `window` had after sequence
/// `from` (`None`: it did not exist), or `None` when that is unknown.
#[allow(clippy::type_complexity)]
fn values_before(
    store: &dyn idnode_store::Store,
    from: u64,
    window: &[Change],
) -> Result<Option<HashMap<Vec<u8>, Option<Vec<u8>>>>, DnsError> {
    let mut wanted: HashMap<Vec<u8>, Option<Option<Vec<u8>>>> = window
        .iter()
        .filter(|c| c.space == Space::Records)
        .map(|c| (c.key.clone(), None))
        .collect();
    if wanted.is_empty() {
        return Ok(Some(HashMap::new()));
    }
    let start = from.saturating_sub(LOOKBACK);
    // Whether the log holds every change from the first one on.
    let mut complete = from == 0;
    let mut after = start;
    let mut first = true;
    while after < from {
        let page = store.changes_since(after, LOG_PAGE)?;
        if first {
            complete = start == 0 && page.first().is_some_and(|c| c.sequence == 1);
            first = false;
        }
        let Some(last) = page.last() else { break };
        let end = last.sequence;
        for change in page.iter().filter(|c| c.sequence <= from) {
            if change.space == Space::Records
                && let Some(slot) = wanted.get_mut(&change.key)
            {
                *slot = Some(change.value.as_ref().map(|v| v.to_vec()));
            }
        }
        if end <= after {
            break;
        }
        after = end;
    }
    let mut out = HashMap::with_capacity(wanted.len());
    for (key, value) in wanted {
        match value {
            Some(v) => {
                out.insert(key, v);
            }
            None if complete => {
                out.insert(key, None);
            }
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_arithmetic() {
        assert!(serial_at_least(5, 5));
        assert!(serial_at_least(6, 5));
        assert!(!serial_at_least(4, 5));
        assert!(serial_at_least(0, u32::MAX));
        assert!(!serial_at_least(u32::MAX, 0));
    }

    #[test]
    fn allow_list_matches_mapped_addresses() {
        let allow: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        assert!(allowed("127.0.0.1".parse().unwrap(), &allow));
        assert!(allowed("::ffff:127.0.0.1".parse().unwrap(), &allow));
        assert!(!allowed("10.0.0.1".parse().unwrap(), &allow));
    }
}
