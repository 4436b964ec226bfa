//! The OTLP push (MeshMetric's OpenTelemetry backend, SPEC §11), from inside Envoy: no process
//! beside it. Every `interval_ms` the root context gathers the sources with a scrape's rules,
//! labels and limits: the applications first, merged in OpenMetrics (which keeps every kind)
//! and handed to the OTLP writer (`exposition::otlp`); then Envoy's answer, read a window at a
//! time, its own scope (`envoy_into`): passed untouched by the merger in Envoy's text where it
//! may, so the writer's is the one scan of its samples and Envoy's counters stay counters. The
//! writer cuts the push into requests of about [`REQUEST_BYTES`], each sent to the collector's
//! cluster through Envoy's gRPC client as soon as it is written: the VM holds one request
//! being written, never Envoy's answer nor the whole push, and no request is larger than a
//! collector takes by default (4 MiB) unless one data point alone is.
//!
//! - **One VM per Envoy pushes**, not one per worker: the pusher is elected in Envoy's shared
//!   data (`meshmetrics/otel/leader`: its id and until when), taken by compare-and-swap when
//!   free or expired and renewed at each push; a VM that dies lets it expire after three
//!   intervals. A configuration replaced over LDS runs beside the new one while its listener
//!   drains: only the newest configuration's root pushes (`meshmetrics/otel/newest`).
//! - **One push in flight per VM**, its requests all sent at once (Envoy multiplexes them on
//!   its HTTP/2 connection to the collector); the push is bounded by the scrape's output budget
//!   (`max_scrape_bytes`), all its requests together: past it the writer stops, and what was
//!   sent stays sent. A push succeeds when every request does. Whatever fails (a source, the
//!   collector down, slow, refusing, answering garbage) fails that push, counted by its first
//!   reason (`meshmetrics_otel_*`, in every scrape's own families); the next interval pushes
//!   again. Scrapes never wait for a push, nor a push for a scrape.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};

use super::{Plugin, log};
use crate::config::{OTEL_FAILURES, SourceKind};
use crate::exposition::otlp::{OtlpWriter, REQUEST_BYTES, StartTimes};
use crate::exposition::{Format, Merger, OtelStats};
use crate::plan;

const LEADER: &str = "meshmetrics/otel/leader";
const NEWEST: &str = "meshmetrics/otel/newest";
/// The largest collector answer read.
const MAX_RESPONSE: usize = 64 << 10;
/// How often a root with a push configured looks at the clock.
pub(crate) const TICK: Duration = Duration::from_secs(1);
const SERVICE: &str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
/// The labels the filter adds that the resource (and the scope) already say.
const IDENTITY: [&str; 4] = ["mesh", "dataplane", "service", "aggregate"];

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn now() -> SystemTime {
    hostcalls::get_current_time().unwrap_or(UNIX_EPOCH)
}

fn two(bytes: Option<Vec<u8>>) -> (u64, u64) {
    let b = bytes.unwrap_or_default();
    let at = |i: usize| {
        b.get(i * 8..i * 8 + 8)
            .and_then(|x| <[u8; 8]>::try_from(x).ok())
            .map_or(0, u64::from_le_bytes)
    };
    (at(0), at(1))
}

fn three(b: Option<&[u8]>) -> (u64, u64, u64) {
    let b = b.unwrap_or_default();
    let at = |i: usize| {
        b.get(i * 8..i * 8 + 8)
            .and_then(|x| <[u8; 8]>::try_from(x).ok())
            .map_or(0, u64::from_le_bytes)
    };
    (at(0), at(1), at(2))
}

fn encode(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn pair(a: u64, b: u64) -> Vec<u8> {
    let mut v = a.to_le_bytes().to_vec();
    v.extend_from_slice(&b.to_le_bytes());
    v
}

/// Asks source `i` of `plugin`'s configuration for its metrics, waiting at most `timeout`: the
/// call's token, or `None` when Envoy did not take it (the source then missing from the push).
fn dispatch(plugin: &Plugin, i: usize, timeout: Duration) -> Option<u32> {
    let source = plugin.config.sources.get(i)?;
    let path = source.request_path();
    let accept = match source.kind {
        SourceKind::EnvoyAdmin => "text/plain",
        SourceKind::App => Format::OpenMetrics.accept_for_sources(),
    };
    let headers = vec![
        (":method", "GET"),
        (":path", path.as_str()),
        (":authority", source.authority.as_str()),
        ("accept", accept),
    ];
    let wait = plan::deadline(
        Duration::from_millis(source.timeout_ms),
        None,
        Duration::ZERO,
    )
    .min(timeout);
    hostcalls::dispatch_http_call(&source.cluster, headers, None, vec![], wait).ok()
}

/// Counts of the push, in shared data (`counters.rs`): every worker's scrape shows the same.
mod counts {
    pub(super) use super::super::counters::{add_at as add, set_at as set};
}

/// What every scrape reports of the push (zeros until one ran).
pub(crate) fn stats() -> OtelStats {
    OtelStats {
        pushes: counts::add("meshmetrics/otel/pushes", 0),
        failures: OTEL_FAILURES
            .iter()
            .map(|r| (*r, counts::add(&format!("meshmetrics/otel/failed/{r}"), 0)))
            .collect(),
        last_duration_seconds: counts::add("meshmetrics/otel/last_ms", 0) as f64 / 1000.0,
        bytes: counts::add("meshmetrics/otel/bytes", 0),
        vm_memory_bytes: counts::add("meshmetrics/otel/vm_memory", 0),
    }
}

/// A root context of the metrics filter was configured with `raw` (any configuration, with a
/// push or without): that configuration is the newest, and roots of other configurations (a
/// replaced listener draining) stop pushing. Every worker's root of one configuration has the
/// same identity (a hash of its bytes), so any of them may take over when the pushing VM dies.
pub(crate) fn configured(raw: &[u8]) -> u64 {
    // FNV-1a: a configuration's identity, not a secret.
    let hash = raw.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let _ = hostcalls::set_shared_data(NEWEST, Some(&pair(hash, millis(now()))), None);
    hash
}

/// A push being gathered.
struct Gathering {
    merger: Merger,
    /// Dispatched calls: token → source index.
    pending: HashMap<u32, usize>,
    /// Envoy's admin, the lead: asked once the applications are in, and streamed (see
    /// [`Merger::stream_lead`]). `None` once asked, or when the first source is an app.
    lead: Option<usize>,
    /// The call that asked it.
    lead_token: Option<u32>,
    timeout: Duration,
}

/// Envoy's answer (`size` bytes in `format`, in the call's response) into the request, as its
/// own scope. No app's family can clash with Envoy's there, so nothing is merged: the merger
/// passes Envoy's text untouched where it may (reading only its `#` lines, applying the
/// profile), and the writer's scan is the only one of its samples; Envoy's counters stay
/// counters, whatever their names. Where it may not (labels added to Envoy's samples, an answer
/// that is not Envoy's text), the merger reads every line, in text.
fn envoy_into(
    merger: &mut Merger,
    plugin: &Plugin,
    format: Format,
    size: usize,
    writer: &mut OtlpWriter<'_>,
) {
    let labels = &plugin.labels[0];
    merger.begin(Format::Text, None);
    merger.set_limits(plugin.config.limits());
    merger.trust_lead(true);
    merger.select_lead(plugin.selection.clone());
    writer.input(Format::Text);
    if format == Format::Text && merger.may_pass_lead(labels) {
        let mut passing = Some(merger.pass_lead());
        let mut lead = None;
        super::body::read_call(size, |piece| {
            if let Some(p) = passing.as_mut() {
                let passed = p.piece(merger, piece);
                writer.feed(&passed.front);
                for run in passed.kept(piece) {
                    writer.feed(run);
                }
                if let Some(from) = passed.engine_from {
                    let p = std::mem::take(p);
                    passing = None;
                    let mut l = merger.take_over(p, Format::Text, labels);
                    merger.feed_lead(&mut l, &piece[from..]);
                    lead = Some(l);
                }
            } else if let Some(l) = lead.as_mut() {
                merger.feed_lead(l, piece);
            }
            writer.feed(merger.ready());
            merger.consume_ready();
        });
        if let Some(mut p) = passing {
            let last = p.end(merger);
            writer.feed(&last.front);
            if last.engine_from.is_some() {
                lead = Some(merger.take_over(p, Format::Text, labels));
            } else {
                merger.end_passing(p);
            }
        }
        if let Some(l) = lead {
            merger.end_lead(l);
        }
    } else {
        let mut stream = merger.stream_lead(format, labels);
        super::body::read_call(size, |piece| {
            merger.feed_lead(&mut stream, piece);
            writer.feed(merger.ready());
            merger.consume_ready();
        });
        merger.end_lead(stream);
    }
    writer.feed(merger.ready());
    merger.consume_ready();
    merger.finish_into(&mut |piece| writer.feed(piece));
}

/// One root context's push.
pub(crate) struct Pusher {
    plugin: Rc<Plugin>,
    /// Who this root is, in the election.
    me: u64,
    /// Its configuration's identity (see [`configured`]).
    config: u64,
    next_ms: u64,
    started: Option<SystemTime>,
    gathering: Option<Gathering>,
    /// The push's requests in flight.
    export: Option<Exporting>,
    starts: StartTimes,
}

/// A push's requests, sent, waiting for the collector.
#[derive(Default)]
struct Exporting {
    /// Token → the request's size.
    calls: HashMap<u32, usize>,
    /// Bytes the collector took.
    accepted: u64,
    /// Why the push failed, the first reason seen.
    failure: Option<&'static str>,
    /// When the last request's deadline passes (ms since the epoch).
    until_ms: u64,
}

impl Pusher {
    /// The push of the configuration `plugin` (whose identity is `config`, see [`configured`])
    /// in root context `root`.
    pub(crate) fn new(plugin: Rc<Plugin>, root: u32, config: u64) -> Pusher {
        let t = now();
        let me = (t
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            .rotate_left(32)
            & !0xffff_ffff)
            | u64::from(root);
        Pusher {
            plugin,
            me,
            config,
            // The first push soon after start, not a whole interval later.
            next_ms: millis(t) + 1000,
            started: None,
            gathering: None,
            export: None,
            starts: StartTimes::default(),
        }
    }

    fn interval(&self) -> u64 {
        self.plugin
            .config
            .otel
            .as_ref()
            .map_or(60_000, |o| o.interval_ms)
    }

    /// Whether this root pushes now: a root of the newest configuration, and the elected one.
    /// The leader record holds its owner, until when, and its configuration: a root of the
    /// newest configuration takes over at once from one of another, and from one of its own
    /// when that one's hold ran out (its VM died).
    fn elected(&self, now_ms: u64) -> bool {
        let newest = hostcalls::get_shared_data(NEWEST)
            .map(|(v, _)| two(v).0)
            .unwrap_or(0);
        if newest != self.config {
            return false;
        }
        let hold = self.interval().saturating_mul(3);
        for _ in 0..8 {
            let Ok((value, cas)) = hostcalls::get_shared_data(LEADER) else {
                return false;
            };
            let (owner, until, of) = three(value.as_deref());
            let held = owner != 0 && owner != self.me && until > now_ms;
            if held && of == self.config {
                return false;
            }
            let mine = [self.me, now_ms + hold, self.config];
            if hostcalls::set_shared_data(LEADER, Some(&encode(&mine)), cas).is_ok() {
                return true;
            }
        }
        false
    }

    /// Called on the root's tick: starts a push when one is due, drops one past its time.
    pub(crate) fn tick(&mut self) {
        let t = now();
        let now_ms = millis(t);
        let timeout = self
            .plugin
            .config
            .otel
            .as_ref()
            .map_or(10_000, |o| o.timeout_ms);
        if let Some(started) = self.started {
            // Envoy answers every call it took within its timeout; this is the guard if not.
            let until = self
                .export
                .as_ref()
                .map_or_else(|| millis(started).saturating_add(timeout), |e| e.until_ms);
            if now_ms > until.saturating_add(TICK.as_millis() as u64) {
                self.end_export(Some("timeout"));
            }
            return;
        }
        if now_ms < self.next_ms {
            return;
        }
        self.next_ms = now_ms + self.interval();
        if self.elected(now_ms) {
            self.gather(t, Duration::from_millis(timeout));
        }
    }

    fn gather(&mut self, t: SystemTime, timeout: Duration) {
        let plugin = Rc::clone(&self.plugin);
        let config = &plugin.config;
        // Envoy's answer is streamed through the merger after the apps, as a scrape's is: the
        // apps must be known before any of the lead's bytes is final.
        let lead = config
            .sources
            .first()
            .is_some_and(|s| s.kind == SourceKind::EnvoyAdmin)
            .then_some(0);
        // A streamed scrape's merger: the push holds what such a scrape holds, and no more.
        let mut merger = super::pool::take(true);
        merger.set_limits(config.limits());
        // The apps' families, merged: OpenMetrics keeps every kind and `_created`, what the
        // OTLP writer reads. Envoy's answer goes its own way (`envoy_into`).
        merger.begin(Format::OpenMetrics, None);
        let mut pending = HashMap::new();
        for i in (0..config.sources.len()).filter(|i| Some(*i) != lead) {
            if let Some(token) = dispatch(&plugin, i, timeout) {
                pending.insert(token, i);
            }
        }
        self.started = Some(t);
        self.gathering = Some(Gathering {
            merger,
            pending,
            lead,
            lead_token: None,
            timeout,
        });
        self.next_step();
    }

    /// The apps are in: Envoy is asked, or, when it was, the request is written.
    fn next_step(&mut self) {
        let Some(g) = self.gathering.as_mut() else {
            return;
        };
        if !g.pending.is_empty() || g.lead_token.is_some() {
            return;
        }
        if let Some(i) = g.lead.take() {
            let elapsed = now()
                .duration_since(self.started.unwrap_or(UNIX_EPOCH))
                .unwrap_or_default();
            let left = g.timeout.saturating_sub(elapsed);
            if let Some(token) = dispatch(&self.plugin, i, left) {
                g.lead_token = Some(token);
                return;
            }
        }
        self.export_now(None);
    }

    /// Whether `token` is one of this push's calls.
    pub(crate) fn owns(&self, token: u32) -> bool {
        self.gathering
            .as_ref()
            .is_some_and(|g| g.pending.contains_key(&token) || g.lead_token == Some(token))
    }

    /// A source answered (or failed): merged as a scrape merges it; Envoy's, streamed into the
    /// request.
    pub(crate) fn on_answer(&mut self, token: u32, body_size: usize) {
        let max_body = self.plugin.config.max_body_bytes;
        let Some(g) = self.gathering.as_mut() else {
            return;
        };
        let map = hostcalls::get_map(MapType::HttpCallResponseHeaders).unwrap_or_default();
        let get = |n: &str| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
        };
        let judged = plan::judge(get(":status"), get("content-type"), body_size, max_body);
        if g.lead_token == Some(token) {
            g.lead_token = None;
            let lead = judged.ok().map(|format| (format, body_size));
            return self.export_now(lead);
        }
        let Some(i) = g.pending.remove(&token) else {
            return;
        };
        if let Ok(format) = judged {
            let priority = u16::try_from(i).unwrap_or(u16::MAX - 1);
            let mut reader =
                g.merger
                    .source_at(priority, format, &self.plugin.labels[i], body_size);
            // A source cut short is merged as far as it was read, as a scrape does.
            super::body::read_call(body_size, |piece| reader.feed(piece));
            reader.finish();
        }
        self.next_step();
    }

    /// Every app is in, and Envoy answered `lead` (its format and size) in this call's
    /// response, or could not: the request is written and sent.
    fn export_now(&mut self, lead: Option<(Format, usize)>) {
        let Some(mut g) = self.gathering.take() else {
            return;
        };
        let Some(o) = self.plugin.config.otel.as_ref() else {
            return self.fail("not_dispatched");
        };
        let t = now();
        let now_ns = t
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let resource: Vec<(String, String)> = o
            .resource
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let limit = usize::try_from(self.plugin.config.max_scrape_bytes).unwrap_or(usize::MAX);
        let started = self.started.unwrap_or(t);
        let timeout = Duration::from_millis(o.timeout_ms);
        let mut export = Exporting::default();
        // Each request is sent as soon as it is written; Envoy's gRPC client copies it. Each
        // gets what is left of the push's time when it leaves (at least 100 ms).
        let mut send = |request: &[u8]| {
            let at = now();
            let left = timeout
                .saturating_sub(at.duration_since(started).unwrap_or_default())
                .max(Duration::from_millis(100));
            export.until_ms = export
                .until_ms
                .max(millis(at).saturating_add(left.as_millis() as u64));
            match hostcalls::dispatch_grpc_call(
                &o.cluster,
                SERVICE,
                "Export",
                vec![],
                Some(request),
                left,
            ) {
                Ok(token) => {
                    export.calls.insert(token, request.len());
                    true
                }
                Err(e) => {
                    // The rest of the push is not written: it could not go either.
                    log(LogLevel::Warn, &format!("OTLP export not sent: {e:?}"));
                    export.failure = Some("not_dispatched");
                    false
                }
            }
        };
        let mut writer = OtlpWriter::new(
            &resource,
            &IDENTITY,
            now_ns,
            limit,
            &mut self.starts,
            &mut send,
        );
        writer.split(REQUEST_BYTES);
        let merger = &mut g.merger;
        // The apps, merged in OpenMetrics as they answered; then Envoy, its own scope.
        merger.finish_into(&mut |piece| writer.feed(piece));
        if let Some((format, size)) = lead {
            envoy_into(merger, &self.plugin, format, size, &mut writer);
        }
        let written = writer.finish();
        super::pool::give_back(g.merger, true);
        // The pushing VM at its fullest: every request written, the merger given back.
        counts::set(
            "meshmetrics/otel/vm_memory",
            core::arch::wasm32::memory_size(0) as u64 * 65_536,
        );
        if written.is_err() {
            // What was sent before the bound arrives; the push counts as failed.
            export.failure.get_or_insert("too_large");
        }
        if export.calls.is_empty() {
            return self.fail(export.failure.unwrap_or("not_dispatched"));
        }
        self.export = Some(export);
    }

    pub(crate) fn owns_export(&self, token: u32) -> bool {
        self.export
            .as_ref()
            .is_some_and(|e| e.calls.contains_key(&token))
    }

    /// The collector answered one of the push's requests: the push ends with the last.
    pub(crate) fn on_export(&mut self, token: u32, status: u32, size: usize) {
        let Some(e) = self.export.as_mut() else {
            return;
        };
        let Some(bytes) = e.calls.remove(&token) else {
            return;
        };
        match Self::judge(status, size) {
            Ok(()) => e.accepted += bytes as u64,
            Err(reason) => {
                e.failure.get_or_insert(reason);
            }
        }
        if e.calls.is_empty() {
            self.end_export(None);
        }
    }

    /// The push's requests are answered, or `late` says why not all of them are: counted by
    /// its first reason, the bytes the collector took counted either way.
    fn end_export(&mut self, late: Option<&'static str>) {
        let Some(e) = self.export.take() else {
            return match late {
                Some(reason) => self.fail(reason),
                None => self.done(),
            };
        };
        counts::add("meshmetrics/otel/bytes", e.accepted);
        match e.failure.or(late) {
            Some(reason) => self.fail(reason),
            None => {
                counts::add("meshmetrics/otel/pushes", 1);
                self.done();
            }
        }
    }

    /// What the collector's answer to one request says.
    fn judge(status: u32, size: usize) -> Result<(), &'static str> {
        match status {
            // An ExportMetricsServiceResponse is a few bytes (a partial success's message at
            // most): a larger one is not read into the VM, whose memory never shrinks.
            0 if size > MAX_RESPONSE => Err("bad_response"),
            0 => {
                let body = hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse::decode(
                    body.as_slice(),
                )
                .map(drop)
                .map_err(|_| "bad_response")
            }
            14 => Err("unavailable"),
            8 => Err("resource_exhausted"),
            4 => Err("timeout"),
            _ => Err("refused"),
        }
    }

    fn done(&mut self) {
        if let Some(s) = self.started.take() {
            let took = now().duration_since(s).unwrap_or_default();
            counts::set("meshmetrics/otel/last_ms", took.as_millis() as u64);
        }
        self.gathering = None;
        self.export = None;
    }

    fn fail(&mut self, reason: &'static str) {
        counts::add(&format!("meshmetrics/otel/failed/{reason}"), 1);
        log(
            LogLevel::Warn,
            &format!("OTLP push dropped: {reason} (the next one in an interval)"),
        );
        self.done();
    }
}
