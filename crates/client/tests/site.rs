//! SiteClient against two small servers, each holding only the identifiers
//! the site's hash gives it: every identifier must reach its own server.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use idnode_authority::{HandleService, Outcome, Scratch};
use idnode_client::{Query, SiteClient, Transport};
use idnode_core::{Record, Value};
use idnode_handle::code;
use idnode_handle::site::{HashOption, ServerInfo, SiteInfo, server_index};
use idnode_store::{MemoryStore, Space, Store};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;

const IDS: usize = 24;

/// A UDP server answering from a store with the records `keep` selects.
async fn server(keep: impl Fn(&str) -> bool) -> SocketAddr {
    let store = MemoryStore::new();
    let mut txn = store.begin().unwrap();
    for i in 0..IDS {
        let suffix = format!("PART-{i}");
        if keep(&suffix) {
            let r = Record {
                identifier: format!("88.100.9/{suffix}"),
                values: vec![Value::new(1, "URL", format!("https://x/{suffix}"))],
                version: 0,
            };
            txn.put(Space::Records, r.identifier.as_bytes(), r.encode().into());
        }
    }
    txn.commit().unwrap();
    let service = HandleService::new(Arc::new(store));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut buf, mut out, mut scratch) = (vec![0u8; 2048], Vec::new(), Scratch::default());
        loop {
            let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
            if let Outcome::Reply { .. } = service.respond(&buf[..n], 0, &mut out, &mut scratch) {
                socket.send_to(&out, peer).await.unwrap();
            }
        }
    });
    addr
}

#[tokio::test]
async fn each_identifier_goes_to_the_server_its_hash_picks() {
    let a = server(|s| server_index(s.as_bytes(), 2) == 0).await;
    let b = server(|s| server_index(s.as_bytes(), 2) == 1).await;
    let servers = [a, b]
        .iter()
        .enumerate()
        .map(|(i, addr)| ServerInfo::from_urls(i as u32 + 1, &format!("udp://{addr}")).unwrap())
        .collect();
    let client = SiteClient::new(
        SiteInfo::single(servers, HashOption::Suffix),
        Transport::Udp,
    );
    let mut seen = [0, 0];
    for i in 0..IDS {
        let identifier = format!("88.100.9/PART-{i}");
        let owner = server_index(format!("PART-{i}").as_bytes(), 2);
        assert_eq!(client.server_for(&identifier), Some([a, b][owner]));
        seen[owner] += 1;
        let query = Query {
            identifier: identifier.clone(),
            ..Default::default()
        };
        let r = client.resolve(&query).await.unwrap();
        assert_eq!(r.header.response_code, code::SUCCESS, "{identifier}");
    }
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "both servers were used: {seen:?}"
    );
}

#[tokio::test]
async fn site_info_returns_the_server_record() {
    let service = HandleService::new(Arc::new(MemoryStore::new()));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let site = SiteInfo::single(
        vec![ServerInfo::from_urls(1, &format!("udp://{addr}")).unwrap()],
        HashOption::Whole,
    );
    assert!(service.set_site_info(site.encode()));
    tokio::spawn(async move {
        let (mut buf, mut out, mut scratch) = (vec![0u8; 2048], Vec::new(), Scratch::default());
        loop {
            let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
            if let Outcome::Reply { .. } = service.respond(&buf[..n], 0, &mut out, &mut scratch) {
                socket.send_to(&out, peer).await.unwrap();
            }
        }
    });
    let client = idnode_client::Client::new(addr, Transport::Udp);
    let r = client.site_info().await.unwrap();
    assert_eq!(r.header.response_code, code::SUCCESS);
    assert_eq!(r.header.opcode, idnode_handle::opcode::GET_SITE_INFO);
    match r.body {
        idnode_handle::ResponseBody::Other(bytes) => {
            assert_eq!(SiteInfo::decode(&bytes).unwrap(), site)
        }
        other => panic!("{other:?}"),
    }
}
