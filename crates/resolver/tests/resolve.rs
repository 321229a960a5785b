//! The resolver against the in-memory store, through the codec both ways.

use idnode_core::{Permissions, Record, Value};
use idnode_handle::{
    RequestParams, ResponseBody, code, decode_response, encode_resolution_request, flags,
};
use idnode_resolver::{HandleService, Outcome, Scratch};
use idnode_store::{MemoryStore, Space, Store};
use std::sync::Arc;

const NOW: u32 = 1_800_000_000;

fn service() -> HandleService {
    let store = MemoryStore::new();
    let mut secret = Value::new(7, "costPrice", "12.00 CNY");
    secret.permissions = Permissions(Permissions::ADMIN_READ | Permissions::ADMIN_WRITE);
    let record = Record {
        identifier: "88.100.1/Abc-123".into(),
        values: vec![
            Value::new(1, "URL", "https://example.com/abc"),
            Value::new(2, "productName", "Pump"),
            Value::new(3, "HS_SITE.PREFIX", "site"),
            secret,
        ],
        version: 1,
    };
    let mut txn = store.begin().unwrap();
    txn.put(Space::Records, b"88.100.1/ABC-123", record.encode().into());
    txn.commit().unwrap();
    HandleService::new(Arc::new(store))
}

fn ask(
    service: &HandleService,
    handle: &str,
    indexes: &[u32],
    types: &[&str],
) -> idnode_handle::Response {
    let types: Vec<&[u8]> = types.iter().map(|t| t.as_bytes()).collect();
    let mut request = Vec::new();
    encode_resolution_request(
        &mut request,
        &RequestParams {
            request_id: 42,
            op_flags: flags::PO,
            handle: handle.as_bytes(),
            indexes,
            types: &types,
            expiration: NOW + 60,
            ..Default::default()
        },
    );
    let mut out = Vec::new();
    let outcome = service.respond(&request, NOW, &mut out, &mut Scratch::default());
    assert_eq!(outcome, Outcome::Reply { keep_open: false });
    let response = decode_response(&out).unwrap();
    assert_eq!(response.envelope.request_id, 42);
    assert!(response.header.expiration > NOW);
    response
}

fn indexes(r: &idnode_handle::Response) -> Vec<u32> {
    match &r.body {
        ResponseBody::Resolution { values, .. } => values.iter().map(|v| v.index).collect(),
        other => panic!("not a resolution: {other:?}"),
    }
}

#[test]
fn resolves_case_insensitively_with_public_values_only() {
    let s = service();
    let r = ask(&s, "88.100.1/abc-123", &[], &[]);
    assert_eq!(r.header.response_code, code::SUCCESS);
    assert_eq!(indexes(&r), [1, 2, 3]);
    match r.body {
        ResponseBody::Resolution { handle, values } => {
            assert_eq!(handle, "88.100.1/abc-123");
            assert_eq!(values[0].data.as_ref(), b"https://example.com/abc");
        }
        _ => unreachable!(),
    }
}

#[test]
fn filters_by_index_and_type_family() {
    let s = service();
    assert_eq!(indexes(&ask(&s, "88.100.1/ABC-123", &[2], &[])), [2]);
    assert_eq!(indexes(&ask(&s, "88.100.1/ABC-123", &[], &["url"])), [1]);
    assert_eq!(
        indexes(&ask(&s, "88.100.1/ABC-123", &[], &["HS_SITE."])),
        [3]
    );
    // Asking for the non-public value by index still does not reveal it.
    let r = ask(&s, "88.100.1/ABC-123", &[7], &[]);
    assert_eq!(r.header.response_code, code::VALUES_NOT_FOUND);
}

#[test]
fn unknown_and_invalid_handles() {
    let s = service();
    let r = ask(&s, "88.100.1/NOPE", &[], &[]);
    assert_eq!(r.header.response_code, code::HANDLE_NOT_FOUND);
    assert!(matches!(r.body, ResponseBody::Error { .. }));
    let r = ask(&s, "no-slash", &[], &[]);
    assert_eq!(r.header.response_code, code::INVALID_HANDLE);
}

#[test]
fn garbage_is_refused_or_dropped() {
    let s = service();
    let mut out = Vec::new();
    let mut scratch = Scratch::default();
    assert_eq!(s.respond(b"xx", NOW, &mut out, &mut scratch), Outcome::Drop);
    let mut request = Vec::new();
    encode_resolution_request(
        &mut request,
        &RequestParams {
            request_id: 9,
            handle: b"88.100.1/ABC-123",
            ..Default::default()
        },
    );
    // Claim a body longer than the message: the envelope still decodes, so
    // the client gets PROTOCOL_ERROR with its request id.
    let body_len_at = 20 + 20;
    request[body_len_at..body_len_at + 4].copy_from_slice(&0xffffu32.to_be_bytes());
    assert_eq!(
        s.respond(&request, NOW, &mut out, &mut scratch),
        Outcome::Reply { keep_open: false }
    );
    let r = decode_response(&out).unwrap();
    assert_eq!(r.header.response_code, code::PROTOCOL_ERROR);
    assert_eq!(r.envelope.request_id, 9);
}
