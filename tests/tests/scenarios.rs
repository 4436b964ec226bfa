//! One table of scenarios, two back-ends: the filter inside a real Envoy 1.40, and the same
//! `.wasm` under wasmtime (`meshmetrics serve`, Envoy's stats from a real Envoy's admin). One
//! scrape merges Envoy's stats and the apps', labelled, filtered, overridden per proxy, robust to
//! failing apps, valid for Prometheus' own parsers — and both back-ends give the same answers.

use meshmetrics_e2e::*;

const PROM_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const ORDERS: &str = "# HELP orders_total Orders placed.\n# TYPE orders_total counter\norders_total{service=\"orders\"} 42\n# HELP process_cpu_seconds_total CPU time.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.5\n";
const PAYMENTS_OM: &str = "# TYPE payments counter\n# HELP payments Payments.\npayments_total 7 # {trace_id=\"abc\"} 1.0\n# TYPE process_cpu_seconds counter\n# HELP process_cpu_seconds CPU time.\nprocess_cpu_seconds_total 2.5\n# EOF\n";

fn envoy_and_two_apps_in_one_scrape_with_identity_labels(backend: Backend) {
    let orders = app(Reply::text(ORDERS));
    let payments = app(Reply::openmetrics(PAYMENTS_OM));
    let yaml = mesh_yaml(
        &[
            ("orders", orders.addr.port()),
            ("payments", payments.addr.port()),
        ],
        "",
        "",
    );
    let envoy = Proxy::start(
        backend,
        effective_of(&resources(&yaml), "backend-1"),
        |_| {},
    );

    let s = envoy.scrape(&[
        ("user-agent", "Prometheus/3.0"),
        ("x-prometheus-scrape-timeout-seconds", "10"),
        ("accept-encoding", "gzip"),
    ]);
    assert_eq!(s.status, 200, "{}", envoy.log());
    assert_eq!(s.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        !samples(&s.body, "envoy_server_live").is_empty(),
        "Envoy's stats are missing:\n{}",
        s.body
    );
    let id = "mesh=\"default\",dataplane=\"backend-1\",service=\"backend\"";
    let orders_line =
        format!("orders_total{{{id},aggregate=\"orders\",exported_service=\"orders\"}} 42\n");
    assert!(
        s.body.contains(&orders_line),
        "{orders_line}not in:\n{}",
        samples(&s.body, "orders").join("\n")
    );
    assert!(
        s.body.contains(&format!(
            "payments_total{{{id},aggregate=\"payments\"}} 7\n"
        )),
        "{}",
        s.body
    );
    // Envoy's samples are not labelled by default (Prometheus adds target labels); apps' all are.
    for line in s.body.lines().filter(|l| {
        !l.starts_with('#') && !l.starts_with("envoy_") && !l.starts_with("meshmetrics_")
    }) {
        assert!(
            line.contains(id),
            "app sample without identity labels: {line}"
        );
    }
    // One family from two apps: one header, samples together.
    assert_eq!(
        s.body
            .matches("# TYPE process_cpu_seconds_total counter\n")
            .count(),
        1
    );
    // Sources are merged as their answers arrive, so either app may come first; adjacent always.
    let o = format!("process_cpu_seconds_total{{{id},aggregate=\"orders\"}} 1.5\n");
    let p = format!("process_cpu_seconds_total{{{id},aggregate=\"payments\"}} 2.5\n");
    let together = [format!("{o}{p}"), format!("{p}{o}")];
    assert!(
        together.iter().any(|t| s.body.contains(t.as_str())),
        "{}",
        s.body
    );
    assert_eq!(
        self_metric(&s.body, "meshmetrics_source_up", "envoy"),
        Some(1.0)
    );
    assert_eq!(
        self_metric(&s.body, "meshmetrics_source_up", "payments"),
        Some(1.0)
    );
    // The VM's linear memory, from inside the module: whole 64 KiB pages, never zero.
    let memory: f64 = s
        .body
        .lines()
        .find_map(|l| l.strip_prefix("meshmetrics_wasm_memory_bytes "))
        .and_then(|v| v.parse().ok())
        .expect("meshmetrics_wasm_memory_bytes");
    assert!(memory > 0.0 && memory % 65_536.0 == 0.0, "{memory}");
    promtool_check(&s.body);
    python_parse(&s.body, false);

    // What the apps were asked: the scraper's headers, never its Accept-Encoding.
    let seen = orders.requests();
    let last = seen.last().expect("orders was scraped");
    assert_eq!(last.path, "/metrics");
    assert_eq!(last.header("user-agent"), Some("Prometheus/3.0"));
    assert_eq!(
        last.header("x-prometheus-scrape-timeout-seconds"),
        Some("10")
    );
    assert_eq!(last.header("accept-encoding"), None);

    // Prometheus' own Accept gets OpenMetrics, forwarded to the apps too.
    let s = envoy.scrape(&[("accept", PROM_ACCEPT)]);
    assert_eq!(
        s.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(s.body.ends_with("# EOF\n") && s.body.matches("# EOF").count() == 1);
    assert!(s.body.contains("payments_total{mesh=\"default\",dataplane=\"backend-1\",service=\"backend\",aggregate=\"payments\"} 7 # {trace_id=\"abc\"} 1.0\n"), "{}", s.body);
    assert_eq!(
        payments
            .requests()
            .last()
            .and_then(|r| r.header("accept").map(str::to_owned))
            .as_deref(),
        Some(PROM_ACCEPT)
    );
    python_parse(&s.body, true);
}

fn envoy_labels_option_labels_every_sample(backend: Backend) {
    let orders = app(Reply::text(ORDERS));
    let yaml = mesh_yaml(&[("orders", orders.addr.port())], "", "");
    let envoy = Proxy::start(backend, effective_of(&resources(&yaml), "backend-1"), |o| {
        o.envoy_labels = true
    });
    let s = envoy.scrape(&[]);
    for line in s
        .body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("meshmetrics_"))
    {
        assert!(
            line.contains("mesh=\"default\",dataplane=\"backend-1\",service=\"backend\""),
            "{line}"
        );
    }
}

fn filter_regex_used_only_and_the_scrapers_filter(backend: Backend) {
    let orders = app(Reply::text(ORDERS));
    let port = orders.addr.port();
    let all = Proxy::start(
        backend,
        effective_of(
            &resources(&mesh_yaml(&[("orders", port)], "", "")),
            "backend-1",
        ),
        |_| {},
    );
    let all_envoy = samples(&all.scrape(&[]).body, "envoy_").len();

    // envoy.filterRegex goes to Envoy (statsd-style names, as in Kuma).
    let conf = "      envoy: {filterRegex: \"^server\\\\.\"}\n";
    let filtered = Proxy::start(
        backend,
        effective_of(
            &resources(&mesh_yaml(&[("orders", port)], conf, "")),
            "backend-1",
        ),
        |_| {},
    );
    let body = filtered.scrape(&[]).body;
    let envoy_lines = samples(&body, "envoy_");
    assert!(
        !envoy_lines.is_empty() && envoy_lines.iter().all(|l| l.starts_with("envoy_server_")),
        "{body}"
    );
    assert!(
        body.contains("orders_total{"),
        "the mesh's filter is Envoy's only: {body}"
    );

    // usedOnly: Envoy leaves out the stats never updated.
    let used = Proxy::start(
        backend,
        effective_of(
            &resources(&mesh_yaml(
                &[("orders", port)],
                "      envoy: {usedOnly: true}\n",
                "",
            )),
            "backend-1",
        ),
        |_| {},
    );
    let used_envoy = samples(&used.scrape(&[]).body, "envoy_").len();
    assert!(
        used_envoy < all_envoy,
        "usedOnly: {used_envoy} Envoy samples, without: {all_envoy}"
    );

    // The scraper's ?filter= narrows everything, on family names, after the mesh's.
    let s = get(
        &filtered.url("/metrics?filter=%5Eenvoy_server_live%24%7Corders"),
        &[],
    );
    let mut families: Vec<&str> = s
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    families.sort_unstable();
    assert_eq!(
        families,
        ["envoy_server_live gauge", "orders_total counter"],
        "{}",
        s.body
    );
    let s = get(&filtered.url("/metrics?filter=%28"), &[]);
    assert_eq!(s.status, 400);
    assert!(s.body.contains("does not compile"), "{}", s.body);
    // A regex whose cost per family name has no useful bound (~77 ms a name under regex-lite's
    // own limit) is refused before it runs, and the next scrape is served as ever.
    let s = get(
        &filtered.url("/metrics?filter=%28%3F%3A%5Ba-z_%5D%3F%29%7B75000%7DX"),
        &[],
    );
    assert_eq!(s.status, 400, "{}", s.body);
    assert!(
        s.body.contains("size limit") || s.body.contains("does not compile"),
        "{}",
        s.body
    );
    let long = "a".repeat(2000);
    let s = get(&filtered.url(&format!("/metrics?filter={long}")), &[]);
    assert_eq!(s.status, 400);
    assert!(s.body.contains("over 1024"), "{}", s.body);
    assert_eq!(get(&filtered.url("/metrics"), &[]).status, 200);
}

fn dataplane_overrides_port_path_and_aggregates(backend: Backend) {
    let a = app(Reply::text("a_up 1\n"));
    let b = app(Reply::text("b_up 1\n"));
    let c = app(Reply::text("c_up 1\n"));
    let dp = format!(
        "metrics:\n  type: prometheus\n  conf:\n    path: /custom\n    aggregate:\n    - {{name: a, port: {}, path: /v2}}\n    - {{name: b, enabled: false}}\n    - {{name: c, port: {}}}\n",
        a.addr.port(),
        c.addr.port()
    );
    let yaml = mesh_yaml(&[("a", a.addr.port()), ("b", b.addr.port())], "", &dp);
    let e = effective_of(&resources(&yaml), "backend-1");
    assert_eq!(e.path, "/custom");
    let envoy = Proxy::start(backend, e, |_| {});
    let s = envoy.scrape(&[]);
    assert!(
        s.body.contains("a_up{") && s.body.contains("c_up{") && !s.body.contains("b_up"),
        "{}",
        s.body
    );
    assert_eq!(
        a.requests().last().map(|r| r.path.clone()).as_deref(),
        Some("/v2"),
        "a was replaced whole"
    );
    assert!(b.requests().is_empty(), "a disabled entry is never fetched");
    assert_eq!(
        get(&envoy.url("/metrics"), &[]).status,
        404,
        "the mesh's path is not served here"
    );
}

fn pod_annotations_override_like_a_dataplane(backend: Backend) {
    let a = app(Reply::text("a_up 1\n"));
    let b = app(Reply::text("b_up 1\n"));
    let c = app(Reply::text("c_up 1\n"));
    let yaml = format!(
        "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf:\n      skipMTLS: true\n      aggregate:\n      - {{name: a, port: {a}, path: /metrics}}\n      - {{name: b, port: {b}}}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web-0\n  namespace: shop\n  annotations:\n    prometheus.metrics.kuma.io/path: /pod-metrics\n    prometheus.metrics.kuma.io/aggregate-a-path: /v2\n    prometheus.metrics.kuma.io/aggregate-b-enabled: \"no\"\n    prometheus.metrics.kuma.io/aggregate-c-port: \"{c}\"\nspec:\n  containers:\n  - {{name: web, ports: [{{containerPort: 18080}}]}}\n",
        a = a.addr.port(),
        b = b.addr.port(),
        c = c.addr.port()
    );
    let e = effective_of(&resources(&yaml), "web-0.shop");
    assert_eq!(
        (e.path.as_str(), e.service.as_str()),
        ("/pod-metrics", "web-0_shop_svc_18080")
    );
    let envoy = Proxy::start(backend, e, |_| {});
    let s = envoy.scrape(&[]);
    assert!(
        s.body.contains("a_up{") && s.body.contains("c_up{") && !s.body.contains("b_up"),
        "{}",
        s.body
    );
    assert_eq!(
        a.requests().last().map(|r| r.path.clone()).as_deref(),
        Some("/v2"),
        "annotation changed only a's path"
    );
    assert!(b.requests().is_empty());
}

fn failing_apps_never_empty_the_scrape(backend: Backend) {
    let healthy = app(Reply::text(ORDERS));
    let hanging = app(Reply::Hang);
    let broken = app(Reply::Status(500));
    let garbage = app(Reply::text(
        "<html><body>Whoops</body></html>\nnot a metric at all\n",
    ));
    let huge = app(Reply::text(format!(
        "# TYPE big gauge\n{}",
        "big{i=\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"} 1\n".repeat(60_000)
    )));
    // client_golang's answer to a Prometheus with native histograms, had the filter passed on
    // that Prometheus' Accept: binary protobuf.
    let protobuf = app(Reply::Metrics {
        content_type: "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited".into(),
        body: b"\x8a\x01\n\x0bgo_goroutines\x12\x0fNumber of goroutines.\x18\x01\"\x0b\x12\t\t\x00\x00\x00\x00\x00\x00\x20@".to_vec(),
    });
    let down = free_port();
    let yaml = mesh_yaml(
        &[
            ("healthy", healthy.addr.port()),
            ("protobuf", protobuf.addr.port()),
            ("down", down),
            ("hanging", hanging.addr.port()),
            ("broken", broken.addr.port()),
            ("garbage", garbage.addr.port()),
            ("huge", huge.addr.port()),
        ],
        "",
        "",
    );
    let envoy = Proxy::start(backend, effective_of(&resources(&yaml), "backend-1"), |o| {
        o.max_body_bytes = 1 << 20
    });
    // Prometheus says it waits 3 s: the filter answers within that, margin included. Its
    // Accept is the native-histograms one, protobuf first.
    let native_histograms = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let s = envoy.scrape(&[
        ("x-prometheus-scrape-timeout-seconds", "3"),
        ("accept", native_histograms),
    ]);
    assert_eq!(s.status, 200, "{}", envoy.log());
    assert!(
        s.elapsed.as_secs_f64() < 3.0,
        "answered after {:?}",
        s.elapsed
    );
    assert!(
        s.body.contains("orders_total{"),
        "the healthy app is served:\n{}",
        s.body
    );
    assert!(!samples(&s.body, "envoy_server_live").is_empty());
    // Inside Envoy a refused or timed-out app comes back as Envoy's own 503 / 504, and a body
    // over the cap as a failed call: only the kinds the filter itself decides are exact.
    for (source, reasons) in [
        ("down", &["no_response", "http_status"][..]),
        ("hanging", &["no_response", "http_status"][..]),
        ("broken", &["http_status"][..]),
        ("huge", &["body_too_large", "no_response"][..]),
        ("protobuf", &["content_type"][..]),
    ] {
        assert_eq!(
            self_metric(&s.body, "meshmetrics_source_up", source),
            Some(0.0),
            "{source}:\n{}",
            s.body
        );
        let prefix = format!("meshmetrics_source_error{{source=\"{source}\",reason=\"");
        let line = s
            .body
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{}", s.body));
        assert!(
            reasons.iter().any(|r| line == format!("{prefix}{r}\"}} 1")),
            "{line}: want one of {reasons:?}"
        );
    }
    assert!(
        !s.body
            .contains("meshmetrics_source_error{source=\"healthy\"")
    );
    // The apps are asked for what the filter reads, never for the scraper's protobuf.
    let asked = healthy.requests();
    let accept = asked[0].header("accept").unwrap_or_default();
    assert!(
        accept.starts_with("application/openmetrics-text") && !accept.contains("protobuf"),
        "{accept}"
    );
    assert_eq!(
        self_metric(&s.body, "meshmetrics_source_up", "healthy"),
        Some(1.0)
    );
    // Garbage is fetched fine, but none of it is echoed; its lines are counted as dropped.
    assert!(!s.body.contains("Whoops") && !s.body.contains("not a metric"));
    assert_eq!(
        self_metric(
            &s.body,
            "meshmetrics_source_samples_dropped_total",
            "garbage"
        ),
        Some(2.0)
    );
    // The count is cumulative across scrapes.
    let again = envoy.scrape(&[
        ("x-prometheus-scrape-timeout-seconds", "3"),
        ("accept", native_histograms),
    ]);
    assert_eq!(
        self_metric(
            &again.body,
            "meshmetrics_source_samples_dropped_total",
            "garbage"
        ),
        Some(4.0)
    );
    python_parse(&s.body, true);
    assert!(
        envoy.log().contains("which the filter does not read"),
        "{}",
        envoy.log()
    );
    assert!(
        envoy.log().contains("source \"broken\" answered HTTP 500"),
        "{}",
        envoy.log()
    );
}

fn other_paths_and_methods(backend: Backend) {
    let yaml = mesh_yaml(&[], "", "");
    let envoy = Proxy::start(
        backend,
        effective_of(
            &resources(&yaml.replace("      aggregate:\n", "")),
            "backend-1",
        ),
        |_| {},
    );
    assert_eq!(get(&envoy.url("/"), &[]).status, 404);
    assert_eq!(get(&envoy.url("/metrics/extra"), &[]).status, 404);
    assert_eq!(
        get(&envoy.url("/stats/prometheus"), &[]).status,
        404,
        "admin is never exposed"
    );
    assert_eq!(request("POST", &envoy.url("/metrics"), &[]).status, 405);
    let head = request("HEAD", &envoy.url("/metrics"), &[]);
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    let s = get(&envoy.url("/metrics?x=1"), &[]);
    assert_eq!(s.status, 200);
    assert!(!samples(&s.body, "envoy_").is_empty());
}

/// Each scenario runs once per back-end, as two tests named `<scenario>::envoy` and
/// `<scenario>::wasmtime`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use meshmetrics_e2e::Backend;
            #[test]
            fn envoy() {
                super::$name(Backend::Envoy)
            }
            #[test]
            fn wasmtime() {
                super::$name(Backend::Wasmtime)
            }
        }
    )*};
}

on_both_backends!(
    envoy_and_two_apps_in_one_scrape_with_identity_labels,
    envoy_labels_option_labels_every_sample,
    filter_regex_used_only_and_the_scrapers_filter,
    dataplane_overrides_port_path_and_aggregates,
    pod_annotations_override_like_a_dataplane,
    failing_apps_never_empty_the_scrape,
    other_paths_and_methods,
);
