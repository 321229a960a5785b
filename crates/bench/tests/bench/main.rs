//! The load generator against real sockets on loopback: the echo server,
//! and an in-process idnode (in-memory store, gRPC admin API, Handle
//! listeners over UDP, TCP and QUIC). No timing assertions: CI is a loaded 2-core machine.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

mod cli;
mod echo;
mod failures;
mod node;
mod quic;
mod xml;

use idnode_bench::{Identifiers, Load, Plan, Report, Synthetic, Transport, Udp, Workload};
use std::sync::Arc;
use std::time::Duration;

/// A short plan: `duration` measured after a short warmup, a generous
/// timeout so that a slow CI machine shows up as latency, not loss.
pub fn plan(transport: Arc<dyn Transport>, load: Load, duration: Duration) -> Plan {
    Plan {
        transport,
        channels: 2,
        load,
        warmup: Duration::from_millis(50),
        duration,
        timeout: Duration::from_secs(5),
        workload: Workload {
            miss_ratio: 0.1,
            filter_ratio: 0.1,
            ..Workload::new(Identifiers::Synthetic(Synthetic::new(1000, 10).unwrap()))
        },
        seed: 7,
        pace: Duration::ZERO,
    }
}

pub fn udp(server: std::net::SocketAddr) -> Arc<dyn Transport> {
    Arc::new(Udp { server })
}

/// What every report must satisfy, whatever the machine's speed.
pub fn check_report(r: &Report) {
    assert!(r.answered > 0, "{r}");
    assert_eq!((r.errors, r.channel_errors), (0, 0), "{r}");
    assert_eq!(r.sent, r.answered + r.timeouts + r.errors, "{r}");
    assert_eq!(
        r.codes.iter().map(|c| c.count).sum::<u64>(),
        r.answered,
        "{r}"
    );
    assert!(r.qps > 0.0, "{r}");
    let l = r.latency.unwrap();
    let ordered = [l.min_us, l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us];
    assert!(ordered.windows(2).all(|w| w[0] <= w[1]), "{l:?}");
    assert!(l.min_us > 0.0 && l.min_us <= l.mean_us && l.mean_us <= l.max_us);
    // 10% of at least 200 questions: never 0 (0.9^200 is about 1e-9).
    if r.sent >= 200 {
        assert!(r.unknown_sent > 0 && r.unknown_sent < r.sent, "{r}");
        assert!(r.filtered_sent > 0 && r.filtered_sent < r.sent, "{r}");
    }
}
