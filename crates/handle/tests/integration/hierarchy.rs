//! The hierarchy vectors (`tests/vectors/hierarchy/`, CNRI Handle.Net 9.2):
//! requests, plain and certified responses, site records and server keys.
//! Checks that every vector decodes, that site records and keys re-encode
//! byte for byte, that every signature verifies with the key of the site
//! record that points to the signer, that signing with the test keys
//! reproduces the RSA-signed answers exactly, and that the response
//! encoder, given the settings a server must use, writes the same bytes.

use crate::parse_hex;
use idnode_core::wire::encode_value;
use idnode_core::{Permissions, Ttl, Value};
use idnode_handle::certify::{
    Credential, HS_SIGNED, SignError, VerifyError, hash_for, parse_credential, sign_response,
    signed_bytes, verify_response,
};
use idnode_handle::keys::KeyError;
use idnode_handle::*;

macro_rules! vector {
    ($name:literal) => {
        include_str!(concat!("../vectors/hierarchy/", $name))
    };
}

const HS_SITE_TOP: &str = vector!("hs-site-top-rsa.hex");
const HS_SITE_PREFIX_SECONDARY: &str = vector!("hs-site-prefix-secondary-dsa.hex");
const HS_SITE_ENTERPRISE: &str = vector!("hs-site-enterprise-rsa.hex");
const HS_SERV: &str = vector!("hs-serv-data.hex");

const SEQ_1_REQ: &str = vector!("seq-1-top-request.hex");
const SEQ_1_RESP: &str = vector!("seq-1-top-response-303.hex");
const SEQ_2_REQ: &str = vector!("seq-2-secondary-request.hex");
const SEQ_2_RESP: &str = vector!("seq-2-secondary-response.hex");
const SEQ_3_REQ: &str = vector!("seq-3-enterprise-request.hex");
const SEQ_3_RESP: &str = vector!("seq-3-enterprise-response.hex");
const CERT_1_REQ: &str = vector!("cert-1-top-request.hex");
const CERT_1_RESP: &str = vector!("cert-1-top-response-303-rsa.hex");
const CERT_2_REQ: &str = vector!("cert-2-secondary-request.hex");
const CERT_2_RESP: &str = vector!("cert-2-secondary-response-dsa.hex");
const CERT_3_REQ: &str = vector!("cert-3-enterprise-request.hex");
const CERT_3_RESP: &str = vector!("cert-3-enterprise-response-rsa.hex");
const CERTRD_3_REQ: &str = vector!("certrd-3-enterprise-request.hex");
const CERTRD_3_RESP: &str = vector!("certrd-3-enterprise-response-rsa.hex");
const GSI_REQ: &str = vector!("get-site-info-request.hex");
const GSI_RESP: &str = vector!("get-site-info-response.hex");
const SERV_3_REQ: &str = vector!("serv-3-top-88.100-request.hex");
const SERV_4_REQ: &str = vector!("serv-4-secondary-service-handle-request.hex");
const NOTFOUND_1_REQ: &str = vector!("notfound-1-top-request.hex");
const NOTFOUND_2_REQ: &str = vector!("notfound-2-top-authoritative-retry-request.hex");

const TOP_KEY: &str = vector!("test-only-top-rsa.pem");
const SECONDARY_KEY: &str = vector!("test-only-secondary-dsa.pem");
const ENTERPRISE_KEY: &str = vector!("test-only-enterprise-rsa.pem");

/// The expiration of every header in the vectors.
const EXPIRATION: u32 = 0x6553_f100;
/// The timestamp of every value in the vectors.
const TIMESTAMP: u32 = 0x6553_e2f0;
/// A `now` whose response expiration is the vectors' (now + 12 h).
const NOW: u32 = EXPIRATION - EXPIRATION_SECS;

const REQUESTS: [(&str, &str); 14] = [
    ("seq-1", SEQ_1_REQ),
    ("seq-2", SEQ_2_REQ),
    ("seq-3", SEQ_3_REQ),
    ("cert-1", CERT_1_REQ),
    ("cert-2", CERT_2_REQ),
    ("cert-3", CERT_3_REQ),
    ("certrd-3", CERTRD_3_REQ),
    ("get-site-info", GSI_REQ),
    ("serv-3", SERV_3_REQ),
    ("serv-4", SERV_4_REQ),
    ("notfound-1", NOTFOUND_1_REQ),
    ("notfound-2", NOTFOUND_2_REQ),
    // seq-2 and cert-2 repeat steps 1 verbatim (hdllib resends its bytes).
    ("seq-2 = seq-1", SEQ_1_REQ),
    ("cert-2 = cert-1", CERT_1_REQ),
];

const RESPONSES: [(&str, &str); 8] = [
    ("seq-1", SEQ_1_RESP),
    ("seq-2", SEQ_2_RESP),
    ("seq-3", SEQ_3_RESP),
    ("cert-1", CERT_1_RESP),
    ("cert-2", CERT_2_RESP),
    ("cert-3", CERT_3_RESP),
    ("certrd-3", CERTRD_3_RESP),
    ("get-site-info", GSI_RESP),
];

fn site(text: &str) -> SiteInfo {
    SiteInfo::decode(&parse_hex(text)).unwrap()
}

/// The public key of the (only) server of a site record.
fn site_key(text: &str) -> PublicKey {
    let site = site(text);
    assert_eq!(site.servers.len(), 1);
    PublicKey::decode(&site.servers[0].public_key).unwrap()
}

fn server_key(pem: &str) -> ServerKey {
    ServerKey::from_pkcs8_pem(pem).unwrap()
}

/// A value with the vectors' fixed inputs, in wire form.
fn value(index: u32, kind: &str, data: Vec<u8>) -> Vec<u8> {
    let mut v = Value::new(index, kind, data);
    v.timestamp = TIMESTAMP;
    v.ttl = Ttl::Relative(86_400);
    v.permissions =
        Permissions(Permissions::ADMIN_READ | Permissions::ADMIN_WRITE | Permissions::PUBLIC_READ);
    let mut raw = Vec::new();
    encode_value(&mut raw, &v);
    raw
}

/// HS_ADMIN data: permissions 0x0fff, admin handle, admin index 300.
fn hs_admin(admin: &str) -> Vec<u8> {
    let mut d = vec![0x0f, 0xff];
    d.extend_from_slice(&(admin.len() as u32).to_be_bytes());
    d.extend_from_slice(admin.as_bytes());
    d.extend_from_slice(&300u32.to_be_bytes());
    d
}

/// The context a server of a primary site with this serial uses for
/// `request`.
fn context(request: &[u8], serial: u16) -> ResponseContext {
    let req = decode_request(request).unwrap();
    let ctx = ResponseContext::for_request(&req, NOW).with_site(serial, true);
    assert_eq!(ctx.expiration, EXPIRATION);
    ctx
}

/// The same message without its credential (a zero credential length),
/// as `ResponseBuilder::finish` writes it.
fn unsigned(message: &[u8]) -> Vec<u8> {
    let body_len = u32::from_be_bytes(message[40..44].try_into().unwrap()) as usize;
    let end = 20 + 24 + body_len;
    let mut out = message[..end].to_vec();
    out.extend_from_slice(&[0; 4]);
    let len = (out.len() - 20) as u32;
    out[16..20].copy_from_slice(&len.to_be_bytes());
    out
}

/// Answers in the shapes the vectors hold, written by our encoder.
fn seq_1_answer(request: &[u8], out: &mut Vec<u8>) {
    let raw = value(2, "HS_SITE.PREFIX", parse_hex(HS_SITE_PREFIX_SECONDARY));
    let ctx = context(request, 1);
    let n = encode_values_response(
        out,
        &ctx,
        opcode::RESOLUTION,
        code::PREFIX_REFERRAL,
        b"",
        [raw.as_slice()],
    );
    assert_eq!(n, 1);
}

fn seq_2_answer(request: &[u8], out: &mut Vec<u8>) {
    let raw = value(1, "HS_SITE", parse_hex(HS_SITE_ENTERPRISE));
    encode_resolution_response(
        out,
        &context(request, 2),
        b"0.NA/88.100.1",
        [raw.as_slice()],
    );
}

fn seq_3_answer(request: &[u8], out: &mut Vec<u8>) {
    let url = value(1, "URL", b"https://example.com/pump/1".to_vec());
    let admin = value(100, "HS_ADMIN", hs_admin("0.NA/88.100.1"));
    encode_resolution_response(
        out,
        &context(request, 3),
        b"88.100.1/PUMP-1",
        [url.as_slice(), admin.as_slice()],
    );
}

#[test]
fn every_request_decodes() {
    for (name, text) in REQUESTS {
        let bytes = parse_hex(text);
        assert_eq!(frame_len(&bytes), Ok(Some(bytes.len())), "{name}");
        let req = decode_request(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(req.header.expiration, EXPIRATION, "{name}");
        assert_eq!(req.credential, b"", "{name}");
        assert_eq!(req.envelope.suggested_version(), (2, 11), "{name}");
        assert_eq!(response_version(&req.envelope), (2, 11), "{name}");
        if req.header.opcode == opcode::RESOLUTION {
            let q = ResolutionQuery::decode(req.body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!q.handle.is_empty(), "{name}");
        }
    }
    // Step 1 of the plain chain: the prefix lookup hdllib sends.
    let bytes = parse_hex(SEQ_1_REQ);
    let req = decode_request(&bytes).unwrap();
    assert_eq!(req.envelope.request_id, 0x0a0a_0a01);
    assert_eq!(req.header.op_flags, flags::REC | flags::CA | flags::PO);
    assert_eq!((req.header.site_serial, req.header.recursion), (1, 1));
    let q = ResolutionQuery::decode(req.body).unwrap();
    assert_eq!(q.handle, b"0.NA/88.100.1");
    let types: Vec<&[u8]> = q.types().collect();
    assert_eq!(
        types,
        [&b"HS_SITE"[..], b"HS_SITE.6", b"HS_SERV", b"HS_NAMESPACE"]
    );
    assert!(q.wants(1, b"HS_SITE") && !q.wants(100, b"HS_ADMIN"));
    // The 303 carries HS_SITE.PREFIX although the type list does not name
    // it: referral values are not filtered by the request's types.
    assert!(!q.wants(2, b"HS_SITE.PREFIX"));
    // Certified: CT, and CT|RD.
    let cert = decode_request(&parse_hex(CERT_3_REQ)).unwrap().header;
    assert_eq!(
        cert.op_flags,
        flags::CT | flags::REC | flags::CA | flags::PO
    );
    let certrd = decode_request(&parse_hex(CERTRD_3_REQ)).unwrap().header;
    assert_eq!(certrd.op_flags, cert.op_flags | flags::RD);
    // The not-found retry adds AT and keeps the request id.
    let (first, retry) = (parse_hex(NOTFOUND_1_REQ), parse_hex(NOTFOUND_2_REQ));
    let first = decode_request(&first).unwrap();
    let retry = decode_request(&retry).unwrap();
    assert_eq!(retry.header.op_flags, first.header.op_flags | flags::AT);
    assert_eq!(retry.envelope.request_id, first.envelope.request_id);
    // GET_SITE_INFO from a CNRI tool: 2.3 suggesting 2.11, handle "/", serial -1.
    let gsi = parse_hex(GSI_REQ);
    let req = decode_request(&gsi).unwrap();
    assert_eq!((req.envelope.major, req.envelope.minor), (2, 3));
    assert_eq!(req.header.opcode, opcode::GET_SITE_INFO);
    assert_eq!(req.header.site_serial, -1);
    assert_eq!(req.body, [0, 0, 0, 1, b'/']);
}

#[test]
fn every_response_decodes() {
    for (name, text) in RESPONSES {
        let bytes = parse_hex(text);
        let r = decode_response(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((r.envelope.major, r.envelope.minor), (2, 11), "{name}");
        assert!(r.header.has(flags::AT | flags::REC), "{name}");
        assert_eq!(r.header.expiration, EXPIRATION, "{name}");
        let signed = r.header.has(flags::CT);
        assert_eq!(
            parse_credential(&bytes).unwrap().is_some(),
            signed,
            "{name}: a credential exactly when CT"
        );
    }
    let prefix_site = parse_hex(HS_SITE_PREFIX_SECONDARY);
    let enterprise_site = parse_hex(HS_SITE_ENTERPRISE);
    for text in [SEQ_1_RESP, CERT_1_RESP] {
        let r = decode_response(&parse_hex(text)).unwrap();
        assert_eq!(r.header.response_code, code::PREFIX_REFERRAL);
        assert_eq!(r.header.site_serial, 1);
        let ResponseBody::Referral { handle, values } = r.body else {
            panic!("not a referral");
        };
        assert_eq!(handle, "", "CNRI's 303 carries an empty handle");
        assert_eq!(values.len(), 1);
        assert_eq!(
            (values[0].index, values[0].kind.as_str()),
            (2, "HS_SITE.PREFIX")
        );
        assert_eq!(values[0].data.as_ref(), prefix_site.as_slice());
        assert_eq!(values[0].timestamp, TIMESTAMP);
        assert_eq!(values[0].ttl, Ttl::Relative(86_400));
        assert_eq!(values[0].permissions, Permissions(0x0e));
    }
    for text in [SEQ_2_RESP, CERT_2_RESP] {
        let r = decode_response(&parse_hex(text)).unwrap();
        assert_eq!(r.header.site_serial, 2);
        let ResponseBody::Resolution { handle, values } = r.body else {
            panic!("not a resolution");
        };
        assert_eq!(handle, "0.NA/88.100.1");
        assert_eq!(values.len(), 1);
        assert_eq!((values[0].index, values[0].kind.as_str()), (1, "HS_SITE"));
        assert_eq!(values[0].data.as_ref(), enterprise_site.as_slice());
    }
    for text in [SEQ_3_RESP, CERT_3_RESP, CERTRD_3_RESP] {
        let r = decode_response(&parse_hex(text)).unwrap();
        assert_eq!(r.header.site_serial, 3);
        let ResponseBody::Resolution { handle, values } = r.body else {
            panic!("not a resolution");
        };
        assert_eq!(handle, "88.100.1/PUMP-1");
        let kinds: Vec<(u32, &str)> = values.iter().map(|v| (v.index, v.kind.as_str())).collect();
        assert_eq!(kinds, [(1, "URL"), (100, "HS_ADMIN")]);
        assert_eq!(values[0].data.as_ref(), b"https://example.com/pump/1");
        assert_eq!(
            values[1].data.as_ref(),
            hs_admin("0.NA/88.100.1").as_slice()
        );
    }
    // RD: the digest of the request's header and body comes first.
    let r = decode_response(&parse_hex(CERTRD_3_RESP)).unwrap();
    let digest = r.digest.unwrap();
    assert_eq!(digest.algorithm(), DigestAlgorithm::Sha256);
    assert_eq!(
        hex::encode(digest.as_bytes()),
        "4355b57035cafd0fe2b2f854f0445b8c348aacbb1d9e3144bbbe12dfd0e0ef3a"
    );
    let request = parse_hex(CERTRD_3_REQ);
    let req = decode_request(&request).unwrap();
    assert_eq!(Digest::for_version(2, 11, req.digest_input), digest);
    // GET_SITE_INFO: the body is the site record, nothing else.
    let r = decode_response(&parse_hex(GSI_RESP)).unwrap();
    assert_eq!(r.header.opcode, opcode::GET_SITE_INFO);
    assert_eq!(r.header.site_serial, 3);
    let ResponseBody::Other(body) = r.body else {
        panic!("GET_SITE_INFO body");
    };
    assert_eq!(body, enterprise_site);
    assert_eq!(SiteInfo::decode(&body).unwrap().serial, 3);
}

#[test]
fn site_records_and_keys_re_encode_byte_for_byte() {
    for (text, serial, port, kind, desc) in [
        (
            HS_SITE_TOP,
            1,
            36411,
            KeyKind::Rsa,
            "test top-level node (homes 88)",
        ),
        (
            HS_SITE_PREFIX_SECONDARY,
            2,
            36412,
            KeyKind::Dsa,
            "test secondary node (homes 88.100)",
        ),
        (
            HS_SITE_ENTERPRISE,
            3,
            36413,
            KeyKind::Rsa,
            "test enterprise node (homes 88.100.1)",
        ),
    ] {
        let bytes = parse_hex(text);
        let site = SiteInfo::decode(&bytes).unwrap();
        assert_eq!(hex::encode(site.encode()), hex::encode(&bytes), "{desc}");
        assert_eq!(site.version, 1);
        assert_eq!((site.protocol_major, site.protocol_minor), (2, 11));
        assert_eq!(site.serial, serial);
        assert!(site.primary && !site.multi_primary);
        assert_eq!(site.hash, HashOption::Whole);
        assert_eq!(site.hash_filter, "");
        assert_eq!(site.attributes, [("desc".to_owned(), desc.to_owned())]);
        let server = &site.servers[0];
        assert_eq!(server.id, 1);
        assert_eq!(
            server.query_endpoint(InterfaceProtocol::Udp),
            Some(format!("127.0.0.1:{port}").parse().unwrap())
        );
        assert_eq!(
            server.interfaces,
            [
                Interface {
                    kind: InterfaceKind::Both,
                    protocol: InterfaceProtocol::Tcp,
                    port,
                },
                Interface {
                    kind: InterfaceKind::Query,
                    protocol: InterfaceProtocol::Udp,
                    port,
                },
            ]
        );
        let key = PublicKey::decode(&server.public_key).unwrap();
        assert_eq!(key.kind(), kind, "{desc}");
        assert_eq!(
            hex::encode(key.encode()),
            hex::encode(&server.public_key),
            "{desc}: the key re-encodes as CNRI wrote it"
        );
    }
    // HS_SERV data is the bare service handle.
    assert_eq!(parse_hex(HS_SERV), b"88.100/SERVICE-1");
}

#[test]
fn test_private_keys_match_the_published_keys() {
    for (pem, site_text, kind) in [
        (TOP_KEY, HS_SITE_TOP, KeyKind::Rsa),
        (SECONDARY_KEY, HS_SITE_PREFIX_SECONDARY, KeyKind::Dsa),
        (ENTERPRISE_KEY, HS_SITE_ENTERPRISE, KeyKind::Rsa),
    ] {
        let key = server_key(pem);
        assert_eq!(key.kind(), kind);
        assert_eq!(key.public_key(), site_key(site_text));
        assert_eq!(
            key.public_key().encode(),
            site(site_text).servers[0].public_key
        );
        // PEM out and back in gives the same key.
        let again = ServerKey::from_pkcs8_pem(&key.to_pkcs8_pem().unwrap()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
    }
    assert!(matches!(
        ServerKey::from_pkcs8_pem(&TOP_KEY.replace("PRIVATE KEY", "RSA PRIVATE KEY")),
        Err(KeyError::Pkcs8(_))
    ));
}

#[test]
fn every_signed_response_verifies_with_the_named_site_key() {
    let top = site_key(HS_SITE_TOP);
    let secondary = site_key(HS_SITE_PREFIX_SECONDARY);
    let enterprise = site_key(HS_SITE_ENTERPRISE);
    for (name, text, key, others) in [
        ("cert-1", CERT_1_RESP, &top, [&secondary, &enterprise]),
        ("cert-2", CERT_2_RESP, &secondary, [&top, &enterprise]),
        ("cert-3", CERT_3_RESP, &enterprise, [&top, &secondary]),
        ("certrd-3", CERTRD_3_RESP, &enterprise, [&top, &secondary]),
    ] {
        let bytes = parse_hex(text);
        assert_eq!(verify_response(&bytes, key), Ok(()), "{name}");
        for other in others {
            assert_eq!(
                verify_response(&bytes, other),
                Err(VerifyError::BadSignature),
                "{name}: wrong key"
            );
        }
        let c = parse_credential(&bytes).unwrap().unwrap();
        assert_eq!((c.version, c.reserved, c.flags), (0, 0, 0), "{name}");
        assert_eq!((c.signer_handle, c.signer_index), (&b""[..], 0), "{name}");
        assert_eq!(c.kind, HS_SIGNED, "{name}");
        assert_eq!(c.hash, b"SHA-256", "{name}");
        assert_eq!(c.hash_alg(), Some(HashAlg::Sha256), "{name}");
        // The signature covers the signed bytes, checked directly too.
        let signed = signed_bytes(&bytes).unwrap();
        assert!(key.verify(HashAlg::Sha256, &signed, c.signature), "{name}");
        assert!(!key.verify(HashAlg::Sha1, &signed, c.signature), "{name}");
        // CNRI's hash choice for a 2.11 answer is SHA-256 for both kinds.
        assert_eq!(hash_for((2, 11), key.kind()), HashAlg::Sha256);
        // Unsigned, the same message fails as unsigned.
        assert_eq!(
            verify_response(&unsigned(&bytes), key),
            Err(VerifyError::Unsigned),
            "{name}"
        );
    }
    assert_eq!(
        verify_response(&parse_hex(SEQ_1_RESP), &top),
        Err(VerifyError::Unsigned)
    );
    assert_eq!(
        parse_credential(&parse_hex(CERT_2_RESP))
            .unwrap()
            .unwrap()
            .signature
            .len(),
        71
    );
}

#[test]
fn tampering_breaks_the_signature() {
    let key = site_key(HS_SITE_ENTERPRISE);
    let good = parse_hex(CERT_3_RESP);
    let body_len = u32::from_be_bytes(good[40..44].try_into().unwrap()) as usize;
    let hb_end = 20 + 24 + body_len;
    // Every byte of the envelope's version and ids, the header and the body
    // is covered; flip each in turn.
    let covered = (0..12).chain(20..hb_end);
    for at in covered {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        let result = verify_response(&bad, &key);
        assert!(result.is_err(), "byte {at} not covered");
    }
    // The sequence number is not covered (datagrams are split after
    // signing).
    let mut resequenced = good.clone();
    resequenced[15] = 2;
    assert_eq!(verify_response(&resequenced, &key), Ok(()));
    // A flipped signature byte, a different hash name, a session MAC type.
    let sig_at = good.len() - 1;
    let mut bad = good.clone();
    bad[sig_at] ^= 0x80;
    assert_eq!(verify_response(&bad, &key), Err(VerifyError::BadSignature));
    let resign = |edit: &dyn Fn(&mut Credential<'_>)| -> Vec<u8> {
        let c0 = parse_credential(&good).unwrap().unwrap();
        let mut c = c0;
        edit(&mut c);
        let mut out = good[..hb_end].to_vec();
        let mut cred = Vec::new();
        c.encode_into(&mut cred);
        out.extend_from_slice(&(cred.len() as u32).to_be_bytes());
        out.extend_from_slice(&cred);
        let len = (out.len() - 20) as u32;
        out[16..20].copy_from_slice(&len.to_be_bytes());
        out
    };
    let same = resign(&|_| {});
    assert_eq!(same, good, "credential re-encodes byte for byte");
    let sha1 = resign(&|c| c.hash = b"SHA1");
    assert_eq!(verify_response(&sha1, &key), Err(VerifyError::BadSignature));
    let md5 = resign(&|c| c.hash = b"MD5");
    assert_eq!(
        verify_response(&md5, &key),
        Err(VerifyError::UnsupportedHash)
    );
    let by_byte = resign(&|c| c.hash = &[3]);
    assert_eq!(verify_response(&by_byte, &key), Ok(()));
    let legacy = resign(&|c| c.kind = b"HS_DSAPUBKEY");
    assert_eq!(verify_response(&legacy, &key), Ok(()));
    let mac = resign(&|c| c.kind = b"HS_MAC");
    assert_eq!(
        verify_response(&mac, &key),
        Err(VerifyError::CredentialType)
    );
    let counter = resign(&|c| c.signer_index = 1);
    assert_eq!(
        verify_response(&counter, &key),
        Err(VerifyError::BadSignature),
        "the counter is covered"
    );
    // DSA: a flipped bit in r or s, garbage DER, a huge integer.
    let secondary = site_key(HS_SITE_PREFIX_SECONDARY);
    let dsa = parse_hex(CERT_2_RESP);
    for at in [dsa.len() - 1, dsa.len() - 40, dsa.len() - 71] {
        let mut bad = dsa.clone();
        bad[at] ^= 0x04;
        assert!(verify_response(&bad, &secondary).is_err(), "byte {at}");
    }
    for sig in [vec![], vec![0x30, 0x00], vec![0x30; 71], {
        let mut huge = vec![0x30, 0x82, 0x10, 0x08, 0x02, 0x82, 0x08, 0x00, 0x7f];
        huge.extend_from_slice(&[0xff; 0x7ff]);
        huge.extend_from_slice(&[0x02, 0x82, 0x08, 0x00, 0x7f]);
        huge.extend_from_slice(&[0xff; 0x7ff]);
        huge
    }] {
        assert!(!secondary.verify(HashAlg::Sha256, b"data", &sig));
        assert!(!key.verify(HashAlg::Sha256, b"data", &sig));
    }
}

#[test]
fn signed_bytes_of_cert_3_are_version_ids_counter_then_header() {
    let bytes = parse_hex(CERT_3_RESP);
    let signed = signed_bytes(&bytes).unwrap();
    assert_eq!(
        hex::encode(&signed[..16]),
        "020b020b000000000b0b0b0200000000"
    );
    assert_eq!(hex::encode(&signed[16..28]), "0000000100000001d9000000");
    assert_eq!(signed.len(), 16 + 24 + 135);
    assert_eq!(&signed[16..], &bytes[20..20 + 24 + 135]);
    // The same bytes for the unsigned message (counter 0 either way).
    assert_eq!(signed_bytes(&unsigned(&bytes)).unwrap(), signed);
}

#[test]
fn signing_with_the_test_keys_reproduces_the_rsa_vectors() {
    for (name, text, pem) in [
        ("cert-1", CERT_1_RESP, TOP_KEY),
        ("cert-3", CERT_3_RESP, ENTERPRISE_KEY),
        ("certrd-3", CERTRD_3_RESP, ENTERPRISE_KEY),
    ] {
        let key = server_key(pem);
        let want = parse_hex(text);
        let mut message = unsigned(&want);
        let hash = hash_for((2, 11), key.kind());
        sign_response(&mut message, &key, hash).unwrap();
        assert_eq!(hex::encode(&message), hex::encode(&want), "{name}");
        assert_eq!(
            sign_response(&mut message, &key, hash),
            Err(SignError::AlreadySigned)
        );
    }
}

#[test]
fn dsa_signing_verifies_with_the_published_key() {
    let key = server_key(SECONDARY_KEY);
    let published = site_key(HS_SITE_PREFIX_SECONDARY);
    let want = parse_hex(CERT_2_RESP);
    let mut message = unsigned(&want);
    sign_response(&mut message, &key, HashAlg::Sha256).unwrap();
    assert_eq!(verify_response(&message, &published), Ok(()));
    // Up to the credential the bytes are CNRI's; the DER of r and s may
    // differ in length by a byte or two (random versus RFC 6979 nonces).
    let c = parse_credential(&message).unwrap().unwrap();
    assert_eq!(c.hash, b"SHA-256");
    assert_eq!(&message[20..20 + 24 + 452], &want[20..20 + 24 + 452]);
    assert!(message.len().abs_diff(want.len()) <= 2);
    // SHA-1, as CNRI signs with a DSA key below 2.11, verifies too.
    let mut sha1 = unsigned(&want);
    sign_response(&mut sha1, &key, HashAlg::Sha1).unwrap();
    assert_eq!(parse_credential(&sha1).unwrap().unwrap().hash, b"SHA1");
    assert_eq!(verify_response(&sha1, &published), Ok(()));
    assert_eq!(
        verify_response(&sha1, &site_key(HS_SITE_TOP)),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn the_encoder_writes_the_unsigned_answers_byte_for_byte() {
    let mut out = Vec::new();
    seq_1_answer(&parse_hex(SEQ_1_REQ), &mut out);
    assert_eq!(
        hex::encode(&out),
        hex::encode(parse_hex(SEQ_1_RESP)),
        "seq-1"
    );
    assert_eq!(out.len(), 1037);
    assert_eq!(datagram_count(&out), 3);
    seq_2_answer(&parse_hex(SEQ_2_REQ), &mut out);
    assert_eq!(
        hex::encode(&out),
        hex::encode(parse_hex(SEQ_2_RESP)),
        "seq-2"
    );
    seq_3_answer(&parse_hex(SEQ_3_REQ), &mut out);
    assert_eq!(
        hex::encode(&out),
        hex::encode(parse_hex(SEQ_3_RESP)),
        "seq-3"
    );

    // GET_SITE_INFO: the own site record is the whole body.
    let request = parse_hex(GSI_REQ);
    let own = site(HS_SITE_ENTERPRISE);
    let ctx = context(&request, own.serial);
    let mut b = ResponseBuilder::start(&mut out, &ctx, opcode::GET_SITE_INFO, code::SUCCESS);
    b.buffer().extend_from_slice(&own.encode());
    b.finish();
    assert_eq!(
        hex::encode(&out),
        hex::encode(parse_hex(GSI_RESP)),
        "get-site-info"
    );
}

#[test]
fn the_encoder_and_signer_write_the_certified_answers_byte_for_byte() {
    let top = server_key(TOP_KEY);
    let enterprise = server_key(ENTERPRISE_KEY);
    let mut out = Vec::new();

    let request = parse_hex(CERT_1_REQ);
    seq_1_answer(&request, &mut out);
    let version = response_version(&decode_request(&request).unwrap().envelope);
    sign_response(&mut out, &top, hash_for(version, top.kind())).unwrap();
    assert_eq!(
        hex::encode(&out),
        hex::encode(parse_hex(CERT_1_RESP)),
        "cert-1"
    );

    for (name, req, resp) in [
        ("cert-3", CERT_3_REQ, CERT_3_RESP),
        ("certrd-3", CERTRD_3_REQ, CERTRD_3_RESP),
    ] {
        seq_3_answer(&parse_hex(req), &mut out);
        sign_response(&mut out, &enterprise, HashAlg::Sha256).unwrap();
        assert_eq!(hex::encode(&out), hex::encode(parse_hex(resp)), "{name}");
    }

    // S signs with DSA: not byte-identical (randomized in CNRI), but the
    // message up to the credential is, and it verifies.
    let secondary = server_key(SECONDARY_KEY);
    seq_2_answer(&parse_hex(CERT_2_REQ), &mut out);
    let want = parse_hex(CERT_2_RESP);
    assert_eq!(&out[20..out.len() - 4], &want[20..20 + 24 + 452]);
    sign_response(&mut out, &secondary, HashAlg::Sha256).unwrap();
    assert_eq!(
        verify_response(&out, &site_key(HS_SITE_PREFIX_SECONDARY)),
        Ok(())
    );
}

#[test]
fn a_signed_message_stays_within_the_maximum_length() {
    let key = server_key(ENTERPRISE_KEY);
    let ctx = context(&parse_hex(CERT_3_REQ), 3);
    // A body that fits unsigned but not with a 300-byte credential.
    let mut out = Vec::new();
    let mut b = ResponseBuilder::start(&mut out, &ctx, opcode::RESOLUTION, code::SUCCESS);
    let room = MAX_MESSAGE_LEN - 24 - 4 - 100;
    b.buffer().resize(20 + 24 + room, 0);
    assert!(b.fits());
    b.finish();
    let before = out.clone();
    assert_eq!(
        sign_response(&mut out, &key, HashAlg::Sha256),
        Err(SignError::TooLong)
    );
    assert_eq!(out, before, "unchanged on error");
    // Garbage is not signed.
    let mut garbage = vec![1, 2, 3];
    assert!(matches!(
        sign_response(&mut garbage, &key, HashAlg::Sha256),
        Err(SignError::Decode(_))
    ));
    assert_eq!(
        verify_response(&[], &key.public_key()),
        Err(VerifyError::Decode(DecodeError::Truncated(
            "message envelope"
        )))
    );
}
