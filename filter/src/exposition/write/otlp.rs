//! OTLP: a merged scrape as `ExportMetricsServiceRequest`s (SPEC §11), the writer beside text
//! 0.0.4 and OpenMetrics.
//!
//! It reads the engine's own output, a piece at a time as the merger hands it out, scanned by
//! the same scanner the sources are: the applications' merged in OpenMetrics (every family
//! typed, `_created` kept, each family once and contiguous, a series' lines together, labels in
//! a fixed order), and Envoy's own text as it passes the merger untouched
//! ([`OtlpWriter::input`]): Envoy's counters are counters whatever their names, where OpenMetrics
//! would make those without `_total` (and those whose names they clash with) `unknown`. It writes
//! protobuf's wire format straight away: no message structures in between, no family held but
//! the one being read. A push is cut into requests of about [`OtlpWriter::split`] bytes, each
//! whole (the resource, its scopes, their metrics), handed out as each is full: the VM holds one
//! request being written, never the push nor the scrape it came from, and no request outgrows
//! what collectors take (gRPC servers refuse messages over 4 MiB unless told otherwise, the
//! OpenTelemetry Collector's among them). A family cut in two is one Metric in each request. The field numbers are opentelemetry-proto's (the
//! OpenTelemetry project's own `.proto` files); the tests decode every request with its prost
//! messages, so a wrong one cannot pass.
//!
//! Kinds become OTLP's (Kuma's rules, and where ours does better): gauge, unknown, info and
//! stateset → Gauge (Kuma drops untyped); counter → monotonic cumulative Sum; histogram and gauge
//! histogram → explicit-bounds Histogram, its cumulative buckets de-cumulated and the `+Inf`
//! bound dropped (OTLP's last count is the overflow bucket); summary → Summary (Kuma writes
//! gauges). The proxy's identity is the resource's attributes; each application's samples (its
//! `aggregate` label) are one instrumentation scope named after it, Envoy's another
//! ([`ENVOY_SCOPE`]), the filter's own families a third ([`SELF_SCOPE`]). A cumulative point's
//! start is its `_created` when the source gave one, else the first time this writer saw the
//! series ([`StartTimes`]).

use crate::exposition::read::Format;
use crate::exposition::read::scan::{Line, Sample, Scanner};
pub use crate::exposition::write::starts::StartTimes;

/// The scope of Envoy's own families.
pub const ENVOY_SCOPE: &str = "envoy";
/// The scope of the filter's own families (`meshmetrics_*`).
pub const SELF_SCOPE: &str = "meshmetrics";
/// About how large a push's requests are ([`OtlpWriter::split`]): well under the 4 MiB a gRPC
/// server takes unless told otherwise, and small enough that the VM writing one holds about
/// what a streamed scrape holds.
pub const REQUEST_BYTES: usize = 512 << 10;
/// The label naming the application a sample came from; its value names the scope.
const SCOPE_LABEL: &[u8] = b"aggregate";

/// Protobuf's wire format, as much of it as OTLP's messages need.
mod wire {
    const I64: u64 = 1;
    const LEN: u64 = 2;

    pub(super) fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub(super) fn varint_len(v: u64) -> usize {
        (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }

    /// A length-delimited field's key and length; its `len` bytes follow.
    pub(super) fn head(out: &mut Vec<u8>, field: u64, len: usize) {
        varint(out, field << 3 | LEN);
        varint(out, len as u64);
    }

    pub(super) fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        head(out, field, b.len());
        out.extend_from_slice(b);
    }

    pub(super) fn fixed64(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3 | I64);
        out.extend_from_slice(&v.to_le_bytes());
    }

    pub(super) fn double(out: &mut Vec<u8>, field: u64, v: f64) {
        fixed64(out, field, v.to_bits());
    }

    /// A varint field (an enum, a bool).
    pub(super) fn uint(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }

    /// The size of a length-delimited field holding `len` bytes.
    pub(super) fn field_len(field: u64, len: usize) -> usize {
        varint_len(field << 3) + varint_len(len as u64) + len
    }

    /// The size of a fixed64 or double field.
    pub(super) const FIXED: usize = 9;
}

/// Field numbers, from opentelemetry-proto's messages (`metrics/v1`, `common/v1`,
/// `resource/v1`, `collector/metrics/v1`).
mod field {
    pub(super) const REQUEST_RESOURCE_METRICS: u64 = 1;
    pub(super) const RESOURCE_METRICS_RESOURCE: u64 = 1;
    pub(super) const RESOURCE_METRICS_SCOPE_METRICS: u64 = 2;
    pub(super) const RESOURCE_ATTRIBUTES: u64 = 1;
    pub(super) const SCOPE_METRICS_SCOPE: u64 = 1;
    pub(super) const SCOPE_METRICS_METRICS: u64 = 2;
    pub(super) const SCOPE_NAME: u64 = 1;
    pub(super) const METRIC_NAME: u64 = 1;
    pub(super) const METRIC_DESCRIPTION: u64 = 2;
    pub(super) const METRIC_UNIT: u64 = 3;
    pub(super) const METRIC_GAUGE: u64 = 5;
    pub(super) const METRIC_SUM: u64 = 7;
    pub(super) const METRIC_HISTOGRAM: u64 = 9;
    pub(super) const METRIC_SUMMARY: u64 = 11;
    /// Gauge, Sum, Histogram and Summary alike.
    pub(super) const DATA_POINTS: u64 = 1;
    /// Sum and Histogram alike.
    pub(super) const AGGREGATION_TEMPORALITY: u64 = 2;
    pub(super) const SUM_IS_MONOTONIC: u64 = 3;
    pub(super) const CUMULATIVE: u64 = 2;
    /// Every data point's.
    pub(super) const POINT_START: u64 = 2;
    pub(super) const POINT_TIME: u64 = 3;
    pub(super) const NUMBER_ATTRIBUTES: u64 = 7;
    pub(super) const NUMBER_AS_DOUBLE: u64 = 4;
    pub(super) const HISTOGRAM_ATTRIBUTES: u64 = 9;
    /// Histogram and Summary points alike.
    pub(super) const POINT_COUNT: u64 = 4;
    pub(super) const POINT_SUM: u64 = 5;
    pub(super) const HISTOGRAM_BUCKET_COUNTS: u64 = 6;
    pub(super) const HISTOGRAM_EXPLICIT_BOUNDS: u64 = 7;
    pub(super) const SUMMARY_ATTRIBUTES: u64 = 7;
    pub(super) const SUMMARY_QUANTILE_VALUES: u64 = 6;
    pub(super) const QUANTILE: u64 = 1;
    pub(super) const QUANTILE_VALUE: u64 = 2;
    pub(super) const KEY_VALUE_KEY: u64 = 1;
    pub(super) const KEY_VALUE_VALUE: u64 = 2;
    pub(super) const ANY_VALUE_STRING: u64 = 1;
}

/// The kinds as OpenMetrics declares them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum Kind {
    Counter,
    #[default]
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    fn of(word: &[u8]) -> Kind {
        match word {
            b"counter" => Kind::Counter,
            // A gauge histogram's buckets, `_gcount` and `_gsum` are a histogram's point.
            b"histogram" | b"gaugehistogram" => Kind::Histogram,
            b"summary" => Kind::Summary,
            // gauge, unknown, info, stateset: each sample a gauge's point.
            _ => Kind::Gauge,
        }
    }

    /// The label that tells a point's lines apart, not one of its attributes.
    fn bound_label(self) -> &'static [u8] {
        match self {
            Kind::Histogram => b"le",
            Kind::Summary => b"quantile",
            _ => b"",
        }
    }

    fn attributes_field(self) -> u64 {
        match self {
            Kind::Histogram => field::HISTOGRAM_ATTRIBUTES,
            Kind::Summary => field::SUMMARY_ATTRIBUTES,
            _ => field::NUMBER_ATTRIBUTES,
        }
    }

    fn metric_field(self) -> u64 {
        match self {
            Kind::Counter => field::METRIC_SUM,
            Kind::Gauge => field::METRIC_GAUGE,
            Kind::Histogram => field::METRIC_HISTOGRAM,
            Kind::Summary => field::METRIC_SUMMARY,
        }
    }

    fn cumulative(self) -> bool {
        self != Kind::Gauge
    }
}

/// The family being read: its header.
#[derive(Default)]
struct Family {
    open: bool,
    /// As its samples start (a text counter's with `_total`).
    name: Vec<u8>,
    /// Its name in OTLP when it differs from `name`: a text counter's without `_total`, as
    /// OpenMetrics names the family (exporters to Prometheus add it back to a monotonic Sum).
    otlp_name: Option<Vec<u8>>,
    help: Vec<u8>,
    unit: Vec<u8>,
    kind: Kind,
}

/// The data point being read: a series' lines (a histogram's buckets, `_count`, `_sum`,
/// `_created`; a counter's `_total` and `_created`) come together, so a point is written when
/// the next line is another series'.
#[derive(Default)]
struct Point {
    open: bool,
    /// Index into [`OtlpWriter::scopes`].
    scope: usize,
    /// Its labels but the identity and the bound label, as written: tells the series apart.
    key: Vec<u8>,
    /// Its attributes, encoded (each a KeyValue field).
    attributes: Vec<u8>,
    time_ns: u64,
    created_ns: Option<u64>,
    value: f64,
    count: Option<u64>,
    sum: Option<f64>,
    /// (upper bound, cumulative count), `+Inf` included.
    buckets: Vec<(f64, u64)>,
    /// (quantile, value).
    quantiles: Vec<(f64, f64)>,
}

/// The push was larger than its bound: what was past it was not written.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

/// Where each finished request goes (the push: Envoy's gRPC client, which copies it). It says
/// whether the push goes on: `false` (the request could not be sent) ends the push there, and
/// nothing more is written.
pub type Send<'a> = &'a mut dyn FnMut(&[u8]) -> bool;

/// An instrumentation scope of the request being written.
struct Scope {
    name: Vec<u8>,
    /// Room kept at the front of `buf` for the request's head: the largest scope carries the
    /// request, its head written in front of its metrics, so its bulk is never copied.
    room: usize,
    /// `room` bytes, then the scope's Metric fields written so far.
    buf: Vec<u8>,
}

impl Scope {
    fn metrics(&self) -> &[u8] {
        self.buf.get(self.room..).unwrap_or_default()
    }
}

/// Writes OpenMetrics text, fed a piece at a time, as encoded `ExportMetricsServiceRequest`s.
pub struct OtlpWriter<'a> {
    resource: &'a [(String, String)],
    /// Labels the filter added that the resource (and the scope) already say: left out of
    /// every point.
    identity: &'a [&'a str],
    now_ns: u64,
    /// The bound on the whole push: every request sent and the one being written.
    limit: usize,
    /// A request is sent once it holds this much ([`OtlpWriter::split`]).
    request_bytes: usize,
    send: Send<'a>,
    /// Bytes sent so far, and in how many requests.
    sent: usize,
    requests: usize,
    /// The format of what is fed now ([`OtlpWriter::input`]).
    input: Format,
    starts: &'a mut StartTimes,
    scanner: Scanner,
    /// The end of a line cut by a piece's end.
    carry: Vec<u8>,
    /// Scopes in the order first seen, kept from one request to the next.
    scopes: Vec<Scope>,
    /// The scope that carried the last request (see [`Scope::room`]).
    carrier: Option<usize>,
    /// Bytes of the request being written, in `scopes` and `parts`.
    held: usize,
    /// Past the bound ([`TooLarge`]), or a request could not be sent: nothing more is written.
    over: bool,
    refused: bool,
    family: Family,
    /// A HELP or UNIT seen before its family's TYPE.
    early_help: Vec<u8>,
    early_unit: Vec<u8>,
    /// The open family's points, per scope: (scope index, encoded DataPoint fields).
    parts: Vec<(usize, Vec<u8>)>,
    /// Points in `parts` whose start is still to be looked up: (the series' hash, the part,
    /// where the start's 8 bytes are in it).
    unresolved: Vec<(u64, usize, usize)>,
    spare: Vec<Vec<u8>>,
    point: Point,
    key: Vec<u8>,
    /// Scratch: one point's body, a histogram's bounds and counts, an unescaped value.
    body: Vec<u8>,
    bounds: Vec<f64>,
    counts: Vec<u64>,
    text: Vec<u8>,
}

impl<'a> OtlpWriter<'a> {
    /// A push with `resource` as its resource's attributes, written at `now_ns`, each request
    /// handed to `send` as it is finished: one request unless [`OtlpWriter::split`] says
    /// otherwise, all of them at most `limit` bytes together (past it the writer stops and
    /// [`OtlpWriter::finish`] says [`TooLarge`]).
    pub fn new(
        resource: &'a [(String, String)],
        identity: &'a [&'a str],
        now_ns: u64,
        limit: usize,
        starts: &'a mut StartTimes,
        send: Send<'a>,
    ) -> Self {
        OtlpWriter {
            resource,
            identity,
            now_ns,
            limit,
            request_bytes: usize::MAX,
            send,
            sent: 0,
            requests: 0,
            input: Format::OpenMetrics,
            starts,
            scanner: Scanner::default(),
            carry: Vec::new(),
            scopes: Vec::new(),
            carrier: None,
            held: 0,
            over: false,
            refused: false,
            family: Family::default(),
            early_help: Vec::new(),
            early_unit: Vec::new(),
            parts: Vec::new(),
            unresolved: Vec::new(),
            spare: Vec::new(),
            point: Point::default(),
            key: Vec::new(),
            body: Vec::new(),
            bounds: Vec::new(),
            counts: Vec::new(),
            text: Vec::new(),
        }
    }

    /// Sends a request as soon as it holds `bytes` (at a data point's end, so a request may
    /// pass it by one point and its head): a push of many requests, each whole.
    pub fn split(&mut self, bytes: usize) {
        self.request_bytes = bytes.max(1);
    }

    /// What the next pieces are written in: OpenMetrics (the default: the merger's output) or
    /// Prometheus text (Envoy's own, passed untouched). The text fed so far ends here.
    pub fn input(&mut self, format: Format) {
        if format != self.input {
            self.end_input();
            self.input = format;
        }
    }

    /// Ends what was fed so far: a last line without its newline, the family it belongs to.
    fn end_input(&mut self) {
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.line(&line);
            self.carry = line;
            self.carry.clear();
        }
        self.end_family();
    }

    /// Reads the next piece of the text; pieces may cut lines anywhere.
    pub fn feed(&mut self, mut piece: &[u8]) {
        if self.over {
            return;
        }
        if !self.carry.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', piece) else {
                self.carry.extend_from_slice(piece);
                return;
            };
            let mut line = std::mem::take(&mut self.carry);
            line.extend_from_slice(&piece[..nl]);
            self.line(&line);
            line.clear();
            self.carry = line;
            piece = &piece[nl + 1..];
        }
        let mut lines = piece;
        while let Some(nl) = memchr::memchr(b'\n', lines) {
            self.line(&lines[..nl]);
            lines = &lines[nl + 1..];
        }
        self.carry.extend_from_slice(lines);
    }

    /// Ends the text and sends what is left: the number of requests sent in all (at least
    /// one, the resource alone when there was nothing to push).
    pub fn finish(mut self) -> Result<usize, TooLarge> {
        self.end_input();
        self.starts.settle();
        if !self.over && (self.held > 0 || self.requests == 0) {
            self.send_request();
        }
        if self.over && !self.refused {
            return Err(TooLarge);
        }
        Ok(self.requests)
    }

    /// The head a scope's buffer keeps room for: the request's, the resource's, and its own,
    /// their lengths at most five bytes each.
    fn room(&self, name: &[u8]) -> usize {
        4 * 6 + self.resource_len() + wire::field_len(field::SCOPE_NAME, name.len())
    }

    fn resource_len(&self) -> usize {
        self.resource
            .iter()
            .map(|(k, v)| {
                wire::field_len(
                    field::RESOURCE_ATTRIBUTES,
                    key_value_len(k.as_bytes(), v.as_bytes()),
                )
            })
            .sum()
    }

    /// Sends the request held: its scopes that have metrics, the largest first, carrying the
    /// head in its room; the others after it. Every scope is then empty again.
    fn send_request(&mut self) {
        let scope_len = |s: &Scope| {
            wire::field_len(
                field::SCOPE_METRICS_SCOPE,
                wire::field_len(field::SCOPE_NAME, s.name.len()),
            ) + s.metrics().len()
        };
        let scope_head = |out: &mut Vec<u8>, s: &Scope| {
            wire::head(out, field::RESOURCE_METRICS_SCOPE_METRICS, scope_len(s));
            wire::head(
                out,
                field::SCOPE_METRICS_SCOPE,
                wire::field_len(field::SCOPE_NAME, s.name.len()),
            );
            wire::bytes(out, field::SCOPE_NAME, &s.name);
        };
        let resource_len = self.resource_len();
        let used = |s: &&Scope| !s.metrics().is_empty();
        let resource_metrics_len = wire::field_len(field::RESOURCE_METRICS_RESOURCE, resource_len)
            + self
                .scopes
                .iter()
                .filter(used)
                .map(|s| wire::field_len(field::RESOURCE_METRICS_SCOPE_METRICS, scope_len(s)))
                .sum::<usize>();
        let total = wire::field_len(field::REQUEST_RESOURCE_METRICS, resource_metrics_len);
        if self.sent.saturating_add(total) > self.limit {
            self.stop();
            return;
        }
        let mut head = std::mem::take(&mut self.text);
        head.clear();
        wire::head(
            &mut head,
            field::REQUEST_RESOURCE_METRICS,
            resource_metrics_len,
        );
        wire::head(&mut head, field::RESOURCE_METRICS_RESOURCE, resource_len);
        for (k, v) in self.resource {
            wire::head(
                &mut head,
                field::RESOURCE_ATTRIBUTES,
                key_value_len(k.as_bytes(), v.as_bytes()),
            );
            key_value(&mut head, k.as_bytes(), v.as_bytes());
        }
        // The largest scope (Envoy's, mostly: the bulk of the request) carries it; the others
        // follow in the order first seen.
        let carrier = (0..self.scopes.len())
            .filter(|&i| used(&&self.scopes[i]))
            .max_by_key(|&i| (self.scopes[i].metrics().len(), usize::MAX - i));
        let taken;
        let sent = match carrier {
            None => {
                taken = (self.send)(&head);
                head.len()
            }
            Some(c) => {
                scope_head(&mut head, &self.scopes[c]);
                let (before, rest) = self.scopes.split_at_mut(c);
                let Some((carrier, after)) = rest.split_first_mut() else {
                    return; // `c` is an index of `scopes`.
                };
                let end = carrier.buf.len();
                for s in before.iter().chain(after.iter()).filter(used) {
                    scope_head(&mut carrier.buf, s);
                    carrier.buf.extend_from_slice(s.metrics());
                }
                let len = if let Some(from) = carrier.room.checked_sub(head.len()) {
                    carrier.buf[from..carrier.room].copy_from_slice(&head);
                    taken = (self.send)(&carrier.buf[from..]);
                    carrier.buf.len() - from
                } else {
                    // Not reached: the room is sized for the largest head. Were it short, the
                    // request is put together in a copy rather than written wrong.
                    head.extend_from_slice(&carrier.buf[carrier.room..]);
                    taken = (self.send)(&head);
                    head.len()
                };
                carrier.buf.truncate(end);
                len
            }
        };
        self.text = head;
        for s in &mut self.scopes {
            s.buf.truncate(s.room);
        }
        // A scope that carried a request keeps a request's capacity: only the last carrier
        // does, so the VM holds about one request whichever scopes carry.
        if let Some(c) = carrier
            && let Some(before) = self.carrier.replace(c).filter(|&b| b != c)
            && let Some(s) = self.scopes.get_mut(before)
        {
            s.buf.shrink_to(s.room);
        }
        if !taken {
            // The rest could not go either: it is not written.
            self.refused = true;
            return self.stop();
        }
        self.sent += sent;
        self.requests += 1;
        self.held = 0;
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let known: &[u8] = if self.family.open {
            &self.family.name
        } else {
            b""
        };
        match self.scanner.scan(line, self.input, known) {
            // A family's HELP and UNIT may come before its TYPE or after it (the engine writes
            // UNIT after TYPE): after, they are the current family's.
            Line::Help { name, text } => {
                let to = if self.family.open && self.family.name == name {
                    &mut self.family.help
                } else {
                    &mut self.early_help
                };
                to.clear();
                // Made UTF-8 when its family is written (`utf8`, as the name and unit are).
                unescape_into(to, text);
            }
            Line::Unit { name, unit } => {
                let to = if self.family.open && self.family.name == name {
                    &mut self.family.unit
                } else {
                    &mut self.early_unit
                };
                to.clear();
                to.extend_from_slice(unit);
            }
            Line::Type { name, word } => {
                self.end_family();
                let f = &mut self.family;
                f.open = true;
                f.kind = Kind::of(word);
                f.name.clear();
                f.name.extend_from_slice(name);
                f.otlp_name = (self.input == Format::Text && f.kind == Kind::Counter)
                    .then(|| name.strip_suffix(b"_total"))
                    .flatten()
                    .filter(|n| !n.is_empty())
                    .map(<[u8]>::to_vec);
                std::mem::swap(&mut f.help, &mut self.early_help);
                std::mem::swap(&mut f.unit, &mut self.early_unit);
                self.early_help.clear();
                self.early_unit.clear();
            }
            Line::Sample(s) if self.family.open => self.sample(line, s),
            _ => {}
        }
    }

    /// One sample line of the open family (the scanner's last line).
    fn sample(&mut self, line: &[u8], s: Sample) {
        let kind = self.family.kind;
        let Some(suffix) = s.name.of(line).strip_prefix(self.family.name.as_slice()) else {
            return;
        };
        let Some(value) = parse_f64(s.value.of(line)) else {
            return;
        };
        let time_ns = s
            .timestamp
            .and_then(|t| parse_f64(t.of(line)))
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map_or(self.now_ns, |t| (t * 1e9) as u64);
        // The point's scope, its key (labels but identity and the bound) and the bound: read
        // first; its attributes only when the point is new.
        let mut scope: &[u8] = if self.family.name.starts_with(b"meshmetrics_") {
            SELF_SCOPE.as_bytes()
        } else {
            ENVOY_SCOPE.as_bytes()
        };
        let bound_label = kind.bound_label();
        let mut bound = None;
        // A gauge's sample is a whole point, and so is a counter's in text (no `_created`):
        // no other line joins it. The key tells a point's lines apart and names a cumulative
        // series for its start; a gauge needs neither.
        let alone = kind == Kind::Gauge || (kind == Kind::Counter && self.input == Format::Text);
        let keyed = !alone || kind.cumulative();
        self.key.clear();
        for l in &self.scanner.labels {
            let (n, v) = (l.name.of(line), l.value.of(line));
            if n == SCOPE_LABEL {
                scope = v;
            }
            if n == bound_label {
                bound = parse_f64(v);
            } else if keyed && !self.identity.iter().any(|i| i.as_bytes() == n) {
                self.key.extend_from_slice(n);
                self.key.push(b'=');
                self.key.extend_from_slice(v);
                self.key.push(0xff);
            }
        }
        let same = !alone
            && self.point.open
            && self.point.key == self.key
            && self
                .scopes
                .get(self.point.scope)
                .is_some_and(|s| s.name == scope);
        if !same {
            self.end_point();
            if self.over {
                return;
            }
            let scope = match self.scopes.iter().position(|s| s.name == scope) {
                Some(i) => i,
                None => {
                    let room = self.room(scope);
                    self.scopes.push(Scope {
                        name: scope.to_vec(),
                        room,
                        buf: vec![0; room],
                    });
                    self.scopes.len() - 1
                }
            };
            let p = &mut self.point;
            p.open = true;
            p.scope = scope;
            std::mem::swap(&mut p.key, &mut self.key);
            p.attributes.clear();
            p.created_ns = None;
            p.value = 0.0;
            p.count = None;
            p.sum = None;
            p.buckets.clear();
            p.quantiles.clear();
            let field = kind.attributes_field();
            for l in &self.scanner.labels {
                let (n, v) = (l.name.of(line), l.value.of(line));
                if n == bound_label || self.identity.iter().any(|i| i.as_bytes() == n) {
                    continue;
                }
                // The scanner took only valid UTF-8 names and values (a line that is not, is
                // not a sample), and unescaping keeps it so.
                self.text.clear();
                unescape_into(&mut self.text, v);
                let len = key_value_len(n, &self.text);
                wire::head(&mut p.attributes, field, len);
                key_value(&mut p.attributes, n, &self.text);
            }
        }
        let p = &mut self.point;
        match (kind, suffix) {
            (Kind::Counter | Kind::Histogram | Kind::Summary, b"_created") => {
                p.created_ns = Some((value.max(0.0) * 1e9) as u64)
            }
            (Kind::Histogram, b"_bucket") => {
                if let Some(b) = bound {
                    p.buckets.push((b, value.max(0.0) as u64));
                }
            }
            (Kind::Histogram | Kind::Summary, b"_count" | b"_gcount") => {
                p.count = Some(value.max(0.0) as u64)
            }
            (Kind::Histogram | Kind::Summary, b"_sum" | b"_gsum") => p.sum = Some(value),
            (Kind::Summary, b"") => {
                if let Some(q) = bound {
                    p.quantiles.push((q, value));
                }
            }
            (Kind::Counter, b"_total" | b"") | (Kind::Gauge, _) => p.value = value,
            _ => {}
        }
        p.time_ns = time_ns;
    }

    /// Writes the open point into its scope's part of the open family.
    fn end_point(&mut self) {
        if !self.point.open {
            return;
        }
        self.point.open = false;
        let kind = self.family.kind;
        let p = &mut self.point;
        // A cumulative point's start: its `_created`, or when the series was first seen, which
        // is looked up with the family's other points (`resolve_starts`): 0 until then.
        let mut later = None;
        let start = match (kind.cumulative(), p.created_ns) {
            (false, _) => None,
            (true, Some(created)) => Some(created),
            (true, None) => {
                let scope = self.scopes.get(p.scope).map_or(&[][..], |s| &s.name);
                later = Some(self.starts.hash([scope, &self.family.name, &p.key]));
                Some(0)
            }
        };
        let part = match self.parts.iter().position(|(s, _)| *s == p.scope) {
            Some(i) => i,
            None => {
                let buf = self.spare.pop().unwrap_or_default();
                self.parts.push((p.scope, buf));
                self.parts.len() - 1
            }
        };
        // Where the start's 8 bytes are in the point: after its attributes and its one-byte key.
        let start_at = p.attributes.len() + 1;
        let out = &mut self.parts[part].1;
        let before = out.len();
        if let Kind::Gauge | Kind::Counter = kind {
            // Most points: their size is known, so they are written where they go.
            let len = p.attributes.len() + start.map_or(0, |_| wire::FIXED) + 2 * wire::FIXED;
            wire::head(out, field::DATA_POINTS, len);
            if let Some(hash) = later {
                self.unresolved.push((hash, part, out.len() + start_at));
            }
            out.extend_from_slice(&p.attributes);
            if let Some(start) = start {
                wire::fixed64(out, field::POINT_START, start);
            }
            wire::fixed64(out, field::POINT_TIME, p.time_ns);
            wire::double(out, field::NUMBER_AS_DOUBLE, p.value);
            self.held += out.len() - before;
            return self.after_point();
        }
        let b = &mut self.body;
        b.clear();
        b.extend_from_slice(&p.attributes);
        if let Some(start) = start {
            wire::fixed64(b, field::POINT_START, start);
        }
        wire::fixed64(b, field::POINT_TIME, p.time_ns);
        match kind {
            Kind::Gauge | Kind::Counter => {}
            Kind::Histogram => {
                p.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                self.bounds.clear();
                self.counts.clear();
                let mut below = 0u64;
                for &(le, cumulative) in &p.buckets {
                    if le.is_infinite() && le > 0.0 {
                        continue;
                    }
                    self.bounds.push(le);
                    self.counts.push(cumulative.saturating_sub(below));
                    below = below.max(cumulative);
                }
                let total = p.count.unwrap_or_else(|| {
                    p.buckets
                        .iter()
                        .find(|(le, _)| le.is_infinite())
                        .map_or(below, |(_, c)| *c)
                });
                // The overflow bucket: what no finite bound holds.
                self.counts.push(total.saturating_sub(below));
                wire::fixed64(b, field::POINT_COUNT, total);
                if let Some(sum) = p.sum {
                    wire::double(b, field::POINT_SUM, sum);
                }
                // Packed, as proto3 writes repeated numbers.
                wire::head(b, field::HISTOGRAM_BUCKET_COUNTS, self.counts.len() * 8);
                for c in &self.counts {
                    b.extend_from_slice(&c.to_le_bytes());
                }
                if !self.bounds.is_empty() {
                    wire::head(b, field::HISTOGRAM_EXPLICIT_BOUNDS, self.bounds.len() * 8);
                    for le in &self.bounds {
                        b.extend_from_slice(&le.to_bits().to_le_bytes());
                    }
                }
            }
            Kind::Summary => {
                wire::fixed64(b, field::POINT_COUNT, p.count.unwrap_or(0));
                wire::double(b, field::POINT_SUM, p.sum.unwrap_or(0.0));
                for &(q, v) in &p.quantiles {
                    wire::head(b, field::SUMMARY_QUANTILE_VALUES, 2 * wire::FIXED);
                    wire::double(b, field::QUANTILE, q);
                    wire::double(b, field::QUANTILE_VALUE, v);
                }
            }
        }
        let out = &mut self.parts[part].1;
        wire::head(out, field::DATA_POINTS, b.len());
        if let Some(hash) = later {
            self.unresolved.push((hash, part, out.len() + start_at));
        }
        out.extend_from_slice(b);
        self.held += out.len() - before;
        self.after_point();
    }

    /// A point was written: past the push's bound it stops; past a request's size the
    /// request is sent.
    fn after_point(&mut self) {
        if self.sent.saturating_add(self.held) > self.limit {
            self.stop();
        } else if self.held >= self.request_bytes {
            self.write_parts();
            self.send_request();
        }
    }

    /// The push passed its bound, or a request could not be sent: not one byte more is held,
    /// nor sent; the rest of the push is dropped.
    fn stop(&mut self) {
        self.over = true;
        self.scopes.clear();
        self.parts.clear();
        self.unresolved.clear();
        self.spare.clear();
        self.held = 0;
    }

    /// The open family ends: its points, one Metric per scope that has some.
    fn end_family(&mut self) {
        self.end_point();
        if self.family.open {
            self.write_parts();
            self.family.open = false;
        }
    }

    /// The starts of the open family's points that wait for one, looked up together: no lookup
    /// waits for another, so their cache misses overlap.
    fn resolve_starts(&mut self) {
        for (hash, part, at) in self.unresolved.drain(..) {
            let start = self.starts.start(hash, self.now_ns);
            if let Some(slot) = self
                .parts
                .get_mut(part)
                .and_then(|(_, buf)| buf.get_mut(at..at + 8))
            {
                slot.copy_from_slice(&start.to_le_bytes());
            }
        }
    }

    /// The open family's points so far, one Metric per scope that has some, into the scopes:
    /// at its end, or when a request is cut inside it.
    fn write_parts(&mut self) {
        self.resolve_starts();
        let f = &self.family;
        let kind = f.kind;
        let name = utf8(f.otlp_name.as_deref().unwrap_or(&f.name));
        let help = utf8(&f.help);
        let unit = utf8(&f.unit);
        for (scope, mut points) in self.parts.drain(..) {
            let data_len = points.len()
                + match kind {
                    // aggregation_temporality, is_monotonic: two bytes each.
                    Kind::Counter => 4,
                    Kind::Histogram => 2,
                    _ => 0,
                };
            let text_len = |field: u64, t: &[u8]| {
                if t.is_empty() {
                    0
                } else {
                    wire::field_len(field, t.len())
                }
            };
            let metric_len = wire::field_len(field::METRIC_NAME, name.len())
                + text_len(field::METRIC_DESCRIPTION, &help)
                + text_len(field::METRIC_UNIT, &unit)
                + wire::field_len(kind.metric_field(), data_len);
            if let Some(Scope { buf: out, .. }) = self.scopes.get_mut(scope) {
                let before = out.len();
                wire::head(out, field::SCOPE_METRICS_METRICS, metric_len);
                wire::bytes(out, field::METRIC_NAME, &name);
                if !help.is_empty() {
                    wire::bytes(out, field::METRIC_DESCRIPTION, &help);
                }
                if !unit.is_empty() {
                    wire::bytes(out, field::METRIC_UNIT, &unit);
                }
                wire::head(out, kind.metric_field(), data_len);
                out.extend_from_slice(&points);
                if kind.cumulative() && kind != Kind::Summary {
                    wire::uint(out, field::AGGREGATION_TEMPORALITY, field::CUMULATIVE);
                }
                if kind == Kind::Counter {
                    wire::uint(out, field::SUM_IS_MONOTONIC, 1);
                }
                // The points were counted as they were written.
                self.held += out.len() - before - points.len();
            }
            points.clear();
            self.spare.push(points);
        }
    }
}

/// A KeyValue's fields with a string value.
fn key_value(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    wire::bytes(out, field::KEY_VALUE_KEY, key);
    wire::head(
        out,
        field::KEY_VALUE_VALUE,
        wire::field_len(field::ANY_VALUE_STRING, value.len()),
    );
    wire::bytes(out, field::ANY_VALUE_STRING, value);
}

fn key_value_len(key: &[u8], value: &[u8]) -> usize {
    wire::field_len(field::KEY_VALUE_KEY, key.len())
        + wire::field_len(
            field::KEY_VALUE_VALUE,
            wire::field_len(field::ANY_VALUE_STRING, value.len()),
        )
}

/// Protobuf's strings are UTF-8: bytes that are not are replaced, never sent.
fn utf8(b: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match String::from_utf8_lossy(b) {
        std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.as_bytes()),
        std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.into_bytes()),
    }
}

/// Writes the whole of `open_metrics` at once, as one request (see [`OtlpWriter`]).
pub fn encode(
    open_metrics: &[u8],
    resource: &[(String, String)],
    identity: &[&str],
    now_ns: u64,
    starts: &mut StartTimes,
) -> Vec<u8> {
    let mut request = Vec::new();
    let mut keep = |r: &[u8]| {
        request.extend_from_slice(r);
        true
    };
    let mut w = OtlpWriter::new(resource, identity, now_ns, usize::MAX, starts, &mut keep);
    w.feed(open_metrics);
    // Without a bound, and never split: one request.
    let _ = w.finish();
    request
}

fn parse_f64(v: &[u8]) -> Option<f64> {
    // Most values are small integers (Envoy's counters): read without the float parser.
    if !v.is_empty() && v.len() <= 15 && v.iter().all(u8::is_ascii_digit) {
        return Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')) as f64);
    }
    match v {
        b"+Inf" | b"Inf" => Some(f64::INFINITY),
        b"-Inf" => Some(f64::NEG_INFINITY),
        b"NaN" => Some(f64::NAN),
        _ => std::str::from_utf8(v).ok()?.parse().ok(),
    }
}

/// A label value or HELP text as written (`\\`, `\"`, `\n` escaped) as its text.
fn unescape_into(out: &mut Vec<u8>, v: &[u8]) {
    if !v.contains(&b'\\') {
        out.extend_from_slice(v);
    } else {
        let mut it = v.iter();
        while let Some(&b) = it.next() {
            if b == b'\\' {
                match it.next() {
                    Some(b'n') => out.push(b'\n'),
                    Some(&c) => out.push(c),
                    None => out.push(b'\\'),
                }
            } else {
                out.push(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Metric, metric, number_data_point,
    };
    use prost::Message;

    use super::*;

    /// Encoded by the writer, decoded by the OpenTelemetry project's own messages.
    fn encode(
        open_metrics: &[u8],
        resource: &[(String, String)],
        identity: &[&str],
        now_ns: u64,
        starts: &mut StartTimes,
    ) -> ExportMetricsServiceRequest {
        let bytes = super::encode(open_metrics, resource, identity, now_ns, starts);
        ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("a valid request")
    }

    /// Every request a writer sends, and how its push ended.
    fn pushed(
        resource: &[(String, String)],
        limit: usize,
        split: usize,
        starts: &mut StartTimes,
        feed: impl FnOnce(&mut OtlpWriter<'_>),
    ) -> (Vec<Vec<u8>>, Result<usize, TooLarge>) {
        let mut requests = Vec::new();
        let mut keep = |r: &[u8]| {
            requests.push(r.to_vec());
            true
        };
        let mut w = OtlpWriter::new(resource, &[], 1, limit, starts, &mut keep);
        w.split(split);
        feed(&mut w);
        let end = w.finish();
        (requests, end)
    }

    const SCRAPE: &str = "# TYPE envoy_server_live gauge\nenvoy_server_live 1\n\
# TYPE envoy_cluster_upstream_rq counter\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} 7\n\
# TYPE rq_latency histogram\nrq_latency_bucket{mesh=\"m\",aggregate=\"api\",le=\"0.1\"} 2\nrq_latency_bucket{mesh=\"m\",aggregate=\"api\",le=\"1\"} 5\nrq_latency_bucket{mesh=\"m\",aggregate=\"api\",le=\"+Inf\"} 6\nrq_latency_count{mesh=\"m\",aggregate=\"api\"} 6\nrq_latency_sum{mesh=\"m\",aggregate=\"api\"} 3.5\n\
# TYPE rpc summary\nrpc{mesh=\"m\",aggregate=\"api\",quantile=\"0.5\"} 0.2\nrpc{mesh=\"m\",aggregate=\"api\",quantile=\"0.9\"} 0.7\nrpc_count{mesh=\"m\",aggregate=\"api\"} 10\nrpc_sum{mesh=\"m\",aggregate=\"api\"} 3\nrpc_created{mesh=\"m\",aggregate=\"api\"} 1700000000\n\
# TYPE odd unknown\nodd{mesh=\"m\",aggregate=\"api\",path=\"/a\\\"b\"} 4\n\
# TYPE wait_seconds gauge\n# UNIT wait_seconds seconds\nwait_seconds{aggregate=\"api\"} 1\n# TYPE depth gauge\ndepth{aggregate=\"api\"} 2\n\
# TYPE q gaugehistogram\nq_bucket{aggregate=\"api\",le=\"1\"} 3\nq_bucket{aggregate=\"api\",le=\"+Inf\"} 4\nq_gcount{aggregate=\"api\"} 4\nq_gsum{aggregate=\"api\"} 2.5\n# EOF\n";

    fn metrics(r: &ExportMetricsServiceRequest, scope: &str) -> Vec<Metric> {
        r.resource_metrics[0]
            .scope_metrics
            .iter()
            .find(|s| s.scope.as_ref().is_some_and(|x| x.name == scope))
            .map(|s| s.metrics.clone())
            .unwrap_or_default()
    }

    #[test]
    fn envoys_text_keeps_its_counters_whatever_their_names() {
        // What OpenMetrics cannot hold: a counter without `_total`, and one whose OpenMetrics
        // name the first already takes. Both stay monotonic Sums, named as OpenMetrics would.
        let envoy = "# TYPE envoy_cluster_upstream_rq counter\n\
envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"a\"} 5\n\
# TYPE envoy_cluster_upstream_rq_total counter\n\
envoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} 6\n\
# TYPE envoy_cluster_membership_healthy gauge\n\
envoy_cluster_membership_healthy{envoy_cluster_name=\"a\"} 1\n\
# TYPE envoy_cluster_upstream_rq_time histogram\n\
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"a\",le=\"0.5\"} 1\n\
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"a\",le=\"+Inf\"} 3\n\
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"a\"} 9\n\
envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"a\"} 3";
        let app = "# TYPE jobs counter\njobs_total{aggregate=\"api\"} 2\n# EOF\n";
        let mut starts = StartTimes::default();
        let mut bytes = Vec::new();
        let mut keep = |r: &[u8]| {
            bytes = r.to_vec();
            true
        };
        let mut w = OtlpWriter::new(&[], &["aggregate"], 7, usize::MAX, &mut starts, &mut keep);
        w.feed(app.as_bytes());
        w.input(Format::Text);
        // Cut anywhere, the last line without its newline.
        for piece in envoy.as_bytes().chunks(7) {
            w.feed(piece);
        }
        assert_eq!(w.finish(), Ok(1));
        let r = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("a valid request");
        let scopes: Vec<&str> = r.resource_metrics[0]
            .scope_metrics
            .iter()
            .map(|s| s.scope.as_ref().map_or("", |x| x.name.as_str()))
            .collect();
        assert_eq!(scopes, [ENVOY_SCOPE, "api"], "the bulk first");
        let m = metrics(&r, ENVOY_SCOPE);
        let names: Vec<&str> = m.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "envoy_cluster_upstream_rq",
                "envoy_cluster_upstream_rq",
                "envoy_cluster_membership_healthy",
                "envoy_cluster_upstream_rq_time"
            ]
        );
        for (i, value) in [(0, 5.0), (1, 6.0)] {
            let Some(metric::Data::Sum(s)) = &m[i].data else {
                panic!("{:?}", m[i])
            };
            assert!(s.is_monotonic);
            assert_eq!(
                s.data_points[0].value,
                Some(number_data_point::Value::AsDouble(value))
            );
        }
        assert!(matches!(m[2].data, Some(metric::Data::Gauge(_))));
        let Some(metric::Data::Histogram(h)) = &m[3].data else {
            panic!("{:?}", m[3])
        };
        assert_eq!(h.data_points[0].bucket_counts, [1, 2]);
        assert_eq!(h.data_points[0].explicit_bounds, [0.5]);
        assert_eq!(h.data_points[0].count, 3);
        let api = metrics(&r, "api");
        assert_eq!(api[0].name, "jobs");
    }

    #[test]
    fn each_kind_as_otlp_says_with_exact_values() {
        let mut starts = StartTimes::default();
        let resource = [("mesh".to_owned(), "m".to_owned())];
        let r = encode(
            SCRAPE.as_bytes(),
            &resource,
            &["mesh", "dataplane", "service", "aggregate"],
            5_000,
            &mut starts,
        );
        let envoy = metrics(&r, ENVOY_SCOPE);
        let live = &envoy[0];
        assert_eq!(live.name, "envoy_server_live");
        let Some(metric::Data::Gauge(g)) = &live.data else {
            panic!("{live:?}")
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(1.0))
        );
        let Some(metric::Data::Sum(s)) = &envoy[1].data else {
            panic!("{:?}", envoy[1])
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(
            s.data_points[0].start_time_unix_nano, 5_000,
            "first seen now"
        );
        assert_eq!(s.data_points[0].attributes[0].key, "envoy_cluster_name");

        let api = metrics(&r, "api");
        let Some(metric::Data::Histogram(h)) = &api[0].data else {
            panic!("{:?}", api[0])
        };
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, [0.1, 1.0], "+Inf dropped");
        assert_eq!(p.bucket_counts, [2, 3, 1], "de-cumulated, overflow last");
        assert_eq!((p.count, p.sum), (6, Some(3.5)));
        assert!(p.attributes.is_empty(), "identity is the resource's");
        let Some(metric::Data::Summary(q)) = &api[1].data else {
            panic!("{:?}", api[1])
        };
        let p = &q.data_points[0];
        assert_eq!((p.count, p.sum), (10, 3.0));
        assert_eq!(p.quantile_values.len(), 2);
        assert_eq!(
            p.start_time_unix_nano, 1_700_000_000_000_000_000,
            "its _created"
        );
        let Some(metric::Data::Gauge(u)) = &api[2].data else {
            panic!("{:?}", api[2])
        };
        assert_eq!(
            u.data_points[0].attributes[0].value,
            Some(AnyValue {
                value: Some(any_value::Value::StringValue("/a\"b".into()))
            }),
            "untyped is a gauge, its label unescaped"
        );
        // A UNIT after its TYPE is its family's, not the next one's.
        assert_eq!(api[3].unit, "seconds");
        assert_eq!(api[4].unit, "");
        let Some(metric::Data::Histogram(gh)) = &api[5].data else {
            panic!("{:?}", api[5])
        };
        let p = &gh.data_points[0];
        assert_eq!(
            (p.count, p.sum, p.bucket_counts.clone()),
            (4, Some(2.5), vec![3, 1])
        );
        // The next push: a cumulative series keeps its start.
        let again = encode(SCRAPE.as_bytes(), &resource, &[], 9_000, &mut starts);
        let Some(metric::Data::Sum(s)) = &metrics(&again, ENVOY_SCOPE)[1].data else {
            panic!()
        };
        assert_eq!(s.data_points[0].start_time_unix_nano, 5_000);
        assert_eq!(s.data_points[0].time_unix_nano, 9_000);
    }

    #[test]
    fn pieces_cut_anywhere_write_the_same_request() {
        let resource = [("mesh".to_owned(), "m".to_owned())];
        let whole = super::encode(
            SCRAPE.as_bytes(),
            &resource,
            &[],
            1,
            &mut StartTimes::default(),
        );
        for cut in 0..SCRAPE.len() {
            let (requests, end) = pushed(
                &resource,
                usize::MAX,
                usize::MAX,
                &mut StartTimes::default(),
                |w| {
                    w.feed(&SCRAPE.as_bytes()[..cut]);
                    w.feed(&SCRAPE.as_bytes()[cut..]);
                },
            );
            assert_eq!(
                (requests, end),
                (vec![whole.clone()], Ok(1)),
                "cut at {cut}"
            );
        }
    }

    /// Every point of a push, as (scope, metric name, the point's Debug), and its metrics'
    /// kinds: what a collector keeps of however many requests it came in.
    fn points(requests: &[Vec<u8>]) -> Vec<(String, String, String)> {
        let mut all = Vec::new();
        for bytes in requests {
            let r = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("a valid request");
            let [rm] = r.resource_metrics.as_slice() else {
                panic!("one resource per request: {r:?}")
            };
            assert_eq!(
                rm.resource.as_ref().map(|r| r.attributes.len()),
                Some(1),
                "every request says whose it is"
            );
            for sm in &rm.scope_metrics {
                let scope = sm.scope.as_ref().map_or("", |s| s.name.as_str());
                for m in &sm.metrics {
                    let (kind, points): (&str, Vec<String>) = match &m.data {
                        Some(metric::Data::Gauge(g)) => (
                            "gauge",
                            g.data_points.iter().map(|p| format!("{p:?}")).collect(),
                        ),
                        Some(metric::Data::Sum(s)) => {
                            assert!(s.is_monotonic);
                            (
                                "sum",
                                s.data_points.iter().map(|p| format!("{p:?}")).collect(),
                            )
                        }
                        Some(metric::Data::Histogram(h)) => (
                            "histogram",
                            h.data_points.iter().map(|p| format!("{p:?}")).collect(),
                        ),
                        Some(metric::Data::Summary(s)) => (
                            "summary",
                            s.data_points.iter().map(|p| format!("{p:?}")).collect(),
                        ),
                        other => panic!("{other:?}"),
                    };
                    assert!(!points.is_empty(), "no empty metric: {m:?}");
                    for p in points {
                        all.push((scope.to_owned(), format!("{} {kind}", m.name), p));
                    }
                }
            }
        }
        all.sort();
        all
    }

    #[test]
    fn a_push_split_into_requests_carries_every_point_once() {
        let resource = [("mesh".to_owned(), "m".to_owned())];
        // Many series per family, so families are cut inside as well as between.
        let mut text = String::new();
        for family in 0..4 {
            text.push_str(&format!(
                "# TYPE f{family} counter
"
            ));
            for series in 0..40 {
                text.push_str(&format!(
                    "f{family}_total{{aggregate=\"app{}\",k=\"{series}\"}} {series}\n",
                    series % 3
                ));
            }
        }
        text.push_str(SCRAPE.trim_end_matches("# EOF\n"));
        text.push_str("# EOF\n");
        let whole = super::encode(
            text.as_bytes(),
            &resource,
            &[],
            1,
            &mut StartTimes::default(),
        );
        let expected = points(std::slice::from_ref(&whole));
        for split in [1, 100, 700, 5_000, whole.len() / 2] {
            let (requests, end) = pushed(
                &resource,
                usize::MAX,
                split,
                &mut StartTimes::default(),
                |w| {
                    for piece in text.as_bytes().chunks(33) {
                        w.feed(piece);
                    }
                },
            );
            assert_eq!(end, Ok(requests.len()), "split at {split}");
            assert!(requests.len() > 1, "split at {split}: one request");
            assert_eq!(points(&requests), expected, "split at {split}");
            // A request passes its size by at most its last point and its head.
            for r in &requests {
                assert!(r.len() < split + 300, "split at {split}: {} bytes", r.len());
            }
        }
    }

    #[test]
    fn only_utf8_reaches_the_request() {
        // A label value that is not UTF-8 makes its line no sample: the scanner says so, and
        // the writer writes what the scanner took, unchecked. Valid UTF-8 and escapes pass.
        let mut text = b"# TYPE g gauge\ng{path=\"caf\xc3\xa9 \\\"q\\\"\"} 1\ng{path=\"".to_vec();
        text.extend_from_slice(b"bad\xff\xfe\"} 2\n# EOF\n");
        let r = ExportMetricsServiceRequest::decode(
            super::encode(&text, &[], &[], 1, &mut StartTimes::default()).as_slice(),
        )
        .expect("a valid request: protobuf strings are UTF-8");
        let Some(metric::Data::Gauge(g)) = &metrics(&r, ENVOY_SCOPE)[0].data else {
            panic!("{r:?}")
        };
        assert_eq!(g.data_points.len(), 1, "{g:?}");
        assert_eq!(
            g.data_points[0].attributes[0].value,
            Some(AnyValue {
                value: Some(any_value::Value::StringValue("café \"q\"".into()))
            })
        );
    }

    #[test]
    fn only_the_last_carrier_keeps_a_requests_capacity() {
        // Two apps, each the larger in turn: each carries requests.
        let mut text = String::new();
        for (family, app) in [("f", "a"), ("g", "b"), ("h", "a"), ("i", "b")] {
            text.push_str(&format!("# TYPE {family} gauge\n"));
            for i in 0..400 {
                text.push_str(&format!("{family}{{aggregate=\"{app}\",k=\"{i}\"}} 1\n"));
            }
        }
        let mut starts = StartTimes::default();
        let mut sent = 0;
        let mut count = |_: &[u8]| {
            sent += 1;
            true
        };
        let mut w = OtlpWriter::new(&[], &[], 1, usize::MAX, &mut starts, &mut count);
        w.split(4_000);
        w.feed(text.as_bytes());
        let large = w
            .scopes
            .iter()
            .filter(|s| s.buf.capacity() > 2 * 4_000)
            .count();
        assert_eq!(
            large,
            1,
            "{:?}",
            w.scopes
                .iter()
                .map(|s| s.buf.capacity())
                .collect::<Vec<_>>()
        );
        assert!(w.finish().is_ok_and(|n| n > 2));
    }

    #[test]
    fn a_request_that_cannot_be_sent_ends_the_push() {
        let mut offered = 0;
        let mut refuse_second = |_: &[u8]| {
            offered += 1;
            offered < 2
        };
        let mut starts = StartTimes::default();
        let mut w = OtlpWriter::new(&[], &[], 1, usize::MAX, &mut starts, &mut refuse_second);
        w.split(60);
        w.feed(SCRAPE.as_bytes());
        assert_eq!(w.finish(), Ok(1), "one request went");
        assert_eq!(offered, 2, "none offered after the refused one");
    }

    #[test]
    fn a_push_over_its_bound_stops_there() {
        let mut starts = StartTimes::default();
        let whole = super::encode(SCRAPE.as_bytes(), &[], &[], 1, &mut starts);
        let (requests, end) = pushed(&[], whole.len() / 2, usize::MAX, &mut starts, |w| {
            w.feed(SCRAPE.as_bytes())
        });
        assert_eq!((requests.len(), end), (0, Err(TooLarge)));
        // Split, what was sent before the bound stays sent, and nothing past it is.
        let (requests, end) = pushed(&[], whole.len() / 2, 60, &mut starts, |w| {
            w.feed(SCRAPE.as_bytes())
        });
        assert_eq!(end, Err(TooLarge));
        assert!(!requests.is_empty());
        assert!(requests.iter().map(Vec::len).sum::<usize>() <= whole.len() / 2);
        let (requests, end) = pushed(&[], whole.len(), usize::MAX, &mut starts, |w| {
            w.feed(SCRAPE.as_bytes())
        });
        assert_eq!((requests, end), (vec![whole], Ok(1)));
    }
}
