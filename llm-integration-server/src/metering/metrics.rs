//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Labels take values from small fixed sets only (provider, source kind,
//! status class, token kind, refusal code): no model, VM, owner or key.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    provider: &'static str,
    source: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    provider: &'static str,
    source: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    provider: &'static str,
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 20))
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    refusals: Family<ErrorLabels, Counter>,
    duration: Histograms<ProviderLabels>,
    ttfb: Histograms<ProviderLabels>,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<CostLabels, Counter>,
    active_streams: Gauge,
    allocation_refusals: Counter,
    price_fallbacks: Family<FallbackLabels, Counter>,
    estimated: Family<ProviderLabels, Counter>,
    connections: Gauge,
    connections_refused: Family<ReasonLabels, Counter>,
    connections_closed: Family<ReasonLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    provider: &'static str,
    /// `family` (the family's newest generation) or `default`.
    kind: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("llm_integration");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Proxied requests by provider, source and status class",
            requests.clone(),
        );
        let refusals = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "refusals",
            "Requests the gateway refused, by reason",
            refusals.clone(),
        );
        let duration: Histograms<ProviderLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_duration_seconds",
            "Upstream request duration, until the body ended",
            duration.clone(),
        );
        let ttfb: Histograms<ProviderLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_ttfb_seconds",
            "Time until the upstream's response head",
            ttfb.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "tokens",
            "Tokens by provider, source and kind",
            tokens.clone(),
        );
        let cost = Family::<CostLabels, Counter>::default();
        registry.register(
            "cost_micros",
            "Cost in micro-dollars by provider and source",
            cost.clone(),
        );
        let price_fallbacks = Family::<FallbackLabels, Counter>::default();
        registry.register(
            "price_fallbacks",
            "Requests priced without an entry of their own: at their family's newest generation, or the provider's default",
            price_fallbacks.clone(),
        );
        let estimated = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "estimated_usage",
            "Requests whose usage was estimated (the provider's final figures never came)",
            estimated.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open connections, on every listener",
            connections.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed at once, past the total or per-peer cap",
            connections_refused.clone(),
        );
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections the gateway closed because they held nothing: no request head in time, or idle",
            connections_closed.clone(),
        );
        let active_streams = Gauge::default();
        registry.register(
            "active_responses",
            "Responses being relayed now",
            active_streams.clone(),
        );
        let allocation_refusals = Counter::default();
        registry.register(
            "allocation_refusals",
            "Requests refused because the allocation was exhausted",
            allocation_refusals.clone(),
        );
        Metrics {
            registry,
            requests,
            refusals,
            duration,
            ttfb,
            tokens,
            cost,
            active_streams,
            allocation_refusals,
            price_fallbacks,
            estimated,
            connections,
            connections_refused,
            connections_closed,
        }
    }

    /// A connection was admitted.
    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    /// A connection closed; `reason` when the gateway closed it for holding
    /// nothing (`header_timeout`, `idle`).
    pub fn connection_closed(&self, reason: Option<&'static str>) {
        match reason {
            Some(reason) => {
                self.connections_closed
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
            }
            None => {
                self.connections.dec();
            }
        }
    }

    /// A connection was refused past a cap (`total`, `per_peer`).
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a request priced without an entry of its own (`kind`:
    /// `family` or `default`).
    pub fn price_fallback(&self, provider: &'static str, kind: &'static str) {
        self.price_fallbacks
            .get_or_create(&FallbackLabels { provider, kind })
            .inc();
    }

    /// Counts a request whose usage was estimated.
    pub fn usage_estimated(&self, provider: &'static str) {
        self.estimated
            .get_or_create(&ProviderLabels { provider })
            .inc();
    }

    /// Counts a refusal by its machine-readable code.
    pub fn refused(&self, code: &'static str) {
        self.refusals.get_or_create(&ErrorLabels { code }).inc();
    }

    /// Counts an allocation refusal.
    pub fn allocation_refused(&self) {
        self.allocation_refusals.inc();
        self.refused("allocation_exhausted");
    }

    /// A response started being relayed.
    pub fn stream_started(&self) {
        self.active_streams.inc();
    }

    /// A response ended.
    pub fn stream_ended(&self) {
        self.active_streams.dec();
    }

    /// Records a finished request.
    #[allow(clippy::too_many_arguments)]
    pub fn finished(
        &self,
        provider: &'static str,
        source: &'static str,
        status: u16,
        duration: f64,
        ttfb: Option<f64>,
        tokens: &llm_integration_core::seams::TokenUsage,
        cost: u64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                provider,
                source,
                status: status_class(status),
            })
            .inc();
        self.duration
            .get_or_create(&ProviderLabels { provider })
            .observe(duration);
        if let Some(t) = ttfb {
            self.ttfb
                .get_or_create(&ProviderLabels { provider })
                .observe(t);
        }
        for (kind, n) in [
            ("input", tokens.input),
            ("output", tokens.output),
            ("cache_write", tokens.cache_creation),
            ("cache_read", tokens.cache_read),
        ] {
            if n > 0 {
                self.tokens
                    .get_or_create(&TokenLabels {
                        provider,
                        source,
                        kind,
                    })
                    .inc_by(n);
            }
        }
        if cost > 0 {
            self.cost
                .get_or_create(&CostLabels { provider, source })
                .inc_by(cost);
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
