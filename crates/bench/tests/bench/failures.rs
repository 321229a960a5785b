//! Nobody listening: the run ends on time, counts every request as timed
//! out or failed, and says why.

use crate::{plan, udp};
use idnode_bench::{Load, Tcp, run};
use std::sync::Arc;
use std::time::Duration;

fn closed_port() -> std::net::SocketAddr {
    // Bound then dropped: nothing listens there now.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_to_a_closed_port_times_out_and_reports_refusals() {
    for load in [Load::Closed { concurrency: 4 }, Load::Open { rate: 500.0 }] {
        let mut p = plan(udp(closed_port()), load, Duration::from_millis(200));
        p.warmup = Duration::ZERO;
        p.timeout = Duration::from_millis(100);
        let r = run(p).await.unwrap();
        assert_eq!(r.answered, 0, "{r}");
        assert!(r.sent > 0, "{r}");
        assert_eq!(r.sent, r.timeouts + r.errors, "{r}");
        assert!(r.channel_errors > 0, "{r}");
        assert!(r.latency.is_none());
        assert!(r.to_string().contains("nothing answered"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_to_a_closed_port_fails_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    drop(listener);
    let p = plan(
        Arc::new(Tcp { server }),
        Load::Closed { concurrency: 4 },
        Duration::from_millis(200),
    );
    let e = run(p).await.unwrap_err();
    assert!(
        format!("{e:#}").contains("cannot open a tcp channel"),
        "{e:#}"
    );
}
