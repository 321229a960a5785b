//! Whole Handle messages from the network: request and response decoding,
//! admin bodies of every opcode, challenge answers, session setups,
//! credentials, encrypted session messages and multi-datagram reassembly.
//! None may panic, whatever the bytes.
#![no_main]

use idnode_handle::admin::AdminRequest;
use idnode_handle::auth::ChallengeAnswer;
use idnode_handle::session::{DhPublicKey, SessionSetupRequest, decrypt_message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = idnode_handle::decode_request(data) {
        for op in 100..=105 {
            let _ = AdminRequest::decode(op, request.body);
        }
        let _ = ChallengeAnswer::decode(request.body);
        if let Ok(setup) = SessionSetupRequest::decode(request.body)
            && let idnode_handle::session::SetupKey::Client(key) = setup.key
        {
            let _ = DhPublicKey::decode(key);
        }
        let _ = idnode_handle::ResolutionQuery::decode(request.body);
    }
    let _ = idnode_handle::decode_response(data);
    let _ = idnode_handle::admin::decode_admin_response(data);
    let _ = idnode_handle::certify::parse_credential(data);
    let _ = decrypt_message(data, &[7; 32]);
    let _ = idnode_handle::frame_len(data);
    // The input as datagrams of one message: the first, then the rest in
    // 512-byte pieces.
    if let Ok(mut r) = idnode_handle::Reassembly::new(data) {
        for piece in data.chunks(512).skip(1) {
            if let Ok(Some(_)) = r.insert(piece) {
                break;
            }
        }
    }
});
