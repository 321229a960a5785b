//! Identifiers and prefixes as clients type them: parsing, the write
//! rules (control, invisible and bidi characters) and normalization to a
//! key (NFC, then ASCII upper case). None may panic, whatever the text or
//! bytes, and the hot path's key of a text is the parsed identifier's.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut key = Vec::new();
    idnode_core::normalize_into(data, &mut key);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = idnode_core::Identifier::parse(text) {
            let _ = id.check_new();
            assert_eq!(key, id.key().as_bytes());
        }
        let _ = idnode_core::Prefix::parse(text);
    }
});
