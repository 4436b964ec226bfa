//! Securing the metrics endpoint, against a real Envoy with real TLS clients: `curl` (OpenSSL)
//! as a user types it, and rustls (through ureq). Certificates come from `meshmetrics::tls`, the
//! code behind `meshmetrics ca init` / `ca issue`.
//!
//! Envoy only: `meshmetrics serve` (wasmtime) answers plaintext by design, so these scenarios
//! have no second back-end.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use meshmetrics::bootstrap::{self, Options};
use meshmetrics::effective;
use meshmetrics::tls::{self, Identity};
use meshmetrics_e2e::{Backend, Proxy, effective_of, resources, temp_dir};

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A mesh with builtin mTLS whose metrics use `mode`, a dataplane `web-1`, and `extra` documents.
fn mesh(mode: &str, mtls: bool, extra: &str) -> String {
    let mtls = if mtls {
        "mtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n"
    } else {
        ""
    };
    format!(
        "type: Mesh\nname: default\n{mtls}metrics:\n  enabledBackend: prometheus-1\n  backends:\n  - name: prometheus-1\n    type: prometheus\n    conf:\n      tls: {{mode: {mode}}}\n---\ntype: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  inbound: [{{port: 8080, tags: {{kuma.io/service: web}}}}]\n{extra}"
    )
}

/// `curl` as a user runs it: (exit code, HTTP status, body).
fn curl(args: &[&str], url: &str) -> (i32, u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        out.status.code().unwrap_or(-1),
        code.trim().parse().unwrap_or(0),
        body.to_owned(),
    )
}

/// A client certificate for `spiffe://<mesh>/<service>` signed by the CA in `ca`.
fn client(ca: &Path, mesh: &str, service: &str) -> (PathBuf, PathBuf) {
    tls::issue(
        ca,
        &Identity::spiffe(mesh, service),
        &ca.join(format!("client-{mesh}-{service}")),
        tls::ISSUE_VALIDITY,
    )
    .expect("issue client certificate")
}

fn https(p: &Proxy) -> String {
    format!("https://localhost:{}{}", p.metrics.port(), p.path)
}

fn http(p: &Proxy) -> String {
    format!("http://127.0.0.1:{}{}", p.metrics.port(), p.path)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A scrape over rustls, with an optional client certificate: the status, or the error.
fn rustls_get(url: &str, ca: &Path, client: Option<(&Path, &Path)>) -> Result<u16, String> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let read = |p: &Path| std::fs::read(p).expect("read PEM");
    let root = Certificate::from_pem(&read(ca)).expect("CA PEM");
    let mut config = TlsConfig::builder().root_certs(RootCerts::new_with_certs(&[root]));
    if let Some((cert, key)) = client {
        let cert = Certificate::from_pem(&read(cert)).expect("cert PEM");
        let key = PrivateKey::from_pem(&read(key)).expect("key PEM");
        config = config.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(config.build())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    agent
        .get(url)
        .call()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

fn provided_tls_proxy(dir: &Path, cert: &Path, key: &Path) -> Proxy {
    let res = resources(&mesh("providedTLS", false, ""));
    let e = effective_of(&res, "web-1");
    let (cert, key, certs) = (cert.to_owned(), key.to_owned(), dir.join("generated"));
    Proxy::start(Backend::Envoy, e, move |o| {
        o.provided_tls = Some((cert, key));
        o.certs_dir = certs;
    })
}

/// A server certificate for `localhost` / 127.0.0.1 from a fresh CA in `dir`.
fn server_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let id = Identity {
        spiffe: None,
        dns: vec!["localhost".into()],
        ips: vec![LOOPBACK],
    };
    tls::issue(dir, &id, &dir.join(name), tls::ISSUE_VALIDITY).expect("issue server certificate")
}

#[test]
fn provided_tls_serves_https_and_refuses_plain_http() {
    let dir = temp_dir("provided");
    tls::init_ca(&dir, "default").expect("CA");
    let (cert, key) = server_cert(&dir, "server");
    let p = provided_tls_proxy(&dir, &cert, &key);
    let ca = dir.join(tls::CA_CERT);

    let (code, status, body) = curl(&["--cacert", s(&ca)], &https(&p));
    assert_eq!((code, status), (0, 200), "curl over TLS: {body}");
    assert!(body.contains("envoy_server_live"), "Envoy's stats: {body}");
    assert_eq!(rustls_get(&https(&p), &ca, None), Ok(200));

    // Plain HTTP to the TLS port: no HTTP answer at all.
    let (code, status, body) = curl(&[], &http(&p));
    assert!(
        code != 0 && status == 0,
        "plain HTTP answered {status}: {body}"
    );
    // And a client that does not trust the CA refuses the server.
    let (code, _, _) = curl(&[], &https(&p));
    assert_eq!(code, 60, "curl without the CA must fail verification");
}

/// The certificate the server presents, as PEM (from `openssl s_client`).
fn served_certificate(port: u16) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "localhost"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap_or(0);
    let end = text
        .find("-----END CERTIFICATE-----")
        .map_or(0, |i| i + "-----END CERTIFICATE-----".len());
    text.get(begin..end).unwrap_or_default().trim().to_owned()
}

#[test]
fn provided_tls_certificate_rotation_needs_no_restart() {
    let dir = temp_dir("rotation");
    tls::init_ca(&dir, "default").expect("CA");
    let (cert, key) = server_cert(&dir, "server");
    let p = provided_tls_proxy(&dir, &cert, &key);
    let first = std::fs::read_to_string(&cert).expect("read cert");
    assert_eq!(served_certificate(p.metrics.port()), first.trim());

    // Rotate as Kubernetes and cert-manager do: new files renamed over the old ones.
    let (new_cert, new_key) = server_cert(&dir, "next");
    std::fs::rename(&new_key, &key).expect("rename key");
    std::fs::rename(&new_cert, &cert).expect("rename cert");
    let second = std::fs::read_to_string(&cert).expect("read cert");
    assert_ne!(first, second);

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut served = String::new();
    while Instant::now() < deadline {
        served = served_certificate(p.metrics.port());
        if served == second.trim() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        served,
        second.trim(),
        "Envoy still serves the old certificate; log:\n{}",
        p.log()
    );
    let (code, status, _) = curl(&["--cacert", s(&dir.join(tls::CA_CERT))], &https(&p));
    assert_eq!((code, status), (0, 200));
}

/// A mesh CA in `dir`, and Envoy serving `web-1` under activeMTLSBackend with `extra` documents.
fn mtls_proxy(dir: &Path, extra: &str) -> Proxy {
    if !dir.join(tls::CA_CERT).exists() {
        tls::init_ca(dir, "default").expect("CA");
    }
    let res = resources(&mesh("activeMTLSBackend", true, extra));
    let e = effective_of(&res, "web-1");
    let (ca, certs) = (dir.to_owned(), dir.join("generated"));
    Proxy::start(Backend::Envoy, e, move |o| {
        o.mesh_ca = Some(ca);
        o.certs_dir = certs;
    })
}

#[test]
fn mtls_admits_only_identities_of_the_mesh() {
    let dir = temp_dir("mtls");
    let p = mtls_proxy(&dir, "");
    let ca = dir.join(tls::CA_CERT);
    let url = https(&p);
    let (prom_cert, prom_key) = client(&dir, "default", "prometheus-server");

    // No TrafficPermission: any identity of the mesh may scrape.
    let (code, status, body) = curl(
        &[
            "--cacert",
            s(&ca),
            "--cert",
            s(&prom_cert),
            "--key",
            s(&prom_key),
        ],
        &url,
    );
    assert_eq!((code, status), (0, 200), "{body}");
    assert!(body.contains("envoy_server_live"), "{body}");
    assert_eq!(
        rustls_get(&url, &ca, Some((&prom_cert, &prom_key))),
        Ok(200)
    );
    let (grafana_cert, grafana_key) = client(&dir, "default", "grafana");
    assert_eq!(
        rustls_get(&url, &ca, Some((&grafana_cert, &grafana_key))),
        Ok(200)
    );

    // No client certificate: the handshake fails.
    let (code, status, _) = curl(&["--cacert", s(&ca)], &url);
    assert!(code != 0 && status == 0, "no client cert got {status}");
    assert!(rustls_get(&url, &ca, None).is_err());

    // A certificate of another CA, with a SPIFFE name of this very mesh: refused.
    let other = dir.join("other-ca");
    tls::init_ca(&other, "default").expect("other CA");
    let (oc, ok) = client(&other, "default", "prometheus-server");
    let (code, status, _) = curl(
        &["--cacert", s(&ca), "--cert", s(&oc), "--key", s(&ok)],
        &url,
    );
    assert!(code != 0 && status == 0, "another CA got {status}");
    assert!(rustls_get(&url, &ca, Some((&oc, &ok))).is_err());

    // The right CA, but an identity of another mesh: refused.
    let (mc, mk) = client(&dir, "other-mesh", "prometheus-server");
    let (code, status, _) = curl(
        &["--cacert", s(&ca), "--cert", s(&mc), "--key", s(&mk)],
        &url,
    );
    assert!(code != 0 && status == 0, "another mesh got {status}");
    assert!(rustls_get(&url, &ca, Some((&mc, &mk))).is_err());
}

#[test]
fn mtls_plaintext_only_from_the_dataplane_itself() {
    let dir = temp_dir("mtls-self");
    let p = mtls_proxy(&dir, "");
    // From the dataplane's own address (127.0.0.1 here): plaintext is served.
    let (code, status, body) = curl(&[], &http(&p));
    assert_eq!((code, status), (0, 200), "{body}");
    // From any other address (127.0.0.2 is another source on loopback): no answer.
    let (code, status, _) = curl(&["--interface", "127.0.0.2"], &http(&p));
    assert!(
        code != 0 && status == 0,
        "plaintext from elsewhere got {status}"
    );
}

#[test]
fn traffic_permission_decides_who_may_scrape() {
    let permission = "---\napiVersion: kuma.io/v1alpha1\nkind: TrafficPermission\nmesh: default\nmetadata: {name: metrics}\nspec:\n  sources:\n  - match: {kuma.io/service: prometheus-server}\n  destinations:\n  - match: {kuma.io/service: dataplane-metrics}\n";
    let dir = temp_dir("tp");
    let p = mtls_proxy(&dir, permission);
    let ca = dir.join(tls::CA_CERT);
    let url = https(&p);
    let (pc, pk) = client(&dir, "default", "prometheus-server");
    let (gc, gk) = client(&dir, "default", "grafana");
    let (code, status, body) = curl(
        &["--cacert", s(&ca), "--cert", s(&pc), "--key", s(&pk)],
        &url,
    );
    assert_eq!((code, status), (0, 200), "{body}");
    let (code, status, body) = curl(
        &["--cacert", s(&ca), "--cert", s(&gc), "--key", s(&gk)],
        &url,
    );
    assert_eq!((code, status), (0, 403), "grafana is not permitted: {body}");
    assert_eq!(rustls_get(&url, &ca, Some((&gc, &gk))), Ok(403));
    drop(p);

    // `*` as the source (Universal form): every identity of the mesh again.
    let star = "---\ntype: TrafficPermission\nname: everyone\nmesh: default\nsources:\n- match: {kuma.io/service: '*'}\ndestinations:\n- match: {kuma.io/service: dataplane-metrics}\n";
    let p = mtls_proxy(&dir, star);
    assert_eq!(rustls_get(&https(&p), &ca, Some((&gc, &gk))), Ok(200));
    drop(p);

    // A source selected by a tag no certificate carries admits no one (and says so).
    let by_namespace = permission.replace(
        "kuma.io/service: prometheus-server",
        "k8s.kuma.io/namespace: monitoring",
    );
    let (_, diags) = effective(
        &resources(&mesh("activeMTLSBackend", true, &by_namespace)),
        "web-1",
    )
    .expect("valid");
    assert!(
        diags
            .to_string()
            .contains("TrafficPermission metrics: sources[0] selects no kuma.io/service"),
        "{diags}"
    );
    let p = mtls_proxy(&dir, &by_namespace);
    assert_eq!(rustls_get(&https(&p), &ca, Some((&pc, &pk))), Ok(403));
    drop(p);

    // A permission for another destination does not select the metrics endpoint.
    let elsewhere = permission.replace("dataplane-metrics", "web");
    let p = mtls_proxy(&dir, &elsewhere);
    assert_eq!(rustls_get(&https(&p), &ca, Some((&gc, &gk))), Ok(200));
}

/// The bootstrap error for `mode` with these options, as the user reads it.
fn generation_error(yaml: &str, tune: impl FnOnce(&mut Options)) -> String {
    let res = resources(yaml);
    let e = effective_of(&res, "web-1");
    let mut o = Options::new(meshmetrics_e2e::wasm());
    o.certs_dir = temp_dir("gen");
    tune(&mut o);
    match bootstrap::bootstrap(&e, &o) {
        Ok(_) => panic!("bootstrap should have failed"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn generation_errors_name_the_problem() {
    let dir = temp_dir("errors");
    tls::init_ca(&dir, "default").expect("CA");
    let (cert, key) = server_cert(&dir, "server");
    let (_, other_key) = server_cert(&dir, "other");
    let provided = mesh("providedTLS", false, "");

    let err = generation_error(&provided, |_| {});
    assert!(
        err.contains("Dataplane web-1: metrics.conf.tls.mode providedTLS: providedTLS needs a certificate and key: set KUMA_DATAPLANE_RUNTIME_METRICS_CERT_PATH and KUMA_DATAPLANE_RUNTIME_METRICS_KEY_PATH"),
        "{err}"
    );
    let missing = dir.join("missing.pem");
    let err = generation_error(&provided, |o| {
        o.provided_tls = Some((missing.clone(), key.clone()))
    });
    assert!(
        err.contains(&format!("certificate {}: cannot read", missing.display())),
        "{err}"
    );
    let err = generation_error(&provided, |o| {
        o.provided_tls = Some((cert.clone(), other_key.clone()))
    });
    assert!(
        err.contains(&format!(
            "key {} does not belong to certificate {}",
            other_key.display(),
            cert.display()
        )),
        "{err}"
    );
    let err = generation_error(&provided, |o| {
        o.provided_tls = Some((key.clone(), key.clone()))
    });
    assert!(err.contains("not a PEM certificate"), "{err}");

    let err = generation_error(&mesh("activeMTLSBackend", true, ""), |_| {});
    assert!(
        err.contains(
            "Dataplane web-1: activeMTLSBackend needs mesh \"default\"'s CA: --mesh-ca <dir>"
        ),
        "{err}"
    );

    // The explicit fallback: plaintext, said loudly.
    let res = resources(&provided);
    let e = effective_of(&res, "web-1");
    let mut o = Options::new(meshmetrics_e2e::wasm());
    o.allow_plaintext_fallback = true;
    let generated = bootstrap::bootstrap(&e, &o).expect("fallback generates");
    assert!(
        generated.warnings.iter().any(|w| w.contains("PLAINTEXT")),
        "{:?}",
        generated.warnings
    );
    let chain = &generated.config["static_resources"]["listeners"][0]["filter_chains"][0];
    assert!(chain.get("transport_socket").is_none(), "{chain}");

    // A mesh without mTLS: activeMTLSBackend becomes plaintext, with a warning.
    let res = resources(&mesh("activeMTLSBackend", false, ""));
    let (e, diags) = effective(&res, "web-1").expect("valid");
    assert_eq!(e.tls, meshmetrics::resources::metrics::TlsMode::Disabled);
    let said = diags.to_string();
    assert!(
        said.contains("activeMTLSBackend, but mesh \"default\" has no mTLS enabled: metrics are served in plaintext"),
        "{said}"
    );
}
