//! One line of `idnode import` (the JSONL form of identifiers): parsing
//! never panics, and a line that parses is written back by `to_line` (what
//! `idnode export` prints) to a line that parses to the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(Some((line, values))) = idnode_core::jsonl::parse_line(text) else {
        return;
    };
    let again = idnode_core::jsonl::to_line(&line.identifier, &values);
    match idnode_core::jsonl::parse_line(&again) {
        Ok(Some((back, back_values))) => {
            assert_eq!(back.identifier, line.identifier);
            assert_eq!(back_values, values, "{again}");
        }
        other => panic!("export of {text:?} does not import: {again} {other:?}"),
    }
});
