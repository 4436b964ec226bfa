//! The control plane's own metrics, served on its `/metrics` in Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::PUSH_ORDER;
use crate::auth::Refusal;

/// Counters by resource type, in [`PUSH_ORDER`].
#[derive(Default)]
struct PerType([AtomicU64; 3]);

impl PerType {
    fn add(&self, type_url: &str, n: u64) {
        if let Some(i) = PUSH_ORDER.iter().position(|t| *t == type_url) {
            self.0[i].fetch_add(n, Relaxed);
        }
    }
}

#[derive(Default)]
pub struct Stats {
    connected: AtomicU64,
    pushes: PerType,
    acks: PerType,
    nacks: PerType,
    /// From a push to its ACK, in microseconds.
    ack_latency_us_sum: AtomicU64,
    ack_latency_count: AtomicU64,
    ack_latency_us_max: AtomicU64,
    load_errors: AtomicU64,
    generate_errors: AtomicU64,
    generation: AtomicU64,
    /// Streams refused or closed for their token, by [`Refusal::ALL`]'s order.
    refusals: [AtomicU64; Refusal::ALL.len()],
}

impl Stats {
    pub fn connected(&self, delta: i64) {
        if delta >= 0 {
            self.connected.fetch_add(delta as u64, Relaxed);
        } else {
            self.connected.fetch_sub(delta.unsigned_abs(), Relaxed);
        }
    }
    pub fn pushed(&self, type_url: &str) {
        self.pushes.add(type_url, 1);
    }
    pub fn acked(&self, type_url: &str, latency: std::time::Duration) {
        self.acks.add(type_url, 1);
        let us = latency.as_micros() as u64;
        self.ack_latency_us_sum.fetch_add(us, Relaxed);
        self.ack_latency_count.fetch_add(1, Relaxed);
        self.ack_latency_us_max.fetch_max(us, Relaxed);
    }
    pub fn nacked(&self, type_url: &str) {
        self.nacks.add(type_url, 1);
    }
    pub fn load_error(&self) {
        self.load_errors.fetch_add(1, Relaxed);
    }
    pub fn generate_error(&self) {
        self.generate_errors.fetch_add(1, Relaxed);
    }
    pub fn refused(&self, r: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|x| *x == r) {
            self.refusals[i].fetch_add(1, Relaxed);
        }
    }
    pub fn refusals_total(&self) -> u64 {
        self.refusals.iter().map(|a| a.load(Relaxed)).sum()
    }
    pub fn set_generation(&self, g: u64) {
        self.generation.store(g, Relaxed);
    }
    pub fn nacks_total(&self) -> u64 {
        self.nacks.0.iter().map(|a| a.load(Relaxed)).sum()
    }
    pub fn load_errors_total(&self) -> u64 {
        self.load_errors.load(Relaxed)
    }

    /// Prometheus text 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let per_type = |out: &mut String, name: &str, help: &str, c: &PerType| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (t, v) in PUSH_ORDER.iter().zip(&c.0) {
                let _ = writeln!(
                    out,
                    "{name}{{type=\"{}\"}} {}",
                    super::short(t),
                    v.load(Relaxed)
                );
            }
        };
        gauge(
            &mut out,
            "meshmetrics_cp_connected_proxies",
            "Envoys with an open ADS stream.",
            self.connected.load(Relaxed),
        );
        gauge(
            &mut out,
            "meshmetrics_cp_config_generation",
            "How many times the resource files loaded and changed something.",
            self.generation.load(Relaxed),
        );
        per_type(
            &mut out,
            "meshmetrics_cp_pushes_total",
            "Discovery responses sent.",
            &self.pushes,
        );
        per_type(
            &mut out,
            "meshmetrics_cp_acks_total",
            "Responses a proxy accepted.",
            &self.acks,
        );
        per_type(
            &mut out,
            "meshmetrics_cp_nacks_total",
            "Responses a proxy rejected (logged with Envoy's error_detail).",
            &self.nacks,
        );
        let _ = writeln!(
            out,
            "# HELP meshmetrics_cp_push_ack_seconds From a push to the proxy's ACK.\n# TYPE meshmetrics_cp_push_ack_seconds summary\nmeshmetrics_cp_push_ack_seconds_sum {}\nmeshmetrics_cp_push_ack_seconds_count {}",
            self.ack_latency_us_sum.load(Relaxed) as f64 / 1e6,
            self.ack_latency_count.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP meshmetrics_cp_push_ack_max_seconds The longest push-to-ACK seen.\n# TYPE meshmetrics_cp_push_ack_max_seconds gauge\nmeshmetrics_cp_push_ack_max_seconds {}",
            self.ack_latency_us_max.load(Relaxed) as f64 / 1e6
        );
        counter(
            &mut out,
            "meshmetrics_cp_resource_load_errors_total",
            "Loads of the resource files that failed (the last good configuration stays).",
            self.load_errors.load(Relaxed),
        );
        counter(
            &mut out,
            "meshmetrics_cp_generate_errors_total",
            "Proxies whose resources could not be built (unknown dataplane, a missing CA...).",
            self.generate_errors.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP meshmetrics_cp_auth_refusals_total ADS streams refused or closed for their dataplane token, by reason.\n# TYPE meshmetrics_cp_auth_refusals_total counter"
        );
        for (r, v) in Refusal::ALL.iter().zip(&self.refusals) {
            let _ = writeln!(
                out,
                "meshmetrics_cp_auth_refusals_total{{reason=\"{}\"}} {}",
                r.reason(),
                v.load(Relaxed)
            );
        }
        out
    }
}
