//! A node with records, two services over it (reading the store, and
//! through the response cache), and helpers to ask and read answers.

use idnode_authority::ResponseCache;
use idnode_core::{Permissions, Record, Ttl, Value};
use idnode_dns::hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use idnode_dns::hickory_proto::rr::{Name, RData, RecordType};
use idnode_dns::{Cuts, DnsConfig, DnsService, Outcome, Transport, Zones};
use idnode_store::{CommitObserver, MemoryStore, ObservedStore, Space, Store};
use std::sync::Arc;

pub const NOW: u32 = 1_800_000_000;
pub const APEX: &str = "idnode.internal.";

pub struct Node {
    pub store: Arc<dyn Store>,
    /// Reading the store each time, then through the cache.
    pub services: [DnsService; 2],
    pub cache: Arc<ResponseCache>,
}

impl Node {
    pub fn plain(&self) -> &DnsService {
        &self.services[0]
    }

    pub fn cached(&self) -> &DnsService {
        &self.services[1]
    }
}

pub fn config() -> DnsConfig {
    DnsConfig {
        gs1_prefix: Some("88.100.3".into()),
        oid_prefix: Some("88.100.4".into()),
        ..DnsConfig::default()
    }
}

/// An empty node with `config`.
pub fn empty(config: &DnsConfig) -> Node {
    let zones = Arc::new(Zones::from_config(config).unwrap());
    let cache = Arc::new(ResponseCache::new(1 << 20, 4));
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let cuts = Arc::new(Cuts::load(inner.clone()).unwrap());
    let observers: Vec<Arc<dyn CommitObserver>> = vec![cache.clone(), cuts.clone()];
    let store: Arc<dyn Store> = Arc::new(ObservedStore::new(inner, observers));
    let services = [
        DnsService::new(store.clone(), zones.clone()),
        DnsService::with_cache(store.clone(), zones, cache.clone(), cuts),
    ];
    Node {
        store,
        services,
        cache,
    }
}

/// A node with the records of [`fill`].
pub fn node() -> Node {
    let node = empty(&config());
    fill(&*node.store);
    node
}

pub fn secret(index: u32, kind: &str, data: &str) -> Value {
    let mut v = Value::new(index, kind, data.to_owned());
    v.permissions = Permissions(Permissions::ADMIN_READ | Permissions::ADMIN_WRITE);
    v
}

pub const LONG_SUFFIX: &str =
    "LOT-0123456789-0123456789-0123456789-0123456789-0123456789-0123456789-END";

pub fn fill(store: &dyn Store) {
    home(store, "88.100.1");
    home(store, "88.100.3");
    home(store, "88.100.4");
    put(
        store,
        "88.100.1/Abc-123",
        vec![
            Value::new(1, "URL", "https://example.com/abc"),
            Value::new(2, "productName", "Pump"),
            secret(3, "costPrice", "12.00 CNY"),
            Value::new(4, "blob", vec![0u8, 1, 2, 0xff]),
            Value::new(70_000, "URL", "https://example.com/big-index"),
        ],
    );
    put(
        store,
        "88.100.1/hidden",
        vec![secret(1, "URL", "https://secret")],
    );
    put(
        store,
        "88.100.1/a.b/c:d",
        vec![Value::new(1, "URL", "https://example.com/dots")],
    );
    put(
        store,
        &format!("88.100.1/{LONG_SUFFIX}"),
        vec![Value::new(1, "productName", "long")],
    );
    put(
        store,
        "88.100.3/00866993371400",
        vec![
            Value::new(1, "URL", "https://example.com/gtin"),
            Value::new(2, "productName", "Widget"),
        ],
    );
    put(
        store,
        "88.100.4/1.2.156.100",
        vec![
            Value::new(1, "URL", "https://example.com/oid"),
            Value::new(2, "CINF", "https://example.com/oid/children"),
            Value::new(3, "productName", "not published"),
        ],
    );
}

pub fn home(store: &dyn Store, prefix: &str) {
    let mut txn = store.begin().unwrap();
    txn.put(
        Space::Prefixes,
        prefix.to_ascii_uppercase().as_bytes(),
        idnode_core::PrefixInfo::homed_here(prefix, 0)
            .encode()
            .into(),
    );
    txn.commit().unwrap();
}

pub fn put(store: &dyn Store, identifier: &str, values: Vec<Value>) {
    let record = Record {
        identifier: identifier.into(),
        values,
        version: store.last_sequence() + 1,
    };
    let mut txn = store.begin().unwrap();
    let key = identifier.to_ascii_uppercase();
    txn.put(Space::Records, key.as_bytes(), record.encode().into());
    txn.commit().unwrap();
}

pub fn with_ttl(mut v: Value, ttl: Ttl) -> Value {
    v.ttl = ttl;
    v
}

pub fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

/// A query message; `edns` is the payload size of an OPT record.
pub fn query(name: &Name, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name.clone(), qtype));
    if let Some(payload) = edns {
        let mut e = Edns::new();
        e.set_max_payload(payload);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// Sends `message` and returns the raw answer.
pub fn raw(service: &DnsService, message: &[u8], transport: Transport) -> Vec<u8> {
    let mut out = Vec::new();
    let outcome = service.respond(message, transport, NOW, &mut out);
    assert_eq!(outcome, Outcome::Reply);
    out
}

/// Asks `service` over UDP with EDNS 4096 (capped at 1232 by the node).
pub fn ask(service: &DnsService, name: &Name, qtype: RecordType) -> Message {
    let out = raw(service, &query(name, qtype, Some(4096)), Transport::Udp);
    Message::from_vec(&out).unwrap()
}

/// Asks every service twice (the second time from the cache), checks the
/// answers agree, and returns one.
pub fn ask_all(node: &Node, name: &Name, qtype: RecordType) -> Message {
    let bytes = query(name, qtype, Some(4096));
    let first = raw(node.plain(), &bytes, Transport::Udp);
    for service in &node.services {
        for _ in 0..2 {
            let again = raw(service, &bytes, Transport::Udp);
            assert_eq!(again, first, "{name} {qtype}: answers differ");
        }
    }
    Message::from_vec(&first).unwrap()
}

/// The character-strings of every TXT answer.
pub fn txt_strings(message: &Message) -> Vec<Vec<String>> {
    message
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::TXT(txt) => txt
                .txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
            other => panic!("not TXT: {other:?}"),
        })
        .collect()
}

pub fn identifier_name(identifier: &str) -> Name {
    let apex = idnode_dns::Apex::parse(APEX).unwrap();
    let id = idnode_core::Identifier::parse(identifier).unwrap();
    idnode_dns::name::identifier_name(&id, &apex).unwrap()
}
