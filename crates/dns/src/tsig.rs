//! TSIG (RFC 8945) for zone transfers: a transfer request signed with one
//! of the configured keys is verified, and every message of the answer is
//! signed with the same key (the first over the request's MAC, each later
//! one over the MAC before it).
//!
//! HMAC-SHA256, HMAC-SHA384, HMAC-SHA512 and HMAC-SHA1 (ring). The key
//! names and algorithm names are compared in lower case, as the RFC's
//! canonical form has them. Errors are answered as the RFC says: NOTAUTH
//! with the TSIG error BADKEY, BADSIG or BADTIME, unsigned (BADTIME
//! signed).

use base64::Engine;
use hickory_proto::op::Query;
use hickory_proto::op::{Header, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::TSIG;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use ring::hmac;

/// Seconds of clock difference a signature may have (RFC 8945 suggests
/// 300).
pub const FUDGE: u16 = 300;

/// A shared secret for transfers.
#[derive(Clone)]
pub struct TsigKey {
    name: Name,
    algorithm: TsigAlgorithm,
    key: hmac::Key,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name.to_string())
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TsigKey {
    /// A key from its name, algorithm (`hmac-sha256`, `hmac-sha384`,
    /// `hmac-sha512`, `hmac-sha1`) and base64 secret, as BIND's and NSD's
    /// configurations write them. Errors say which part is wrong.
    pub fn new(name: &str, algorithm: &str, secret: &str) -> Result<Self, String> {
        let name = Name::from_ascii(name)
            .map_err(|e| format!("key name `{name}`: {e}"))?
            .to_lowercase();
        let (algorithm, ring_algorithm) = match algorithm.to_ascii_lowercase().as_str() {
            "hmac-sha256" => (TsigAlgorithm::HmacSha256, hmac::HMAC_SHA256),
            "hmac-sha384" => (TsigAlgorithm::HmacSha384, hmac::HMAC_SHA384),
            "hmac-sha512" => (TsigAlgorithm::HmacSha512, hmac::HMAC_SHA512),
            "hmac-sha1" => (TsigAlgorithm::HmacSha1, hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY),
            other => {
                return Err(format!(
                    "algorithm `{other}`: expected hmac-sha256, hmac-sha384, hmac-sha512 or \
                     hmac-sha1"
                ));
            }
        };
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret.trim())
            .map_err(|e| format!("secret of key {name}: not base64: {e}"))?;
        if secret.is_empty() {
            return Err(format!("secret of key {name} is empty"));
        }
        Ok(Self {
            name,
            algorithm,
            key: hmac::Key::new(ring_algorithm, &secret),
        })
    }

    pub fn name(&self) -> &Name {
        &self.name
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key, data).as_ref().to_vec()
    }
}

/// What a transfer request's TSIG says.
#[derive(Debug)]
pub enum Verdict<'k> {
    /// No TSIG record.
    Unsigned,
    /// Signed with `key` and verified: sign the answer with the signer.
    Signed(Signer<'k>),
    /// Signed but refused: send this answer (NOTAUTH) and nothing else.
    Refused(Vec<u8>),
}

/// Signs the messages of one answer.
#[derive(Debug)]
pub struct Signer<'k> {
    key: &'k TsigKey,
    /// The MAC the next message's covers: the request's, then each
    /// message's own.
    previous: Vec<u8>,
    first: bool,
    time: u64,
}

/// Where the TSIG record of a message starts, and the record, when the
/// message has one as its last additional record.
fn find_tsig(message: &[u8]) -> Option<(usize, Record)> {
    let mut decoder = BinDecoder::new(message);
    let header = Header::read(&mut decoder).ok()?;
    if header.counts.additionals == 0 {
        return None;
    }
    for _ in 0..header.counts.queries {
        Query::read(&mut decoder).ok()?;
    }
    let before_last = usize::from(header.counts.answers)
        + usize::from(header.counts.authorities)
        + usize::from(header.counts.additionals)
        - 1;
    for _ in 0..before_last {
        Record::read(&mut decoder).ok()?;
    }
    let at = message.len() - decoder.len();
    let record = Record::read(&mut decoder).ok()?;
    (record.record_type() == RecordType::TSIG && decoder.is_empty()).then_some((at, record))
}

/// Checks the TSIG of `request` (unframed) against `keys` at unix time
/// `now`.
pub fn verify<'k>(request: &[u8], keys: &'k [TsigKey], now: u64) -> Verdict<'k> {
    let Some((at, record)) = find_tsig(request) else {
        return Verdict::Unsigned;
    };
    let RData::TSIG(tsig) = &record.data else {
        return Verdict::Unsigned;
    };
    let name = record.name.to_lowercase();
    let Some(key) = keys
        .iter()
        .find(|k| k.name == name && k.algorithm == tsig.algorithm)
    else {
        tracing::info!(key = %name, "zone transfer refused: unknown TSIG key");
        return Verdict::Refused(unsigned_error(request, &name, tsig, TsigError::BadKey));
    };
    let Some(data) = request_mac_data(request, at, tsig, &name) else {
        return Verdict::Refused(unsigned_error(request, &name, tsig, TsigError::BadSig));
    };
    if hmac::verify(&key.key, &data, &tsig.mac).is_err() {
        tracing::info!(key = %name, "zone transfer refused: bad TSIG signature");
        return Verdict::Refused(unsigned_error(request, &name, tsig, TsigError::BadSig));
    }
    if now.abs_diff(tsig.time) > u64::from(tsig.fudge) {
        tracing::info!(key = %name, "zone transfer refused: TSIG time outside the fudge");
        let mut signer = Signer {
            key,
            previous: tsig.mac.clone(),
            first: true,
            time: now,
        };
        let mut answer = error_answer(request, ResponseCode::NotAuth);
        signer.sign_with_error(&mut answer, Some(TsigError::BadTime));
        return Verdict::Refused(answer);
    }
    Verdict::Signed(Signer {
        key,
        previous: tsig.mac.clone(),
        first: true,
        time: now,
    })
}

/// The data a request's MAC covers: the message without its TSIG record
/// (ARCOUNT one less, the original id), then the TSIG variables.
fn request_mac_data(request: &[u8], at: usize, tsig: &TSIG, name: &Name) -> Option<Vec<u8>> {
    let mut data = Vec::with_capacity(request.len() + 64);
    data.extend_from_slice(request.get(..at)?);
    data.get_mut(..2)?.copy_from_slice(&tsig.oid.to_be_bytes());
    let arcount = u16::from_be_bytes([*data.get(10)?, *data.get(11)?]).checked_sub(1)?;
    data.get_mut(10..12)?
        .copy_from_slice(&arcount.to_be_bytes());
    data.extend_from_slice(&variables(tsig, name)?);
    Some(data)
}

/// The TSIG variables (RFC 8945 4.3.3) in their MAC form.
fn variables(tsig: &TSIG, name: &Name) -> Option<Vec<u8>> {
    // A fresh buffer: BinEncoder writes from the start of the one it is
    // given.
    let mut out = Vec::with_capacity(64);
    let mut encoder = BinEncoder::new(&mut out);
    tsig.emit_tsig_for_mac(&mut encoder, name).ok()?;
    Some(out)
}

/// The answer head for a refused request: its id and question.
fn error_answer(request: &[u8], code: ResponseCode) -> Vec<u8> {
    let mut answer = Message::response(0, OpCode::Query);
    if let Ok(query) = Message::from_vec(request) {
        answer.metadata.id = query.metadata.id;
        answer.metadata.op_code = query.metadata.op_code;
        answer.queries = query.queries;
    }
    answer.metadata.response_code = code;
    answer.to_vec().unwrap_or_default()
}

/// NOTAUTH with an unsigned TSIG carrying `error` (RFC 8945 5.2.1, 5.2.2).
fn unsigned_error(request: &[u8], name: &Name, tsig: &TSIG, error: TsigError) -> Vec<u8> {
    let mut answer = error_answer(request, ResponseCode::NotAuth);
    let rdata = TSIG::new(
        tsig.algorithm.clone(),
        tsig.time,
        tsig.fudge,
        Vec::new(),
        tsig.oid,
        Some(error),
        Vec::new(),
    );
    append_tsig(&mut answer, name, rdata);
    answer
}

/// Appends a TSIG record to an encoded message and counts it.
fn append_tsig(message: &mut Vec<u8>, name: &Name, rdata: TSIG) {
    let mut record = Record::from_rdata(name.clone(), 0, RData::TSIG(rdata));
    record.dns_class = DNSClass::ANY;
    let mut bytes = Vec::new();
    let mut encoder = BinEncoder::new(&mut bytes);
    if record.emit(&mut encoder).is_err() || message.len() < 12 {
        return;
    }
    let arcount = u16::from_be_bytes([message[10], message[11]]).saturating_add(1);
    message[10..12].copy_from_slice(&arcount.to_be_bytes());
    message.extend_from_slice(&bytes);
}

impl Signer<'_> {
    /// Signs one message of the answer (unframed, in order).
    pub fn sign(&mut self, message: &mut Vec<u8>) {
        self.sign_with_error(message, None);
    }

    fn sign_with_error(&mut self, message: &mut Vec<u8>, error: Option<TsigError>) {
        let Some(id) = message.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
            return;
        };
        // BADTIME carries the server's time in "other data" (RFC 8945 5.2.3).
        let other = match error {
            Some(TsigError::BadTime) => self.time.to_be_bytes()[2..].to_vec(),
            _ => Vec::new(),
        };
        let stub = TSIG::new(
            self.key.algorithm.clone(),
            self.time,
            FUDGE,
            Vec::new(),
            id,
            error,
            other,
        );
        let mut data = Vec::with_capacity(message.len() + 128);
        data.extend_from_slice(&(self.previous.len() as u16).to_be_bytes());
        data.extend_from_slice(&self.previous);
        data.extend_from_slice(message);
        if self.first {
            let Some(variables) = variables(&stub, &self.key.name) else {
                return;
            };
            data.extend_from_slice(&variables);
        } else {
            data.extend_from_slice(&((self.time >> 32) as u16).to_be_bytes());
            data.extend_from_slice(&(self.time as u32).to_be_bytes());
            data.extend_from_slice(&FUDGE.to_be_bytes());
        }
        let mac = self.key.mac(&data);
        self.previous = mac.clone();
        self.first = false;
        append_tsig(message, &self.key.name, stub.set_mac(mac));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// An AXFR query for `idnode.internal.` signed by dig 9.18
    /// (`dig -y hmac-sha256:xfr-key.:<SECRET> AXFR idnode.internal.`),
    /// captured at unix time [`SIGNED`].
    const DIG_AXFR: &str = "7140002000010000000000020669646e6f646508696e7465726e616c0000fc00010000\
        2904d000000000000c000a000896d4513fbf68dfb9077866722d6b65790000fa00ff00000000003d0b686d61\
        632d7368613235360000006b0b410e012c00206b0c19d6b16a2781e4c51f13499ebacdd701a216c4239647\
        652f6182b1018198714000000000";
    /// base64 of `idnode-test-secret-0123456789abcdef`.
    const SECRET: &str = "aWRub2RlLXRlc3Qtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY=";
    const SIGNED: u64 = 1_795_899_662;

    fn query() -> Vec<u8> {
        hex::decode(DIG_AXFR).unwrap()
    }

    fn key(name: &str, secret: &str) -> TsigKey {
        TsigKey::new(name, "hmac-sha256", secret).unwrap()
    }

    /// The response code and TSIG error of an answer.
    fn refusal(answer: &[u8]) -> (ResponseCode, Option<TsigError>) {
        let (_, record) = find_tsig(answer).expect("a TSIG record");
        let RData::TSIG(tsig) = record.data else {
            panic!("not a TSIG")
        };
        let message = Message::from_vec(answer).unwrap();
        (message.metadata.response_code, tsig.error)
    }

    #[test]
    fn a_request_signed_by_dig_verifies() {
        let keys = [key("other.", SECRET), key("XFR-KEY.", SECRET)];
        match verify(&query(), &keys, SIGNED + 10) {
            Verdict::Signed(signer) => assert_eq!(signer.key.name().to_string(), "xfr-key."),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_secret_unknown_key_stale_time_and_tampering_are_refused() {
        let wrong = [key("xfr-key.", "c2VjcmV0")];
        let Verdict::Refused(answer) = verify(&query(), &wrong, SIGNED) else {
            panic!("accepted a wrong secret")
        };
        assert_eq!(
            refusal(&answer),
            (ResponseCode::NotAuth, Some(TsigError::BadSig))
        );

        let unknown = [key("another-key.", SECRET)];
        let Verdict::Refused(answer) = verify(&query(), &unknown, SIGNED) else {
            panic!("accepted an unknown key")
        };
        assert_eq!(
            refusal(&answer),
            (ResponseCode::NotAuth, Some(TsigError::BadKey))
        );

        let good = [key("xfr-key.", SECRET)];
        let Verdict::Refused(answer) = verify(&query(), &good, SIGNED + 1000) else {
            panic!("accepted a signature outside the fudge")
        };
        assert_eq!(
            refusal(&answer),
            (ResponseCode::NotAuth, Some(TsigError::BadTime))
        );

        let mut tampered = query();
        tampered[13] ^= 0x20; // `i` of `idnode` becomes `I`
        let Verdict::Refused(answer) = verify(&tampered, &good, SIGNED) else {
            panic!("accepted a changed message")
        };
        assert_eq!(
            refusal(&answer),
            (ResponseCode::NotAuth, Some(TsigError::BadSig))
        );
    }

    #[test]
    fn unsigned_and_garbage_messages_are_unsigned() {
        let keys = [key("xfr-key.", SECRET)];
        let q = query();
        // Without its TSIG record, ARCOUNT 1 (the OPT record stays).
        let (at, _) = find_tsig(&q).unwrap();
        let mut unsigned = q[..at].to_vec();
        unsigned[11] = 1;
        assert!(matches!(
            verify(&unsigned, &keys, SIGNED),
            Verdict::Unsigned
        ));
        for cut in 0..q.len() {
            // Never a panic; a cut message is at most "unsigned".
            let _ = verify(&q[..cut], &keys, SIGNED);
        }
        assert!(find_tsig(&q).is_some() && find_tsig(&unsigned).is_none());
    }

    #[test]
    fn keys_parse_with_clear_errors() {
        assert!(
            TsigKey::new("k.", "hmac-md5", SECRET)
                .unwrap_err()
                .contains("algorithm")
        );
        assert!(
            TsigKey::new("k.", "hmac-sha256", "%%%")
                .unwrap_err()
                .contains("base64")
        );
        assert!(TsigKey::new("k.", "HMAC-SHA512", SECRET).is_ok());
    }

    #[test]
    fn answers_are_signed_and_chained() {
        let keys = [key("xfr-key.", SECRET)];
        let Verdict::Signed(mut signer) = verify(&query(), &keys, SIGNED) else {
            panic!("not verified")
        };
        let mut first = error_answer(&query(), ResponseCode::NoError);
        let mut second = first.clone();
        signer.sign(&mut first);
        signer.sign(&mut second);
        let mac = |m: &[u8]| {
            let (_, record) = find_tsig(m).unwrap();
            let RData::TSIG(tsig) = record.data else {
                panic!()
            };
            tsig.mac
        };
        // The same message signed first and then later differ: the second
        // covers the first's MAC and only the timers.
        assert_eq!(mac(&first).len(), 32);
        assert_ne!(mac(&first), mac(&second));
        // The first one's MAC covers the request MAC, the message and the
        // TSIG variables (RFC 8945 4.3.1), recomputed here by hand.
        let (at, _) = find_tsig(&first).unwrap();
        let mut body = first[..at].to_vec();
        body[11] -= 1;
        let request_mac = {
            let (_, r) = find_tsig(&query()).unwrap();
            let RData::TSIG(t) = r.data else { panic!() };
            t.mac
        };
        let mut data = vec![0, 32];
        data.extend_from_slice(&request_mac);
        data.extend_from_slice(&body);
        // key name, class ANY, TTL 0, algorithm, time (48 bits), fudge,
        // error 0, other length 0.
        data.extend_from_slice(b"\x07xfr-key\x00\x00\xff\x00\x00\x00\x00");
        data.extend_from_slice(b"\x0bhmac-sha256\x00");
        data.extend_from_slice(&SIGNED.to_be_bytes()[2..]);
        data.extend_from_slice(&FUDGE.to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, 0]);
        let secret = base64::engine::general_purpose::STANDARD
            .decode(SECRET)
            .unwrap();
        let expected = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &secret), &data);
        assert_eq!(mac(&first), expected.as_ref());
    }
}
