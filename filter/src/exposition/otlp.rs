//! OTLP: a merged scrape as one `ExportMetricsServiceRequest` (SPEC §11), the writer beside
//! text 0.0.4 and OpenMetrics.
//!
//! It reads the engine's own OpenMetrics output (every family typed, `_created` kept, each
//! family once, labels in a fixed order), scanned by the same scanner the sources are. Kinds
//! become OTLP's (Kuma's rules, and where ours does better): gauge, unknown, info and stateset
//! → Gauge (Kuma drops untyped); counter → monotonic cumulative Sum; histogram → explicit-bounds
//! Histogram, its cumulative buckets de-cumulated and the `+Inf` bound dropped (OTLP's last
//! count is the overflow bucket); summary → Summary (Kuma writes gauges). The proxy's identity
//! is the resource's attributes; each application's samples (its `aggregate` label) are one
//! instrumentation scope named after it, Envoy's another ([`ENVOY_SCOPE`]), the filter's own
//! families a third ([`SELF_SCOPE`]). A cumulative point's start is its `_created` when the
//! source gave one, else the first time this writer saw the series ([`StartTimes`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::Format;
use super::scan::{Line, Scanner};

/// The scope of Envoy's own families.
pub const ENVOY_SCOPE: &str = "envoy";
/// The scope of the filter's own families (`meshmetrics_*`).
pub const SELF_SCOPE: &str = "meshmetrics";
/// The label naming the application a sample came from; its value names the scope.
const SCOPE_LABEL: &[u8] = b"aggregate";

/// When each cumulative series was first seen, for the start of its points. Bounded: past
/// [`StartTimes::MAX`] series it starts over (their starts move to now, which a collector reads
/// as a reset, never as a wrong rate).
#[derive(Default)]
pub struct StartTimes {
    first: HashMap<u64, u64>,
    hasher: std::collections::hash_map::RandomState,
}

impl StartTimes {
    pub const MAX: usize = 1 << 20;

    fn of(&mut self, key: &[&[u8]], now_ns: u64) -> u64 {
        let mut h = self.hasher.build_hasher();
        for part in key {
            h.write(part);
            h.write_u8(0xff);
        }
        let k = h.finish();
        if self.first.len() >= Self::MAX && !self.first.contains_key(&k) {
            self.first.clear();
        }
        *self.first.entry(k).or_insert(now_ns)
    }
}

/// The kinds as OpenMetrics declares them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

fn kind_of(word: &[u8]) -> Kind {
    match word {
        b"counter" => Kind::Counter,
        // A gauge histogram's buckets, `_gcount` and `_gsum` are a histogram's point.
        b"histogram" | b"gaugehistogram" => Kind::Histogram,
        b"summary" => Kind::Summary,
        // gauge, unknown, info, stateset: each sample a gauge's point.
        _ => Kind::Gauge,
    }
}

/// One data point being gathered (a histogram's or summary's lines, one by one).
#[derive(Default)]
struct Point {
    attributes: Vec<KeyValue>,
    time_ns: u64,
    created_ns: Option<u64>,
    value: f64,
    count: Option<u64>,
    sum: Option<f64>,
    /// (upper bound, cumulative count), `+Inf` included.
    buckets: Vec<(f64, u64)>,
    quantiles: Vec<ValueAtQuantile>,
}

/// The scope and family the last sample went to, and their indices.
type LastFamily = (Vec<u8>, Vec<u8>, (usize, usize));

/// One family of one scope, being gathered.
struct Family {
    name: String,
    help: String,
    unit: String,
    kind: Kind,
    /// Points by their label set (the line's labels but `le` / `quantile`), in order.
    points: Vec<Point>,
    index: HashMap<Vec<u8>, usize>,
}

/// Writes the merged scrape `open_metrics` (the engine's OpenMetrics output) as one OTLP
/// request, with `resource` as the resource's attributes; `identity` names the labels the
/// filter added that the resource (and the scope) already say, left out of every point.
pub fn encode(
    open_metrics: &[u8],
    resource: &[(String, String)],
    identity: &[&str],
    now_ns: u64,
    starts: &mut StartTimes,
) -> ExportMetricsServiceRequest {
    let mut scanner = Scanner::default();
    // (scope, family name) → family; scopes in the order first seen.
    let mut scopes: Vec<(String, Vec<Family>)> = Vec::new();
    let mut current: Option<(Vec<u8>, Kind, String, String)> = None;
    let mut help = String::new();
    let mut unit = String::new();
    let mut key = Vec::new();
    // The (scope, family) the last sample went to, and where it is.
    let mut last: Option<LastFamily> = None;
    for line in open_metrics.split(|b| *b == b'\n') {
        match scanner.scan(line, Format::OpenMetrics, b"") {
            // A family's HELP and UNIT may come before its TYPE or after it (the engine writes
            // UNIT after TYPE): after, they are the current family's.
            Line::Help { name, text } => {
                let text = String::from_utf8_lossy(text).into_owned();
                match current.as_mut().filter(|c| c.0 == name) {
                    Some(c) => c.2 = text,
                    None => help = text,
                }
            }
            Line::Unit { name, unit: u } => {
                let u = String::from_utf8_lossy(u).into_owned();
                match current.as_mut().filter(|c| c.0 == name) {
                    Some(c) => c.3 = u,
                    None => unit = u,
                }
            }
            Line::Type { name, word } => {
                current = Some((
                    name.to_vec(),
                    kind_of(word),
                    std::mem::take(&mut help),
                    std::mem::take(&mut unit),
                ));
            }
            Line::Sample(s) => {
                let Some((family, kind, help, unit)) = current.as_ref() else {
                    continue;
                };
                let name = s.name.of(line);
                let Some(suffix) = name.strip_prefix(family.as_slice()) else {
                    continue;
                };
                let Some(value) = parse_f64(s.value.of(line)) else {
                    continue;
                };
                let time_ns = s
                    .timestamp
                    .and_then(|t| parse_f64(t.of(line)))
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .map_or(now_ns, |t| (t * 1e9) as u64);
                // The point's scope, its key (labels but identity and `le` / `quantile`), the
                // bound: read first; its attributes only when the point is new.
                let mut scope: &[u8] = if family.starts_with(b"meshmetrics_") {
                    SELF_SCOPE.as_bytes()
                } else {
                    ENVOY_SCOPE.as_bytes()
                };
                key.clear();
                let mut bound = None;
                let bound_label: &[u8] = match kind {
                    Kind::Histogram => b"le",
                    Kind::Summary => b"quantile",
                    _ => b"",
                };
                for l in &scanner.labels {
                    let (n, v) = (l.name.of(line), l.value.of(line));
                    if n == SCOPE_LABEL {
                        scope = v;
                    }
                    if n == bound_label {
                        bound = parse_f64(v);
                    } else if !identity.iter().any(|i| i.as_bytes() == n) {
                        key.extend_from_slice(n);
                        key.push(b'=');
                        key.extend_from_slice(v);
                        key.push(0xff);
                    }
                }
                // Samples of a family come together, and mostly of one scope: the last family
                // is asked first, the map only when it changed.
                let (si, fi) = match &last {
                    Some((ls, lf, at))
                        if ls.as_slice() == scope && lf.as_slice() == family.as_slice() =>
                    {
                        *at
                    }
                    _ => {
                        let scope_name = String::from_utf8_lossy(scope).into_owned();
                        let si = match scopes.iter().position(|(s, _)| *s == scope_name) {
                            Some(i) => i,
                            None => {
                                scopes.push((scope_name, Vec::new()));
                                scopes.len() - 1
                            }
                        };
                        let families = &mut scopes[si].1;
                        let fam_name = String::from_utf8_lossy(family);
                        let fi = match families.iter().rposition(|f| f.name == fam_name) {
                            Some(i) => i,
                            None => {
                                families.push(Family {
                                    name: fam_name.into_owned(),
                                    help: help.clone(),
                                    unit: unit.clone(),
                                    kind: *kind,
                                    points: Vec::new(),
                                    index: HashMap::new(),
                                });
                                families.len() - 1
                            }
                        };
                        last = Some((scope.to_vec(), family.clone(), (si, fi)));
                        (si, fi)
                    }
                };
                let f = &mut scopes[si].1[fi];
                let i = match f.index.get(key.as_slice()) {
                    Some(i) => *i,
                    None => {
                        let attributes = scanner
                            .labels
                            .iter()
                            .map(|l| (l.name.of(line), l.value.of(line)))
                            .filter(|(n, _)| {
                                *n != bound_label && !identity.iter().any(|i| i.as_bytes() == *n)
                            })
                            .map(|(n, v)| KeyValue {
                                key: String::from_utf8_lossy(n).into_owned(),
                                value: Some(AnyValue {
                                    value: Some(any_value::Value::StringValue(unescape(v))),
                                }),
                                ..Default::default()
                            })
                            .collect();
                        f.points.push(Point {
                            attributes,
                            time_ns,
                            ..Point::default()
                        });
                        f.index.insert(key.clone(), f.points.len() - 1);
                        f.points.len() - 1
                    }
                };
                let p = &mut f.points[i];
                match (f.kind, suffix) {
                    (Kind::Counter, b"_created")
                    | (Kind::Histogram, b"_created")
                    | (Kind::Summary, b"_created") => {
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
                            p.quantiles.push(ValueAtQuantile { quantile: q, value });
                        }
                    }
                    (Kind::Counter, b"_total") | (Kind::Gauge, _) | (Kind::Counter, b"") => {
                        p.value = value
                    }
                    _ => {}
                }
                p.time_ns = time_ns;
            }
            _ => {}
        }
    }
    let scope_metrics = scopes
        .into_iter()
        .map(|(scope, families)| ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: scope.clone(),
                ..Default::default()
            }),
            metrics: families
                .into_iter()
                .map(|f| metric(f, &scope, now_ns, starts))
                .collect(),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource
                    .iter()
                    .map(|(k, v)| KeyValue {
                        key: k.clone(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(v.clone())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            scope_metrics,
            ..Default::default()
        }],
    }
}

fn metric(f: Family, scope: &str, now_ns: u64, starts: &mut StartTimes) -> Metric {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let mut start_of = |p: &Point| {
        p.created_ns.unwrap_or_else(|| {
            let key: Vec<&[u8]> = std::iter::once(scope.as_bytes())
                .chain([f.name.as_bytes()])
                .chain(p.attributes.iter().map(|a| a.key.as_bytes()))
                .chain(p.attributes.iter().filter_map(|a| match &a.value {
                    Some(AnyValue {
                        value: Some(any_value::Value::StringValue(s)),
                    }) => Some(s.as_bytes()),
                    _ => None,
                }))
                .collect();
            starts.of(&key, now_ns)
        })
    };
    let data = match f.kind {
        Kind::Gauge => metric::Data::Gauge(Gauge {
            data_points: f
                .points
                .into_iter()
                .map(|p| NumberDataPoint {
                    attributes: p.attributes,
                    time_unix_nano: p.time_ns,
                    value: Some(number_data_point::Value::AsDouble(p.value)),
                    ..Default::default()
                })
                .collect(),
        }),
        Kind::Counter => metric::Data::Sum(Sum {
            data_points: f
                .points
                .into_iter()
                .map(|p| NumberDataPoint {
                    start_time_unix_nano: start_of(&p),
                    attributes: p.attributes,
                    time_unix_nano: p.time_ns,
                    value: Some(number_data_point::Value::AsDouble(p.value)),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: cumulative,
            is_monotonic: true,
        }),
        Kind::Histogram => metric::Data::Histogram(Histogram {
            data_points: f
                .points
                .into_iter()
                .map(|mut p| {
                    p.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                    let mut bounds = Vec::with_capacity(p.buckets.len());
                    let mut counts = Vec::with_capacity(p.buckets.len() + 1);
                    let mut below = 0u64;
                    for &(le, cumulative) in &p.buckets {
                        if le.is_infinite() && le > 0.0 {
                            continue;
                        }
                        bounds.push(le);
                        counts.push(cumulative.saturating_sub(below));
                        below = below.max(cumulative);
                    }
                    let total = p.count.unwrap_or_else(|| {
                        p.buckets
                            .iter()
                            .find(|(le, _)| le.is_infinite())
                            .map_or(below, |(_, c)| *c)
                    });
                    // The overflow bucket: what no finite bound holds.
                    counts.push(total.saturating_sub(below));
                    HistogramDataPoint {
                        start_time_unix_nano: start_of(&p),
                        attributes: p.attributes,
                        time_unix_nano: p.time_ns,
                        count: total,
                        sum: p.sum,
                        bucket_counts: counts,
                        explicit_bounds: bounds,
                        ..Default::default()
                    }
                })
                .collect(),
            aggregation_temporality: cumulative,
        }),
        Kind::Summary => metric::Data::Summary(Summary {
            data_points: f
                .points
                .into_iter()
                .map(|p| SummaryDataPoint {
                    start_time_unix_nano: start_of(&p),
                    attributes: p.attributes,
                    time_unix_nano: p.time_ns,
                    count: p.count.unwrap_or(0),
                    sum: p.sum.unwrap_or(0.0),
                    quantile_values: p.quantiles,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    Metric {
        name: f.name,
        description: f.help,
        unit: f.unit,
        data: Some(data),
        ..Default::default()
    }
}

fn parse_f64(v: &[u8]) -> Option<f64> {
    match v {
        b"+Inf" | b"Inf" => Some(f64::INFINITY),
        b"-Inf" => Some(f64::NEG_INFINITY),
        b"NaN" => Some(f64::NAN),
        _ => std::str::from_utf8(v).ok()?.parse().ok(),
    }
}

/// A label value as written (`\\`, `\"`, `\n` escaped) as its text.
fn unescape(v: &[u8]) -> String {
    if !v.contains(&b'\\') {
        return String::from_utf8_lossy(v).into_owned();
    }
    let mut out = Vec::with_capacity(v.len());
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
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
