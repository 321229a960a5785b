//! The request target of an HTTP request (`/path?query`), as the browser
//! proxy and the REST API read it: never a panic, a bounded number of
//! parameters, and a proxy record target's identifier the one its decoded
//! path names.
#![no_main]

use idnode_http::target::{self, ProxyTarget};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    if let Ok(ProxyTarget::Record { identifier, .. }) = target::proxy_target(path, query) {
        let decoded = percent_encoding_free_decode(path.trim_start_matches('/'));
        assert_eq!(identifier.key(), idnode_core::Identifier::parse(&decoded).unwrap().key());
    }
    let params = target::params(query);
    assert!(params.len() <= target::MAX_API_PARAMS);
    let _ = target::indexes(&params);
    let _ = target::flag(&params, "publicOnly");
});

/// Percent-decoding written out here, not the crate's: `%XY` with two hex
/// digits is the byte, anything else is itself.
fn percent_encoding_free_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}
