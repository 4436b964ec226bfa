//! The Traffic Metrics documentation's examples (`envoy/examples/*`): each one's bootstrap is
//! accepted by `envoy --mode validate`, and a real Envoy running it serves Envoy's stats plus
//! every enabled aggregate app.

use meshmetrics::bootstrap::{Options, bootstrap};
use meshmetrics_e2e::*;

#[test]
fn every_documented_example_validates_and_serves() {
    let dir = workspace_root().join("envoy/examples");
    let mut examples: Vec<_> = std::fs::read_dir(&dir)
        .expect("envoy/examples")
        .map(|e| e.expect("entry").path())
        .collect();
    examples.sort();
    assert!(examples.len() >= 5, "{examples:?}");
    for example in examples {
        let res =
            meshmetrics::read_resources(std::slice::from_ref(&example)).expect("example reads");
        assert_eq!(
            res.dataplanes.len(),
            1,
            "{}: one proxy per example",
            example.display()
        );
        let name = res.dataplanes[0].name.clone();
        let e = effective_of(&res, &name);

        let (ok, out) = envoy_validate(
            &bootstrap(&e, &Options::new(wasm()))
                .expect("bootstrap")
                .config,
        );
        assert!(
            ok,
            "{}: envoy --mode validate failed:\n{out}",
            example.display()
        );

        // The example's apps, on the ports the example names.
        let apps: Vec<_> = e
            .apps
            .iter()
            .map(|a| {
                app_on(
                    a.port,
                    Reply::text(format!(
                        "# TYPE {0}_up gauge\n{0}_up 1\n",
                        a.name.replace('-', "_")
                    )),
                )
            })
            .collect();
        let envoy = Proxy::start(Backend::Envoy, e.clone(), |_| {});
        let s = envoy.scrape(&[]);
        assert_eq!(s.status, 200, "{}", example.display());
        assert_eq!(
            self_metric(&s.body, "meshmetrics_source_up", "envoy"),
            Some(1.0),
            "{}:\n{}",
            example.display(),
            s.body
        );
        for a in &e.apps {
            let family = format!("{}_up{{", a.name.replace('-', "_"));
            assert!(
                s.body.contains(&family),
                "{}: {} missing:\n{}",
                example.display(),
                a.name,
                s.body
            );
        }
        for (app, conf) in apps.iter().zip(&e.apps) {
            assert_eq!(
                app.requests().last().map(|r| r.path.clone()),
                Some(conf.path.clone())
            );
        }
    }
}
