//! Envoy's answer streams through the filter (issue 17): a real Envoy with many clusters, and
//! apps slower than Envoy's whole answer.

use std::sync::Arc;
use std::time::Duration;

use meshmetrics_e2e::perf::{start, start_with};
use meshmetrics_e2e::{AppServer, Reply, get, promtool_check, self_metric, wasm_memory};

/// The comment lines (`# HELP`, `# TYPE`) of an exposition.
fn descriptors(body: &str) -> std::collections::BTreeSet<&str> {
    body.lines().filter(|l| l.starts_with("# ")).collect()
}

/// A sample line without its value (a comment line as it is).
fn series(line: &str) -> &str {
    match line.starts_with('#') {
        true => line,
        false => line.rsplit_once(' ').map_or(line, |(key, _)| key),
    }
}

/// Envoy's families (their `# HELP` / `# TYPE` lines) that are missing from `scrape`, at most 5.
fn missing_families<'a>(direct: &'a str, scrape: &str) -> Vec<&'a str> {
    let ours = descriptors(scrape);
    descriptors(direct)
        .into_iter()
        .filter(|d| !ours.contains(d))
        .take(5)
        .collect()
}

/// Envoy's own answer, then a scrape through the filter: a 200 that promtool parses, with every
/// family Envoy's own answer had (stats the scrape itself creates come after `direct`).
fn scrape_beside_admin(bench: &meshmetrics_e2e::perf::Bench) -> (String, String) {
    let direct = get(&bench.admin, &[("accept", "text/plain")]);
    let scrape = get(&bench.metrics, &[("accept", "text/plain")]);
    assert_eq!(scrape.status, 200);
    // Parses (lint findings, such as Envoy's counters without `_total`, are not errors).
    promtool_check(&scrape.body);
    let missing = missing_families(&direct.body, &scrape.body);
    assert!(missing.is_empty(), "Envoy's families missing: {missing:?}");
    (direct.body, scrape.body)
}

#[test]
fn a_large_envoy_answer_streams_through_and_the_vm_never_holds_it() {
    // 1,000 clusters: Envoy renders ~17 MB.
    let bench = start(1000, &[], true);
    let direct = get(&bench.admin, &[("accept", "text/plain")]);
    let scrape = get(&bench.metrics, &[("accept", "text/plain")]);
    assert_eq!(scrape.status, 200);
    assert!(direct.body.len() > 10_000_000, "{}", direct.body.len());
    // Every family of Envoy's own answer is in the scrape, with its header.
    let missing = missing_families(&direct.body, &scrape.body);
    assert!(
        missing.is_empty(),
        "families missing from the scrape: {missing:?}"
    );
    assert_eq!(
        self_metric(&scrape.body, "meshmetrics_source_up", "envoy"),
        Some(1.0)
    );
    // Parses (lint findings, such as Envoy's counters without `_total`, are not errors).
    promtool_check(&scrape.body);
    // The VM held pieces of Envoy's answer (a few MB: as Envoy hands them over), never the
    // answer: dispatched, its memory was larger than the output.
    let memory = wasm_memory(&scrape.body).expect("the VM's memory is reported");
    assert!(
        memory < scrape.body.len() as f64 / 2.0,
        "wasm memory {memory} bytes for a {}-byte scrape",
        scrape.body.len()
    );
    // The route to the admin is the filter's alone.
    let outside = get(
        &bench.metrics.replace("/metrics", "/stats/prometheus"),
        &[("x-meshmetrics-envoy", "1")],
    );
    assert_eq!(outside.status, 404);
}

#[test]
fn an_app_slower_than_envoys_whole_answer_still_lands_in_the_scrape() {
    // Envoy's answer has passed long before the app answers: it waits, paused, in Envoy's
    // buffer (not in the VM) and is merged where it lies when the app is in.
    let slow = AppServer::start(
        ([127, 0, 0, 1], 0).into(),
        Arc::new(|_: &meshmetrics_demo_app::Seen| {
            std::thread::sleep(Duration::from_millis(1500));
            // Larger than Envoy's default 1 MiB stream buffer.
            let body: String = (0..40_000)
                .map(|i| format!("slow_app_items{{i=\"{i}\"}} {i}\n"))
                .collect();
            Reply::text(body)
        }),
    )
    .expect("app starts");
    // The VM's memory after one such scrape, with Envoy's answer small (~100 KB) and large
    // (300 clusters: ~5 MB): the same, as Envoy's answer never sits whole in the VM.
    let mut memory = Vec::new();
    for clusters in [0, 300] {
        let bench = start(clusters, &[slow.addr], true);
        let (direct, body) = scrape_beside_admin(&bench);
        assert!(body.contains("slow_app_items{"), "the app's samples");
        assert_eq!(
            self_metric(&body, "meshmetrics_source_up", "app-0"),
            Some(1.0)
        );
        let vm = wasm_memory(&body).expect("the VM's memory is reported");
        memory.push((direct.len(), vm));
    }
    let [(small, small_vm), (large, large_vm)] = memory[..] else {
        unreachable!("two runs")
    };
    assert!(large > small + 4_000_000, "{small} / {large} bytes");
    assert!(
        large_vm < small_vm + 1_000_000.0,
        "wasm memory {small_vm} bytes when Envoy's {small}-byte answer waited, {large_vm} for {large} bytes"
    );
}

#[test]
fn apps_that_answer_while_envoys_answer_streams_are_merged_wherever_they_land() {
    // 1,000 clusters: Envoy's ~17 MB arrive over some tens of ms. The app answers after a
    // different delay each scrape, so its answer lands before, during and after Envoy's body:
    // what waited in Envoy and what comes after are merged alike.
    let scrapes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let app = AppServer::start(
        ([127, 0, 0, 1], 0).into(),
        Arc::new({
            let scrapes = scrapes.clone();
            move |_: &meshmetrics_demo_app::Seen| {
                let n = scrapes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(n * 40));
                Reply::text("# TYPE envoy_server_live gauge\nenvoy_server_live{from_app=\"yes\"} 1\n# TYPE app_items gauge\napp_items 3\n")
            }
        }),
    )
    .expect("app starts");
    let bench = start(1000, &[app.addr], true);
    for _ in 0..8 {
        let (_, body) = scrape_beside_admin(&bench);
        assert_eq!(
            body.matches("# TYPE envoy_server_live gauge\n").count(),
            1,
            "the shared family once"
        );
        let live: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("envoy_server_live"))
            .collect();
        assert!(
            live.len() == 2 && live.iter().any(|l| l.contains("from_app=\"yes\"")),
            "Envoy's sample and the app's: {live:?}\n{}",
            body.lines()
                .filter(|l| l.starts_with("meshmetrics_source"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert!(body.contains("\napp_items{"), "the app's own family");
    }
}

#[test]
fn a_family_an_app_shares_with_envoy_is_written_once_with_both_samples() {
    // `envoy_server_live` is the app's too: from there on Envoy's answer is held and merged, and
    // the family is written once, both samples in it; the rest of Envoy's families stream.
    let app = AppServer::start(
        ([127, 0, 0, 1], 0).into(),
        Arc::new(|_: &meshmetrics_demo_app::Seen| {
            Reply::text(
                "# TYPE envoy_server_live gauge\nenvoy_server_live{from_app=\"yes\"} 1\n\
                 # TYPE app_items gauge\napp_items 3\n",
            )
        }),
    )
    .expect("app starts");
    let bench = start(300, &[app.addr], true);
    let (_, body) = scrape_beside_admin(&bench);
    let headers: Vec<usize> = body
        .match_indices("# TYPE envoy_server_live gauge\n")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(headers.len(), 1, "one header for the shared family");
    let family = &body[headers[0]..];
    let family = &family[..family[1..].find("\n# ").map_or(family.len(), |e| e + 2)];
    assert!(
        family.contains("from_app=\"yes\"") && family.lines().count() >= 3,
        "Envoy's sample and the app's in one family:\n{family}"
    );
    assert!(body.contains("\napp_items{"), "the app's own family");
    assert_eq!(
        self_metric(&body, "meshmetrics_source_up", "envoy"),
        Some(1.0)
    );
}

#[test]
fn an_envoy_answer_past_the_cap_is_cut_at_a_line_and_reported() {
    // 300 clusters: Envoy renders ~5 MB, over a 1 MiB cap. Its families pass untouched until
    // the piece that crosses the cap; the line begun is ended, the rest dropped, and the apps
    // still follow.
    let app = AppServer::start(
        ([127, 0, 0, 1], 0).into(),
        Arc::new(|_: &meshmetrics_demo_app::Seen| {
            Reply::text("# TYPE app_items gauge\napp_items 3\n")
        }),
    )
    .expect("app starts");
    let bench = start_with(300, &[app.addr], true, |o| o.max_body_bytes = 1 << 20);
    let scrape = get(&bench.metrics, &[("accept", "text/plain")]);
    // After the scrape: the stats the scrape itself created are in it.
    let direct = get(&bench.admin, &[("accept", "text/plain")]);
    assert_eq!(scrape.status, 200);
    assert!(direct.body.len() > 2 << 20, "{}", direct.body.len());
    promtool_check(&scrape.body);
    let envoy_part = &scrape.body[..scrape.body.find("# TYPE app_items").expect("the app")];
    // What passed is Envoy's, whole lines (its values may have moved since).
    let theirs: std::collections::HashSet<&str> = direct.body.lines().map(series).collect();
    let foreign: Vec<&str> = envoy_part
        .lines()
        .map(series)
        .filter(|l| !theirs.contains(l))
        .take(3)
        .collect();
    assert!(foreign.is_empty(), "not Envoy's lines: {foreign:?}");
    assert!(
        envoy_part.len() <= (1 << 20) + 4096 && envoy_part.contains("# TYPE envoy_"),
        "{} bytes of Envoy's answer",
        envoy_part.len()
    );
    assert!(scrape.body.contains("\napp_items{"), "the app's family");
    assert_eq!(
        self_metric(&scrape.body, "meshmetrics_source_up", "envoy"),
        Some(0.0)
    );
    assert!(
        scrape
            .body
            .contains("meshmetrics_source_error{source=\"envoy\",reason=\"body_too_large\"} 1\n"),
        "the cut is reported"
    );
}
