//! Counters every server keeps, served as `GET /metrics`.
//!
//! One [`Metrics`] is a registry of metric families labelled by
//! `protocol`; a server takes a [`Probe`] for its protocol once, and the
//! hot paths (a message sent, a process started) are then single atomic
//! operations on counters the probe already holds — no label lookup, no
//! lock. Gauges of things that live for a while (a connection, a pane, a
//! running process) go up when an [`Open`] is made and down when it is
//! dropped, so they cannot drift when a task ends early.
//!
//! Encoded with `prometheus-client`, the maintained Rust encoder of the
//! Prometheus project, in the OpenMetrics text format that Prometheus
//! scrapes.

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    protocol: &'static str,
}

/// The families, one series per protocol in each.
#[derive(Default)]
struct Families {
    connections: Family<Labels, Counter>,
    connections_open: Family<Labels, Gauge>,
    sessions_open: Family<Labels, Gauge>,
    panes_open: Family<Labels, Gauge>,
    processes_started: Family<Labels, Counter>,
    processes_running: Family<Labels, Gauge>,
    received: Family<Labels, Counter>,
    sent: Family<Labels, Counter>,
    auth_failures: Family<Labels, Counter>,
    viewer_refusals: Family<Labels, Counter>,
    protocol_errors: Family<Labels, Counter>,
    origin_refusals: Family<Labels, Counter>,
    tls_handshake_failures: Family<Labels, Counter>,
}

struct Inner {
    registry: Registry,
    families: Families,
}

/// A registry of the servers' counters. Cloning shares it: every protocol
/// served by one process may report into one.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every family and no series yet.
    pub fn new() -> Metrics {
        let families = Families::default();
        let mut registry = Registry::with_prefix("execwire");
        let f = &families;
        registry.register(
            "connections",
            "Client connections accepted: WebSocket upgrades, webexec peer connections",
            f.connections.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open now",
            f.connections_open.clone(),
        );
        registry.register(
            "sessions_open",
            "Authenticated clients now: wsep and pow WebSocket connections, pow REST \
             processes, webterm connections after authentication, authorized webexec peers",
            f.sessions_open.clone(),
        );
        registry.register(
            "panes_open",
            "Terminal panes alive, attached or not (wsep terminals, webexec panes)",
            f.panes_open.clone(),
        );
        registry.register(
            "processes_started",
            "Processes started for clients (pow: calls that got a process)",
            f.processes_started.clone(),
        );
        registry.register(
            "processes_running",
            "Processes started for clients that have not ended",
            f.processes_running.clone(),
        );
        registry.register_with_unit(
            "received",
            "Message payload received from clients (WebSocket messages, data channel messages)",
            Unit::Bytes,
            f.received.clone(),
        );
        registry.register_with_unit(
            "sent",
            "Message payload sent to clients (WebSocket messages, data channel messages)",
            Unit::Bytes,
            f.sent.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests or messages refused for a missing or wrong token or fingerprint",
            f.auth_failures.clone(),
        );
        registry.register(
            "viewer_refusals",
            "Requests or input of a read-only client (view token) refused: a start, \
             input, a resize, a signal",
            f.viewer_refusals.clone(),
        );
        registry.register(
            "protocol_errors",
            "Malformed or out-of-order client messages answered with an error",
            f.protocol_errors.clone(),
        );
        registry.register(
            "origin_refusals",
            "Requests refused by the origin and host rule (403)",
            f.origin_refusals.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            f.tls_handshake_failures.clone(),
        );
        Metrics(Arc::new(Inner { registry, families }))
    }

    /// The counters of `protocol` (`wsep`, `pow`, `webterm`, `webexec`).
    pub fn probe(&self, protocol: &'static str) -> Probe {
        let labels = Labels { protocol };
        let f = &self.0.families;
        Probe {
            protocol,
            connections: f.connections.get_or_create_owned(&labels),
            connections_open: f.connections_open.get_or_create_owned(&labels),
            sessions_open: f.sessions_open.get_or_create_owned(&labels),
            panes_open: f.panes_open.get_or_create_owned(&labels),
            processes_started: f.processes_started.get_or_create_owned(&labels),
            processes_running: f.processes_running.get_or_create_owned(&labels),
            received: f.received.get_or_create_owned(&labels),
            sent: f.sent.get_or_create_owned(&labels),
            auth_failures: f.auth_failures.get_or_create_owned(&labels),
            viewer_refusals: f.viewer_refusals.get_or_create_owned(&labels),
            protocol_errors: f.protocol_errors.get_or_create_owned(&labels),
            origin_refusals: f.origin_refusals.get_or_create_owned(&labels),
            tls_handshake_failures: f.tls_handshake_failures.get_or_create_owned(&labels),
        }
    }

    /// Everything, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.0.registry) {
            // Writing to a String does not fail; say so if it ever does.
            tracing::warn!(error = %e, "encoding metrics");
        }
        text
    }

    /// `GET /metrics`, without any check: layer the server's token check
    /// over it.
    pub fn route(&self) -> Router {
        Router::new()
            .route("/metrics", get(serve_metrics))
            .with_state(self.clone())
    }
}

async fn serve_metrics(State(metrics): State<Metrics>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        metrics.encode(),
    )
        .into_response()
}

/// One protocol's counters, resolved once: every method is an atomic
/// operation. Cloning shares the counters.
#[derive(Clone)]
pub struct Probe {
    protocol: &'static str,
    connections: Counter,
    connections_open: Gauge,
    sessions_open: Gauge,
    panes_open: Gauge,
    processes_started: Counter,
    processes_running: Gauge,
    received: Counter,
    sent: Counter,
    auth_failures: Counter,
    viewer_refusals: Counter,
    protocol_errors: Counter,
    origin_refusals: Counter,
    tls_handshake_failures: Counter,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl Probe {
    /// The protocol this probe counts for.
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// A client connected; it counts as open until the guard is dropped.
    pub fn connection(&self) -> Open {
        self.connections.inc();
        Open::new(&self.connections_open)
    }

    /// A client authenticated; it counts until the guard is dropped.
    pub fn session(&self) -> Open {
        Open::new(&self.sessions_open)
    }

    /// A pane started; it counts until the guard is dropped (hand it to
    /// the pane's exit hook).
    pub fn pane(&self) -> Open {
        Open::new(&self.panes_open)
    }

    /// A process started; it counts as running until the guard is dropped.
    pub fn process(&self) -> Open {
        self.processes_started.inc();
        Open::new(&self.processes_running)
    }

    /// `bytes` of message payload came from a client.
    pub fn received(&self, bytes: usize) {
        self.received
            .inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// `bytes` of message payload went to a client.
    pub fn sent(&self, bytes: usize) {
        self.sent.inc_by(u64::try_from(bytes).unwrap_or(u64::MAX));
    }

    /// A request or message carried a missing or wrong token.
    pub fn auth_failed(&self) {
        self.auth_failures.inc();
    }

    /// A read-only client (view token) asked to start or change
    /// something, and was refused.
    pub fn viewer_refused(&self) {
        self.viewer_refusals.inc();
    }

    /// A client sent something malformed or out of order.
    pub fn protocol_error(&self) {
        self.protocol_errors.inc();
    }

    /// The origin rule refused a request.
    pub fn origin_refused(&self) {
        self.origin_refusals.inc();
    }

    /// A TLS handshake failed or timed out.
    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }
}

/// Something counted in a gauge while it lives: the gauge goes down when
/// this is dropped.
#[must_use = "the gauge goes down again when this is dropped"]
pub struct Open(Gauge);

impl Open {
    fn new(gauge: &Gauge) -> Open {
        gauge.inc();
        Open(gauge.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl fmt::Debug for Open {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Open(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_per_protocol_and_gauges_follow_guards() {
        let metrics = Metrics::new();
        let wsep = metrics.probe("wsep");
        let pow = metrics.probe("pow");
        let conn = wsep.connection();
        let process = pow.process();
        wsep.sent(10);
        wsep.received(3);
        pow.auth_failed();
        let text = metrics.encode();
        for line in [
            "execwire_connections_total{protocol=\"wsep\"} 1",
            "execwire_connections_open{protocol=\"wsep\"} 1",
            "execwire_processes_started_total{protocol=\"pow\"} 1",
            "execwire_processes_running{protocol=\"pow\"} 1",
            "execwire_sent_bytes_total{protocol=\"wsep\"} 10",
            "execwire_received_bytes_total{protocol=\"wsep\"} 3",
            "execwire_auth_failures_total{protocol=\"pow\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        drop((conn, process));
        let text = metrics.encode();
        assert!(
            text.lines()
                .any(|l| l == "execwire_connections_open{protocol=\"wsep\"} 0")
        );
        assert!(
            text.lines()
                .any(|l| l == "execwire_connections_total{protocol=\"wsep\"} 1")
        );
    }
}
