//! The data of Handle values and records read from the wire or the store:
//! HS_SITE, HS_ADMIN, HS_VLIST, public keys, the value list of a record.
//! None may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = idnode_handle::site::SiteInfo::decode(data);
    let _ = idnode_handle::admin::HsAdmin::decode(data);
    let _ = idnode_handle::admin::decode_vlist(data);
    let _ = idnode_handle::keys::PublicKey::decode(data);
    let _ = idnode_handle::session::DhPublicKey::decode(data);
    if let Ok(view) = idnode_core::wire::RecordView::parse(data) {
        for value in view.values().flatten() {
            let _ = value.to_value();
        }
    }
    let _ = idnode_core::Record::decode(data);
});
