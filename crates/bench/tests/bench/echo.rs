//! Closed and open loop against the echo server, reports, JSON, the sweep
//! and its SVG.

use crate::{check_report, plan, udp, xml};
use idnode_bench::echo::{EchoOptions, EchoServer};
use idnode_bench::{Load, Synthetic, run, sweep};
use std::time::Duration;

fn echo() -> EchoServer {
    EchoServer::start(&EchoOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        pin: true,
        data_set: Synthetic::new(1000, 10).unwrap(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_udp_against_echo() {
    let server = echo();
    let p = plan(
        udp(server.local_addr()),
        Load::Closed { concurrency: 8 },
        Duration::from_millis(300),
    );
    let report = run(p).await.unwrap();
    check_report(&report);
    assert_eq!(report.codes.len(), 1, "{report}");
    assert_eq!(report.codes[0].name, "SUCCESS");
    assert_eq!(report.send_lag, None);
    assert!(server.answered() >= report.answered);
    assert_eq!(report.channels, 2);

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for field in [
        "transport",
        "server",
        "channels",
        "duration_secs",
        "warmup_secs",
        "sent",
        "answered",
        "timeouts",
        "errors",
        "channel_errors",
        "qps",
        "unknown_sent",
        "filtered_sent",
    ] {
        assert!(!json[field].is_null(), "{field} missing: {json}");
    }
    assert_eq!(json["load"]["mode"], "closed");
    assert_eq!(json["load"]["concurrency"], 8);
    assert_eq!(json["codes"][0]["name"], "SUCCESS");
    assert_eq!(json["codes"][0]["code"], 1);
    for p in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
        assert!(json["latency"][p].as_f64().unwrap() > 0.0, "{p}: {json}");
    }
    assert_eq!(json["answered"].as_u64(), Some(report.answered));
    // The generator's own CPU time was measured (it sent and read every
    // datagram), and the machine's idle share where Linux says it.
    let cpu = report.cpu.expect("cpu use measured");
    assert!(cpu.generator_cores > 0.0, "{cpu:?}");
    assert!(
        json["cpu"]["generator_cores"].as_f64().unwrap() > 0.0,
        "{json}"
    );
    if cfg!(target_os = "linux") {
        let idle = cpu.machine_idle.expect("/proc/stat read");
        assert!((0.0..=1.0).contains(&idle), "{cpu:?}");
    }

    let text = report.to_string();
    for part in [
        "throughput",
        "SUCCESS (1)",
        "p99.9",
        "cpu        generator",
        "closed loop, 8 outstanding",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_udp_against_echo() {
    let server = echo();
    let p = plan(
        udp(server.local_addr()),
        Load::Open { rate: 2000.0 },
        Duration::from_millis(300),
    );
    let report = run(p).await.unwrap();
    check_report(&report);
    // The schedule, not the clock, decides what is sent: 2000/s for 0.3 s
    // (each of the 2 channels may round its share by one).
    assert!((598..=602).contains(&report.sent), "{report}");
    let lag = report.send_lag.unwrap();
    assert!(lag.p50_us <= lag.max_us);
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["load"]["mode"], "open");
    assert_eq!(json["load"]["rate"], 2000.0);
    assert!(json["send_lag"]["p99_us"].is_number());
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
}

/// With a pace the schedule still decides what is sent, but nothing goes
/// out before the tick at or after its time: at a 20 ms pace the mean send
/// lag is about 10 ms, whatever the machine (a slow one only adds to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_open_loop_sends_on_its_clock() {
    let server = echo();
    let mut p = plan(
        udp(server.local_addr()),
        Load::Open { rate: 2000.0 },
        Duration::from_millis(300),
    );
    p.pace = Duration::from_millis(20);
    let report = run(p.clone()).await.unwrap();
    check_report(&report);
    assert!((598..=602).contains(&report.sent), "{report}");
    assert_eq!(
        report.answered + report.timeouts + report.errors,
        report.sent
    );
    let lag = report.send_lag.unwrap();
    assert!(lag.mean_us > 5_000.0, "{report}");
    // Latency counts from the intended time, so it holds the lag.
    assert!(report.latency.unwrap().mean_us >= lag.mean_us, "{report}");
    assert_eq!(report.pace_secs, 0.02);
    assert!(
        report.to_string().contains("sent every 20.00 ms"),
        "{report}"
    );

    // More answers a tick than one receive batch holds (32): all are read
    // that tick, not left queued until they count as timeouts.
    let mut busy = p.clone();
    busy.load = Load::Open { rate: 40_000.0 };
    busy.pace = Duration::from_millis(10);
    busy.timeout = Duration::from_millis(300);
    let report = run(busy).await.unwrap();
    assert_eq!(report.timeouts + report.errors, 0, "{report}");
    assert_eq!(report.answered, report.sent, "{report}");

    // Only for an open loop over UDP.
    p.load = Load::Closed { concurrency: 4 };
    let err = run(p).await.unwrap_err().to_string();
    assert!(err.contains("--pace"), "{err}");
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_draws_one_point_per_step() {
    let server = echo();
    let mut p = plan(
        udp(server.local_addr()),
        Load::Open { rate: 1.0 },
        Duration::from_millis(150),
    );
    p.warmup = Duration::ZERO;
    let rates = [500.0, 1000.0, 2000.0];
    let steps = tokio::task::spawn_blocking(move || {
        let mut seen = 0;
        let steps = sweep::sweep_blocking(&p, &rates, |_| seen += 1).unwrap();
        assert_eq!(seen, 3);
        steps
    })
    .await
    .unwrap();
    assert_eq!(steps.len(), 3);
    for (s, rate) in steps.iter().zip(rates) {
        check_report(s);
        assert_eq!(s.load, Load::Open { rate });
        let row = sweep::table_row(s);
        // The last two columns: the generator's cores, the idle share.
        let mut cells = row.split_whitespace().rev();
        let idle = cells.next().and_then(|c| c.strip_suffix('%'));
        assert!(idle.is_some_and(|c| c.parse::<f64>().is_ok()), "{row}");
        let cores = cells.next().map(str::parse::<f64>);
        assert!(cores.is_some_and(|c| c.is_ok_and(|c| c >= 0.0)), "{row}");
    }
    let svg = sweep::chart(&steps);
    xml::check_well_formed(&svg).unwrap();
    assert!(svg.contains("<svg "));
    assert_eq!(svg.matches("<circle class=\"p50\"").count(), 3, "{svg}");
    assert_eq!(svg.matches("<circle class=\"p99\"").count(), 3, "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 2);
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
}

#[test]
fn echo_answers_are_idnode_sized() {
    // The response idnode gives a synthetic identifier and the echo
    // template carry the same handle and values, so the sizes match; here
    // the template is simply checked to be a plausible, small answer.
    let server = echo();
    assert!(
        (150..=512).contains(&server.response_len()),
        "{}",
        server.response_len()
    );
    assert_eq!(server.workers(), 2);
    server.stop();
}

fn epoch_nanos() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(since.as_nanos()).unwrap()
}

/// Over UDP an answer's latency ends when the kernel received it: the
/// receiving half hands each answer over with that timestamp, taken
/// between the send and the read.
#[test]
fn udp_answers_carry_the_time_the_kernel_received_them() {
    use idnode_bench::transport::Channel;
    use idnode_bench::{Transport, Udp};
    use idnode_handle::{RequestParams, encode_resolution_request};

    let server = echo();
    let Channel {
        mut sender,
        mut receiver,
    } = Udp {
        server: server.local_addr(),
    }
    .open()
    .unwrap();
    let mut request = Vec::new();
    encode_resolution_request(
        &mut request,
        &RequestParams {
            request_id: 7,
            handle: b"88.100.1/BENCH-00000001",
            ..Default::default()
        },
    );
    let before = epoch_nanos();
    sender.send(&request).unwrap();
    sender.flush().unwrap();
    let mut got = Vec::new();
    // Up to about 5 s (each recv waits up to 5 ms).
    for _ in 0..1000 {
        receiver
            .recv(&mut |m, arrival| got.push((m.to_vec(), arrival)))
            .unwrap();
        if !got.is_empty() {
            break;
        }
    }
    let read = epoch_nanos();
    assert_eq!(got.len(), 1, "one answer");
    assert_eq!(
        got[0].0[8..12],
        7u32.to_be_bytes(),
        "the answer's request id"
    );
    let arrival = got[0].1.expect("the kernel's receive timestamp");
    assert!(
        before <= arrival && arrival <= read,
        "arrived at {arrival}, sent after {before}, read at {read}"
    );
}
