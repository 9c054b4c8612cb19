//! Metering: usage read from every response, priced, debited from the
//! owner's allocation for `gateway` sources, recorded in the ledger for
//! every source, and counted in metrics.
//!
//! A [`Metered`] travels with each forwarded request. It holds the
//! allocation reservation; it is finished exactly once, with the usage the
//! core's response transducer saw, when the response body ends, fails, or
//! is dropped because the client went away (or with the status of the
//! error answered instead), so no request goes unrecorded.

pub mod allocation;
pub mod ledger;
pub mod metrics;
pub mod tokens;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use llm_integration_core::pricing::{Price, PriceMatch, PriceTable};
use llm_integration_core::seams::{TokenUsage, UsageRecord, UsageSink};
use llm_integration_core::usage::Reading;
use llm_integration_core::{IntegrationId, Owner, Provider, SourceKind, VmId};
use std::collections::HashSet;
use std::sync::Mutex;

use crate::log_throttle::LogThrottle;

pub use allocation::{Allocator, Exhausted, Reservation};
pub use ledger::{Ledger, LedgerWriter};
pub use metrics::Metrics;

/// Everything metering needs, shared by all requests.
pub struct Metering {
    /// Prices.
    pub prices: PriceTable,
    /// Allocations, debited for `gateway` sources (`None`: nothing is
    /// reserved or debited, as for an embedder that meters elsewhere).
    pub allocator: Option<Arc<Allocator>>,
    /// Where records go (the server's [`Ledger`]).
    pub sink: Arc<dyn UsageSink>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Requests being metered now; shutdown waits for them before the
    /// ledger's last flush.
    pub in_flight: InFlight,
    /// Models already logged as priced without an entry.
    unpriced: Mutex<HashSet<String>>,
    /// Answers reporting more output than their request's limit: one log
    /// line a minute (a misreporting upstream would otherwise write one a
    /// request).
    overreports: LogThrottle,
}

/// How often a kind of upstream misreport is logged, at most.
const MISREPORT_LOG_EVERY: Duration = Duration::from_secs(60);

/// The most unpriced models logged (model names come from requests).
const MAX_UNPRICED_LOGGED: usize = 1024;

impl Metering {
    /// The price of `model` on `provider`. One priced without an entry of
    /// its own (its family's newest generation, or the provider's default)
    /// is counted in a metric and logged, once per model.
    pub fn price(&self, provider: Provider, model: Option<&str>) -> Price {
        let (price, how) = self.prices.lookup(provider, model);
        let kind = match &how {
            PriceMatch::Listed => return price,
            PriceMatch::Family(_) => "family",
            PriceMatch::Default => "default",
        };
        self.metrics.price_fallback(provider.as_str(), kind);
        let model = model.unwrap_or("");
        let first = self.unpriced.lock().is_ok_and(|mut seen| {
            seen.len() < MAX_UNPRICED_LOGGED && seen.insert(format!("{provider}/{model}"))
        });
        if first {
            match how {
                PriceMatch::Family(newest) => {
                    tracing::warn!(%provider, model, priced_as = %newest, "model not in the price table; priced as a listed generation of its family")
                }
                _ => {
                    tracing::warn!(%provider, model, "model not in the price table; priced at the provider's default")
                }
            }
        }
        price
    }

    /// Metering with `prices`, debiting through `allocator` (if any) and
    /// recording into `sink`.
    pub fn new(
        prices: PriceTable,
        allocator: Option<Arc<Allocator>>,
        sink: Arc<dyn UsageSink>,
    ) -> Self {
        Metering {
            prices,
            allocator,
            sink,
            metrics: Arc::new(Metrics::new()),
            in_flight: InFlight::default(),
            unpriced: Mutex::default(),
            overreports: LogThrottle::new(MISREPORT_LOG_EVERY),
        }
    }
}

/// A count of requests not yet recorded, and a way to wait until none is.
///
/// At shutdown, responses still streaming are cut; an HTTP/2 stream's task
/// may end (and record its usage) a moment after its connection did, so
/// the ledger closes only once this count is zero.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    none: Notify,
}

impl InFlight {
    /// How many requests are being metered.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn enter(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn leave(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.none.notify_waiters();
        }
    }

    /// Resolves when no request is being metered.
    pub async fn none(&self) {
        loop {
            let notified = self.none.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Who and what a request was, for its record.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// When it started.
    pub started: Instant,
    /// The same, as wall-clock time.
    pub started_at: SystemTime,
    /// The owner charged or informed.
    pub owner: Owner,
    /// The calling VM.
    pub vm: VmId,
    /// The integration.
    pub integration: IntegrationId,
    /// The provider.
    pub provider: Provider,
    /// The source kind.
    pub source: SourceKind,
    /// The model the request named (the response may name it too).
    pub model: Option<String>,
    /// The price of `model` on `provider` ([`Metering::price`]), looked up
    /// once when the request was reserved for.
    pub price: Price,
    /// The request's input in tokens, as estimated from its body: what is
    /// charged for input when the provider never says.
    pub input_estimate: u64,
    /// The provider charges nothing for the call (a token count, a
    /// moderation): recorded with no tokens and no cost.
    pub free: bool,
    /// The most output the request can produce, when it states a limit
    /// (the limit times its choices), in tokens: an upstream that reports
    /// more is charged this.
    pub output_limit: Option<u64>,

    /// The most output the request may produce (its stated limit times its
    /// choices), in tokens: the bound of [`Metered::output_floor`].
    pub output_cap: u64,
}

/// Output tokens a model is assumed to generate per second of an answer
/// cut before its final usage: hidden reasoning is billed although it is
/// never relayed, so a cut answer is charged at least this rate over its
/// time since the answer's head (up to the request's output limit).
pub const GENERATION_RATE: u64 = 100;

/// One request's metering: finished exactly once.
pub struct Metered {
    metering: Arc<Metering>,
    facts: RequestFacts,
    reservation: Option<Reservation>,
    status: u16,
    ttfb: Option<Duration>,
    relaying: bool,
    /// The request went to the provider (which may charge its input even
    /// if no answer is relayed).
    sent: bool,
    done: bool,
}

impl Metered {
    /// Starts metering a request.
    pub fn new(
        metering: Arc<Metering>,
        facts: RequestFacts,
        reservation: Option<Reservation>,
    ) -> Self {
        metering.in_flight.enter();
        Metered {
            metering,
            facts,
            reservation,
            status: 0,
            ttfb: None,
            relaying: false,
            sent: false,
            done: false,
        }
    }

    /// `tokens` within what the request could use
    /// ([`RequestFacts::output_limit`]): an upstream's figures past it are
    /// not believed. (Input is not bounded here: server tools' results and
    /// referenced context make it unknowable to the gateway.)
    fn bounded(&self, mut tokens: TokenUsage) -> TokenUsage {
        let before = tokens;
        if let Some(limit) = self.facts.output_limit {
            tokens.output = tokens.output.min(limit);
        }
        if tokens != before {
            if let Some(held_back) = self.metering.overreports.admit() {
                tracing::warn!(
                    provider = %self.facts.provider,
                    reported_output = before.output,
                    limit = tokens.output,
                    held_back,
                    "the upstream reported more output than the request's limit; charged the limit (more such answers in the next minute are not logged; held_back counts those since the last line)"
                );
            }
        }
        tokens
    }

    /// The least output to charge an answer cut now before its final usage:
    /// [`GENERATION_RATE`] tokens per second since the answer's head, up to
    /// the request's output limit.
    pub fn output_floor(&self) -> u64 {
        let Some(head) = self.ttfb else { return 0 };
        let since = self.facts.started.elapsed().saturating_sub(head);
        let tokens = (since.as_millis() as u64).saturating_mul(GENERATION_RATE) / 1000;
        tokens.min(self.facts.output_cap)
    }

    /// The request's estimated input, in tokens.
    pub fn input_estimate(&self) -> u64 {
        self.facts.input_estimate
    }

    /// The status of the upstream's answer (0 before it came).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The request is being sent to the provider.
    pub fn sent(&mut self) {
        self.sent = true;
    }

    /// The upstream answered with `status`; its body is being relayed.
    pub fn response(&mut self, status: u16) {
        self.status = status;
        self.ttfb = Some(self.facts.started.elapsed());
        self.relaying = true;
        self.metering.metrics.stream_started();
    }

    /// The request ended (body complete, cut, failed, or answered by the
    /// gateway with `status`), having consumed `reading` (as the answer
    /// reported it, or as estimated) and named `model`. A request sent to
    /// the provider and dropped before any answer (the client went away)
    /// is charged its estimated input. Idempotent: only the first call
    /// counts.
    pub fn finish(&mut self, status: Option<u16>, reading: Option<Reading>, model: Option<&str>) {
        if self.done {
            return;
        }
        self.done = true;
        tracing::debug!(status = ?status, "request metered");
        if let Some(s) = status {
            self.status = s;
        }
        if self.relaying {
            self.metering.metrics.stream_ended();
        }
        let reading = match reading {
            _ if self.facts.free => Reading::default(),
            Some(r) => r,
            None if self.sent && !self.relaying && status.is_none() => Reading {
                tokens: TokenUsage {
                    input: self.facts.input_estimate,
                    ..TokenUsage::default()
                },
                estimated: true,
            },
            None => Reading::default(),
        };
        let tokens = self.bounded(reading.tokens);
        // The record names the model the request asked for (checked by
        // the router); the answer's model names it only when the request
        // had none. An answer naming another model is priced at the dearer
        // of the two, so an upstream cannot make a request cheaper (or
        // relabel it) by what it says it ran.
        // What the upstream said, stored and logged: never a key.
        let answered = model.map(|m| {
            let m = llm_integration_core::redact::Redactor::default().redact(m);
            llm_integration_core::redact::printable_field(&m, 256)
        });
        let asked = self.facts.model.clone();
        let prices = &self.metering;
        let price = match (&asked, &answered) {
            (None, Some(answered)) => prices.price(self.facts.provider, Some(answered)),
            _ => self.facts.price,
        };
        let mut cost = price.cost_micros(&tokens);
        if let (Some(a), Some(b)) = (&asked, &answered) {
            if a != b {
                cost = cost.max(
                    prices
                        .price(self.facts.provider, Some(b))
                        .cost_micros(&tokens),
                );
            }
        }
        let model = asked.or(answered);
        if reading.estimated {
            self.metering
                .metrics
                .usage_estimated(self.facts.provider.as_str());
        }
        if let (Some(reservation), Some(allocator)) =
            (self.reservation.take(), &self.metering.allocator)
        {
            allocator.settle(reservation, cost);
        }
        let duration = self.facts.started.elapsed();
        self.metering.metrics.finished(
            self.facts.provider.as_str(),
            self.facts.source.as_str(),
            self.status,
            duration.as_secs_f64(),
            self.ttfb.map(|t| t.as_secs_f64()),
            &tokens,
            cost,
        );
        self.metering.sink.record(UsageRecord {
            started_at: self.facts.started_at,
            owner: self.facts.owner,
            vm: self.facts.vm,
            integration: self.facts.integration,
            provider: self.facts.provider,
            source: self.facts.source,
            model,
            tokens,
            estimated: reading.estimated,
            cost_micros: cost,
            status: self.status,
            duration,
            time_to_first_byte: self.ttfb,
        });
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        // Never finished (an answer that was not relayed): record the request.
        self.finish(None, None, None);
        self.metering.in_flight.leave();
    }
}
