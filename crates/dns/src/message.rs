//! Writing answer messages.
//!
//! The header, the OPT record and the short error and truncated answers are
//! written here; the question and the resource records are encoded by
//! hickory-proto (its name compression included), so an answer is built
//! once, kept as bytes, and served again with a few octets patched
//! ([`patch`]).

use crate::query::{Query, TYPE_OPT, flags, labels};
use hickory_proto::ProtoError;
use hickory_proto::op::Query as Question;
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

/// Largest DNS message (two-octet TCP length).
pub const MAX_MESSAGE: usize = 65_535;
/// Size of an OPT record without options.
pub(crate) const OPT_LEN: usize = 11;

/// An answer before encoding.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    /// NOERROR, NXDOMAIN, SERVFAIL...
    pub rcode: u16,
    /// Whether AA is set.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

/// The OPT record of an answer: our payload size, the extended response
/// code's high bits, the client's DO bit copied (RFC 3225).
pub(crate) fn push_opt(out: &mut Vec<u8>, max_udp: u16, rcode: u16, dnssec_ok: bool) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&max_udp.to_be_bytes());
    out.push((rcode >> 4) as u8);
    out.push(0);
    out.push(if dnssec_ok { 0x80 } else { 0 });
    out.extend_from_slice(&[0, 0, 0]);
}

/// The header flags of a response to `query`.
pub(crate) fn response_flags(
    query_flags: u16,
    rcode: u16,
    authoritative: bool,
    truncated: bool,
) -> u16 {
    let mut f = flags::QR | (query_flags & (0x7800 | flags::RD | flags::CD)) | (rcode & 0xf);
    if authoritative {
        f |= flags::AA;
    }
    if truncated {
        f |= flags::TC;
    }
    f
}

pub(crate) fn put_header(out: &mut [u8], id: u16, flags: u16, counts: [u16; 4]) {
    let mut header = [0u8; 12];
    header[0..2].copy_from_slice(&id.to_be_bytes());
    header[2..4].copy_from_slice(&flags.to_be_bytes());
    for (i, c) in counts.iter().enumerate() {
        header[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
    }
    if let Some(slot) = out.get_mut(..12) {
        slot.copy_from_slice(&header);
    }
}

/// A short answer: header, the question when there is one, and an OPT
/// record when `opt` gives our payload size and the client's DO bit.
/// For FORMERR, NOTIMP, REFUSED, SERVFAIL, BADVERS and truncation.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_short(
    out: &mut Vec<u8>,
    id: u16,
    query_flags: u16,
    question: Option<&[u8]>,
    rcode: u16,
    authoritative: bool,
    truncated: bool,
    opt: Option<(u16, bool)>,
) {
    out.clear();
    out.resize(12, 0);
    let flags = response_flags(query_flags, rcode, authoritative, truncated);
    let counts = [
        u16::from(question.is_some()),
        0,
        0,
        u16::from(opt.is_some()),
    ];
    put_header(out, id, flags, counts);
    if let Some(q) = question {
        out.extend_from_slice(q);
    }
    if let Some((max_udp, dnssec_ok)) = opt {
        push_opt(out, max_udp, rcode, dnssec_ok);
    }
}

/// The short answer to `query` with `rcode`.
pub(crate) fn write_rcode(out: &mut Vec<u8>, query: &Query<'_>, rcode: u16, max_udp: u16) {
    let opt = query.edns.map(|e| (max_udp, e.dnssec_ok));
    write_short(
        out,
        query.id,
        query.flags,
        Some(query.question()),
        rcode,
        false,
        false,
        opt,
    );
}

/// Replaces the answer in `out` by its truncated form: the same header
/// with TC set, the question, the OPT record.
pub(crate) fn truncate(out: &mut Vec<u8>, query: &Query<'_>, max_udp: u16) {
    let (flags, rcode) = match out.get(2..4) {
        Some(f) => {
            let flags = u16::from_be_bytes([f[0], f[1]]);
            (flags, flags & 0xf)
        }
        None => (0, 0),
    };
    let authoritative = flags & flags::AA != 0;
    let opt = query.edns.map(|e| (max_udp, e.dnssec_ok));
    write_short(
        out,
        query.id,
        query.flags,
        Some(query.question()),
        rcode,
        authoritative,
        true,
        opt,
    );
}

/// Encodes `answer` to `query` into `out`; never longer than 65535
/// octets (records that do not fit are left out and TC is set).
pub(crate) fn encode(
    query: &Query<'_>,
    answer: &Answer,
    max_udp: u16,
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    out.clear();
    let opt_room = if query.edns.is_some() { OPT_LEN } else { 0 };
    let mut counts = [1u16, 0, 0, 0];
    let mut truncated = false;
    {
        let mut encoder = BinEncoder::new(out);
        encoder.emit_vec(&[0; 12])?;
        // The question as sent: same octets, so the cache can patch in
        // another spelling, and the owner names below compress to it.
        let name = Name::from_labels(labels(query.qname()))?;
        let mut question = Question::query(name, RecordType::from(query.qtype));
        question.set_query_class(DNSClass::from(query.qclass));
        question.emit(&mut encoder)?;
        if encoder.offset() != 12 + query.question().len() {
            return Err(ProtoError::Message("question re-encoded to other octets"));
        }
        encoder.set_max_size((MAX_MESSAGE - opt_room) as u16);
        let sections = [&answer.answers, &answer.authority, &answer.additional];
        'sections: for (section, records) in sections.into_iter().enumerate() {
            for record in records {
                match encoder.emit_all(std::iter::once(record)) {
                    Ok(_) => counts[section + 1] += 1,
                    Err(ProtoError::NotAllRecordsWritten { .. }) => {
                        // The encoder rolled its offset back, not the
                        // octets it had written past it.
                        encoder.trim();
                        truncated = true;
                        break 'sections;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    if let Some(edns) = query.edns {
        push_opt(out, max_udp, answer.rcode, edns.dnssec_ok);
        counts[3] += 1;
    }
    let flags = response_flags(query.flags, answer.rcode, answer.authoritative, truncated);
    put_header(out, query.id, flags, counts);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
    use super::*;
    use crate::query::rcode;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::{SOA, TXT};

    fn query_bytes(id: u16, name: &[u8], dnssec_ok: bool) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[0x01, 0x10, 0, 1, 0, 0, 0, 0, 0, 1]);
        m.extend_from_slice(name);
        m.extend_from_slice(&[0, 16, 0, 1]);
        m.extend_from_slice(&[
            0,
            0,
            41,
            0x10,
            0,
            0,
            0,
            if dnssec_ok { 0x80 } else { 0 },
            0,
            0,
            0,
        ]);
        m
    }

    #[test]
    fn encodes_and_truncates() {
        let bytes = query_bytes(7, b"\x03ABC\x07example\x00", false);
        let query = Query::parse(&bytes).unwrap();
        let owner = Name::from_ascii("ABC.example.").unwrap();
        let apex = Name::from_ascii("example.").unwrap();
        let soa = SOA::new(apex.clone(), apex.clone(), 41, 1, 2, 3, 4);
        let answer = Answer {
            rcode: rcode::NOERROR,
            authoritative: true,
            answers: vec![Record::from_rdata(
                owner,
                60,
                RData::TXT(TXT::new(vec!["x".into()])),
            )],
            authority: vec![Record::from_rdata(apex, 60, RData::SOA(soa))],
            additional: vec![],
        };
        let mut out = Vec::new();
        encode(&query, &answer, 1232, &mut out).unwrap();
        let message = Message::from_vec(&out).unwrap();
        assert_eq!(message.id, 7);
        assert!(message.authoritative && message.recursion_desired && message.checking_disabled);
        assert_eq!(message.answers.len(), 1);
        // The owner name is a pointer to the question.
        assert!(out.windows(2).any(|w| w == [0xc0, 12]));

        let RData::SOA(soa) = &message.authorities[0].data else {
            panic!("no SOA");
        };
        assert_eq!(soa.serial, 41);

        let other = query_bytes(9, b"\x03abc\x07EXAMPLE\x00", true);
        let other = Query::parse(&other).unwrap();
        truncate(&mut out, &other, 1232);
        let message = Message::from_vec(&out).unwrap();
        assert!(message.truncation && message.authoritative);
        assert!(message.answers.is_empty() && message.queries.len() == 1);
        assert_eq!(message.response_code, ResponseCode::NoError);
        assert!(message.edns.is_some());
    }

    #[test]
    fn extended_rcode_goes_in_the_opt() {
        let bytes = query_bytes(1, b"\x00", false);
        let query = Query::parse(&bytes).unwrap();
        let mut out = Vec::new();
        write_rcode(&mut out, &query, rcode::BADVERS, 1232);
        let message = Message::from_vec(&out).unwrap();
        // 16 is BADVERS with an OPT record (hickory names it BADSIG).
        assert_eq!(u16::from(message.response_code), rcode::BADVERS);
    }
}
