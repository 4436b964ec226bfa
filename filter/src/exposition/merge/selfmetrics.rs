//! The families meshmetrics adds about itself: how each source fared in this scrape.

use crate::exposition::decide::family::OWN_PRIORITY;
use crate::exposition::merge::Merger;
use crate::exposition::read::Format;
use crate::exposition::read::escape::write_escaped_label_value;
use crate::exposition::write::LabelSet;

/// How one source fared, for the self-metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceReport<'a> {
    /// The source's name: `envoy`, or the aggregate entry's name.
    pub name: &'a str,
    /// Whether its body was fetched and read.
    pub up: bool,
    pub duration_seconds: f64,
    /// Time the filter spent reading and rewriting the body, inside the VM: its own cost.
    pub merge_seconds: f64,
    pub bytes: u64,
    /// Samples dropped (malformed, type conflict, not representable) since the proxy started.
    pub dropped_total: u64,
    /// Why the source failed (`meshmetrics_source_error`'s `reason`); `None` when it is up.
    pub error: Option<&'a str>,
}

type Field = fn(&SourceReport<'_>, &mut Vec<u8>);

const FAMILIES: [(&str, &str, &str, Field); 5] = [
    (
        "meshmetrics_source_up",
        "gauge",
        "Whether the last fetch of the source succeeded (1) or failed (0).",
        |r, out| out.push(if r.up { b'1' } else { b'0' }),
    ),
    (
        "meshmetrics_source_duration_seconds",
        "gauge",
        "How long the last fetch of the source took.",
        |r, out| out.extend_from_slice(format!("{}", r.duration_seconds).as_bytes()),
    ),
    (
        "meshmetrics_source_merge_seconds",
        "gauge",
        "How long the filter took to read and rewrite the source's last body (its own CPU cost).",
        |r, out| out.extend_from_slice(format!("{}", r.merge_seconds).as_bytes()),
    ),
    (
        "meshmetrics_source_bytes",
        "gauge",
        "Size of the body the source last answered.",
        |r, out| out.extend_from_slice(r.bytes.to_string().as_bytes()),
    ),
    (
        "meshmetrics_source_samples_dropped_total",
        "counter",
        "Samples of the source dropped because they were malformed, conflicted with another \
         source's type or could not be written in the scrape's format.",
        |r, out| out.extend_from_slice(r.dropped_total.to_string().as_bytes()),
    ),
];

/// Renders the self-metrics as text 0.0.4.
pub fn render_self_metrics(reports: &[SourceReport<'_>], out: &mut Vec<u8>) {
    for (name, kind, help, field) in FAMILIES {
        out.extend_from_slice(format!("# HELP {name} {help}\n# TYPE {name} {kind}\n").as_bytes());
        for r in reports {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"{source=\"");
            write_escaped_label_value(r.name, out);
            out.extend_from_slice(b"\"} ");
            field(r, out);
            out.push(b'\n');
        }
    }
    out.extend_from_slice(
        b"# HELP meshmetrics_source_error Why the last fetch of the source failed: 1 with the reason; no series while it is up.\n\
          # TYPE meshmetrics_source_error gauge\n",
    );
    for r in reports {
        if let Some(reason) = r.error {
            out.extend_from_slice(b"meshmetrics_source_error{source=\"");
            write_escaped_label_value(r.name, out);
            out.extend_from_slice(b"\",reason=\"");
            write_escaped_label_value(reason, out);
            out.extend_from_slice(b"\"} 1\n");
        }
    }
}

/// The family telling the size of the filter's wasm linear memory: it never shrinks, so this is
/// the VM's high-water mark — what an operator watches for growth across scrapes.
pub fn render_vm_memory(bytes: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"# HELP meshmetrics_wasm_memory_bytes Size of the linear memory of the filter's wasm VM that answered this scrape.\n\
          # TYPE meshmetrics_wasm_memory_bytes gauge\nmeshmetrics_wasm_memory_bytes ",
    );
    out.extend_from_slice(bytes.to_string().as_bytes());
    out.push(b'\n');
}

/// The family counting the scrapes this proxy answered 503, by reason: `budget` (an answer
/// waited for the answering budget past its scraper's deadline) or `flights` (too many
/// different scrapes in flight on one worker). Summed over the proxy's workers.
pub fn render_refused(budget: u64, flights: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"# HELP meshmetrics_scrapes_refused_total Scrapes answered 503 with Retry-After, by reason.\n\
          # TYPE meshmetrics_scrapes_refused_total counter\n",
    );
    for (reason, n) in [("budget", budget), ("flights", flights)] {
        out.extend_from_slice(b"meshmetrics_scrapes_refused_total{reason=\"");
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\"} ");
        out.extend_from_slice(n.to_string().as_bytes());
        out.push(b'\n');
    }
}

/// The OTLP push so far (every worker's, from Envoy's shared data).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OtelStats {
    pub pushes: u64,
    /// By reason (`config::OTEL_FAILURES`).
    pub failures: Vec<(&'static str, u64)>,
    pub last_duration_seconds: f64,
    pub bytes: u64,
    /// The linear memory of the VM that pushes, after its last push (0: none yet).
    pub vm_memory_bytes: u64,
}

/// `meshmetrics_otel_*`: pushes done, failed by reason, the last one's duration, bytes sent, the
/// pushing VM's memory.
pub fn render_otel(s: &OtelStats, out: &mut Vec<u8>) {
    let line = |out: &mut Vec<u8>, head: &[u8], value: String| {
        out.extend_from_slice(head);
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    };
    out.extend_from_slice(
        b"# HELP meshmetrics_otel_pushes_total OTLP exports the collector accepted.\n\
          # TYPE meshmetrics_otel_pushes_total counter\n",
    );
    line(out, b"meshmetrics_otel_pushes_total ", s.pushes.to_string());
    out.extend_from_slice(
        b"# HELP meshmetrics_otel_failures_total OTLP pushes dropped, by reason.\n\
          # TYPE meshmetrics_otel_failures_total counter\n",
    );
    for (reason, n) in &s.failures {
        line(
            out,
            format!("meshmetrics_otel_failures_total{{reason=\"{reason}\"}} ").as_bytes(),
            n.to_string(),
        );
    }
    out.extend_from_slice(
        b"# HELP meshmetrics_otel_last_push_duration_seconds The last push, gathering and export.\n\
          # TYPE meshmetrics_otel_last_push_duration_seconds gauge\n",
    );
    line(
        out,
        b"meshmetrics_otel_last_push_duration_seconds ",
        s.last_duration_seconds.to_string(),
    );
    out.extend_from_slice(
        b"# HELP meshmetrics_otel_sent_bytes_total Bytes of OTLP requests sent.\n\
          # TYPE meshmetrics_otel_sent_bytes_total counter\n",
    );
    line(
        out,
        b"meshmetrics_otel_sent_bytes_total ",
        s.bytes.to_string(),
    );
    out.extend_from_slice(
        b"# HELP meshmetrics_otel_vm_memory_bytes Size of the linear memory of the wasm VM that pushes, after its last push.\n\
          # TYPE meshmetrics_otel_vm_memory_bytes gauge\n",
    );
    line(
        out,
        b"meshmetrics_otel_vm_memory_bytes ",
        s.vm_memory_bytes.to_string(),
    );
}

impl Merger {
    /// Adds the OTLP push's counts (see [`render_otel`]) to this scrape.
    pub fn add_otel(&mut self, stats: &OtelStats, labels: &LabelSet) {
        let mut body = Vec::with_capacity(1024);
        render_otel(stats, &mut body);
        self.add_source_at(OWN_PRIORITY, &body, Format::Text, labels);
    }

    /// Adds the count of refused scrapes (see [`render_refused`]) to this scrape.
    pub fn add_refused(&mut self, budget: u64, flights: u64, labels: &LabelSet) {
        let mut body = Vec::with_capacity(256);
        render_refused(budget, flights, &mut body);
        self.add_source_at(OWN_PRIORITY, &body, Format::Text, labels);
    }

    /// Adds the VM's memory size (see [`render_vm_memory`]) to this scrape.
    pub fn add_vm_memory(&mut self, bytes: u64, labels: &LabelSet) {
        let mut body = Vec::with_capacity(256);
        render_vm_memory(bytes, &mut body);
        self.add_source_at(OWN_PRIORITY, &body, Format::Text, labels);
    }

    /// Adds the self-metrics to this scrape, like one more source.
    pub fn add_self_metrics(&mut self, reports: &[SourceReport<'_>], labels: &LabelSet) {
        let mut body = Vec::with_capacity(1024 + reports.len() * 256);
        render_self_metrics(reports, &mut body);
        self.add_source_at(OWN_PRIORITY, &body, Format::Text, labels);
    }
}
