//! Against a real idnode in process (in-memory store): `bench load`
//! registers the synthetic set through gRPC, then UDP and TCP runs see
//! SUCCESS for known names and HANDLE_NOT_FOUND for unknown ones.

use crate::{check_report, plan, udp};
use idnode_admin::{Auth, serve};
use idnode_authority::HandleService;
use idnode_bench::{AdminTarget, Load, Synthetic, Tcp, load, run};
use idnode_registry::Registry;
use idnode_server::{HandleListenerOptions, HandleListeners};
use idnode_store::MemoryStore;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_then_resolve_over_udp_and_tcp() {
    let store = Arc::new(MemoryStore::new());
    let registry = Arc::new(Registry::new(store.clone()));
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_addr = grpc.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let admin_stop = shutdown.clone();
    let admin = tokio::spawn(serve(
        grpc,
        registry,
        Arc::new(Auth::from_token(TOKEN)),
        async move { admin_stop.cancelled().await },
    ));
    let options = HandleListenerOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp_workers: 2,
        pin_udp_workers: true,
        tcp_max_connections: 16,
        tcp_idle_timeout: Duration::from_secs(30),
        request_timeout: Duration::from_secs(5),
        rate_limit: Default::default(),
        metrics: true,
    };
    let service = Arc::new(HandleService::new(store.clone()));
    let listeners = HandleListeners::start(&options, service, shutdown.clone())
        .await
        .unwrap();

    // The data set the runs below ask for (plan() uses 1000 over 10).
    let set = Synthetic::new(1000, 10).unwrap();
    let target = AdminTarget {
        grpc: format!("http://{grpc_addr}"),
        token: Some(TOKEN.into()),
        token_file: "/nonexistent".into(),
    };
    let summary = load::register(set, &target, true).await.unwrap();
    assert_eq!(summary.registered, 1000, "{summary}");
    assert_eq!((summary.failed, summary.prefixes_created), (0, 10));
    // Again: identical identifiers succeed, prefixes are there already.
    let again = load::register(set, &target, true).await.unwrap();
    assert_eq!((again.registered, again.failed), (1000, 0), "{again}");
    assert_eq!(again.prefixes_existing, 10);
    // Without a token the node refuses, and says why.
    let anonymous = AdminTarget {
        token: None,
        ..target.clone()
    };
    let e = load::register(set, &anonymous, true).await.unwrap_err();
    assert!(format!("{e:#}").contains("admin token"), "{e:#}");
    // `bench load --compact`: the node compacts (in memory: nothing to
    // merge) when asked with the token, and refuses without it.
    load::compact(&target).await.unwrap();
    let e = load::compact(&anonymous).await.unwrap_err();
    assert!(format!("{e:#}").contains("admin token"), "{e:#}");
    let wrong = AdminTarget {
        token: Some("not-the-token".into()),
        ..target.clone()
    };
    let e = load::compact(&wrong).await.unwrap_err();
    assert!(format!("{e:#}").contains("Unauthenticated"), "{e:#}");

    let runs = [
        (udp(listeners.udp), Load::Closed { concurrency: 8 }),
        (
            Arc::new(Tcp {
                server: listeners.tcp,
            }) as Arc<dyn idnode_bench::Transport>,
            Load::Closed { concurrency: 8 },
        ),
        (
            Arc::new(Tcp {
                server: listeners.tcp,
            }) as Arc<dyn idnode_bench::Transport>,
            Load::Open { rate: 1000.0 },
        ),
    ];
    for (transport, load) in runs {
        let name = transport.name();
        let mut p = plan(transport, load, Duration::from_millis(300));
        p.workload.miss_ratio = 0.2;
        let report = run(p).await.unwrap();
        check_report(&report);
        let count = |code: u32| {
            report
                .codes
                .iter()
                .find(|c| c.code == code)
                .map_or(0, |c| c.count)
        };
        let (found, missing) = (count(1), count(100));
        assert_eq!(found + missing, report.answered, "{name}: {report}");
        if report.sent >= 100 {
            assert!(found > 0 && missing > 0, "{name}: {report}");
        }
        // Every unknown name was answered HANDLE_NOT_FOUND (none timed out).
        if report.timeouts == 0 {
            assert_eq!(missing, report.unknown_sent, "{name}: {report}");
        }
    }
    shutdown.cancel();
    listeners.join().await;
    admin.await.unwrap().unwrap();
}
