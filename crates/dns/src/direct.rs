//! The answer path of the common question, the TXT records of an
//! identifier's name, written straight into the answer buffer from the
//! public values the response cache holds (or the store gave): no record
//! objects, no name compression to search.
//!
//! The answer says what [`message::encode`](crate::message::encode) would
//! say for the same question (same flags, sections, records, TTLs, OPT
//! record): owner names are compression pointers to the question; the SOA
//! of a negative answer is written with whole names, built once per apex
//! ([`SoaWire`]) with the serial written in per answer. An answer that
//! would not fit a message goes the general way instead.

use crate::config::{ApexZone, SoaTimers};
use crate::message::{self, MAX_MESSAGE, OPT_LEN};
use crate::query::{Query, TYPE_TXT, rcode};
use crate::records::{self, MAX_TTL};
use idnode_core::wire::{Reader, ValueView};

/// Class IN.
const CLASS_IN: u16 = 1;
const TYPE_SOA: u16 = 6;
/// A pointer to the question's name, which starts right after the header.
const QUESTION_NAME: [u8; 2] = [0xc0, 12];

/// An apex's SOA record, to be written with its names compressed as the
/// general encoder compresses them: the owner a pointer to the apex in
/// the question, the server and contact names their labels below the apex
/// and a pointer to it.
#[derive(Debug, Clone)]
pub(crate) struct SoaWire {
    ttl: u32,
    /// The labels of the server's name below the apex, in wire form.
    mname: Vec<u8>,
    /// The labels of the contact's name below the apex, in wire form.
    rname: Vec<u8>,
    /// Refresh, retry, expire, minimum.
    timers: [u32; 4],
}

impl SoaWire {
    /// The SOA of `zone` as negative answers carry it (TTL: the smaller
    /// of the SOA's TTL and its minimum, RFC 2308), or `None` when its
    /// server or contact name is not below the apex (then negative answers
    /// go the general way).
    pub(crate) fn new(zone: &ApexZone, timers: &SoaTimers) -> Option<Self> {
        let record = records::soa_record(zone, timers, 0, timers.ttl.min(timers.minimum));
        let hickory_proto::rr::RData::SOA(soa) = &record.data else {
            return None;
        };
        let apex = &record.name;
        let below = |name: &hickory_proto::rr::Name| -> Option<Vec<u8>> {
            if !apex.zone_of(name) {
                return None;
            }
            let keep = usize::from(name.num_labels() - apex.num_labels());
            let mut wire = Vec::new();
            for label in name.iter().take(keep) {
                wire.push(u8::try_from(label.len()).ok()?);
                wire.extend_from_slice(label);
            }
            Some(wire)
        };
        Some(Self {
            ttl: record.ttl,
            mname: below(&soa.mname)?,
            rname: below(&soa.rname)?,
            timers: [
                soa.refresh as u32,
                soa.retry as u32,
                soa.expire as u32,
                soa.minimum,
            ],
        })
    }

    /// Appends the record with `serial`, the apex being at `apex_at` in
    /// the message.
    fn push(&self, out: &mut Vec<u8>, serial: u32, apex_at: u16) {
        let pointer = (0xc000 | apex_at).to_be_bytes();
        out.extend_from_slice(&pointer);
        out.extend_from_slice(&TYPE_SOA.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&self.ttl.to_be_bytes());
        let rdata = self.mname.len() + self.rname.len() + 2 * 2 + 5 * 4;
        out.extend_from_slice(&(rdata as u16).to_be_bytes());
        out.extend_from_slice(&self.mname);
        out.extend_from_slice(&pointer);
        out.extend_from_slice(&self.rname);
        out.extend_from_slice(&pointer);
        out.extend_from_slice(&serial.to_be_bytes());
        for timer in self.timers {
            out.extend_from_slice(&timer.to_be_bytes());
        }
    }
}

/// What is known of the identifier a TXT question names.
pub(crate) enum Known<'a> {
    /// Its publicly readable values: `count` values in the storage form,
    /// one after the other (the response cache's projection of a record).
    Found { count: u32, encoded: &'a [u8] },
    /// No such identifier.
    Missing,
}

/// Writes the answer to the TXT `query` for an identifier's name (`below`
/// labels under its apex) into `out`: its TXT records, NODATA, or
/// NXDOMAIN, with the apex's SOA (`soa`, serial `serial`) in negative
/// answers. False when the answer
/// would not fit a message, or a value does not decode (`out` then holds
/// nothing useful: the general way answers, or reports the damage).
pub(crate) fn identifier_txt(
    out: &mut Vec<u8>,
    query: &Query<'_>,
    below: usize,
    known: Known<'_>,
    now: u32,
    (soa, serial): (&SoaWire, u32),
    max_udp: u16,
) -> bool {
    out.clear();
    out.resize(12, 0);
    out.extend_from_slice(query.question());
    let limit = MAX_MESSAGE - if query.edns.is_some() { OPT_LEN } else { 0 };
    let (mut answers, mut authority, mut code) = (0u16, 0u16, rcode::NOERROR);
    match known {
        Known::Found { count, encoded } => {
            let mut ttl = u32::MAX;
            let first = out.len();
            let mut r = Reader::new(encoded);
            for _ in 0..count {
                let Ok(view) = ValueView::read(&mut r) else {
                    return false;
                };
                let Ok(v) = records::public_value(view.raw) else {
                    return false;
                };
                let v = &v;
                let start = out.len();
                out.extend_from_slice(&QUESTION_NAME);
                out.extend_from_slice(&TYPE_TXT.to_be_bytes());
                out.extend_from_slice(&CLASS_IN.to_be_bytes());
                let ttl_at = out.len();
                out.extend_from_slice(&[0; 6]);
                if !records::write_txt_rdata(v, out) {
                    out.truncate(start);
                    continue;
                }
                let rdata = out.len() - ttl_at - 6;
                out[ttl_at + 4..ttl_at + 6].copy_from_slice(&(rdata as u16).to_be_bytes());
                ttl = ttl.min(v.ttl_at(now));
                answers += 1;
                if out.len() > limit {
                    return false;
                }
            }
            // One TTL for the whole set (RFC 2181 section 5.2).
            let ttl = ttl.min(MAX_TTL);
            let mut at = first;
            for _ in 0..answers {
                // Pointer (2), type (2), class (2), then the TTL.
                out[at + 6..at + 10].copy_from_slice(&ttl.to_be_bytes());
                let rdata = u16::from_be_bytes([out[at + 10], out[at + 11]]);
                at += 12 + usize::from(rdata);
            }
        }
        Known::Missing => code = rcode::NXDOMAIN,
    }
    if answers == 0 {
        // The apex's labels follow the `below` labels of the question.
        let name = query.qname();
        let mut at = 0;
        for _ in 0..below {
            at += 1 + usize::from(name.get(at).copied().unwrap_or(0));
        }
        let Ok(apex_at) = u16::try_from(12 + at) else {
            return false;
        };
        if apex_at > 0x3fff || at >= name.len() {
            return false;
        }
        soa.push(out, serial, apex_at);
        authority = 1;
        if out.len() > limit {
            return false;
        }
    }
    let mut additional = 0;
    if let Some(edns) = query.edns {
        message::push_opt(out, max_udp, code, edns.dnssec_ok);
        additional = 1;
    }
    let flags = message::response_flags(query.flags, code, true, false);
    message::put_header(out, query.id, flags, [1, answers, authority, additional]);
    true
}
