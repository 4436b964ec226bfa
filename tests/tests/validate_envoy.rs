//! What `validate` accepts, Envoy and the filter accept: a property over generated
//! configurations (good and bad names, ports, paths, addresses, aggregates, regexes, TLS modes),
//! each judged by the host's reader, then — when accepted — by the real `envoy --mode validate`
//! on its bootstrap and by the filter's own configuration reader. A fixed seed: the same cases on
//! every run, reported by number.

use meshmetrics::bootstrap::{Options, bootstrap, filter_config};
use meshmetrics::{Resources, effective, resources::yaml::parse};
use meshmetrics_e2e::*;
use meshmetrics_filter::config::FilterConfig;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
    /// One of `good` seven times in eight, else one of `bad`.
    fn mostly<'a>(&mut self, good: &[&'a str], bad: &[&'a str]) -> &'a str {
        if self.next().is_multiple_of(8) {
            self.pick(bad)
        } else {
            self.pick(good)
        }
    }
}

const NAMES: (&[&str], &[&str]) = (
    &["web-1", "a.b_c", "UPPER"],
    &["../../escaped", "x/y", "bad name", "é"],
);
const PORTS: (&[&str], &[&str]) = (&["5670", "1", "65535", "8080", "9100"], &["0", "70000"]);
const PATHS: (&[&str], &[&str]) = (
    &["/metrics", "/a/b", "/stats/prometheus"],
    &["metrics", "\"/a b\"", "\"/m?x=1\"", "\"/m\\nx\""],
);
const ADDRESSES: (&[&str], &[&str]) = (
    &["10.0.0.1", "127.0.0.1", "::1"],
    &["host.local", "\"http://x/y\"", "10.0.0.300"],
);
const APP_ADDRESSES: (&[&str], &[&str]) = (
    &["10.0.0.9", "127.0.0.1", "app.default.svc"],
    &["\"http://x/y\"", "\"a b\""],
);
const REGEXES: (&[&str], &[&str]) = (&["'^cluster\\.'", "'.*'", "''"], &["'(unclosed'"]);
const AGG_NAMES: (&[&str], &[&str]) = (&["app", "my-app", "b"], &["envoy", "a/b"]);

fn generate(rng: &mut Rng) -> String {
    let mut aggregate = String::new();
    for i in 0..(rng.next() % 4) {
        // Distinct names but now and then (a duplicate is an error case too).
        let suffix = if rng.next().is_multiple_of(8) {
            String::new()
        } else {
            i.to_string()
        };
        let mut entry = format!(
            "{{name: {}{suffix}, port: {}",
            rng.mostly(AGG_NAMES.0, AGG_NAMES.1),
            rng.mostly(PORTS.0, PORTS.1)
        );
        if rng.next().is_multiple_of(2) {
            entry.push_str(&format!(", path: {}", rng.mostly(PATHS.0, PATHS.1)));
        }
        if rng.next().is_multiple_of(3) {
            entry.push_str(&format!(
                ", address: {}",
                rng.mostly(APP_ADDRESSES.0, APP_ADDRESSES.1)
            ));
        }
        aggregate.push_str(&format!("      - {entry}}}\n"));
    }
    let aggregate = if aggregate.is_empty() {
        String::new()
    } else {
        format!("      aggregate:\n{aggregate}")
    };
    let address = rng.mostly(ADDRESSES.0, ADDRESSES.1);
    format!(
        "type: Mesh\nname: default\nmetrics:\n  enabledBackend: p\n  backends:\n  - name: p\n    type: prometheus\n    conf:\n      port: {}\n      path: {}\n      skipMTLS: true\n      envoy: {{filterRegex: {}, usedOnly: {}}}\n{aggregate}---\ntype: Dataplane\nmesh: default\nname: {}\nnetworking:\n  address: {address}\n  inbound: [{{port: {}, tags: {{kuma.io/service: web}}}}]\n",
        rng.mostly(PORTS.0, PORTS.1),
        rng.mostly(PATHS.0, PATHS.1),
        rng.mostly(REGEXES.0, REGEXES.1),
        rng.next().is_multiple_of(2),
        rng.mostly(NAMES.0, NAMES.1),
        rng.mostly(PORTS.0, PORTS.1),
    )
}

#[test]
fn what_validate_accepts_envoy_and_the_filter_accept() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..200 {
        let yaml = generate(&mut rng);
        let Ok(docs) = parse(&yaml, std::path::Path::new("generated.yaml")) else {
            refused += 1;
            continue;
        };
        let res = Resources::read(&docs);
        let Some(dp) = res.dataplanes.first() else {
            refused += 1;
            continue;
        };
        let (e, _) = match effective(&res, &dp.id()) {
            Ok(ok) => ok,
            Err(why) => {
                if std::env::var_os("SHOW_REFUSALS").is_some() {
                    println!("case {case} refused: {why}");
                }
                refused += 1;
                continue;
            }
        };
        accepted += 1;
        let dir = temp_dir("validated");
        let mut opts = Options::new(wasm());
        opts.certs_dir = dir.clone();
        let config = filter_config(&e, &opts);
        FilterConfig::from_json(config.to_json().as_bytes())
            .unwrap_or_else(|err| panic!("case {case}: the filter refuses {err}\n{yaml}"));
        let b = bootstrap(&e, &opts)
            .unwrap_or_else(|err| panic!("case {case}: bootstrap refuses {err:#}\n{yaml}"));
        let (ok, out) = envoy_validate(&b.config);
        assert!(
            ok,
            "case {case}: Envoy refuses what validate accepted:\n{out}\n{yaml}"
        );
    }
    println!("{accepted} accepted (each checked by Envoy), {refused} refused by validate");
    assert!(
        accepted >= 30 && refused >= 30,
        "{accepted} accepted, {refused} refused"
    );
}
