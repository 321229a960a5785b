//! decode(encode(x)) == x for requests, responses and UDP splitting.

use idnode_core::wire::encode_value;
use idnode_core::{Permissions, Reference, Ttl, Value};
use idnode_handle::*;
use proptest::prelude::*;

fn arb_value() -> impl Strategy<Value = Value> {
    (
        1u32..5000,
        any::<u32>(),
        any::<bool>(),
        any::<u32>(),
        any::<u8>(),
        "[A-Za-z_.]{1,20}",
        proptest::collection::vec(any::<u8>(), 0..300),
        proptest::collection::vec(("[ -~]{1,20}", any::<u32>()), 0..3),
    )
        .prop_map(
            |(index, timestamp, absolute, ttl, perm, kind, data, refs)| Value {
                index,
                kind,
                data: data.into(),
                ttl: if absolute {
                    Ttl::Absolute(ttl)
                } else {
                    Ttl::Relative(ttl)
                },
                timestamp,
                permissions: Permissions(perm),
                references: refs
                    .into_iter()
                    .map(|(identifier, index)| Reference { identifier, index })
                    .collect(),
            },
        )
}

/// A request envelope's version: 2.1..=2.11, suggested anything.
fn arb_versions() -> impl Strategy<Value = (u8, u8, u8, u8)> {
    (1u8..=11, 0u8..=31, any::<u8>()).prop_map(|(minor, sm, sn)| (2, minor, sm, sn))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn requests_round_trip(
        (major, minor, suggested_major, suggested_minor) in arb_versions(),
        session_id in any::<u32>(),
        request_id in any::<u32>(),
        op_flags in any::<u32>(),
        site_serial in any::<i16>(),
        recursion in any::<u8>(),
        expiration in any::<u32>(),
        handle in proptest::collection::vec(any::<u8>(), 0..300),
        indexes in proptest::collection::vec(any::<u32>(), 0..20),
        types in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..10),
    ) {
        let type_refs: Vec<&[u8]> = types.iter().map(Vec::as_slice).collect();
        let params = RequestParams {
            session_id, request_id, op_flags, site_serial, expiration,
            handle: &handle, indexes: &indexes, types: &type_refs,
        };
        let options = RequestOptions { major, minor, suggested_major, suggested_minor, recursion };
        let mut out = Vec::new();
        encode_resolution_request_with(&mut out, &params, &options);
        prop_assert_eq!(frame_len(&out), Ok(Some(out.len())));
        let req = decode_request(&out).unwrap();
        prop_assert_eq!(
            (req.envelope.major, req.envelope.minor, req.envelope.suggested_major, req.envelope.suggested_minor),
            (major, minor, suggested_major, suggested_minor)
        );
        prop_assert_eq!((req.envelope.session_id, req.envelope.request_id), (session_id, request_id));
        prop_assert_eq!(req.header.opcode, opcode::RESOLUTION);
        prop_assert_eq!(
            (req.header.op_flags, req.header.site_serial, req.header.recursion, req.header.expiration),
            (op_flags, site_serial, recursion, expiration)
        );
        let query = ResolutionQuery::decode(req.body).unwrap();
        prop_assert_eq!(query.handle, handle.as_slice());
        prop_assert_eq!(query.indexes().collect::<Vec<_>>(), indexes.clone());
        prop_assert_eq!(query.types().collect::<Vec<_>>(), type_refs.clone());
        // Every value whose index was asked for is wanted.
        for i in &indexes {
            prop_assert!(query.wants(*i, b"\x00never a type"));
        }
        let v = response_version(&req.envelope);
        prop_assert!(((2, 1)..=(VERSION_MAJOR, VERSION_MINOR)).contains(&v));
    }

    #[test]
    fn resolution_responses_round_trip(
        (major, minor, suggested_major, suggested_minor) in arb_versions(),
        request_id in any::<u32>(),
        op_flags in any::<u32>(),
        now in any::<u32>(),
        handle in "[ -~]{1,60}",
        values in proptest::collection::vec(arb_value(), 0..12),
    ) {
        let params = RequestParams {
            request_id, op_flags, handle: handle.as_bytes(), ..RequestParams::default()
        };
        let options = RequestOptions { major, minor, suggested_major, suggested_minor, recursion: 0 };
        let mut request = Vec::new();
        encode_resolution_request_with(&mut request, &params, &options);
        let req = decode_request(&request).unwrap();
        let ctx = ResponseContext::for_request(&req, now);
        prop_assert!(ctx.expiration >= now);
        let raws: Vec<Vec<u8>> = values.iter().map(|v| { let mut r = Vec::new(); encode_value(&mut r, v); r }).collect();
        let mut out = Vec::new();
        let count = encode_resolution_response(&mut out, &ctx, handle.as_bytes(), raws.iter().map(Vec::as_slice));
        prop_assert_eq!(count, values.len());
        let response = decode_response(&out).unwrap();
        prop_assert_eq!(response.envelope.request_id, request_id);
        prop_assert_eq!((response.envelope.major, response.envelope.minor), (ctx.major, ctx.minor));
        prop_assert_eq!(response.header.op_flags & flags::RD != 0, op_flags & flags::RD != 0);
        prop_assert_eq!(response.digest, ctx.digest);
        prop_assert_eq!(response.body, ResponseBody::Resolution { handle: handle.clone(), values });
    }

    #[test]
    fn error_responses_round_trip(
        response_code in prop::sample::select(vec![
            code::ERROR, code::PROTOCOL_ERROR, code::HANDLE_NOT_FOUND, code::VALUES_NOT_FOUND,
            code::INVALID_HANDLE, code::OPERATION_NOT_SUPPORTED, code::INSUFFICIENT_PERMISSIONS,
        ]),
        rd in any::<bool>(),
        message in "\\PC{0,80}",
    ) {
        let params = RequestParams {
            op_flags: if rd { flags::RD } else { 0 },
            handle: b"88/x",
            ..RequestParams::default()
        };
        let mut request = Vec::new();
        encode_resolution_request(&mut request, &params);
        let ctx = ResponseContext::for_request(&decode_request(&request).unwrap(), 1);
        let mut out = Vec::new();
        encode_error_response(&mut out, &ctx, opcode::RESOLUTION, response_code, &message);
        let response = decode_response(&out).unwrap();
        prop_assert_eq!(response.header.response_code, response_code);
        prop_assert_eq!(response.digest.is_some(), rd);
        prop_assert_eq!(response.body, ResponseBody::Error { message });
    }

    #[test]
    fn datagrams_reassemble_in_any_order(
        len in 24usize..6000,
        request_id in any::<u32>(),
        order in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
        seed in any::<u64>(),
    ) {
        let envelope = Envelope {
            major: 2, minor: 11, flags: 0, suggested_major: 2, suggested_minor: 11,
            session_id: 3, request_id, sequence: 0, message_length: len as u32,
        };
        let mut message = envelope.to_bytes().to_vec();
        message.extend((0..len).map(|i| (i as u64).wrapping_mul(seed | 1).to_be_bytes()[3]));
        let mut parts = Vec::new();
        for_each_datagram(&message, |d| parts.push(d.to_vec()));
        prop_assert_eq!(parts.len(), datagram_count(&message));
        prop_assert!(parts.iter().all(|p| p.len() <= MAX_DATAGRAM));
        if parts.len() == 1 {
            prop_assert_eq!(&parts[0], &message);
            return Ok(());
        }
        // Random duplicates first, then a shuffled full set.
        let mut feed: Vec<usize> = order.iter().map(|i| i.index(parts.len())).collect();
        let mut all: Vec<usize> = (0..parts.len()).collect();
        let mut state = seed;
        for i in (1..all.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            all.swap(i, (state >> 33) as usize % (i + 1));
        }
        feed.extend(all);
        let mut r = Reassembly::new(&parts[feed[0]]).unwrap();
        let mut done = None;
        for i in feed {
            if let Some(m) = r.insert(&parts[i]).unwrap() {
                done = Some(m);
                break;
            }
        }
        prop_assert_eq!(done, Some(message));
    }
}

#[test]
fn response_to_a_large_request_splits_and_reassembles() {
    let values: Vec<Vec<u8>> = (1..=40)
        .map(|i| {
            let mut raw = Vec::new();
            encode_value(&mut raw, &Value::new(i, "URL", vec![b'x'; 100]));
            raw
        })
        .collect();
    let mut request = Vec::new();
    encode_resolution_request(
        &mut request,
        &RequestParams {
            handle: b"88.100.1/big",
            ..RequestParams::default()
        },
    );
    let ctx = ResponseContext::for_request(&decode_request(&request).unwrap(), 5);
    let mut out = Vec::new();
    encode_resolution_response(
        &mut out,
        &ctx,
        b"88.100.1/big",
        values.iter().map(Vec::as_slice),
    );
    let mut parts = Vec::new();
    for_each_datagram(&out, |d| parts.push(d.to_vec()));
    assert!(parts.len() > 5);
    parts.reverse();
    let mut r = Reassembly::new(&parts[0]).unwrap();
    let whole = parts.iter().find_map(|p| r.insert(p).unwrap()).unwrap();
    assert_eq!(whole, out);
    match decode_response(&whole).unwrap().body {
        ResponseBody::Resolution { values, .. } => assert_eq!(values.len(), 40),
        other => panic!("unexpected {other:?}"),
    }
}
