//! The node's metrics, encoded by prometheus-client on each scrape from
//! the counters the listeners keep (per UDP and HTTP worker, folded here;
//! the stream listeners' own), the latency histograms of every Handle and
//! DNS surface (`idnode_request_duration_seconds`), the registrations,
//! the gRPC calls, the store engine's figures, and the caches and the
//! store's files as `idnode status` reads them
//! ([`crate::status::NodeStatus`]): `GET /metrics` on the HTTP listener.

use crate::status::NodeStatus;
use idnode_core::latency::{BOUNDS, LatencyTotals, bound_seconds};
use idnode_server::metrics::{ListenerCounts, StreamCounts};
use idnode_store::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What a scrape reads.
pub struct NodeMetrics {
    pub listeners: Vec<Arc<ListenerCounts>>,
    /// Handle over TCP and QUIC, DNS over TCP and QUIC.
    pub streams: Vec<Arc<StreamCounts>>,
    pub registry: Arc<idnode_registry::Registry>,
    pub store: Arc<dyn Store>,
    pub status: Arc<NodeStatus>,
    pub http: Option<Arc<idnode_http::metrics::HttpCounts>>,
    pub grpc: Arc<idnode_admin::CallCounts>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics")
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// A histogram from bucket counts (not cumulative; the last bucket is
/// everything above the bounds) and the sum of the observations.
struct ConstHistogram<'a> {
    bounds: &'a [f64],
    counts: &'a [u64],
    sum: f64,
}

impl EncodeMetric for ConstHistogram<'_> {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().copied())
            .collect();
        let count = self.counts.iter().sum();
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum, count, &buckets, None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The bounds of the latency histograms, in seconds.
fn latency_bounds() -> Vec<f64> {
    (0..BOUNDS).map(bound_seconds).collect()
}

/// A histogram family of latencies, one histogram a surface.
fn latency_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Vec<(&str, &str)>, LatencyTotals)],
) -> Result<(), std::fmt::Error> {
    let bounds = latency_bounds();
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, totals) in rows {
        ConstHistogram {
            bounds: &bounds,
            counts: &totals.buckets,
            sum: totals.sum_ns as f64 / 1e9,
        }
        .encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Vec<(&str, &str)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        let value = i64::try_from(*value).unwrap_or(i64::MAX);
        ConstGauge::new(value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Vec<(&str, &str)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for NodeMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals: Vec<_> = self.listeners.iter().map(|l| (l, l.totals())).collect();
        let per = |f: fn(&idnode_server::metrics::Totals) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> {
            totals
                .iter()
                .map(|(l, t)| (vec![("surface", l.surface)], f(t)))
                .collect()
        };
        counter_family(
            &mut encoder,
            "idnode_udp_requests",
            "Datagrams received by the UDP listeners",
            &per(|t| t.received),
        )?;
        counter_family(
            &mut encoder,
            "idnode_udp_request_bytes",
            "Bytes received by the UDP listeners",
            &per(|t| t.bytes_in),
        )?;
        counter_family(
            &mut encoder,
            "idnode_udp_response_bytes",
            "Bytes of the one-datagram answers sent by the UDP listeners",
            &per(|t| t.bytes_out),
        )?;
        let mut by_code = Vec::new();
        for (l, t) in &totals {
            for (label, n) in l.code_labels.iter().zip(t.codes) {
                by_code.push((vec![("surface", l.surface), ("code", *label)], n));
            }
        }
        counter_family(
            &mut encoder,
            "idnode_udp_responses",
            "One-datagram answers sent by the UDP listeners, by response code",
            &by_code,
        )?;
        let mut limited = Vec::new();
        for l in &self.listeners {
            let r = &l.rate_limited;
            limited.push((
                vec![("surface", l.surface), ("action", "dropped")],
                r.dropped.load(Ordering::Relaxed),
            ));
            limited.push((
                vec![("surface", l.surface), ("action", "slipped")],
                r.slipped.load(Ordering::Relaxed),
            ));
            limited.push((
                vec![("surface", l.surface), ("action", "capped")],
                r.capped.load(Ordering::Relaxed),
            ));
        }
        counter_family(
            &mut encoder,
            "idnode_rate_limited_responses",
            "UDP answers the response rate limiter dropped or sent small, and answers the amplification cap sent small (capped)",
            &limited,
        )?;
        let mut latencies: Vec<(Vec<(&str, &str)>, LatencyTotals)> = totals
            .iter()
            .filter(|(l, _)| l.enabled)
            .map(|(l, t)| (vec![("surface", l.surface)], t.latency.clone()))
            .collect();
        latencies.extend(
            self.streams
                .iter()
                .filter(|s| s.enabled)
                .map(|s| (vec![("surface", s.surface)], s.latency_totals())),
        );
        latency_family(
            &mut encoder,
            "idnode_request_duration_seconds",
            "Time from a request's arrival to its answer, by surface (UDP: from the kernel's \
             receive timestamp; TCP and QUIC: from the request's last byte to the answer written)",
            &latencies,
        )?;
        let streams: Vec<_> = self.streams.iter().filter(|s| s.enabled).collect();
        let stream_rows = |f: fn(&StreamCounts) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> {
            streams
                .iter()
                .map(|s| (vec![("surface", s.surface)], f(s)))
                .collect()
        };
        counter_family(
            &mut encoder,
            "idnode_stream_requests",
            "Requests (resolutions and queries) of the TCP and QUIC listeners",
            &stream_rows(|s| s.requests.load(Ordering::Relaxed)),
        )?;
        counter_family(
            &mut encoder,
            "idnode_stream_successful_answers",
            "Answers of the TCP and QUIC listeners that say success (Handle 1, DNS NOERROR)",
            &stream_rows(|s| s.succeeded.load(Ordering::Relaxed)),
        )?;
        let registrations = self.registry.registrations();
        counter_family(
            &mut encoder,
            "idnode_registrations",
            "Identifiers registered (gRPC create and batch, HTTP PUT, Handle CREATE_HANDLE)",
            &[(vec![], registrations.registered.load(Ordering::Relaxed))],
        )?;
        let mut registration_latency = LatencyTotals::default();
        registrations.latency.add_to(&mut registration_latency);
        latency_family(
            &mut encoder,
            "idnode_registration_duration_seconds",
            "Time a registering call took in the registry (validation and durable commit; a \
             batch is one call)",
            &[(vec![], registration_latency)],
        )?;
        gauge(
            &mut encoder,
            "idnode_change_sequence",
            "Sequence number of the last committed change (the DNS SOA serial)",
            self.store.last_sequence(),
        )?;
        let engine = self.store.engine_stats();
        for (name, help, value) in [
            (
                "idnode_store_file_bytes",
                "Bytes of the store's sorted files on disk",
                engine.file_bytes,
            ),
            (
                "idnode_store_memtable_bytes",
                "Bytes of the store's in-memory write buffers",
                engine.memory_table_bytes,
            ),
            (
                "idnode_store_level0_files",
                "Level-0 files of the store (each searched on its own by a lookup)",
                engine.level0_files,
            ),
            (
                "idnode_store_pending_compaction_bytes",
                "Bytes the store estimates compaction still has to rewrite",
                engine.pending_compaction_bytes,
            ),
            (
                "idnode_store_records_estimate",
                "The store's estimate of the identifiers it holds",
                engine.estimated_records,
            ),
        ] {
            gauge(&mut encoder, name, help, value)?;
        }
        gauge_family(
            &mut encoder,
            "idnode_store_bytes",
            "Summed lengths of the store's files (data_dir/db)",
            &[(vec![], self.status.store_bytes())],
        )?;
        let response = self.status.cache();
        let caches = [("response", &response)];
        let rows = |f: fn(&idnode_admin::proto::CacheStatus) -> u64| {
            caches
                .iter()
                .filter(|(_, c)| c.enabled)
                .map(|(name, c)| (vec![("cache", *name)], f(c)))
                .collect::<Vec<_>>()
        };
        gauge_family(
            &mut encoder,
            "idnode_cache_bytes",
            "Bytes of the entries a cache holds",
            &rows(|c| c.used_bytes),
        )?;
        gauge_family(
            &mut encoder,
            "idnode_cache_budget_bytes",
            "A cache's memory budget",
            &rows(|c| c.budget_bytes),
        )?;
        gauge_family(
            &mut encoder,
            "idnode_cache_entries",
            "Entries a cache holds",
            &rows(|c| c.entries),
        )?;
        if response.enabled {
            counter_family(
                &mut encoder,
                "idnode_response_cache_lookups",
                "Lookups of the response cache, by result",
                &[
                    (vec![("result", "hit")], response.hits),
                    (vec![("result", "miss")], response.misses),
                ],
            )?;
        }
        if let Some(http) = &self.http {
            let t = http.totals();
            let rows: Vec<_> = idnode_http::metrics::CLASSES
                .iter()
                .zip(t.by_class)
                .map(|(class, n)| (vec![("class", *class)], n))
                .collect();
            counter_family(
                &mut encoder,
                "idnode_http_responses",
                "Answers of the HTTP listener, by status class",
                &rows,
            )?;
            let bounds: Vec<f64> = idnode_http::metrics::LATENCY_BOUNDS_US
                .iter()
                .map(|&us| us as f64 / 1e6)
                .collect();
            let histogram = ConstHistogram {
                bounds: &bounds,
                counts: &t.latency,
                sum: t.latency_sum_ns as f64 / 1e9,
            };
            histogram.encode(encoder.encode_descriptor(
                "idnode_http_request_duration_seconds",
                "Time the HTTP handlers took, by request",
                None,
                MetricType::Histogram,
            )?)?;
        }
        counter_family(
            &mut encoder,
            "idnode_grpc_calls",
            "gRPC calls, by what became of them",
            &[
                (
                    vec![("result", "served")],
                    self.grpc.served.load(Ordering::Relaxed),
                ),
                (
                    vec![("result", "refused")],
                    self.grpc.refused.load(Ordering::Relaxed),
                ),
            ],
        )?;
        gauge(
            &mut encoder,
            "idnode_grpc_calls_in_flight",
            "gRPC calls being served now",
            self.grpc.in_flight.load(Ordering::Relaxed),
        )?;
        if let Some(mirror) = self.status.mirror() {
            let applied = self.store.last_sequence();
            let primary = mirror.primary_sequence();
            gauge(
                &mut encoder,
                "idnode_mirror_primary_sequence",
                "The primary's last change, as it last said (0 before the first contact)",
                primary,
            )?;
            gauge(
                &mut encoder,
                "idnode_mirror_lag_changes",
                "Changes of the primary not applied here yet",
                primary.saturating_sub(applied),
            )?;
            let since = mirror.since_contact().map_or(-1.0, |d| d.as_secs_f64());
            let seconds = ConstGauge::new(since);
            seconds.encode(encoder.encode_descriptor(
                "idnode_mirror_seconds_since_contact",
                "Seconds since the primary last sent a batch or a heartbeat (-1: never)",
                None,
                seconds.metric_type(),
            )?)?;
            gauge(
                &mut encoder,
                "idnode_mirror_connected",
                "1 while the stream from the primary is open",
                u64::from(mirror.connected()),
            )?;
            counter_family(
                &mut encoder,
                "idnode_mirror_snapshots_loaded",
                "Copies of the primary's store loaded (it no longer held the changes missed)",
                &[(Vec::new(), mirror.snapshots_loaded())],
            )?;
        }
        Ok(())
    }
}

/// A renderer of the node's metrics in the OpenMetrics text format.
pub fn renderer(sources: NodeMetrics) -> idnode_http::Metrics {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(sources));
    let registry = Arc::new(registry);
    Arc::new(move || {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        out
    })
}
