//! Reading a query message: header, question and the EDNS(0) OPT record,
//! borrowed from the input, without allocating.
//!
//! Every length and count read off the wire is checked against what
//! remains before it is used, so hostile input (truncated, counts of 65535
//! with no data behind them, labels running past the end) ends in
//! [`Malformed`], never a panic. Compression pointers are never followed:
//! the question name must be uncompressed (a pointer there can only point
//! back into the header or into the name itself, so no client sends one),
//! and names in other sections are skipped over, a pointer ending them. So
//! pointer loops cannot happen.

/// Record type of the EDNS(0) pseudo-record.
pub const TYPE_OPT: u16 = 41;
/// Record type of a URI record (RFC 7553).
pub const TYPE_URI: u16 = 256;
/// TXT.
pub const TYPE_TXT: u16 = 16;
/// Incremental zone transfer (RFC 1995).
pub const TYPE_IXFR: u16 = 251;
/// Full zone transfer (RFC 5936).
pub const TYPE_AXFR: u16 = 252;
/// Any type (RFC 1035; answered minimally, RFC 8482).
pub const TYPE_ANY: u16 = 255;
/// The Internet class.
pub const CLASS_IN: u16 = 1;
/// Any class.
pub const CLASS_ANY: u16 = 255;

/// Length of the message header.
pub const HEADER_LEN: usize = 12;

/// Header flag bits (the 16 bits after the id).
pub mod flags {
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
}

/// Response codes (RFC 1035, RFC 6891).
pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    /// Not authoritative for the zone (RFC 2136, used by RFC 5936).
    pub const NOTAUTH: u16 = 9;
    /// Extended: needs an OPT record (its high 8 bits go there).
    pub const BADVERS: u16 = 16;
}

/// What the client said in its OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The largest UDP payload the client can take.
    pub udp_payload: u16,
    pub version: u8,
    /// DNSSEC OK; copied into the answer (RFC 3225), nothing else.
    pub dnssec_ok: bool,
}

/// EDNS option code of a DNS Cookie (RFC 7873).
pub const OPTION_COOKIE: u16 = 10;

/// The DNS Cookie option of a query (RFC 7873 section 4): the client's
/// cookie, and the server cookie it got from us before, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cookie<'a> {
    pub client: [u8; 8],
    /// Empty, or 8 to 32 octets.
    pub server: &'a [u8],
}

/// A parsed query, borrowing the message.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub id: u16,
    /// The 16 flag bits of the header.
    pub flags: u16,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<Edns>,
    /// The DNS Cookie option of the OPT record, if it had one.
    pub cookie: Option<Cookie<'a>>,
    /// The question as sent: name, type, class.
    question: &'a [u8],
}

/// Why a message could not be parsed, and what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Shorter than a header, or a response: send nothing.
    Drop,
    /// The header is readable: answer with its id and this response code
    /// (FORMERR, or NOTIMP for an opcode other than QUERY).
    Reply { id: u16, flags: u16, rcode: u16 },
}

impl<'a> Query<'a> {
    /// Parses a query message. Never panics.
    pub fn parse(message: &'a [u8]) -> Result<Self, Malformed> {
        let Some(header) = message.get(..HEADER_LEN) else {
            return Err(Malformed::Drop);
        };
        let word = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
        let (id, flags) = (word(0), word(2));
        if flags & flags::QR != 0 {
            return Err(Malformed::Drop);
        }
        let reply = |rcode| Malformed::Reply { id, flags, rcode };
        if opcode(flags) != 0 {
            return Err(reply(rcode::NOTIMP));
        }
        let formerr = reply(rcode::FORMERR);
        let (qdcount, ancount, nscount, arcount) = (word(4), word(6), word(8), word(10));
        if qdcount != 1 {
            return Err(formerr);
        }
        let mut r = Cursor {
            bytes: message,
            at: HEADER_LEN,
        };
        r.question_name().ok_or(formerr)?;
        let qtype = r.u16().ok_or(formerr)?;
        let qclass = r.u16().ok_or(formerr)?;
        let question = &message[HEADER_LEN..r.at];
        for _ in 0..u32::from(ancount) + u32::from(nscount) {
            r.skip_record().ok_or(formerr)?;
        }
        let mut edns = None;
        let mut cookie = None;
        for _ in 0..arcount {
            let owner = r.at;
            r.skip_name().ok_or(formerr)?;
            let root_owner = r.at == owner + 1;
            let rtype = r.u16().ok_or(formerr)?;
            let class = r.u16().ok_or(formerr)?;
            let ttl = r.u32().ok_or(formerr)?;
            let rdlength = r.u16().ok_or(formerr)?;
            let rdata = r.take(rdlength.into()).ok_or(formerr)?;
            if rtype == TYPE_OPT {
                // RFC 6891 section 6.1.1: one OPT, owned by the root.
                if edns.is_some() || !root_owner {
                    return Err(formerr);
                }
                cookie = find_cookie(rdata).map_err(|()| formerr)?;
                edns = Some(Edns {
                    udp_payload: class,
                    version: (ttl >> 16) as u8,
                    dnssec_ok: ttl & 0x8000 != 0,
                });
            }
        }
        Ok(Self {
            id,
            flags,
            qtype,
            qclass,
            edns,
            cookie,
            question,
        })
    }

    /// The question name in wire form, as sent (uncompressed, root label
    /// included).
    pub fn qname(&self) -> &'a [u8] {
        &self.question[..self.question.len() - 4]
    }

    /// The whole question section: name, type, class.
    pub fn question(&self) -> &'a [u8] {
        self.question
    }

    pub fn recursion_desired(&self) -> bool {
        self.flags & flags::RD != 0
    }

    /// The largest answer the client takes over UDP: 512 without EDNS,
    /// else its payload size (at least 512) up to `max`.
    pub fn udp_limit(&self, max: u16) -> usize {
        match self.edns {
            None => 512,
            Some(e) => usize::from(e.udp_payload.clamp(512, max.max(512))),
        }
    }
}

/// The COOKIE option among the options of an OPT record's data; `Err`
/// when the options run past the data or a cookie has a length RFC 7873
/// section 5.2.2 calls malformed (FORMERR).
fn find_cookie(mut options: &[u8]) -> Result<Option<Cookie<'_>>, ()> {
    let mut found = None;
    while !options.is_empty() {
        let head = options.get(..4).ok_or(())?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let data = options.get(4..4 + len).ok_or(())?;
        options = &options[4 + len..];
        if code != OPTION_COOKIE {
            continue;
        }
        if found.is_some() || !(len == 8 || (16..=40).contains(&len)) {
            return Err(());
        }
        let client = <[u8; 8]>::try_from(&data[..8]).map_err(|_| ())?;
        found = Some(Cookie {
            client,
            server: &data[8..],
        });
    }
    Ok(found)
}

/// The opcode of a header's flags.
pub fn opcode(flags: u16) -> u8 {
    ((flags >> 11) & 0xf) as u8
}

/// The labels of a well-formed uncompressed wire name (as
/// [`Query::qname`] returns), leftmost first, without the root.
pub fn labels(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let len = usize::from(*wire.get(at)?);
        if len == 0 {
            return None;
        }
        let label = wire.get(at + 1..at + 1 + len)?;
        at += 1 + len;
        Some(label)
    })
}

/// A bounds-checked reader; every method returns `None` past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An uncompressed name of at most 255 octets.
    fn question_name(&mut self) -> Option<()> {
        let start = self.at;
        loop {
            let len = self.u8()?;
            if len == 0 {
                break;
            }
            if len & 0xc0 != 0 {
                // A compression pointer or an obsolete label type.
                return None;
            }
            self.take(len.into())?;
            if self.at - start > crate::name::MAX_NAME_OCTETS {
                return None;
            }
        }
        (self.at - start <= crate::name::MAX_NAME_OCTETS).then_some(())
    }

    /// Skips a name, which may end in a pointer (not followed).
    fn skip_name(&mut self) -> Option<()> {
        loop {
            let len = self.u8()?;
            match len & 0xc0 {
                0 if len == 0 => return Some(()),
                0 => {
                    self.take(len.into())?;
                }
                0xc0 => {
                    self.u8()?;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// Skips a whole resource record.
    fn skip_record(&mut self) -> Option<()> {
        self.skip_name()?;
        self.take(8)?;
        let rdlength = self.u16()?;
        self.take(rdlength.into())?;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
    use super::*;
    use proptest::prelude::*;

    fn query(name: &[u8], qtype: u16, additional: &[u8], arcount: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(&arcount.to_be_bytes());
        m.extend_from_slice(name);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&CLASS_IN.to_be_bytes());
        m.extend_from_slice(additional);
        m
    }

    const NAME: &[u8] = b"\x01a\x06idnode\x08internal\x00";

    /// An OPT record whose data is `options`.
    fn opt_with(options: &[u8]) -> Vec<u8> {
        let mut opt = vec![0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0];
        opt.extend_from_slice(&(options.len() as u16).to_be_bytes());
        opt.extend_from_slice(options);
        opt
    }

    fn option(code: u16, data: &[u8]) -> Vec<u8> {
        let mut o = code.to_be_bytes().to_vec();
        o.extend_from_slice(&(data.len() as u16).to_be_bytes());
        o.extend_from_slice(data);
        o
    }

    #[test]
    fn cookies_are_read_and_malformed_ones_refused() {
        // A client cookie alone, after another option.
        let mut options = option(8, &[0, 1, 24, 0, 192, 0, 2]);
        options.extend(option(OPTION_COOKIE, b"clientck"));
        let m = query(NAME, 16, &opt_with(&options), 1);
        let q = Query::parse(&m).unwrap();
        assert_eq!(q.cookie.unwrap().client, *b"clientck");
        assert!(q.cookie.unwrap().server.is_empty());
        // With a server cookie of 16 octets.
        let data = [b"clientck".as_slice(), &[7u8; 16]].concat();
        let m = query(NAME, 16, &opt_with(&option(OPTION_COOKIE, &data)), 1);
        assert_eq!(Query::parse(&m).unwrap().cookie.unwrap().server, &[7u8; 16]);
        // Lengths RFC 7873 calls malformed, two cookies, an option running
        // past the OPT data: FORMERR.
        for bad in [
            option(OPTION_COOKIE, b"short"),
            option(OPTION_COOKIE, &[1; 12]),
            option(OPTION_COOKIE, &[1; 41]),
            [
                option(OPTION_COOKIE, b"clientck"),
                option(OPTION_COOKIE, b"clientck"),
            ]
            .concat(),
            vec![0, 10, 0, 20, 1, 2],
        ] {
            let m = query(NAME, 16, &opt_with(&bad), 1);
            assert!(
                matches!(
                    Query::parse(&m),
                    Err(Malformed::Reply {
                        rcode: rcode::FORMERR,
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        // No OPT, or an OPT without a cookie: none.
        assert_eq!(Query::parse(&query(NAME, 16, &[], 0)).unwrap().cookie, None);
        assert_eq!(
            Query::parse(&query(NAME, 16, &opt_with(&[]), 1))
                .unwrap()
                .cookie,
            None
        );
    }
    const OPT: &[u8] = &[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0];

    #[test]
    fn parses_question_and_edns() {
        let m = query(NAME, 16, OPT, 1);
        let q = Query::parse(&m).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(q.recursion_desired());
        assert_eq!(q.qname(), NAME);
        assert_eq!((q.qtype, q.qclass), (16, 1));
        let edns = q.edns.unwrap();
        assert_eq!(
            (edns.udp_payload, edns.version, edns.dnssec_ok),
            (1232, 0, true)
        );
        assert_eq!(q.udp_limit(1232), 1232);
        assert_eq!(q.udp_limit(4096), 1232);
        assert_eq!(q.udp_limit(600), 600);
        let labels: Vec<&[u8]> = labels(q.qname()).collect();
        assert_eq!(labels, [&b"a"[..], b"idnode", b"internal"]);
        let plain = query(NAME, 16, &[], 0);
        assert_eq!(Query::parse(&plain).unwrap().udp_limit(1232), 512);
    }

    #[test]
    fn hostile_messages() {
        let formerr = |m: &[u8]| {
            matches!(
                Query::parse(m),
                Err(Malformed::Reply {
                    rcode: rcode::FORMERR,
                    ..
                })
            )
        };
        assert_eq!(Query::parse(&[0; 11]).unwrap_err(), Malformed::Drop);
        // A response is never answered.
        let mut response = query(NAME, 1, &[], 0);
        response[2] |= 0x80;
        assert_eq!(Query::parse(&response).unwrap_err(), Malformed::Drop);
        // NOTIFY and UPDATE: not implemented.
        let mut notify = query(NAME, 6, &[], 0);
        notify[2] |= 4 << 3;
        assert!(matches!(
            Query::parse(&notify),
            Err(Malformed::Reply {
                rcode: rcode::NOTIMP,
                ..
            })
        ));
        // Truncated anywhere.
        let full = query(NAME, 1, OPT, 1);
        for cut in 12..full.len() {
            assert!(formerr(&full[..cut]), "cut at {cut}");
        }
        // A pointer loop in the question: the name points at itself.
        assert!(formerr(&query(&[0xc0, 12], 1, &[], 0)));
        // Counts of 65535 with nothing behind them.
        let mut counts = query(NAME, 1, &[], 0);
        counts[4..12].copy_from_slice(&[0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(formerr(&counts));
        let mut qd = query(NAME, 1, &[], 0);
        qd[5] = 2;
        assert!(formerr(&qd));
        // Two OPT records; an OPT not owned by the root.
        let mut two = OPT.to_vec();
        two.extend_from_slice(OPT);
        assert!(formerr(&query(NAME, 1, &two, 2)));
        assert!(formerr(&query(
            NAME,
            1,
            &[1, b'a', 0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 0],
            1
        )));
        // A name longer than 255 octets.
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'x'; 63]);
        }
        long.push(0);
        assert!(formerr(&query(&long, 1, &[], 0)));
        // A pointer in the additional section ends a name (not followed).
        let rr = [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1];
        assert!(Query::parse(&query(NAME, 1, &rr, 1)).is_ok());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(q) = Query::parse(&bytes) {
                prop_assert!(q.qname().len() <= 255);
                prop_assert!(labels(q.qname()).count() <= 127);
            }
        }

        #[test]
        fn mutated_queries_never_panic(at in 0usize..40, byte in any::<u8>(), cut in 12usize..45) {
            let mut m = query(NAME, 16, OPT, 1);
            if at < m.len() {
                m[at] = byte;
            }
            m.truncate(cut);
            let _ = Query::parse(&m);
        }
    }
}
