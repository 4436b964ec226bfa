//! Who may talk to the control plane, with real Envoys as every client, honest and hostile:
//! each refused proxy gets no listener and no secret (its admin shows none), the control plane
//! logs and counts why; each honest one is served and scraped. The control plane serves ADS
//! over TLS and checks a dataplane token on every stream (README, "Who may talk to the control
//! plane").

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use meshmetrics::auth::{SigningKeys, keys, token};
use meshmetrics_e2e::controlplane::{ControlPlane, within};
use meshmetrics_e2e::{Envoy, free_port, get, temp_dir, wasm};

const DAY: Duration = Duration::from_secs(86_400);

/// A secured control plane over a mesh with mTLS (so every proxy gets a private key over SDS:
/// what a stranger must never get), two dataplanes in `default` and one of the same name in
/// `other`.
struct Secured {
    dir: PathBuf,
    keys: PathBuf,
    revocations: PathBuf,
    cp_ca: PathBuf,
    port: u16,
    cp: ControlPlane,
}

fn resources(port: u16) -> String {
    let mesh = |name: &str| {
        format!(
            "type: Mesh\nname: {name}\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf:\n      port: {port}\n      tls: {{mode: activeMTLSBackend}}\n"
        )
    };
    let dp = |mesh: &str, name: &str, service: &str| {
        format!(
            "---\ntype: Dataplane\nmesh: {mesh}\nname: {name}\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 18000\n    tags: {{kuma.io/service: {service}}}\n"
        )
    };
    [
        mesh("default"),
        dp("default", "backend-1", "backend"),
        dp("default", "victim", "payments"),
        "---\n".to_owned() + &mesh("other"),
        dp("other", "backend-1", "backend"),
        // A pod `web` of namespace `prod`: its identity is `default/web.prod`.
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: prod\n  labels: {kuma.io/mesh: default}\nstatus: {podIP: 127.0.0.1}\nspec:\n  containers: [{name: app, ports: [{containerPort: 18001}]}]\n".to_owned(),
    ]
    .concat()
}

impl Secured {
    fn start(name: &str) -> Secured {
        Secured::start_named(name, &["localhost"], &["127.0.0.1"])
    }

    /// A control plane whose certificate (from its CA) names these hosts and addresses only.
    fn start_named(name: &str, dns: &[&str], ips: &[&str]) -> Secured {
        let dir = temp_dir(name);
        let keys = dir.join("keys");
        keys::generate(&keys, "default").expect("signing key");
        keys::generate(&keys, "other").expect("signing key");
        let cp_ca = dir.join("cp-ca");
        meshmetrics::tls::init_ca(&cp_ca, "control-plane").expect("CA");
        let id = meshmetrics::tls::Identity {
            spiffe: None,
            dns: dns.iter().map(|d| d.to_string()).collect(),
            ips: ips.iter().map(|i| i.parse().expect("IP")).collect(),
        };
        let (cert, key) =
            meshmetrics::tls::issue(&cp_ca, &id, &dir.join("cp"), DAY).expect("cp certificate");
        let mesh_ca = dir.join("mesh-ca");
        meshmetrics::tls::init_ca(&mesh_ca, "default").expect("mesh CA");
        let files = dir.join("resources");
        std::fs::create_dir_all(&files).expect("mkdir");
        let port = free_port();
        std::fs::write(files.join("resources.yaml"), resources(port)).expect("resources");
        let revocations = dir.join("revoked.txt");
        std::fs::write(&revocations, "# revoked token ids\n").expect("revocations");
        let s = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
        let cp = ControlPlane::start_with_ca(
            &files,
            &[
                "--wasm",
                &s(&wasm()),
                "--mesh-ca",
                &s(&mesh_ca),
                "--keys",
                &s(&keys),
                "--revocations",
                &s(&revocations),
                "--xds-cert",
                &s(&cert),
                "--xds-key",
                &s(&key),
            ],
            Some(&cp_ca.join("ca.pem")),
        );
        Secured {
            dir,
            keys,
            revocations,
            cp_ca,
            port,
            cp,
        }
    }

    fn keys(&self) -> SigningKeys {
        SigningKeys::load(&self.keys).expect("keys")
    }

    /// Writes `token` where an Envoy reads it (replaced by a rename, as a secret volume is).
    fn token_file(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.join(format!("{name}.token"));
        let tmp = self.dir.join(format!(".{name}.token.tmp"));
        std::fs::write(&tmp, token).expect("token");
        std::fs::rename(&tmp, &path).expect("rename token");
        path
    }

    /// An Envoy bootstrapped by the CLI as `dataplane` of `default`, with `args` added.
    fn envoy(&self, dataplane: &str, args: &[&str]) -> Envoy {
        let admin = free_port();
        let b = self.cp.bootstrap_with(dataplane, admin, args);
        Envoy::spawn_config(dataplane, &b, admin, ([127, 0, 0, 1], self.port).into())
    }

    /// An Envoy presenting `token` (trusting the control plane's CA).
    fn envoy_with_token(&self, dataplane: &str, token: &str) -> Envoy {
        let file = self.token_file(&format!("{dataplane}-{}", free_port()), token);
        let ca = self.cp_ca.join("ca.pem");
        self.envoy(
            dataplane,
            &[
                "--token-file",
                file.to_str().expect("UTF-8"),
                "--ca-cert",
                ca.to_str().expect("UTF-8"),
            ],
        )
    }

    fn refusals(&self, reason: &str) -> f64 {
        self.cp.metric(&format!(
            "meshmetrics_cp_auth_refusals_total{{reason=\"{reason}\"}}"
        ))
    }

    /// Asserts the control plane refuses `envoy` for `reason` (counted, logged without the
    /// token), and that Envoy got nothing: no listener, no certificate.
    fn assert_refused(&self, envoy: &Envoy, reason: &str, before: f64, token: Option<&str>) {
        let counted = within(Duration::from_secs(15), || self.refusals(reason) > before);
        assert!(
            counted.is_some(),
            "no refusal for {reason} counted; control plane:\n{}\nEnvoy:\n{}",
            self.cp.log(),
            envoy.log()
        );
        assert_got_nothing(envoy);
        if let Some(t) = token {
            let sig = t.rsplit('.').next().unwrap_or(t);
            assert!(
                !sig.is_empty() && !self.cp.log().contains(sig),
                "the control plane logged the token"
            );
        }
    }
}

/// Envoy's admin shows no listener and no certificate.
fn assert_got_nothing(envoy: &Envoy) {
    let listeners = envoy.admin("/listeners").body;
    assert!(listeners.trim().is_empty(), "a listener: {listeners}");
    let certs = envoy.admin("/certs").body;
    assert!(!certs.contains("spiffe"), "a certificate: {certs}");
}

/// Envoy's admin shows the metrics listener and the proxy's own mesh certificate.
fn wait_served(envoy: &Envoy, s: &Secured, spiffe: &str) {
    let served = within(Duration::from_secs(20), || {
        envoy.admin("/listeners").body.contains("meshmetrics")
            && envoy.admin("/certs").body.contains(spiffe)
    });
    assert!(
        served.is_some(),
        "not served; control plane:\n{}\nEnvoy:\n{}",
        s.cp.log(),
        envoy.log()
    );
}

/// Scrapes the proxy from the dataplane itself (plaintext is open there, as in Kuma).
fn scrape(port: u16) -> u16 {
    within(Duration::from_secs(10), || {
        meshmetrics_e2e::try_get(&format!("http://127.0.0.1:{port}/metrics"))
            .is_some_and(|s| s.status == 200)
    })
    .map_or(0, |_| 200)
}

#[test]
fn an_honest_proxy_is_served_over_tls_with_its_token_and_scraped() {
    let s = Secured::start("trust-honest");
    let t = token::issue(&s.keys(), "default", "backend-1", DAY).expect("token");
    let envoy = s.envoy_with_token("backend-1", &t);
    wait_served(&envoy, &s, "spiffe://default/backend");
    assert_eq!(scrape(s.port), 200);
    assert_eq!(s.cp.metric("meshmetrics_cp_connected_proxies"), 1.0);
    // The bootstrap holds no token, only its file's name.
    let bootstrap = s.cp.bootstrap_with(
        "backend-1",
        free_port(),
        &["--token-file", "/x/t", "--ca-cert", "/x/ca.pem"],
    );
    assert!(bootstrap.to_string().contains("/x/t") && !bootstrap.to_string().contains("eyJ"));
    // Discovery of the same control plane is over TLS too.
    let (status, _) = s.cp.fetch("/sd", &[]).expect("discovery over TLS");
    assert_eq!(status, 200);
    // No private key in its log.
    assert!(!s.cp.log().contains("PRIVATE KEY"));
}

#[test]
fn strangers_tokens_are_refused_and_get_no_listener_and_no_key() {
    let s = Secured::start("trust-refused");
    let k = s.keys();
    let valid = token::issue(&k, "default", "backend-1", DAY).expect("token");
    let parts: Vec<&str> = valid.split('.').collect();

    // No token at all (TLS, but no --token-file).
    let before = s.refusals("missing");
    let ca = s.cp_ca.join("ca.pem");
    let envoy = s.envoy("victim", &["--ca-cert", ca.to_str().expect("UTF-8")]);
    s.assert_refused(&envoy, "missing", before, None);
    drop(envoy);

    // Another dataplane's token, naming the victim.
    let before = s.refusals("wrong_dataplane");
    let envoy = s.envoy_with_token("victim", &valid);
    s.assert_refused(&envoy, "wrong_dataplane", before, Some(&valid));
    drop(envoy);

    // A token of the same name in another mesh (signed by that mesh's key).
    let other = token::issue(&k, "other", "backend-1", DAY).expect("token");
    let before = s.refusals("wrong_dataplane");
    let envoy = s.envoy_with_token("backend-1", &other);
    s.assert_refused(&envoy, "wrong_dataplane", before, Some(&other));
    drop(envoy);

    // Signed by a key the control plane lacks (another installation's key, same mesh).
    let foreign_dir = s.dir.join("foreign-keys");
    keys::generate(&foreign_dir, "default").expect("key");
    let foreign = token::issue(
        &SigningKeys::load(&foreign_dir).expect("keys"),
        "default",
        "backend-1",
        DAY,
    )
    .expect("token");
    let before = s.refusals("signature");
    let envoy = s.envoy_with_token("backend-1", &foreign);
    s.assert_refused(&envoy, "signature", before, Some(&foreign));
    drop(envoy);

    // Expired an hour ago.
    let expired = token::issue_at(
        &k,
        "default",
        "backend-1",
        token::now() - 7200,
        Duration::from_secs(3600),
    )
    .expect("token");
    let before = s.refusals("expired");
    let envoy = s.envoy_with_token("backend-1", &expired);
    s.assert_refused(&envoy, "expired", before, Some(&expired));
    drop(envoy);

    // backend-1's signature on a payload swapped for the victim's.
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts[1]).expect("base64")).expect("claims");
    claims["name"] = "victim".into();
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(claims.to_string()),
        parts[2]
    );
    let before = s.refusals("signature");
    let envoy = s.envoy_with_token("victim", &swapped);
    s.assert_refused(&envoy, "signature", before, Some(&swapped));
    drop(envoy);

    // `alg: none`, no signature.
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT","kid":"default/1"}"#),
        B64.encode(claims.to_string())
    );
    let before = s.refusals("algorithm");
    let envoy = s.envoy_with_token("victim", &none);
    s.assert_refused(&envoy, "algorithm", before, None);
    drop(envoy);

    assert_eq!(s.cp.metric("meshmetrics_cp_connected_proxies"), 0.0);
    let log = s.cp.log();
    assert!(log.contains("refused"), "{log}");
}

#[test]
fn a_proxy_never_talks_to_a_control_plane_it_cannot_verify_nor_in_plaintext() {
    let s = Secured::start("trust-tls");
    let t = token::issue(&s.keys(), "default", "backend-1", DAY).expect("token");
    // A CA the proxy trusts that did not issue the control plane's certificate.
    let other_ca = s.dir.join("other-ca");
    meshmetrics::tls::init_ca(&other_ca, "control-plane").expect("CA");
    let file = s.token_file("backend-1", &t);
    let envoy = s.envoy(
        "backend-1",
        &[
            "--token-file",
            file.to_str().expect("UTF-8"),
            "--ca-cert",
            other_ca.join("ca.pem").to_str().expect("UTF-8"),
        ],
    );
    // Plaintext gRPC (no --ca-cert) to the TLS port.
    let plain = s.envoy("victim", &[]);
    std::thread::sleep(Duration::from_secs(5));
    assert_got_nothing(&envoy);
    assert_got_nothing(&plain);
    assert_eq!(s.cp.metric("meshmetrics_cp_connected_proxies"), 0.0);
    assert!(
        !s.cp.log().contains("connected"),
        "a stream was opened:\n{}",
        s.cp.log()
    );
    // Plain HTTP to its HTTP side gets no answer either.
    let plain_http = meshmetrics_e2e::try_get(&format!("http://127.0.0.1:{}/sd", s.cp.http));
    assert!(
        plain_http.is_none_or(|r| r.status != 200),
        "plaintext discovery answered"
    );
}

/// The control plane's certificate is from the CA the proxy trusts, but names another host:
/// the proxy dialing 127.0.0.1 refuses it (the SAN is matched, not only the chain).
#[test]
fn a_proxy_refuses_a_trusted_certificate_for_another_name() {
    let s = Secured::start_named("trust-san", &["control-plane.elsewhere.example"], &[]);
    let t = token::issue(&s.keys(), "default", "backend-1", DAY).expect("token");
    let envoy = s.envoy_with_token("backend-1", &t);
    std::thread::sleep(Duration::from_secs(5));
    assert_got_nothing(&envoy);
    // (Its /metrics cannot be read here either: curl checks the name too.)
    assert!(!s.cp.log().contains("connected"), "{}", s.cp.log());
    assert!(
        envoy.log().contains("ssl")
            || envoy.log().contains("SSL")
            || envoy.log().contains("handshake"),
        "Envoy says nothing of the refused handshake:\n{}",
        envoy.log()
    );
}

#[test]
fn revoking_a_connected_proxy_closes_its_stream_and_envoy_keeps_its_configuration() {
    let s = Secured::start("trust-revoke");
    let t = token::issue(&s.keys(), "default", "backend-1", DAY).expect("token");
    let jti = token::verify(&s.keys(), &t, token::now())
        .expect("valid")
        .jti;
    let envoy = s.envoy_with_token("backend-1", &t);
    wait_served(&envoy, &s, "spiffe://default/backend");
    let before = s.refusals("revoked");
    std::fs::write(
        &s.revocations,
        format!("# revoked: backend-1's lost laptop\n{jti}\n"),
    )
    .expect("revoke");
    let closed = within(Duration::from_secs(5), || {
        s.refusals("revoked") > before && s.cp.metric("meshmetrics_cp_connected_proxies") == 0.0
    });
    assert!(
        closed.is_some(),
        "the revoked stream stayed open:\n{}",
        s.cp.log()
    );
    // Its reconnections are refused too, and Envoy keeps serving what it had.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(s.cp.metric("meshmetrics_cp_connected_proxies"), 0.0);
    assert_eq!(scrape(s.port), 200);
    assert!(envoy.admin("/listeners").body.contains("meshmetrics"));
}

#[test]
fn a_signing_key_rotates_with_the_same_envoy_and_a_deleted_key_ends_its_tokens() {
    let s = Secured::start("trust-rotate");
    let old = token::issue(&s.keys(), "default", "backend-1", DAY).expect("token");
    let file = s.token_file("rotating", &old);
    let ca = s.cp_ca.join("ca.pem");
    let envoy = s.envoy(
        "backend-1",
        &[
            "--token-file",
            file.to_str().expect("UTF-8"),
            "--ca-cert",
            ca.to_str().expect("UTF-8"),
        ],
    );
    wait_served(&envoy, &s, "spiffe://default/backend");
    let pid = envoy.pid();
    // Rotation: a new key, a token re-issued with it into the same file, the old key deleted.
    let new_key = keys::generate(&s.keys, "default").expect("key 2");
    assert!(new_key.ends_with("signing-key-2.pem"));
    let new = token::issue(&s.keys(), "default", "backend-1", DAY).expect("token");
    assert!(new.starts_with(&B64.encode(r#"{"typ":"JWT","alg":"EdDSA","kid":"default/2"}"#)[..10]));
    s.token_file("rotating", &new);
    let before = s.refusals("unknown_key");
    std::fs::remove_file(s.keys.join("default/signing-key-1.pem")).expect("delete key 1");
    // The old token's stream is closed; Envoy reconnects with the file's new token.
    let closed = within(Duration::from_secs(5), || {
        s.refusals("unknown_key") > before
    });
    assert!(
        closed.is_some(),
        "the old key's stream stayed:\n{}",
        s.cp.log()
    );
    let back = within(Duration::from_secs(30), || {
        s.cp.metric("meshmetrics_cp_connected_proxies") == 1.0
    });
    assert!(
        back.is_some(),
        "Envoy did not come back with the new token:\n{}\n{}",
        s.cp.log(),
        envoy.log()
    );
    assert_eq!(envoy.pid(), pid, "Envoy was restarted");
    assert_eq!(scrape(s.port), 200);
    // The old token no longer opens a stream.
    let before = s.refusals("unknown_key");
    let stale = s.envoy_with_token("backend-1", &old);
    s.assert_refused(&stale, "unknown_key", before, Some(&old));
}

/// A token for `default/web` (say, of a pod `web` in namespace `dev` that is gone) must not
/// resolve to another namespace's `web`: with tokens, a node is only its exact identity
/// (`default/web.prod` for that pod), and only that token gets its resources (and key).
#[test]
fn a_token_resolves_only_to_its_exact_dataplane_never_an_alias() {
    let s = Secured::start("trust-alias");
    let k = s.keys();
    let short = token::issue(&k, "default", "web", DAY).expect("token");
    let before = s.refusals("unknown_dataplane");
    let envoy = s.envoy_with_token("web", &short);
    s.assert_refused(&envoy, "unknown_dataplane", before, Some(&short));
    drop(envoy);
    // Its own exact identity is served.
    let exact = token::issue(&k, "default", "web.prod", DAY).expect("token");
    let envoy = s.envoy_with_token("web.prod", &exact);
    let served = within(Duration::from_secs(20), || {
        envoy.admin("/listeners").body.contains("meshmetrics")
    });
    assert!(served.is_some(), "{}\n{}", s.cp.log(), envoy.log());
}

/// A node that changes on an open stream. Envoy names its node once, so this client is ours
/// (tonic, over the same TLS and token), the way an attacker's would be.
#[test]
fn a_stream_whose_node_changes_is_closed() {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use envoy_types::pb::google::protobuf::{Struct, Value, value};

    let s = Secured::start("trust-node");
    let t = token::issue(&s.keys(), "default", "backend-1", DAY).expect("token");
    let ca_pem = s.cp_ca.join("ca.pem").display().to_string();
    let node = |name: &str| Node {
        id: format!("default/{name}"),
        metadata: Some(Struct {
            fields: [
                ("meshmetrics.mesh", "default"),
                ("meshmetrics.dataplane", name),
                ("meshmetrics.ca_cert", ca_pem.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    Value {
                        kind: Some(value::Kind::StringValue(v.to_owned())),
                    },
                )
            })
            .collect(),
        }),
        ..Default::default()
    };
    let cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let status = rt.block_on(async {
        let ca = std::fs::read(s.cp_ca.join("ca.pem")).expect("ca");
        let channel =
            tonic::transport::Channel::from_shared(format!("https://127.0.0.1:{}", s.cp.xds))
                .expect("uri")
                .tls_config(
                    tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                        .domain_name("127.0.0.1"),
                )
                .expect("tls")
                .connect_timeout(Duration::from_secs(5));
        let channel = tokio::time::timeout(Duration::from_secs(10), channel.connect())
            .await
            .expect("connect in time")
            .expect("connect over TLS");
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(DiscoveryRequest {
            node: Some(node("backend-1")),
            type_url: cds.into(),
            ..Default::default()
        })
        .await
        .expect("send");
        let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
        let mut stream = tokio::time::timeout(
            Duration::from_secs(10),
            client.stream_aggregated_resources(req),
        )
        .await
        .expect("stream opened in time")
        .expect("stream")
        .into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .unwrap_or_else(|_| panic!("no response in time:\n{}", s.cp.log()))
            .expect("a response")
            .expect("clusters");
        assert!(!first.resources.is_empty());
        // Now the same stream names the victim.
        tx.send(DiscoveryRequest {
            node: Some(node("victim")),
            type_url: cds.into(),
            response_nonce: first.nonce.clone(),
            version_info: first.version_info.clone(),
            ..Default::default()
        })
        .await
        .expect("send");
        loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => return None,
                Ok(Err(status)) => return Some(status),
                Err(_) => return None,
            }
        }
    });
    let status = status.expect("the stream was not closed with a status");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(s.refusals("node_changed") >= 1.0);
    // And the stream got nothing of the victim's (it was closed before any push for it).
    assert!(!s.cp.log().contains("default/victim connected"));
}

#[test]
fn discovery_requires_its_bearer_token_when_configured() {
    let dir = temp_dir("trust-discovery");
    let files = dir.join("resources");
    std::fs::create_dir_all(&files).expect("mkdir");
    std::fs::write(files.join("r.yaml"), resources(free_port())).expect("resources");
    let token = dir.join("sd.token");
    std::fs::write(&token, "s3cret-sd-token\n").expect("token");
    let cp = ControlPlane::start(
        &files,
        &[
            "--wasm",
            wasm().to_str().expect("UTF-8"),
            "--discovery-token-file",
            token.to_str().expect("UTF-8"),
        ],
    );
    assert_eq!(get(&cp.url("/sd"), &[]).status, 401);
    assert_eq!(
        get(&cp.url("/sd"), &[("Authorization", "Bearer wrong")]).status,
        401
    );
    let ok = get(
        &cp.url("/sd"),
        &[("Authorization", "Bearer s3cret-sd-token")],
    );
    assert_eq!(ok.status, 200);
    assert!(ok.body.contains("backend-1"));
    // Its own metrics stay open (they hold no secret).
    assert_eq!(get(&cp.url("/metrics"), &[]).status, 200);
}

#[test]
fn without_tokens_and_tls_the_control_plane_refuses_to_start_unless_insecure_on_loopback() {
    let dir = temp_dir("trust-insecure");
    std::fs::write(dir.join("r.yaml"), resources(free_port())).expect("resources");
    let run = |args: &[&str]| {
        std::process::Command::new(meshmetrics_e2e::controlplane::meshmetrics_bin())
            .args(["control-plane", "-f"])
            .arg(dir.join("r.yaml"))
            .args(["--wasm", wasm().to_str().expect("UTF-8")])
            .args(args)
            .output()
            .expect("run")
    };
    let out = run(&["--xds", "127.0.0.1:0", "--http", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--insecure"), "{err}");
    let out = run(&["--insecure", "--xds", "0.0.0.0:0", "--http", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("--xds 0.0.0.0:0: --insecure serves on loopback only"),
        "{err}"
    );
}
