//! Answering one query message from the store.
//!
//! What a query gets:
//! - a message shorter than a header, or a response (QR set): nothing;
//! - an unreadable question, several questions, two OPT records: FORMERR
//!   (header only when the question is unreadable); an opcode other than
//!   QUERY: NOTIMP; EDNS version above 0: BADVERS (RFC 6891);
//! - a class other than IN (or ANY): REFUSED; a name outside every apex:
//!   REFUSED (this node is no resolver: RA is never set);
//! - AXFR and IXFR of an apex: NOTIMP, and [`Outcome::Transfer`] so that
//!   a listener with a zone-transfer module hands the query over instead;
//!   of another name: NOTAUTH (no zone starts there);
//! - at the apex: SOA, NS (glue A/AAAA in the additional section for name
//!   servers below the apex); at a name server below the apex: its A and
//!   AAAA;
//! - at an identifier's name: TXT, URI, NAPTR ([`crate::records`]); at a
//!   GTIN's or OID's name: NAPTR ([`crate::special`]);
//! - ANY at an existing name: one HINFO `RFC8482` record (RFC 8482), never
//!   the whole record set, so UDP cannot amplify;
//! - a name that exists without a record of the type asked: NODATA
//!   (NOERROR, no answer, the SOA in the authority section). A prefix name
//!   exists when the prefix is homed here (a key in `Space::Prefixes`) or
//!   anything is below it; `_.<prefix>` exists when an identifier of the
//!   prefix does; an identifier name exists when its record does (even
//!   with no publicly readable value);
//! - any other name under an apex (no record, or no identifier's or
//!   prefix's name, or past 255 octets, which cannot even be asked):
//!   NXDOMAIN with the SOA. The tails of suffixes longer than 63 octets
//!   (`<last label>._.<prefix>`) are not looked for below a name: they are
//!   NXDOMAIN unless an identifier has that shorter suffix (resolvers that
//!   minimize query names fall back to the full name on NXDOMAIN without
//!   DNSSEC, RFC 9156);
//! - a name at or below a delegated prefix's name (the nearest prefix in
//!   `Space::Prefixes` at or above the name's prefix is not homed here: a
//!   zone cut, as in the Handle protocol's 303 referrals): a referral,
//!   NOERROR with AA clear, no answer, the NS records at the cut in the
//!   authority section (`ns<server id>.<cut>`, one per server of the
//!   `HS_SITE.PREFIX` values on the prefix's record `0.NA/<prefix>`) and
//!   their addresses as glue in the additional section, TTL the values'
//!   TTL; NS at the cut itself too (RFC 1034 section 4.3.2), but DS at the
//!   cut is answered from this side (NODATA). A delegated prefix whose
//!   record names no server: SERVFAIL;
//! - every other answer from an apex has AA set; the SOA's TTL in the
//!   authority section is the smaller of its TTL and its minimum
//!   (RFC 2308);
//! - over UDP an answer longer than the client's EDNS payload size (512
//!   without EDNS; at most the configured maximum, default 1232) is cut to
//!   its question and OPT with TC set; over TCP and QUIC an answer is at
//!   most 65535 octets, records that do not fit left out with TC set;
//! - an OPT record in the query gets one in the answer: our payload size,
//!   the client's DO bit, no options. A store failure: SERVFAIL.

use crate::config::{ApexZone, Zones};
use crate::cuts::Cuts;
use crate::direct::{self, Known, SoaWire};
use crate::error::corrupt;
use crate::message::{self, Answer, MAX_MESSAGE};
use crate::name::{Mapped, SEPARATOR, map_labels};
use crate::query::{
    CLASS_ANY, CLASS_IN, Malformed, Query, TYPE_ANY, TYPE_AXFR, TYPE_IXFR, TYPE_OPT, TYPE_TXT,
    TYPE_URI, labels, rcode,
};
use crate::records::{self, PublicRecord, public_record};
use crate::special::{self, Special};
use hickory_proto::rr::{Name, Record, RecordType};
use idnode_authority::cache::Entry;
use idnode_authority::{ResponseCache, project};
use idnode_core::{Identifier, Prefix, PrefixInfo};
use idnode_store::{Space, Store, StoreError};
use std::sync::Arc;

/// The prefix under which prefixes are identifiers (`0.NA/88.100`): a
/// delegated prefix's sites are on its record there.
pub(crate) const PREFIX_AUTHORITY: &str = "0.NA";

/// How the query came, which bounds the answer's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram: the client's EDNS payload size, else 512 octets.
    Udp,
    /// TCP, TLS or QUIC: 65535 octets.
    Stream,
}

/// What the transport should do after [`DnsService::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send the buffer.
    Reply,
    /// Send nothing: not a query (too short, or a response).
    Drop,
    /// An AXFR or IXFR of the apex at this index (in
    /// [`Zones::apexes`] order). The buffer holds a NOTIMP answer to send
    /// when the listener does no zone transfers.
    Transfer { apex: usize },
}

/// Answers DNS queries from a store, the TXT questions for identifiers
/// through the Handle response cache when one is given.
pub struct DnsService {
    store: Arc<dyn Store>,
    zones: Arc<Zones>,
    cached: Option<Cached>,
}

/// What answers the common question without the store.
struct Cached {
    /// The public values of recently resolved records, shared with the
    /// Handle protocol.
    values: Arc<ResponseCache>,
    /// Which prefixes are delegated away.
    cuts: Arc<Cuts>,
    /// Each apex's SOA for negative answers, in [`Zones::zones`] order.
    soas: Vec<Option<SoaWire>>,
}

/// What a batch's first pass found for one message.
#[derive(Clone, Copy)]
enum Hint<'a> {
    /// Not looked at: find out.
    Unknown,
    /// A TXT question the response cache may answer, for this key.
    Key(&'a str),
    /// Anything else: the general way.
    General,
}

/// Scratch of [`DnsService::respond_batch`], kept by the caller to reuse
/// its allocations.
#[derive(Debug, Default)]
pub struct BatchScratch {
    keys: Vec<Option<String>>,
    hashes: Vec<u64>,
}

/// What a name below an apex is.
enum Node {
    Apex,
    NameServer(usize),
    Identifier(Identifier),
    Prefix(Prefix),
    Separator(Prefix),
    Gtin(Identifier),
    Oid(Identifier),
    Branch,
    Nowhere,
}

impl DnsService {
    /// A service that reads the store for every query.
    pub fn new(store: Arc<dyn Store>, zones: Arc<Zones>) -> Self {
        Self {
            store,
            zones,
            cached: None,
        }
    }

    /// A service that answers TXT questions for identifiers from the
    /// public values in `values` (the Handle response cache, filled from
    /// the store on a miss) and the prefixes in `cuts`, writing the answer
    /// straight from them; other questions read the store. Both must be
    /// told about every write (register them as
    /// [`CommitObserver`](idnode_store::CommitObserver)s of the store).
    pub fn with_cache(
        store: Arc<dyn Store>,
        zones: Arc<Zones>,
        values: Arc<ResponseCache>,
        cuts: Arc<Cuts>,
    ) -> Self {
        let soas = zones
            .zones
            .iter()
            .map(|zone| SoaWire::new(zone, &zones.timers))
            .collect();
        Self {
            store,
            zones,
            cached: Some(Cached { values, cuts, soas }),
        }
    }

    pub fn zones(&self) -> &Zones {
        &self.zones
    }

    /// The response cache TXT answers come from, if any.
    pub fn cache(&self) -> Option<&ResponseCache> {
        self.cached.as_ref().map(|c| &*c.values)
    }

    /// The store answers come from (zone transfers read its change log).
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// The SOA serial: the store's change sequence (the last committed
    /// change's number), so it rises with every write. It is truncated to
    /// its low 32 bits: serials compare by RFC 1982 arithmetic, so going
    /// from 4294967295 to 0 is a rise, but a secondary that misses 2^31 or
    /// more writes between two checks sees the serial fall and keeps its
    /// copy (then it needs a new AXFR, for example by being restarted).
    pub fn soa_serial(&self) -> u32 {
        self.store.last_sequence() as u32
    }

    /// Answers one query message into `out` (cleared first). `now` (unix
    /// seconds) turns absolute value TTLs into remaining seconds. Never
    /// panics, whatever `message` holds.
    pub fn respond(
        &self,
        message: &[u8],
        transport: Transport,
        now: u32,
        out: &mut Vec<u8>,
    ) -> Outcome {
        self.respond_hinted(message, transport, now, out, Hint::Unknown)
    }

    /// Answers a batch of query messages, `outs[i]` and `outcomes[i]` for
    /// `messages[i]`, as [`respond`](Self::respond) answers each: a first
    /// pass finds the TXT questions for identifiers and starts loading
    /// their response-cache entries into the CPU caches, so that their
    /// lookups wait on memory together, not one after another.
    pub fn respond_batch(
        &self,
        messages: &[&[u8]],
        transport: Transport,
        now: u32,
        outs: &mut [Vec<u8>],
        outcomes: &mut [Outcome],
        scratch: &mut BatchScratch,
    ) {
        scratch.keys.clear();
        if let Some(cached) = &self.cached {
            scratch
                .keys
                .extend(messages.iter().map(|m| self.direct_key(cached, m)));
            if messages.len() > 1 && cached.values.worth_prefetching() {
                let keys = scratch.keys.iter().flatten().map(|k| k.as_bytes());
                cached.values.prefetch(keys, &mut scratch.hashes);
            }
        }
        for (i, ((message, out), outcome)) in messages
            .iter()
            .zip(outs.iter_mut())
            .zip(outcomes.iter_mut())
            .enumerate()
        {
            let hint = match scratch.keys.get(i) {
                Some(Some(key)) => Hint::Key(key),
                Some(None) => Hint::General,
                None => Hint::Unknown,
            };
            *outcome = self.respond_hinted(message, transport, now, out, hint);
        }
    }

    /// The key of the identifier a TXT question names when the response
    /// cache may answer it ([`direct`](Self::direct)); `None` for any
    /// other message.
    fn direct_key(&self, cached: &Cached, message: &[u8]) -> Option<String> {
        let query = Query::parse(message).ok()?;
        if query.qtype != TYPE_TXT
            || query.edns.is_some_and(|e| e.version != 0)
            || (query.qclass != CLASS_IN && query.qclass != CLASS_ANY)
        {
            return None;
        }
        let qname = query.qname();
        let mut lower_buf = [0u8; crate::name::MAX_NAME_OCTETS];
        let lower = lower_buf.get_mut(..qname.len())?;
        lower.copy_from_slice(qname);
        lower.make_ascii_lowercase();
        let (apex, below) = self.zones.find_apex(lower)?;
        self.identifier_key(cached, &query, apex, below, lower)
    }

    /// [`respond`](Self::respond), told by a batch's first pass what the
    /// message is.
    fn respond_hinted(
        &self,
        message: &[u8],
        transport: Transport,
        now: u32,
        out: &mut Vec<u8>,
        hint: Hint<'_>,
    ) -> Outcome {
        out.clear();
        let max_udp = self.zones.max_udp;
        let query = match Query::parse(message) {
            Ok(q) => q,
            Err(Malformed::Drop) => return Outcome::Drop,
            Err(Malformed::Reply { id, flags, rcode }) => {
                message::write_short(out, id, flags, None, rcode, false, false, None);
                return Outcome::Reply;
            }
        };
        if query.edns.is_some_and(|e| e.version != 0) {
            message::write_rcode(out, &query, rcode::BADVERS, max_udp);
            return Outcome::Reply;
        }
        if query.qtype == TYPE_OPT {
            message::write_rcode(out, &query, rcode::FORMERR, max_udp);
            return Outcome::Reply;
        }
        if query.qclass != CLASS_IN && query.qclass != CLASS_ANY {
            message::write_rcode(out, &query, rcode::REFUSED, max_udp);
            return Outcome::Reply;
        }
        let qname = query.qname();
        let mut lower_buf = [0u8; crate::name::MAX_NAME_OCTETS];
        let Some(lower) = lower_buf.get_mut(..qname.len()) else {
            message::write_rcode(out, &query, rcode::FORMERR, max_udp);
            return Outcome::Reply;
        };
        lower.copy_from_slice(qname);
        lower.make_ascii_lowercase();
        let lower = &*lower;
        let Some((apex, below)) = self.zones.find_apex(lower) else {
            message::write_rcode(out, &query, rcode::REFUSED, max_udp);
            return Outcome::Reply;
        };
        if query.qtype == TYPE_AXFR || query.qtype == TYPE_IXFR {
            if below > 0 {
                // No zone starts at this name (RFC 5936 section 2.2.1).
                message::write_rcode(out, &query, rcode::NOTAUTH, max_udp);
                return Outcome::Reply;
            }
            message::write_rcode(out, &query, rcode::NOTIMP, max_udp);
            return Outcome::Transfer { apex };
        }
        if query.qtype == TYPE_TXT
            && let Some(cached) = &self.cached
        {
            let key = match hint {
                Hint::Key(key) => Some(std::borrow::Cow::Borrowed(key)),
                Hint::General => None,
                Hint::Unknown => self
                    .identifier_key(cached, &query, apex, below, lower)
                    .map(std::borrow::Cow::Owned),
            };
            if let Some(key) = key
                && self.direct(cached, &query, apex, below, key.as_bytes(), now, out)
            {
                self.fit(out, &query, transport);
                return Outcome::Reply;
            }
        }
        let answer = match self.answer(&query, apex, below, lower, now) {
            Ok(answer) => answer,
            Err(e) => {
                tracing::error!(error = %e, "DNS answer failed: store read");
                message::write_rcode(out, &query, rcode::SERVFAIL, max_udp);
                return Outcome::Reply;
            }
        };
        if let Err(e) = message::encode(&query, &answer, max_udp, out) {
            tracing::error!(error = %e, "DNS answer failed: encoding");
            message::write_rcode(out, &query, rcode::SERVFAIL, max_udp);
            return Outcome::Reply;
        }
        self.fit(out, &query, transport);
        Outcome::Reply
    }

    /// The key of the identifier `query` (a TXT question, `below` labels
    /// under the apex numbered `apex`; `lower` its name lower-cased) names,
    /// when the response cache may answer it: `None` when the name is no
    /// identifier's or lies under a delegated prefix.
    fn identifier_key(
        &self,
        cached: &Cached,
        query: &Query<'_>,
        apex: usize,
        below: usize,
        lower: &[u8],
    ) -> Option<String> {
        let zone = self.zones.zones.get(apex)?;
        let below_labels: Vec<&[u8]> = labels(query.qname()).take(below).collect();
        let Node::Identifier(id) = self.node(zone, lower, &below_labels) else {
            return None;
        };
        if cached.cuts.delegated(&id.prefix_parsed()) {
            return None;
        }
        Some(id.key().to_owned())
    }

    /// Answers a TXT question for the identifier of `key` straight from
    /// its public values ([`direct`]); false when the answer needs the
    /// general way (a store error, a damaged record, an answer too large).
    #[allow(clippy::too_many_arguments)] // the parts of one question
    fn direct(
        &self,
        cached: &Cached,
        query: &Query<'_>,
        apex: usize,
        below: usize,
        key: &[u8],
        now: u32,
        out: &mut Vec<u8>,
    ) -> bool {
        let Some(Some(soa)) = cached.soas.get(apex) else {
            return false;
        };
        let serial = self.soa_serial();
        let max_udp = self.zones.max_udp;
        let write = |out: &mut Vec<u8>, entry: Entry<'_>| {
            let known = match entry {
                Entry::Found { count, values } => Known::Found {
                    count,
                    encoded: values,
                },
                Entry::Missing => Known::Missing,
            };
            direct::identifier_txt(out, query, below, known, now, (soa, serial), max_udp)
        };
        match cached.values.with(key, |entry| write(out, entry)) {
            Ok(written) => written,
            Err(ticket) => {
                let Ok(stored) = self.store.get(Space::Records, key) else {
                    return false;
                };
                let mut projected = Vec::new();
                let Ok(entry) = project(stored.as_deref(), &mut projected) else {
                    return false;
                };
                cached.values.insert(key, ticket, entry);
                write(out, entry)
            }
        }
    }

    /// Finishes a UDP answer: the server cookie, and the amplification cap
    /// for `source` ([`crate::cookie::finish_udp`]).
    pub fn finish_udp(
        &self,
        message: &[u8],
        out: &mut Vec<u8>,
        source: &crate::cookie::UdpSource<'_>,
    ) -> crate::cookie::Finished {
        crate::cookie::finish_udp(message, out, source, self.zones.max_udp)
    }

    /// Cuts an answer too long for the transport to its truncated form.
    fn fit(&self, out: &mut Vec<u8>, query: &Query<'_>, transport: Transport) {
        let limit = match transport {
            Transport::Udp => query.udp_limit(self.zones.max_udp),
            Transport::Stream => MAX_MESSAGE,
        };
        if out.len() > limit {
            message::truncate(out, query, self.zones.max_udp);
        }
    }

    /// What `labels` (below the apex, leftmost first) name.
    fn node(&self, zone: &ApexZone, lower: &[u8], labels: &[&[u8]]) -> Node {
        if labels.is_empty() {
            return Node::Apex;
        }
        if let Some(i) = zone
            .name_servers
            .iter()
            .position(|ns| ns.in_zone.as_deref() == Some(lower))
        {
            return Node::NameServer(i);
        }
        let (gs1, oid) = (self.zones.gs1.as_ref(), self.zones.oid.as_ref());
        if let Some(special) = special::classify(labels, gs1.is_some(), oid.is_some()) {
            let under = |prefix: Option<&Prefix>, suffix: &str| {
                prefix.and_then(|p| Identifier::parse(&format!("{}/{suffix}", p.as_str())).ok())
            };
            return match special {
                Special::Gtin(gtin) => under(gs1, &gtin).map_or(Node::Nowhere, Node::Gtin),
                Special::Oid(dotted) => under(oid, &dotted).map_or(Node::Nowhere, Node::Oid),
                Special::Branch => Node::Branch,
                Special::Nowhere => Node::Nowhere,
            };
        }
        match map_labels(labels) {
            Some(Mapped::Identifier(id)) => Node::Identifier(id),
            Some(Mapped::Prefix(p)) => Node::Prefix(p),
            Some(Mapped::Separator(p)) => Node::Separator(p),
            Some(Mapped::Apex) => Node::Apex,
            None => Node::Nowhere,
        }
    }

    /// Builds the answer to `query` at the apex numbered `apex`, `below`
    /// labels under it.
    fn answer(
        &self,
        query: &Query<'_>,
        apex: usize,
        below: usize,
        lower: &[u8],
        now: u32,
    ) -> Result<Answer, StoreError> {
        let zone = self
            .zones
            .zones
            .get(apex)
            .ok_or_else(|| StoreError::Engine("apex index out of range".into()))?;
        let qname = query.qname();
        let below_labels: Vec<&[u8]> = labels(qname).take(below).collect();
        let owner = Name::from_labels(labels(qname))
            .map_err(|e| StoreError::Engine(format!("question name: {e}")))?;
        let qtype = RecordType::from(query.qtype);
        let mut answer = Answer {
            authoritative: true,
            ..Answer::default()
        };
        let mut exists = true;
        let node = self.node(zone, lower, &below_labels);
        if matches!(
            node,
            Node::Identifier(_) | Node::Prefix(_) | Node::Separator(_) | Node::Nowhere
        ) && let Some((key, cut_len)) = self.delegation(&below_labels)?
        {
            // The DS RRset at a cut belongs to the parent side (RFC 4035
            // section 2.4): NODATA, as for the prefix's name.
            let at_cut = cut_len == below_labels.len();
            if !(at_cut && qtype == RecordType::DS) {
                let cut = Name::from_labels(labels(qname).skip(below - cut_len))
                    .map_err(|e| StoreError::Engine(format!("cut name: {e}")))?;
                return self.referral(&key, &cut, now);
            }
        }
        match node {
            Node::Apex => match qtype {
                RecordType::SOA => answer.answers.push(self.soa(zone, self.zones.timers.ttl)),
                RecordType::NS => {
                    answer.answers = records::ns_records(zone, &self.zones);
                    answer.additional = records::glue_records(zone, &self.zones, None);
                }
                _ => {}
            },
            Node::NameServer(i) => {
                if matches!(qtype, RecordType::A | RecordType::AAAA) {
                    answer.answers = records::glue_records(zone, &self.zones, Some(i))
                        .into_iter()
                        .filter(|r| r.record_type() == qtype)
                        .collect();
                }
            }
            Node::Identifier(id) => match self.store.get(Space::Records, id.key().as_bytes())? {
                Some(stored) => {
                    let record = public_record(&stored).map_err(corrupt)?;
                    answer.answers = identifier_answers(&owner, &record, query.qtype, now);
                }
                None => exists = false,
            },
            Node::Gtin(id) => match self.store.get(Space::Records, id.key().as_bytes())? {
                Some(stored) => {
                    let record = public_record(&stored).map_err(corrupt)?;
                    if qtype == RecordType::NAPTR {
                        answer.answers =
                            records::identifier_naptr_records(&owner, &record.values, now);
                    }
                }
                None => exists = false,
            },
            Node::Oid(id) => match self.store.get(Space::Records, id.key().as_bytes())? {
                Some(stored) => {
                    let record = public_record(&stored).map_err(corrupt)?;
                    if qtype == RecordType::NAPTR {
                        answer.answers = ors_naptr_records(&owner, &record, now);
                    }
                }
                None => exists = self.any_key(Space::Records, &format!("{}.", id.key()))?,
            },
            Node::Prefix(p) => exists = self.prefix_exists(&p)?,
            Node::Separator(p) => {
                exists = self.any_key(Space::Records, &format!("{}/", p.key()))?
            }
            Node::Branch => {}
            Node::Nowhere => exists = false,
        }
        if !exists {
            answer.rcode = rcode::NXDOMAIN;
            answer.answers.clear();
        } else if query.qtype == TYPE_ANY {
            answer.answers = vec![records::hinfo_record(&owner, self.zones.ns_ttl)];
            answer.additional.clear();
        }
        if answer.answers.is_empty() {
            let timers = &self.zones.timers;
            answer.authority = vec![self.soa(zone, timers.ttl.min(timers.minimum))];
            answer.additional.clear();
        }
        Ok(answer)
    }

    /// The delegated prefix a name below the apex (`below`, leftmost
    /// first) is at or under, as its key and its number of labels: the
    /// nearest prefix in `Space::Prefixes` at or above the name's prefix
    /// (its labels right of the `_`, or of the first label that is no
    /// prefix segment) decides, as in the Handle protocol's referrals;
    /// `None` when that one is homed here or there is none.
    fn delegation(&self, below: &[&[u8]]) -> Result<Option<(String, usize)>, StoreError> {
        let mut keys: Vec<String> = Vec::new();
        let mut text = String::new();
        for label in below.iter().rev() {
            if *label == SEPARATOR {
                break;
            }
            let Ok(segment) = std::str::from_utf8(label) else {
                break;
            };
            if segment.contains('.') {
                break;
            }
            if !text.is_empty() {
                text.push('.');
            }
            text.push_str(segment);
            match Prefix::parse(&text) {
                Ok(p) if p.segments().count() == keys.len() + 1 => keys.push(p.key().to_owned()),
                _ => break,
            }
        }
        for (i, key) in keys.iter().enumerate().rev() {
            if let Some(info) = self.store.get(Space::Prefixes, key.as_bytes())? {
                let homed = PrefixInfo::homed_in(&info).unwrap_or(false);
                return Ok((!homed).then(|| (key.clone(), i + 1)));
            }
        }
        Ok(None)
    }

    /// The referral to the sites of the delegated prefix `key`, whose name
    /// is `cut`: NS at the cut in the authority section, glue in the
    /// additional section, AA clear. SERVFAIL (not cached) when its record
    /// names no usable server.
    fn referral(&self, key: &str, cut: &Name, now: u32) -> Result<Answer, StoreError> {
        let mut answer = Answer::default();
        let record_key = format!("{PREFIX_AUTHORITY}/{key}");
        let delegation = match self.store.get(Space::Records, record_key.as_bytes())? {
            Some(stored) => {
                let record = public_record(&stored).map_err(corrupt)?;
                let sites = records::delegation_records(cut, &record.values, now);
                if sites.ns.is_empty() {
                    self.service_delegation(cut, &record.values, now)?
                } else {
                    sites
                }
            }
            None => records::Delegation::default(),
        };
        if delegation.ns.is_empty() {
            // Debug, not warn: every query under the prefix gets here.
            tracing::debug!(
                prefix = key,
                "prefix is delegated but its record names no server"
            );
            answer.rcode = rcode::SERVFAIL;
            return Ok(answer);
        }
        answer.authority = delegation.ns;
        answer.additional = delegation.glue;
        Ok(answer)
    }

    /// The zone cut of a prefix delegated through a service handle: its
    /// record's HS_SERV.PREFIX (else HS_SERV) values name a handle whose
    /// HS_SITE values are the sites, when this node holds that handle's
    /// record. The first service handle that gives a name server wins.
    fn service_delegation(
        &self,
        cut: &Name,
        values: &[records::PublicValue<'_>],
        now: u32,
    ) -> Result<records::Delegation, StoreError> {
        let named = |kind: &'static [u8]| {
            values
                .iter()
                .filter(move |v| v.kind.eq_ignore_ascii_case(kind))
                .filter_map(|v| std::str::from_utf8(v.data).ok())
        };
        let mut key = Vec::new();
        for handle in named(b"HS_SERV.PREFIX").chain(named(b"HS_SERV")).take(4) {
            idnode_core::normalize_into(handle.trim().as_bytes(), &mut key);
            let Some(stored) = self.store.get(Space::Records, &key)? else {
                continue;
            };
            let service = public_record(&stored).map_err(corrupt)?;
            let sites: Vec<records::PublicValue<'_>> = service
                .values
                .iter()
                .filter(|v| v.kind.eq_ignore_ascii_case(b"HS_SITE"))
                .map(|v| records::PublicValue {
                    kind: records::SITE_PREFIX_TYPE,
                    ..*v
                })
                .collect();
            let delegation = records::delegation_records(cut, &sites, now);
            if !delegation.ns.is_empty() {
                return Ok(delegation);
            }
        }
        Ok(records::Delegation::default())
    }

    pub(crate) fn soa(&self, zone: &ApexZone, ttl: u32) -> Record {
        records::soa_record(zone, &self.zones.timers, self.soa_serial(), ttl)
    }

    /// Whether any key of `space` starts with `prefix`.
    fn any_key(&self, space: Space, prefix: &str) -> Result<bool, StoreError> {
        Ok(!self
            .store
            .scan(space, prefix.as_bytes(), None, 1)?
            .is_empty())
    }

    /// Whether a prefix's name exists: homed here, or anything below it.
    fn prefix_exists(&self, prefix: &Prefix) -> Result<bool, StoreError> {
        let key = prefix.key();
        Ok(self.store.get(Space::Prefixes, key.as_bytes())?.is_some()
            || self.any_key(Space::Prefixes, &format!("{key}."))?
            || self.any_key(Space::Records, &format!("{key}/"))?
            || self.any_key(Space::Records, &format!("{key}."))?)
    }
}

/// The records of the asked type at an identifier's name.
fn identifier_answers(
    owner: &Name,
    record: &PublicRecord<'_>,
    qtype: u16,
    now: u32,
) -> Vec<Record> {
    match RecordType::from(qtype) {
        RecordType::TXT => records::txt_records(owner, &record.values, now),
        RecordType::NAPTR => records::identifier_naptr_records(owner, &record.values, now),
        _ if qtype == TYPE_URI => records::uri_records(owner, &record.values, now),
        _ => Vec::new(),
    }
}

/// The ORS NAPTR records of an OID's record.
pub(crate) fn ors_naptr_records(owner: &Name, record: &PublicRecord<'_>, now: u32) -> Vec<Record> {
    records::naptr_records(owner, &record.values, now, |v| {
        special::ors_service(v.kind).map(str::as_bytes)
    })
}
