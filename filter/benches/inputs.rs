//! Real-shaped inputs for the benchmarks, generated (a 26 MB file does not belong in git).

/// Envoy 1.40's `/stats/prometheus` for `clusters` clusters: the real two-cluster capture in
/// `tests/fixtures`, with each family's per-cluster block repeated once per cluster.
pub fn envoy(clusters: usize) -> Vec<u8> {
    let capture = include_str!("../tests/fixtures/envoy-1.40-two-clusters.prom");
    let mut out = String::with_capacity(clusters * 13_500);
    let mut template: Vec<&str> = Vec::new();
    let flush = |template: &mut Vec<&str>, out: &mut String| {
        for c in 0..clusters {
            let name = format!("envoy_cluster_name=\"service-{c:05}_default_svc_8080\"");
            for line in template.iter() {
                out.push_str(&line.replace("envoy_cluster_name=\"svc_a\"", &name));
                out.push('\n');
            }
        }
        template.clear();
    };
    for line in capture.lines() {
        if line.starts_with('#') {
            flush(&mut template, &mut out);
            out.push_str(line);
            out.push('\n');
        } else if line.contains("envoy_cluster_name=\"svc_a\"") {
            template.push(line);
        } else if !line.contains("envoy_cluster_name=\"svc_b\"") {
            out.push_str(line);
            out.push('\n');
        }
    }
    flush(&mut template, &mut out);
    out.into_bytes()
}

/// An application's exposition of about `bytes` bytes: request counters and latency histograms
/// per route and code, as a typical HTTP service exports them.
pub fn app(bytes: usize) -> Vec<u8> {
    let mut out = String::with_capacity(bytes + 4096);
    let mut family = 0;
    while out.len() < bytes {
        let f = format!("app_http_{family}");
        out.push_str(&format!(
            "# HELP {f}_requests_total Requests served.\n# TYPE {f}_requests_total counter\n"
        ));
        for route in 0..20 {
            for code in ["200", "404", "500"] {
                out.push_str(&format!(
                    "{f}_requests_total{{method=\"GET\",route=\"/api/v1/items/{route}\",code=\"{code}\"}} {}\n",
                    route * 17 + 3
                ));
            }
        }
        out.push_str(&format!(
            "# HELP {f}_request_duration_seconds Latency.\n# TYPE {f}_request_duration_seconds histogram\n"
        ));
        for route in 0..20 {
            for le in ["0.005", "0.01", "0.05", "0.1", "0.5", "1", "+Inf"] {
                out.push_str(&format!(
                    "{f}_request_duration_seconds_bucket{{route=\"/api/v1/items/{route}\",le=\"{le}\"}} 12\n"
                ));
            }
            out.push_str(&format!(
                "{f}_request_duration_seconds_sum{{route=\"/api/v1/items/{route}\"}} 1.25\n"
            ));
            out.push_str(&format!(
                "{f}_request_duration_seconds_count{{route=\"/api/v1/items/{route}\"}} 12\n"
            ));
        }
        family += 1;
    }
    out.into_bytes()
}
