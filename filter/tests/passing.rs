//! Envoy's families no app can touch pass on untouched: the filter leaves Envoy's pieces as they
//! are, and the engine reads only from the first family an app shares. What leaves is the
//! buffered scrape's bytes.

mod support;

use std::sync::Arc;

use meshmetrics_filter::config::{FamilyRules, MatchKind, Matcher, Profile};
use meshmetrics_filter::exposition::{FamilySelection, Format, LabelSet, Limits, Merger, Passed};
use proptest::prelude::*;
use support::assert_well_formed;

const ENVOY: &str = "\
# TYPE envoy_a counter
envoy_a{envoy_cluster_name=\"x\"} 1
envoy_a{envoy_cluster_name=\"y\"} 2
# TYPE envoy_b gauge
envoy_b 3
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 4
# TYPE envoy_c gauge
envoy_c 5
";

/// What the filter does with Envoy's answer in `pieces` after `apps` were read: each piece
/// passes untouched or is replaced; the engine takes over at the first family it must merge.
/// Returns the bytes sent, and for each piece whether it left untouched.
fn pass(lead: &[&[u8]], apps: &[&[u8]], limits: Limits) -> (Vec<u8>, Vec<bool>) {
    pass_selected(lead, apps, limits, None)
}

/// [`pass`], with the scrape's rules on Envoy's families.
fn pass_selected(
    lead: &[&[u8]],
    apps: &[&[u8]],
    limits: Limits,
    selection: Option<Arc<FamilySelection>>,
) -> (Vec<u8>, Vec<bool>) {
    let none = LabelSet::default();
    let app_labels = LabelSet::new([("service", "web")]).unwrap();
    let mut m = Merger::new();
    m.set_limits(limits);
    m.trust_lead(true);
    m.begin(Format::Text, None);
    m.select_lead(selection);
    for (i, app) in apps.iter().enumerate() {
        m.add_source_at(i as u16 + 1, app, Format::Text, &app_labels);
    }
    assert!(m.may_pass_lead(&none));
    let mut passing = Some(m.pass_lead());
    let mut lead_stream = None;
    let mut sent = Vec::new();
    let mut untouched = Vec::new();
    let take =
        |m: &mut Merger, piece: &[u8], p: Passed, passing: &mut Option<_>, sent: &mut Vec<u8>| {
            sent.extend_from_slice(&p.front);
            p.kept(piece).for_each(|run| sent.extend_from_slice(run));
            p.engine_from.map(|from| {
                let mut s = m.take_over(passing.take().unwrap(), Format::Text, &none);
                m.feed_lead(&mut s, &piece[from..]);
                s
            })
        };
    for piece in lead {
        if let Some(s) = lead_stream.as_mut() {
            m.feed_lead(s, piece);
            untouched.push(false);
        } else {
            let p = passing.as_mut().unwrap().piece(&mut m, piece);
            untouched.push(p.unchanged(piece.len()));
            lead_stream = take(&mut m, piece, p, &mut passing, &mut sent);
        }
        sent.extend_from_slice(m.ready());
        m.consume_ready();
    }
    if let Some(p) = passing.as_mut().map(|p| p.end(&mut m)) {
        lead_stream = take(&mut m, b"", p, &mut passing, &mut sent);
    }
    match (lead_stream, passing) {
        (Some(s), _) => {
            m.end_lead(s);
        }
        (None, Some(p)) => {
            m.end_passing(p);
        }
        (None, None) => unreachable!("the lead is passing or streamed"),
    }
    m.finish_into(&mut |piece| sent.extend_from_slice(piece));
    (sent, untouched)
}

/// The buffered scrape of the same sources.
fn buffered(lead: &[u8], apps: &[&[u8]], limits: Limits) -> Vec<u8> {
    buffered_selected(lead, apps, limits, None)
}

fn buffered_selected(
    lead: &[u8],
    apps: &[&[u8]],
    limits: Limits,
    selection: Option<Arc<FamilySelection>>,
) -> Vec<u8> {
    let app_labels = LabelSet::new([("service", "web")]).unwrap();
    let mut m = Merger::new();
    m.set_limits(limits);
    m.trust_lead(true);
    m.begin(Format::Text, None);
    m.select_lead(selection);
    m.add_source_at(0, lead, Format::Text, &LabelSet::default());
    for (i, app) in apps.iter().enumerate() {
        m.add_source_at(i as u16 + 1, app, Format::Text, &app_labels);
    }
    m.finish().to_vec()
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("UTF-8")
}

#[test]
fn families_no_app_takes_leave_untouched_and_the_apps_follow() {
    let app: &[u8] = b"# TYPE app_rq_total counter\napp_rq_total 7\n";
    let (a, b) = ENVOY.as_bytes().split_at(60);
    let (sent, untouched) = pass(&[a, b], &[app], Limits::UNLIMITED);
    assert_eq!(untouched, [true, true], "no piece needed a copy");
    assert_eq!(
        text(&sent),
        text(&buffered(ENVOY.as_bytes(), &[app], Limits::UNLIMITED))
    );
    assert!(text(&sent).starts_with(ENVOY));
    assert!(text(&sent).contains("app_rq_total{service=\"web\"} 7\n"));
}

#[test]
fn a_family_an_app_shares_hands_the_rest_to_the_engine() {
    let app: &[u8] = b"# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 9\n";
    let (sent, untouched) = pass(&[ENVOY.as_bytes()], &[app], Limits::UNLIMITED);
    assert_eq!(untouched, [false]);
    let sent = text(&sent);
    assert_eq!(
        sent,
        text(&buffered(ENVOY.as_bytes(), &[app], Limits::UNLIMITED))
    );
    assert_eq!(sent.matches("# TYPE process_cpu_seconds_total").count(), 1);
    assert!(
        sent.contains(
            "process_cpu_seconds_total 4\nprocess_cpu_seconds_total{service=\"web\"} 9\n"
        )
    );
}

#[test]
fn a_header_cut_between_pieces_is_judged_whole() {
    let app: &[u8] = b"# TYPE envoy_b gauge\nenvoy_b{service=\"web\"} 1\n";
    let body = ENVOY.as_bytes();
    let cut = ENVOY.find("# TYPE envoy_b").unwrap() + 4;
    for app in [app, b"app 1\n"] {
        let (sent, _) = pass(&[&body[..cut], &body[cut..]], &[app], Limits::UNLIMITED);
        assert_eq!(
            text(&sent),
            text(&buffered(body, &[app], Limits::UNLIMITED))
        );
    }
}

#[test]
fn the_filters_own_families_and_other_comments_go_to_the_engine() {
    for lead in [
        "# TYPE envoy_a gauge\nenvoy_a 1\n# TYPE meshmetrics_x gauge\nmeshmetrics_x 1\n",
        "# TYPE envoy_a gauge\nenvoy_a 1\n# HELP envoy_b b\n# TYPE envoy_b gauge\nenvoy_b 2\n",
    ] {
        let (sent, untouched) = pass(&[lead.as_bytes()], &[], Limits::UNLIMITED);
        assert_eq!(untouched, [false]);
        assert_eq!(
            text(&sent),
            text(&buffered(lead.as_bytes(), &[], Limits::UNLIMITED))
        );
    }
}

#[test]
fn an_unterminated_last_line_is_ended_before_the_apps() {
    let lead = b"# TYPE envoy_a gauge\nenvoy_a 1";
    let app: &[u8] = b"app 1\n";
    let (sent, _) = pass(&[lead], &[app], Limits::UNLIMITED);
    assert_eq!(
        text(&sent),
        text(&buffered(lead, &[app], Limits::UNLIMITED))
    );
    let lead = b"# TYPE envoy_a gauge\nenvoy_a 1\n# TYPE envoy_b gauge";
    let (sent, _) = pass(&[lead], &[app], Limits::UNLIMITED);
    assert_well_formed(text(&sent), Format::Text);
}

#[test]
fn past_its_share_the_lead_stops_at_a_line_boundary() {
    let limits = Limits {
        scrape_bytes: 1 << 20,
        source_bytes: 100,
    };
    let body = ENVOY.as_bytes();
    let (sent, _) = pass(&[&body[..50], &body[50..]], &[], limits);
    let sent = text(&sent);
    assert_well_formed(sent, Format::Text);
    assert!(sent.starts_with(&ENVOY[..50]), "{sent}");
    assert!(!sent.contains("envoy_b"), "{sent}");
}

#[test]
fn a_body_cut_past_the_cap_ends_the_line_already_sent() {
    // The filter drops Envoy's body from the piece that takes it past `max_body_bytes`: what
    // passed before ends at its next newline, the rest (a held header included) is dropped.
    let app: &[u8] = b"# TYPE app_rq_total counter\napp_rq_total 7\n";
    let body = ENVOY.as_bytes();
    for at in 1..body.len() {
        let mut m = Merger::new();
        m.trust_lead(true);
        m.begin(Format::Text, None);
        m.add_source_at(
            1,
            app,
            Format::Text,
            &LabelSet::new([("service", "web")]).unwrap(),
        );
        let mut passing = m.pass_lead();
        let first = passing.piece(&mut m, &body[..at]);
        assert!(first.engine_from.is_none(), "no family is shared");
        let mut sent = first.front.clone();
        sent.extend_from_slice(&body[..first.keep]);
        let keep = passing.cut(&body[at..]);
        sent.extend_from_slice(&body[at..at + keep]);
        assert_eq!(
            passing.cut(&body[at + keep..]),
            0,
            "nothing passes after the cut"
        );
        sent.extend_from_slice(&passing.end(&mut m).front);
        m.end_passing(passing);
        m.finish_into(&mut |piece| sent.extend_from_slice(piece));
        let sent = text(&sent);
        assert_well_formed(sent, Format::Text);
        let envoy_part = &sent[..sent.find("# TYPE app_rq_total").unwrap_or(sent.len())];
        // A sample line begun is ended; a header not yet sent is dropped whole.
        let line = ENVOY[..at].rfind('\n').map_or(0, |n| n + 1);
        let end = if at == line || ENVOY[line..].starts_with('#') {
            line
        } else {
            at + ENVOY[at..].find('\n').map_or(ENVOY.len() - at, |n| n + 1)
        };
        assert_eq!(envoy_part, &ENVOY[..end], "cut at {at}");
        assert!(sent.contains("app_rq_total{service=\"web\"} 7\n"), "{sent}");
    }
}

/// Families as Envoy's renderer writes them: `# TYPE` first, each name once, no two families
/// whose sample names clash, canonical sample lines.
fn envoy_like() -> impl Strategy<Value = Vec<u8>> {
    let family = (
        prop::sample::select(vec![
            "rq",
            "rq_total",
            "lat",
            "lat_count",
            "g",
            "b_info",
            "envoy_x",
            "envoy_y_total",
            "process_cpu_seconds_total",
            "meshmetrics_z",
        ]),
        prop::sample::select(vec!["counter", "gauge", "histogram", "summary"]),
        prop::collection::vec(
            (
                prop::option::of(prop::sample::select(vec!["a", "b", "envoy_cluster_name"])),
                prop::sample::select(vec!["v", "w", "x\\\"y", "0.5"]),
                prop::sample::select(vec!["1", "0", "2.5", "NaN", "+Inf"]),
            ),
            0..4,
        ),
    );
    (
        prop::collection::vec(family, 0..8),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(families, help, final_newline)| {
            let mut taken: Vec<String> = Vec::new();
            let mut body = String::new();
            for (name, kind, samples) in families {
                let names: Vec<String> = match kind {
                    "histogram" => ["", "_bucket", "_count", "_sum", "_created"]
                        .iter()
                        .map(|s| format!("{name}{s}"))
                        .collect(),
                    "summary" => ["", "_count", "_sum", "_created"]
                        .iter()
                        .map(|s| format!("{name}{s}"))
                        .collect(),
                    "counter" => match name.strip_suffix("_total") {
                        Some(b) => vec![b.to_owned(), name.to_owned(), format!("{b}_created")],
                        None => vec![name.to_owned()],
                    },
                    _ => vec![name.to_owned()],
                };
                if names.iter().any(|n| taken.contains(n)) {
                    continue;
                }
                taken.extend(names);
                if help && name == "g" {
                    body.push_str("# HELP g a gauge\n");
                }
                body.push_str(&format!("# TYPE {name} {kind}\n"));
                for (label, value, number) in samples {
                    let sample = match kind {
                        "histogram" => format!("{name}_bucket"),
                        "summary" => format!("{name}_sum"),
                        _ => name.to_owned(),
                    };
                    let mut labels: Vec<String> = label
                        .map(|l| format!("{l}=\"{value}\""))
                        .into_iter()
                        .collect();
                    if kind == "histogram" {
                        labels.push("le=\"+Inf\"".to_owned());
                    }
                    match labels.is_empty() {
                        true => body.push_str(&format!("{sample} {number}\n")),
                        false => {
                            body.push_str(&format!("{sample}{{{}}} {number}\n", labels.join(",")))
                        }
                    }
                }
            }
            if !final_newline && body.ends_with('\n') {
                body.pop();
            }
            body.into_bytes()
        })
}

fn app() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        Just("# TYPE rq_total counter".to_owned()),
        Just("rq_total 1".to_owned()),
        Just("# TYPE lat histogram".to_owned()),
        Just("lat_bucket{le=\"+Inf\"} 1".to_owned()),
        Just("lat_count 1".to_owned()),
        Just("g 2".to_owned()),
        Just("# TYPE g gauge".to_owned()),
        Just("process_cpu_seconds_total 3".to_owned()),
        Just("app_only 4".to_owned()),
        Just("envoy_x_sum 5".to_owned()),
    ];
    prop::collection::vec(line, 0..8).prop_map(|lines| {
        let mut body = lines.join("\n");
        body.push('\n');
        body.into_bytes()
    })
}

/// Rules on the families `envoy_like` writes: each drops some, keeps some.
fn selection(i: usize) -> Arc<FamilySelection> {
    let m = |kind, pattern: &str| Matcher {
        kind,
        pattern: pattern.to_owned(),
    };
    let rules = match i % 4 {
        0 => FamilyRules {
            profile: Profile::All,
            exclude: vec![m(MatchKind::Contains, "rq")],
            include: vec![],
        },
        1 => FamilyRules {
            profile: Profile::None,
            exclude: vec![],
            include: vec![m(MatchKind::Prefix, "envoy_")],
        },
        2 => FamilyRules {
            profile: Profile::Basic,
            exclude: vec![],
            include: vec![m(MatchKind::Exact, "g")],
        },
        _ => FamilyRules {
            profile: Profile::All,
            exclude: vec![m(MatchKind::Regex, "^l"), m(MatchKind::Contains, "_x")],
            include: vec![m(MatchKind::Contains, "count")],
        },
    };
    Arc::new(FamilySelection::new(&rules).unwrap())
}

#[test]
fn families_the_rules_drop_are_left_out_as_they_pass() {
    let rules = FamilyRules {
        profile: Profile::All,
        exclude: vec![
            Matcher {
                kind: MatchKind::Exact,
                pattern: "envoy_b".into(),
            },
            Matcher {
                kind: MatchKind::Prefix,
                pattern: "process_".into(),
            },
        ],
        include: vec![],
    };
    let sel = Arc::new(FamilySelection::new(&rules).unwrap());
    let want = "# TYPE envoy_a counter\nenvoy_a{envoy_cluster_name=\"x\"} 1\nenvoy_a{envoy_cluster_name=\"y\"} 2\n# TYPE envoy_c gauge\nenvoy_c 5\n";
    let body = ENVOY.as_bytes();
    // Wherever Envoy's answer is cut: inside a dropped family, inside its header, on a line.
    for at in 0..=body.len() {
        let (sent, untouched) = pass_selected(
            &[&body[..at], &body[at..]],
            &[],
            Limits::UNLIMITED,
            Some(sel.clone()),
        );
        assert_eq!(text(&sent), want, "cut at {at}");
        assert!(untouched.contains(&false), "something was dropped");
    }
    assert_eq!(
        text(&buffered_selected(body, &[], Limits::UNLIMITED, Some(sel))),
        want
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// With the scrape's rules on Envoy's families, passing drops the families they drop, as
    /// they pass, and sends the buffered scrape's bytes (which the engine filters itself).
    #[test]
    fn passing_with_rules_sends_what_the_buffered_scrape_writes(
        lead in envoy_like(),
        apps in prop::collection::vec(app(), 0..3),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        rules in 0usize..4,
        limited in prop::option::of((0usize..400, 0usize..800)),
    ) {
        let limits = match limited {
            None => Limits::UNLIMITED,
            Some((source_bytes, scrape_bytes)) => Limits { source_bytes, scrape_bytes },
        };
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(lead.len() + 1)).collect();
        at.push(0);
        at.push(lead.len());
        at.sort_unstable();
        let pieces: Vec<&[u8]> = at.windows(2).map(|w| &lead[w[0]..w[1]]).collect();
        let apps: Vec<&[u8]> = apps.iter().map(Vec::as_slice).collect();
        let (sent, _) = pass_selected(&pieces, &apps, limits, Some(selection(rules)));
        let sent = text(&sent);
        assert_well_formed(sent, Format::Text);
        if limited.is_none() {
            let expected = buffered_selected(&lead, &apps, limits, Some(selection(rules)));
            prop_assert_eq!(sent, text(&expected));
        }
    }

    /// Whatever the apps share with Envoy, and wherever Envoy's answer is cut, passing its free
    /// families untouched sends the buffered scrape's bytes; within a budget, a valid
    /// exposition.
    #[test]
    fn passing_sends_what_the_buffered_scrape_writes(
        lead in envoy_like(),
        apps in prop::collection::vec(app(), 0..3),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        limited in prop::option::of((0usize..400, 0usize..800)),
    ) {
        let limits = match limited {
            None => Limits::UNLIMITED,
            Some((source_bytes, scrape_bytes)) => Limits { source_bytes, scrape_bytes },
        };
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(lead.len() + 1)).collect();
        at.push(0);
        at.push(lead.len());
        at.sort_unstable();
        let pieces: Vec<&[u8]> = at.windows(2).map(|w| &lead[w[0]..w[1]]).collect();
        let apps: Vec<&[u8]> = apps.iter().map(Vec::as_slice).collect();
        let (sent, _) = pass(&pieces, &apps, limits);
        let sent = text(&sent);
        assert_well_formed(sent, Format::Text);
        if limited.is_none() {
            let expected = buffered(&lead, &apps, limits);
            prop_assert_eq!(sent, text(&expected));
        }
    }
}
