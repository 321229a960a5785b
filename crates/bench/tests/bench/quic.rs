//! Handle over QUIC against an in-process QuicListener (in-memory store
//! holding a small synthetic set): closed and open loop see SUCCESS and
//! HANDLE_NOT_FOUND only, with no errors; a wrong pin fails the run at
//! once and says why.

use crate::{check_report, plan};
use idnode_authority::HandleService;
use idnode_bench::{Fingerprint, Load, Quic, Synthetic, TlsOptions, Transport, Udp, run};
use idnode_core::{PrefixInfo, Record};
use idnode_handle::code;
use idnode_server::{
    CertificateSource, HandleListenerOptions, HandleListeners, QuicListener, QuicOptions,
};
use idnode_store::{MemoryStore, Space, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The set the runs ask for: few records, so most names repeat.
fn set() -> Synthetic {
    Synthetic::new(40, 4).unwrap()
}

/// A store holding every record of `set` (values as `bench load` writes).
fn service_of(set: Synthetic) -> Arc<HandleService> {
    let store = MemoryStore::new();
    let mut txn = store.begin().unwrap();
    for n in 0..set.count {
        let record = Record {
            identifier: set.identifier(n),
            values: set.values(n),
            version: 0,
        };
        txn.put(
            Space::Records,
            record.identifier.to_ascii_uppercase().as_bytes(),
            record.encode().into(),
        );
    }
    // Its prefixes, homed here, so that unknown identifiers are
    // HANDLE_NOT_FOUND.
    for prefix in set.all_prefixes() {
        let key = prefix.to_ascii_uppercase();
        let info = PrefixInfo::homed_here(prefix, 0);
        txn.put(Space::Prefixes, key.as_bytes(), info.encode().into());
    }
    txn.commit().unwrap();
    Arc::new(HandleService::new(Arc::new(store)))
}

fn service() -> Arc<HandleService> {
    service_of(set())
}

async fn start(data_dir: &std::path::Path) -> (QuicListener, CancellationToken) {
    let shutdown = CancellationToken::new();
    let listener = QuicListener::start(&quic_options(), service(), data_dir, shutdown.clone())
        .await
        .unwrap();
    (listener, shutdown)
}

fn quic_options() -> QuicOptions {
    QuicOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        max_connections: 16,
        max_streams_per_connection: 256,
        idle_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(30),
        certificate: CertificateSource::default(),
        metrics: true,
    }
}

/// QUIC to `listener`; `timeout` should be the plan's (as `--timeout`
/// sets both).
fn quic(listener: &QuicListener, tls: TlsOptions, timeout: Duration) -> Arc<dyn Transport> {
    let mut transport = Quic::new(listener.addr, tls);
    transport.timeout = timeout;
    Arc::new(transport)
}

/// The plan's timeout (see `plan()`).
const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_runs_see_found_and_not_found_only() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, shutdown) = start(dir.path()).await;
    let pinned = TlsOptions::pinned(Fingerprint(listener.fingerprint.0));

    let runs = [
        // 16 streams in flight on each of the plan's 2 connections.
        (pinned.clone(), Load::Closed { concurrency: 32 }),
        (
            TlsOptions::ca_file(&listener.certificate),
            Load::Open { rate: 1000.0 },
        ),
    ];
    for (tls, load) in runs {
        let mut p = plan(
            quic(&listener, tls, TIMEOUT),
            load,
            Duration::from_millis(300),
        );
        p.workload.identifiers = idnode_bench::Identifiers::Synthetic(set());
        p.workload.miss_ratio = 0.2;
        let report = run(p).await.unwrap();
        println!("{report}");
        check_report(&report);
        assert_eq!(report.transport, "quic");
        assert_eq!(report.channels, 2, "{report}");
        let count = |c: u32| {
            report
                .codes
                .iter()
                .find(|x| x.code == c)
                .map_or(0, |x| x.count)
        };
        let (found, missing) = (count(code::SUCCESS), count(code::HANDLE_NOT_FOUND));
        assert_eq!(found + missing, report.answered, "{report}");
        if report.sent >= 100 {
            assert!(found > 0 && missing > 0, "{report}");
        }
        if report.timeouts == 0 {
            assert_eq!(missing, report.unknown_sent, "{report}");
        }
        assert_eq!(report.late, 0, "{report}");
    }

    // The runs closed their connections when they ended.
    let closed = async {
        while listener.connections() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .expect("the bench's QUIC connections were closed");

    // A pin that is not the server's: no run, and the reason.
    let wrong = TlsOptions::pinned(Fingerprint([0xab; 32]));
    let p = plan(
        quic(&listener, wrong, TIMEOUT),
        Load::Closed { concurrency: 4 },
        Duration::from_millis(100),
    );
    let e = run(p).await.unwrap_err();
    let text = format!("{e:#}");
    assert!(text.contains("cannot open a quic channel"), "{text}");
    assert!(text.contains("fingerprint"), "{text}");

    shutdown.cancel();
    listener.join().await;
}

/// The node shuts down in the middle of a run: the run still ends, counts
/// the requests in flight as errors, and says the connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_counts_errors_and_the_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (listener, shutdown) = start(dir.path()).await;
    let pinned = TlsOptions::pinned(Fingerprint(listener.fingerprint.0));
    let mut p = plan(
        quic(&listener, pinned, Duration::from_secs(1)),
        Load::Closed { concurrency: 8 },
        Duration::from_secs(2),
    );
    p.timeout = Duration::from_secs(1);
    p.workload.identifiers = idnode_bench::Identifiers::Synthetic(set());
    let running = tokio::spawn(run(p));
    // Both connections up, some answers on them, then the node goes.
    while listener.connections() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    listener.join().await;
    let report = running.await.unwrap().unwrap();
    println!("{report}");
    assert_eq!(
        report.sent,
        report.answered + report.timeouts + report.errors,
        "{report}"
    );
    assert!(
        report
            .error_samples
            .iter()
            .any(|e| e.contains("QUIC connection closed")),
        "{report}"
    );
}

/// The node restarts on the same port in the middle of a closed-loop run:
/// the generator opens a new connection to it and goes on asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_closed_loop_reopens_a_lost_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (first, shutdown) = start(dir.path()).await;
    let addr = first.addr;
    let pinned = TlsOptions::pinned(Fingerprint(first.fingerprint.0));
    let mut p = plan(
        quic(&first, pinned, Duration::from_secs(1)),
        Load::Closed { concurrency: 4 },
        Duration::from_secs(3),
    );
    p.timeout = Duration::from_secs(1);
    let running = tokio::spawn(run(p));
    while first.connections() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    first.join().await;
    // The same port and data directory (so the same certificate).
    let options = QuicOptions {
        listen: addr,
        ..quic_options()
    };
    let shutdown = CancellationToken::new();
    let second = QuicListener::start(&options, service(), dir.path(), shutdown.clone())
        .await
        .unwrap();
    let reconnected = async {
        while second.connections() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), reconnected)
        .await
        .expect("the generator connected to the restarted node");
    let report = running.await.unwrap().unwrap();
    println!("{report}");
    assert!(report.answered > 0, "{report}");
    assert_eq!(
        report.sent,
        report.answered + report.timeouts + report.errors,
        "{report}"
    );
    shutdown.cancel();
    second.join().await;
}

/// Not a check: QUIC's closed-loop rate against UDP's on one in-process
/// node (in-memory store, generator and node sharing the cores), 64
/// requests outstanding each. Run it in release:
/// `cargo test --release -p idnode-bench --test bench quic_against_udp -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a test: run it by hand in release"]
async fn quic_against_udp() {
    let set = Synthetic::new(100_000, 100).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let service = service_of(set);
    let shutdown = CancellationToken::new();
    let options = HandleListenerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp_workers: 0,
        pin_udp_workers: true,
        tcp_max_connections: 16,
        tcp_idle_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(5),
        rate_limit: Default::default(),
        metrics: true,
    };
    let handle = HandleListeners::start(&options, service.clone(), shutdown.clone())
        .await
        .unwrap();
    let mut options = quic_options();
    options.workers = 0;
    let quic_listener = QuicListener::start(&options, service, dir.path(), shutdown.clone())
        .await
        .unwrap();
    let seconds = std::env::var("QUIC_AGAINST_UDP_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut qps = Vec::new();
    for transport in [
        Arc::new(Udp { server: handle.udp }) as Arc<dyn Transport>,
        quic(
            &quic_listener,
            TlsOptions::insecure(),
            Duration::from_secs(1),
        ),
    ] {
        let mut p = plan(
            transport,
            Load::Closed { concurrency: 64 },
            Duration::from_secs(seconds),
        );
        p.warmup = Duration::from_secs(1);
        p.timeout = Duration::from_secs(1);
        p.workload.identifiers = idnode_bench::Identifiers::Synthetic(set);
        let report = run(p).await.unwrap();
        println!("{report}");
        qps.push(report.qps);
    }
    println!("QUIC / UDP = {:.2}", qps[1] / qps[0]);
    shutdown.cancel();
    handle.join().await;
    quic_listener.join().await;
}
