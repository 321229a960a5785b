//! The DNS front end from bytes to answer: any bytes as a query message,
//! answered over UDP and over a stream by a service whose store holds an
//! identifier, with and without the answer cache (asked twice, so the
//! second answer comes from the cache). None may panic, and an answer
//! over UDP is never longer than the largest the node sends.
#![no_main]

use idnode_core::Value;
use idnode_dns::{AnswerCache, DnsConfig, DnsService, Outcome, Transport, Zones};
use idnode_registry::Registry;
use idnode_store::MemoryStore;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

/// Unix seconds of the answers (the values' TTLs are relative).
const NOW: u32 = 1_800_000_000;

fn services() -> &'static (DnsService, DnsService) {
    static SERVICES: OnceLock<(DnsService, DnsService)> = OnceLock::new();
    SERVICES.get_or_init(|| {
        let store = Arc::new(MemoryStore::new());
        let registry = Registry::new(store.clone());
        registry.create_prefix("88.100.1").expect("prefix");
        registry
            .create_identifier(
                "88.100.1/ABC-123",
                vec![
                    Value::new(1, "URL", "https://example.com/abc-123"),
                    Value::new(2, "productName", "A lathe"),
                ],
                false,
            )
            .expect("identifier");
        let zones = Arc::new(Zones::from_config(&DnsConfig::default()).expect("zones"));
        let plain = DnsService::new(store.clone(), zones.clone());
        let cached =
            DnsService::with_cache(store, Arc::new(AnswerCache::new(zones, 1 << 20, 4)));
        (plain, cached)
    })
}

fuzz_target!(|data: &[u8]| {
    let (plain, cached) = services();
    let max_udp = usize::from(DnsConfig::default().max_udp_payload.max(512));
    let mut out = Vec::new();
    for service in [plain, cached, cached] {
        for transport in [Transport::Udp, Transport::Stream] {
            let outcome = service.respond(data, transport, NOW, &mut out);
            if matches!(transport, Transport::Udp) && matches!(outcome, Outcome::Reply) {
                assert!(out.len() <= max_udp, "{} octets over UDP", out.len());
            }
        }
    }
});
