//! Zone transfers over TCP: AXFR (RFC 5936) and IXFR (RFC 1995) of an
//! apex zone, built from [`DnsService::zone`] and the store's change log.
//!
//! - Only peers whose address is in the allow list get a transfer; others
//!   get REFUSED.
//! - [`transfer`] returns the answer as a stream of messages ([`Transfer`]),
//!   each built when the one before has been taken: records are packed
//!   into a message until the next one would not fit 65535 octets (less
//!   [`TSIG_ROOM`]), then that message is yielded. Same id and AA in every
//!   message, the question in the first one only. Memory stays flat
//!   whatever the zone's size: a page of stored records and one message
//!   at a time, so the first message leaves within milliseconds.
//! - AXFR: SOA, every record of the zone, SOA again, read from one
//!   snapshot of the store (see [`DnsService::zone`]): the zone of one
//!   moment, its serial the snapshot's, whatever is written meanwhile.
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
//!   section 4 allows that). The changes and the values before them are
//!   read before the first message (both bounded by the limits above); the
//!   records they become are made a change at a time.
//! - An error before the first message (a store read, a corrupt record)
//!   is answered SERVFAIL; after it, a SERVFAIL message ends the stream,
//!   and the client drops what it got.
//!
//! - TSIG (RFC 8945, [`crate::tsig`]): with keys configured, a transfer
//!   must be signed with one of them (unsigned: REFUSED; bad key,
//!   signature or time: NOTAUTH), and every message of the answer is
//!   signed with it, in order, each over the MAC of the one before.
//!
//! Not done: transfers over UDP and QUIC (they get the service's NOTIMP),
//! and address ranges in the allow list.

use crate::tsig::{self, Signer, TsigKey, Verdict};
use crate::{DnsError, DnsService, ZoneRecords};
use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use idnode_store::{Change, Space};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// More changes than this since the client's serial: the full zone.
pub const MAX_IXFR_CHANGES: u64 = 10_000;
/// How far back the change log is read for the values before a change.
pub const LOOKBACK: u64 = 200_000;
/// Change-log entries read at once.
const LOG_PAGE: usize = 4096;
/// Octets of each message left for the TSIG record the signer appends: a
/// key name of at most 255 octets, the algorithm's name, a MAC of at most
/// 64 octets and the fixed fields come to less than 700.
pub const TSIG_ROOM: usize = 1024;
/// The most a transfer message holds before it is signed.
const MESSAGE_LIMIT: usize = u16::MAX as usize - TSIG_ROOM;

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

/// The answer to an AXFR or IXFR `query` of the apex at `apex` from
/// `peer`: a stream of messages (unframed, each at most 65535 octets),
/// signed when the query was; see the module docs. `fallback` is what to
/// send when the query cannot even be read back (the service's own
/// answer). The stream yields at least one message and never panics.
pub fn transfer<'a>(
    service: &'a DnsService,
    query: &[u8],
    apex: usize,
    peer: IpAddr,
    policy: &'a TransferPolicy,
    now: u32,
    fallback: &[u8],
) -> Transfer<'a> {
    let signer = match tsig::verify(query, &policy.keys, u64::from(now)) {
        Verdict::Refused(answer) => {
            return Transfer {
                state: State::Last(Some(answer)),
                signer: None,
            };
        }
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
    Transfer {
        state: start(service, &request, policy),
        signer,
    }
}

/// The messages of one transfer answer; see [`transfer`].
pub struct Transfer<'a> {
    state: State<'a>,
    signer: Option<Signer<'a>>,
}

enum State<'a> {
    /// One message left (an error, a refusal), then the end.
    Last(Option<Vec<u8>>),
    /// Records to pack.
    Packing(Box<Packer<'a>>),
}

impl Iterator for Transfer<'_> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        let mut message = match &mut self.state {
            State::Last(message) => message.take()?,
            State::Packing(packer) => match packer.next_message()? {
                Ok(message) => message,
                Err(e) => {
                    tracing::error!(error = %e, "zone transfer failed");
                    let message = error_answer(&packer.request, ResponseCode::ServFail);
                    self.state = State::Last(None);
                    message?
                }
            },
        };
        if let Some(signer) = &mut self.signer {
            signer.sign(&mut message);
        }
        Some(message)
    }
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

/// The answer's first state: a single message (refusal, error) or the
/// records to pack.
fn start<'a>(service: &'a DnsService, r: &Request<'_>, policy: &TransferPolicy) -> State<'a> {
    let Request {
        query,
        apex,
        peer,
        now,
        fallback,
        signed,
    } = *r;
    let Ok(request) = Message::from_vec(query) else {
        return State::Last(Some(fallback.to_vec()));
    };
    let Some(question) = request.queries.first() else {
        return State::Last(Some(fallback.to_vec()));
    };
    let qtype = question.query_type();
    let error = |code: ResponseCode| {
        State::Last(Some(
            error_answer(&request, code).unwrap_or_else(|| fallback.to_vec()),
        ))
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
                Ok(Some(records)) => Records::Changes(records),
                Ok(None) => axfr(service, apex, now),
                Err(e) => {
                    tracing::error!(error = %e, "zone transfer failed");
                    return error(ResponseCode::ServFail);
                }
            }
        }
        _ => return State::Last(Some(fallback.to_vec())),
    };
    State::Packing(Box::new(Packer {
        request,
        records,
        carry: None,
        packed: 0,
        done: false,
    }))
}

/// A response header for `request`: same id and RD, opcode QUERY.
fn response_head(request: &Message) -> Message {
    let mut m = Message::response(request.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = request.metadata.recursion_desired;
    m
}

/// The answer `code` to `request`, with its question; AA unless REFUSED.
fn error_answer(request: &Message, code: ResponseCode) -> Option<Vec<u8>> {
    let mut m = response_head(request);
    m.metadata.response_code = code;
    m.metadata.authoritative = code != ResponseCode::Refused;
    m.queries = request.queries.clone();
    m.to_vec().ok()
}

/// The records of a transfer answer, in order.
enum Records<'a> {
    /// The whole zone.
    Zone(Box<AxfrRecords<'a>>),
    /// An incremental answer.
    Changes(Box<IxfrRecords<'a>>),
}

impl Iterator for Records<'_> {
    type Item = Result<Record, DnsError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Records::Zone(zone) => zone.next(),
            Records::Changes(changes) => changes.next(),
        }
    }
}

/// The zone from a snapshot, then its SOA again.
struct AxfrRecords<'a> {
    zone: ZoneRecords<'a>,
    /// The first record (the SOA), sent again at the end.
    closing: Option<Record>,
    started: bool,
}

impl Iterator for AxfrRecords<'_> {
    type Item = Result<Record, DnsError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.zone.next() {
            Some(Ok(record)) => {
                if !self.started {
                    self.started = true;
                    if record.record_type() != RecordType::SOA {
                        return Some(Err(no_zone()));
                    }
                    self.closing = Some(record.clone());
                }
                Some(Ok(record))
            }
            Some(Err(e)) => Some(Err(e)),
            None if !self.started => {
                self.started = true;
                Some(Err(no_zone()))
            }
            None => self.closing.take().map(Ok),
        }
    }
}

fn no_zone() -> DnsError {
    DnsError::Transfer("the zone has no SOA to transfer".into())
}

/// Packs records into messages, one message per call.
struct Packer<'a> {
    request: Message,
    records: Records<'a>,
    /// The record that did not fit the last message.
    carry: Option<Record>,
    /// Messages made so far.
    packed: usize,
    done: bool,
}

impl Packer<'_> {
    /// The next message: as many records as fit [`MESSAGE_LIMIT`]
    /// octets; `None` when every record has gone, an error when a record
    /// cannot be read or encoded (then the end).
    fn next_message(&mut self) -> Option<Result<Vec<u8>, DnsError>> {
        if self.done {
            return None;
        }
        let mut head = response_head(&self.request);
        head.metadata.authoritative = true;
        if self.packed == 0 {
            head.queries = self.request.queries.clone();
        }
        let mut bytes = Vec::with_capacity(MESSAGE_LIMIT);
        let mut encoder = BinEncoder::new(&mut bytes);
        // MESSAGE_LIMIT is below u16::MAX.
        encoder.set_max_size(MESSAGE_LIMIT as u16);
        if let Err(e) = head.emit(&mut encoder) {
            self.done = true;
            return Some(Err(encoding(&e.to_string())));
        }
        let mut count: u16 = 0;
        loop {
            let record = match self.carry.take() {
                Some(record) => record,
                None => match self.records.next() {
                    Some(Ok(record)) => record,
                    Some(Err(e)) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                    None => {
                        self.done = true;
                        break;
                    }
                },
            };
            // Encoded in place, names compressed against the message so
            // far; taken back out when it passes the limit.
            let mark = encoder.offset();
            if count < u16::MAX && record.emit(&mut encoder).is_ok() {
                count += 1;
                continue;
            }
            encoder.set_offset(mark);
            encoder.trim();
            if count == 0 {
                self.done = true;
                return Some(Err(encoding("a record does not fit one message")));
            }
            self.carry = Some(record);
            break;
        }
        drop(encoder);
        // The last records went with the message before (a message
        // without records is sent only as the first).
        if count == 0 && self.packed > 0 {
            return None;
        }
        // ANCOUNT: the header's octets 6 and 7.
        if let Some(ancount) = bytes.get_mut(6..8) {
            ancount.copy_from_slice(&count.to_be_bytes());
        }
        self.packed += 1;
        Some(Ok(bytes))
    }
}

fn encoding(what: &str) -> DnsError {
    DnsError::Transfer(format!("message: {what}"))
}

/// The whole zone from a snapshot, then its SOA again.
fn axfr(service: &DnsService, apex: usize, now: u32) -> Records<'_> {
    Records::Zone(Box::new(AxfrRecords {
        zone: service.zone(apex, now),
        closing: None,
        started: false,
    }))
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
) -> Result<Option<Box<IxfrRecords<'_>>>, DnsError> {
    let store = service.store();
    let last = store.last_sequence();
    let current = last as u32;
    let Some(current_soa) = soa_with_serial(service, apex, current) else {
        return Ok(None);
    };
    let mut records = Box::new(IxfrRecords {
        service,
        apex,
        now,
        pending: VecDeque::from([current_soa.clone()]),
        changes: Vec::new().into_iter(),
        before: HashMap::new(),
        soa: current_soa,
        closed: false,
    });
    if serial_at_least(client, current) {
        records.closed = true;
        return Ok(Some(records));
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
    let Some(before) = values_before(store, from, &window)? else {
        return Ok(None);
    };
    records.changes = window.into_iter();
    records.before = before;
    Ok(Some(records))
}

/// The records of an incremental answer, made a change at a time: the
/// current SOA, one difference sequence per change, the current SOA.
struct IxfrRecords<'a> {
    service: &'a DnsService,
    apex: usize,
    now: u32,
    pending: VecDeque<Record>,
    changes: std::vec::IntoIter<Change>,
    /// The value each changed record key has before the next change.
    before: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// The current SOA.
    soa: Record,
    /// Whether the closing SOA is in `pending` (or none is sent).
    closed: bool,
}

impl IxfrRecords<'_> {
    /// The current SOA with `sequence` as its serial.
    fn soa_at(&self, sequence: u64) -> Record {
        let mut soa = self.soa.clone();
        if let RData::SOA(data) = &mut soa.data {
            data.serial = sequence as u32;
        }
        soa
    }

    /// Puts the difference sequence of `change` into `pending`.
    fn difference(&mut self, change: Change) -> Result<(), DnsError> {
        let old_soa = self.soa_at(change.sequence.wrapping_sub(1));
        let new_soa = self.soa_at(change.sequence);
        self.pending.push_back(old_soa);
        if change.space == Space::Records
            && let Some(Some(old)) = self.before.get(&change.key)
        {
            let old = self.service.record_set(self.apex, old, self.now)?;
            self.pending.extend(old);
        }
        self.pending.push_back(new_soa);
        if change.space == Space::Records {
            if let Some(new) = &change.value {
                let new = self.service.record_set(self.apex, new, self.now)?;
                self.pending.extend(new);
            }
            self.before
                .insert(change.key, change.value.as_ref().map(|v| v.to_vec()));
        }
        Ok(())
    }
}

impl Iterator for IxfrRecords<'_> {
    type Item = Result<Record, DnsError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.pending.pop_front() {
                return Some(Ok(record));
            }
            match self.changes.next() {
                Some(change) => {
                    if let Err(e) = self.difference(change) {
                        self.changes = Vec::new().into_iter();
                        self.closed = true;
                        return Some(Err(e));
                    }
                }
                None if !self.closed => {
                    self.closed = true;
                    self.pending.push_back(self.soa.clone());
                }
                None => return None,
            }
        }
    }
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
