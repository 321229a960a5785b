//! Referrals, "not responsible", recursion hand-off and GET_SITE_INFO,
//! with prefixes homed and delegated through the real registry.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use bytes::Bytes;
use idnode_authority::{
    HandleService, Outcome, Recursed, ResponseCache, Scratch, Upstream, UpstreamAnswer,
};
use idnode_core::{Permissions, Value};
use idnode_handle::certify::{VerifyError, verify_response};
use idnode_handle::keys::ServerKey;
use idnode_handle::{
    RequestOptions, RequestParams, ResponseBody, code, decode_response, encode_request,
    encode_resolution_request, flags, opcode,
};
use idnode_registry::Registry;
use idnode_store::{CommitObserver, MemoryStore, ObservedStore, Store};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

const NOW: u32 = 1_800_000_000;

/// A secondary-level node: homes 88.100 (one identifier), delegates
/// 88.100.1 to two sites; with and without a cache.
fn node() -> (Registry, [HandleService; 2]) {
    let cache = Arc::new(ResponseCache::new(1 << 20, 4));
    let observers: Vec<Arc<dyn CommitObserver>> = vec![cache.clone()];
    let store: Arc<dyn Store> =
        Arc::new(ObservedStore::new(Arc::new(MemoryStore::new()), observers));
    let registry = Registry::new(store.clone());
    registry.create_prefix("88.100").unwrap();
    registry
        .create_identifier(
            "88.100/HERE",
            vec![Value::new(1, "URL", "https://here")],
            false,
        )
        .unwrap();
    registry
        .delegate_prefix(
            "88.100.1",
            vec![
                Bytes::from_static(b"site one"),
                Bytes::from_static(b"site two"),
            ],
            600,
        )
        .unwrap();
    let services = [
        HandleService::new(store.clone()),
        HandleService::with_cache(store, cache),
    ];
    (registry, services)
}

fn request(handle: &str, op_flags: u32, recursion: u8) -> Vec<u8> {
    let mut out = Vec::new();
    encode_resolution_request(
        &mut out,
        &RequestParams {
            request_id: 7,
            op_flags,
            handle: handle.as_bytes(),
            expiration: NOW + 60,
            ..Default::default()
        },
    );
    // The recursion count is header byte 14 (after the 20-byte envelope).
    out[20 + 14] = recursion;
    out
}

fn respond(s: &HandleService, message: &[u8]) -> (Outcome, Vec<u8>) {
    let mut out = Vec::new();
    let outcome = s.respond(message, NOW, &mut out, &mut Scratch::default());
    (outcome, out)
}

fn ask(s: &HandleService, handle: &str, op_flags: u32) -> idnode_handle::Response {
    let (outcome, out) = respond(s, &request(handle, op_flags, 0));
    assert_eq!(outcome, Outcome::Reply { keep_open: false });
    decode_response(&out).unwrap()
}

fn error_message(r: &idnode_handle::Response) -> String {
    match &r.body {
        ResponseBody::Error { message } => message.clone(),
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn prefix_records_below_a_delegation_are_referred_with_its_prefix_sites() {
    let (_, services) = node();
    for s in &services {
        for _ in 0..2 {
            for handle in ["0.NA/88.100.1.7", "0.na/88.100.1.7.2"] {
                let r = ask(s, handle, flags::PO);
                assert_eq!(r.header.response_code, code::PREFIX_REFERRAL, "{handle}");
                match &r.body {
                    ResponseBody::Referral { handle, values } => {
                        // As CNRI's servers: an empty handle, the prefix-type
                        // values of the nearest delegated prefix.
                        assert_eq!(handle, "");
                        let sites: Vec<_> = values
                            .iter()
                            .map(|v| (v.index, v.kind.as_str(), v.data.as_ref()))
                            .collect();
                        assert_eq!(
                            sites,
                            [
                                (3, "HS_SITE.PREFIX", &b"site one"[..]),
                                (4, "HS_SITE.PREFIX", &b"site two"[..])
                            ]
                        );
                    }
                    other => panic!("{other:?}"),
                }
            }
            // The delegation record itself is served here, with the sites
            // homing the prefix as HS_SITE values.
            let r = ask(s, "0.NA/88.100.1", flags::PO);
            assert_eq!(r.header.response_code, code::SUCCESS);
            match &r.body {
                ResponseBody::Resolution { values, .. } => {
                    let kinds: Vec<_> = values.iter().map(|v| v.kind.as_str()).collect();
                    assert_eq!(
                        kinds,
                        ["HS_SITE", "HS_SITE", "HS_SITE.PREFIX", "HS_SITE.PREFIX"]
                    );
                }
                other => panic!("{other:?}"),
            }
            // An identifier under a delegated prefix is not referred: CNRI's
            // client follows 303 only for prefix records.
            for handle in ["88.100.1/ABC", "88.100.1.7/X"] {
                let r = ask(s, handle, flags::PO);
                assert_eq!(r.header.response_code, code::SERVER_NOT_RESP, "{handle}");
                assert!(error_message(&r).contains("0.NA/88.100.1"), "{handle}");
            }
            // Homed: found, and missing is HANDLE_NOT_FOUND.
            assert_eq!(ask(s, "88.100/here", 0).header.response_code, code::SUCCESS);
            let r = ask(s, "88.100/NOPE", 0);
            assert_eq!(r.header.response_code, code::HANDLE_NOT_FOUND);
            // A prefix record under a homed prefix that does not exist.
            let r = ask(s, "0.NA/88.100.9", 0);
            assert_eq!(r.header.response_code, code::HANDLE_NOT_FOUND);
            // Unknown derived prefix of a homed one, and unknown prefixes.
            for handle in ["88.100.2/X", "88/X", "86.1/X", "0.NA/86"] {
                let r = ask(s, handle, 0);
                assert_eq!(r.header.response_code, code::SERVER_NOT_RESP, "{handle}");
                assert!(error_message(&r).contains("not responsible"));
            }
        }
    }
}

#[test]
fn do_not_refer_gets_not_responsible() {
    let (_, services) = node();
    for s in &services {
        let r = ask(s, "0.NA/88.100.1.7", flags::DNR);
        assert_eq!(r.header.response_code, code::SERVER_NOT_RESP);
        assert!(error_message(&r).contains("DNR"));
    }
}

#[test]
fn a_referral_follows_a_new_delegation_and_its_removal() {
    let (registry, services) = node();
    for s in &services {
        assert_eq!(
            ask(s, "0.NA/88.100.2.1", 0).header.response_code,
            code::HANDLE_NOT_FOUND
        );
    }
    registry
        .delegate_prefix("88.100.2", vec![Bytes::from_static(b"site")], 60)
        .unwrap();
    for s in &services {
        let r = ask(s, "0.NA/88.100.2.1", 0);
        assert_eq!(r.header.response_code, code::PREFIX_REFERRAL);
    }
    registry.delete_prefix("88.100.2").unwrap();
    registry.create_prefix("88.100.2").unwrap();
    for s in &services {
        let r = ask(s, "0.NA/88.100.2.1", 0);
        assert_eq!(r.header.response_code, code::HANDLE_NOT_FOUND);
    }
}

#[test]
fn a_primary_site_sets_the_authoritative_flag_and_its_serial() {
    use idnode_handle::{HashOption, ServerInfo, SiteInfo};
    let (_, services) = node();
    let mut site = SiteInfo::single(
        vec![ServerInfo::from_urls(1, "udp://127.0.0.1:2641,tcp://127.0.0.1:2641").unwrap()],
        HashOption::Whole,
    );
    site.serial = 7;
    for s in &services {
        let before = ask(s, "88.100/here", 0);
        assert_eq!(before.header.op_flags & flags::AT, 0);
        assert!(s.set_site_info(site.encode()));
        for handle in ["88.100/here", "88.100/NOPE", "0.NA/88.100.1.7"] {
            let r = ask(s, handle, 0);
            assert_ne!(r.header.op_flags & flags::AT, 0, "{handle}");
            assert_eq!(r.header.site_serial, 7, "{handle}");
        }
    }
}

/// An upstream that answers every question with one URL naming it.
struct Echo;

impl Upstream for Echo {
    fn resolve<'a>(
        &'a self,
        handle: &'a str,
        _certified: bool,
    ) -> Pin<Box<dyn Future<Output = UpstreamAnswer> + Send + 'a>> {
        Box::pin(async move {
            if handle.ends_with("/FAIL") {
                return UpstreamAnswer::Failed {
                    code: code::SERVER_NOT_RESP,
                    message: "upstream silent".into(),
                };
            }
            UpstreamAnswer::Found {
                handle: handle.to_owned(),
                values: vec![Value::new(1, "URL", format!("https://up/{handle}"))],
            }
        })
    }
}

#[tokio::test]
async fn recursion_only_when_asked_and_allowed() {
    let (_, [mut plain, mut cached]) = node();
    // Not allowed: REC is ignored and the answer is "not here".
    let r = ask(&plain, "88.100.1/ABC", flags::REC);
    assert_eq!(r.header.response_code, code::SERVER_NOT_RESP);
    plain.set_upstream(Arc::new(Echo));
    cached.set_upstream(Arc::new(Echo));
    for s in [&plain, &cached] {
        // Allowed but not asked for.
        let r = ask(s, "86.1/X", 0);
        assert_eq!(r.header.response_code, code::SERVER_NOT_RESP);
        // Asked for: delegated and unknown prefixes go upstream.
        for handle in ["88.100.1/ABC", "86.1/X"] {
            let message = request(handle, flags::REC | flags::KC, 0);
            let (outcome, out) = respond(s, &message);
            assert_eq!(outcome, Outcome::Recurse { keep_open: true }, "{handle}");
            assert!(out.is_empty());
            assert_eq!(HandleService::question(&message).as_deref(), Some(handle));
            let mut out = Vec::new();
            s.recurse(&message, &mut out, || NOW).await;
            let r = decode_response(&out).unwrap();
            assert_eq!(r.envelope.request_id, 7);
            match r.body {
                ResponseBody::Resolution { values, .. } => {
                    assert_eq!(values[0].data, format!("https://up/{handle}").into_bytes())
                }
                other => panic!("{other:?}"),
            }
        }
        let message = request("86.1/FAIL", flags::REC, 0);
        let mut out = Vec::new();
        s.recurse(&message, &mut out, || NOW).await;
        let r = decode_response(&out).unwrap();
        assert_eq!(r.header.response_code, code::SERVER_NOT_RESP);
        assert_eq!(error_message(&r), "upstream silent");
        // Homed prefixes never recurse.
        let r = ask(s, "88.100/NOPE", flags::REC);
        assert_eq!(r.header.response_code, code::HANDLE_NOT_FOUND);
        // A request that went round too often is refused.
        let (outcome, out) = respond(s, &request("86.1/X", flags::REC, 10));
        assert_eq!(outcome, Outcome::Reply { keep_open: false });
        let r = decode_response(&out).unwrap();
        assert_eq!(r.header.response_code, code::RECURSION_COUNT_TOO_HIGH);
    }
}

/// An upstream that remembers in which mode it was asked, and finds.
#[derive(Default)]
struct Modes(Mutex<Vec<bool>>);

impl Upstream for Modes {
    fn resolve<'a>(
        &'a self,
        handle: &'a str,
        certified: bool,
    ) -> Pin<Box<dyn Future<Output = UpstreamAnswer> + Send + 'a>> {
        self.0.lock().unwrap().push(certified);
        Box::pin(async move {
            UpstreamAnswer::Found {
                handle: handle.to_owned(),
                values: vec![Value::new(1, "URL", "https://up")],
            }
        })
    }
}

#[tokio::test]
async fn recursion_is_certified_exactly_when_the_request_sets_ct() {
    let key = Arc::new(
        ServerKey::from_pkcs8_pem(include_str!(
            "../../handle/tests/vectors/hierarchy/test-only-top-rsa.pem"
        ))
        .unwrap(),
    );
    let (_, [mut s, _]) = node();
    let modes = Arc::new(Modes::default());
    s.set_upstream(modes.clone());
    s.set_signer(key.clone());
    for op_flags in [
        flags::REC,
        flags::REC | flags::CT,
        flags::REC | flags::CA,
        flags::REC | flags::CT | flags::CA,
    ] {
        let message = request("86.1/X", op_flags, 0);
        let mut out = Vec::new();
        s.recurse(&message, &mut out, || NOW).await;
        let r = decode_response(&out).unwrap();
        assert_eq!(r.header.response_code, code::SUCCESS);
        let verified = verify_response(&out, &key.public_key());
        if op_flags & flags::CT != 0 {
            // The recursive node signs its own answer.
            assert_eq!(verified, Ok(()), "{op_flags:#x}");
        } else {
            assert_eq!(verified, Err(VerifyError::Unsigned), "{op_flags:#x}");
        }
    }
    assert_eq!(*modes.0.lock().unwrap(), [false, true, false, true]);
}

#[test]
fn recursed_answers_are_filtered_and_carry_the_request_id() {
    let (_, [s, _]) = node();
    let mut hidden = Value::new(3, "secret", "x");
    hidden.permissions = Permissions(Permissions::ADMIN_READ);
    let values = [
        Value::new(1, "URL", "https://up"),
        Value::new(2, "EMAIL", "a@b"),
        hidden,
    ];
    let mut message = Vec::new();
    encode_resolution_request(
        &mut message,
        &RequestParams {
            request_id: 99,
            op_flags: flags::REC,
            handle: b"86.1/X",
            types: &[b"URL"],
            expiration: NOW + 60,
            ..Default::default()
        },
    );
    let mut out = Vec::new();
    let found = Recursed::Found {
        handle: "86.1/X",
        values: &values,
    };
    s.answer_recursed(&message, NOW, found, &mut out);
    let r = decode_response(&out).unwrap();
    assert_eq!(r.envelope.request_id, 99);
    match r.body {
        ResponseBody::Resolution { handle, values } => {
            assert_eq!(handle, "86.1/X");
            assert_eq!(values.len(), 1);
            assert_eq!(values[0].data.as_ref(), b"https://up");
        }
        other => panic!("{other:?}"),
    }
    let failed = Recursed::Failed {
        code: code::SERVER_NOT_RESP,
        message: "nobody answered",
    };
    s.answer_recursed(&message, NOW, failed, &mut out);
    let r = decode_response(&out).unwrap();
    assert_eq!(r.header.response_code, code::SERVER_NOT_RESP);
    assert_eq!(error_message(&r), "nobody answered");
}

#[test]
fn get_site_info_returns_the_configured_site() {
    let (_, [s, _]) = node();
    let mut message = Vec::new();
    let params = RequestParams {
        request_id: 5,
        handle: b"",
        expiration: NOW + 60,
        ..Default::default()
    };
    encode_request(
        &mut message,
        &params,
        &RequestOptions::default(),
        opcode::GET_SITE_INFO,
        &[],
    );
    let (_, out) = respond(&s, &message);
    let r = decode_response(&out).unwrap();
    assert_eq!(r.header.response_code, code::OPERATION_NOT_SUPPORTED);
    assert!(s.set_site_info(b"encoded site".to_vec()));
    let (_, out) = respond(&s, &message);
    let r = decode_response(&out).unwrap();
    assert_eq!(r.header.response_code, code::SUCCESS);
    assert_eq!(r.header.opcode, opcode::GET_SITE_INFO);
    assert_eq!(r.body, ResponseBody::Other(b"encoded site".to_vec()));
}
