//! Hostile clients against the control plane and discovery, each with a real client of its own
//! (tonic's ADS client, raw TCP, HTTP), asserting the bound a user would see: the server's
//! memory and CPU stay flat, the log stays one line per event, and an honest client is served
//! all along. (The scraper's `filter` regex is in tests/scenarios.rs, with a real Envoy.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::{Struct, Value, value};
use meshmetrics_e2e::controlplane::{ControlPlane, meshmetrics_bin, within};
use meshmetrics_e2e::perf::cpu_seconds;
use meshmetrics_e2e::{free_port, get, request, temp_dir, wasm};

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// A mesh with `n` dataplanes `dp-<i>` (mTLS when asked), as one file in `dir`.
fn write_mesh(dir: &Path, n: usize, mtls: bool) {
    let mtls = if mtls {
        "mtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n"
    } else {
        ""
    };
    let tls = if mtls.is_empty() {
        "disabled"
    } else {
        "activeMTLSBackend"
    };
    let mut y = format!(
        "type: Mesh\nname: default\n{mtls}metrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf: {{port: 5670, tls: {{mode: {tls}}}}}\n"
    );
    for i in 0..n {
        y.push_str(&format!(
            "---\ntype: Dataplane\nmesh: default\nname: dp-{i}\nnetworking:\n  address: 127.0.0.1\n  inbound: [{{port: 8080, tags: {{kuma.io/service: svc-{}}}}}]\n",
            i % 50
        ));
    }
    let tmp = dir.join(".r.tmp");
    std::fs::write(&tmp, y).expect("write");
    std::fs::rename(&tmp, dir.join("r.yaml")).expect("rename");
}

fn start(name: &str, n: usize, args: &[&str]) -> (std::path::PathBuf, ControlPlane) {
    let dir = temp_dir(name);
    let files = dir.join("resources");
    std::fs::create_dir_all(&files).expect("mkdir");
    write_mesh(&files, n, false);
    let w = wasm();
    let mut all = vec!["--wasm", w.to_str().expect("UTF-8")];
    all.extend_from_slice(args);
    let cp = ControlPlane::start(&files, &all);
    (files, cp)
}

fn node(id: &str, dataplane: &str) -> Node {
    let s = |v: &str| Value {
        kind: Some(value::Kind::StringValue(v.to_owned())),
    };
    Node {
        id: id.to_owned(),
        metadata: Some(Struct {
            fields: [
                ("meshmetrics.mesh".to_owned(), s("default")),
                ("meshmetrics.dataplane".to_owned(), s(dataplane)),
            ]
            .into_iter()
            .collect(),
        }),
        ..Default::default()
    }
}

/// An ADS stream of ours: requests go in `tx`, responses (or the closing status) come out.
struct Stream {
    tx: tokio::sync::mpsc::Sender<DiscoveryRequest>,
    inbound: tonic::Streaming<DiscoveryResponse>,
}

async fn open(xds: u16, first: DiscoveryRequest) -> Result<Stream, tonic::Status> {
    let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{xds}"))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?
        .max_encoding_message_size(16 << 20);
    open_on(&mut client, first).await
}

async fn open_on(
    client: &mut AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    first: DiscoveryRequest,
) -> Result<Stream, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(first).await.expect("send");
    let inbound = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok(Stream { tx, inbound })
}

/// A stream opened by the node of `dataplane` (of mesh `default`), asking for clusters.
async fn open_as(xds: u16, dataplane: &str) -> Result<Stream, tonic::Status> {
    open(xds, cds_request(dataplane)).await
}

fn cds_request(dataplane: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(node(&format!("default/{dataplane}"), dataplane)),
        type_url: CDS.into(),
        ..Default::default()
    }
}

impl Stream {
    /// The next response, or the status the stream was closed with (`None`: nothing in 5 s).
    async fn next(&mut self) -> Option<Result<DiscoveryResponse, tonic::Status>> {
        match tokio::time::timeout(Duration::from_secs(5), self.inbound.message()).await {
            Ok(Ok(Some(r))) => Some(Ok(r)),
            Ok(Ok(None)) => Some(Err(tonic::Status::ok("ended"))),
            Ok(Err(s)) => Some(Err(s)),
            Err(_) => None,
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

#[test]
fn an_ads_stream_cannot_grow_the_control_plane() {
    let (_files, cp) = start("hostile-ads", 2, &[]);
    let rt = runtime();
    rt.block_on(async {
        // A node that is no dataplane keeps no stream.
        let mut s = open(
            cp.xds,
            DiscoveryRequest {
                node: Some(node("nobody", "nobody")),
                type_url: CDS.into(),
                ..Default::default()
            },
        )
        .await
        .expect("open");
        let closed = s.next().await.expect("an answer").expect_err("closed");
        assert_eq!(closed.code(), tonic::Code::PermissionDenied, "{closed:?}");

        // An honest stream, then the attack of the issue on it: requests of ~0.5 MiB, each
        // with a new type URL. The first closes the stream; nothing is kept.
        let rss_before = cp.rss_mb();
        for round in 0..20 {
            let mut s = open_as(cp.xds, "dp-0").await.expect("open");
            assert!(s.next().await.expect("clusters").is_ok());
            // Within the bounds on names (1,024 of 512 bytes): only the type URL is wrong.
            let names: Vec<String> = (0..1000)
                .map(|i| format!("{round}-{i}-{}", "x".repeat(490)))
                .collect();
            let _ =
                s.tx.send(DiscoveryRequest {
                    type_url: format!("type.googleapis.com/attack.{round}"),
                    resource_names: names,
                    ..Default::default()
                })
                .await;
            let closed = s.next().await.expect("an answer").expect_err("closed");

            assert_eq!(closed.code(), tonic::Code::InvalidArgument, "{closed:?}");
        }
        // Too many names, or too long a name, for a type we serve: closed too.
        let mut s = open(
            cp.xds,
            DiscoveryRequest {
                resource_names: vec!["x".repeat(4096)],
                ..cds_request("dp-1")
            },
        )
        .await
        .expect("open");
        let closed = s.next().await.expect("an answer").expect_err("closed");
        assert_eq!(closed.code(), tonic::Code::InvalidArgument, "{closed:?}");
        let mut s = open(
            cp.xds,
            DiscoveryRequest {
                resource_names: (0..5000).map(|i| i.to_string()).collect(),
                ..cds_request("dp-1")
            },
        )
        .await
        .expect("open");
        let closed = s.next().await.expect("an answer").expect_err("closed");
        assert_eq!(closed.code(), tonic::Code::InvalidArgument, "{closed:?}");
        let rss_after = cp.rss_mb();
        assert!(
            rss_after < rss_before + 80.0,
            "RSS {rss_before} → {rss_after} MB after 10 MiB of hostile requests"
        );
        // The honest proxy is still served.
        let mut s = open_as(cp.xds, "dp-1").await.expect("open");
        assert!(s.next().await.expect("clusters").is_ok());
    });
}

#[test]
fn streams_per_connection_and_connections_are_bounded() {
    let (_files, cp) = start(
        "hostile-streams",
        8,
        &[
            "--max-streams-per-connection",
            "2",
            "--max-connections",
            "3",
        ],
    );
    let rt = runtime();
    rt.block_on(async {
        // Five streams on one connection: two are served, the others wait (HTTP/2's limit).
        let client =
            AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{}", cp.xds))
                .await
                .expect("connect");
        let mut held = Vec::new();
        for i in 0..5 {
            let mut c = client.clone();
            held.push(tokio::spawn(async move {
                let mut s = open_on(&mut c, cds_request(&format!("dp-{i}"))).await?;
                let _ = s.next().await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, tonic::Status>(())
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(cp.metric("meshmetrics_cp_connected_proxies"), 2.0);
        for h in &held {
            h.abort();
        }
        drop(client);
        let drained = within(Duration::from_secs(5), || {
            cp.metric("meshmetrics_cp_connected_proxies") == 0.0
        });
        assert!(drained.is_some());

        // Connections of one stream each: three are served, the next ones wait, and are served
        // when the first ones leave.
        let client = |i: usize| {
            let xds = cp.xds;
            tokio::spawn(async move {
                if let Ok(mut s) = open_as(xds, &format!("dp-{i}")).await {
                    let _ = s.next().await;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            })
        };
        // Only what the log says from here on counts (the streams above were dp-0..dp-4 too).
        let mark = cp.log().len();
        let since = || cp.log().get(mark..).unwrap_or_default().to_owned();
        let first: Vec<_> = (0..3).map(client).collect();
        let served = within(Duration::from_secs(10), || {
            cp.metric("meshmetrics_cp_connected_proxies") == 3.0
        });
        assert!(served.is_some(), "{}", cp.log());
        let next: Vec<_> = (3..6).map(client).collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(cp.metric("meshmetrics_cp_connected_proxies"), 3.0);
        assert!(!since().contains("dp-3 connected"), "{}", cp.log());
        for c in &first {
            c.abort();
        }
        let rest = within(Duration::from_secs(10), || {
            let log = since();
            cp.metric("meshmetrics_cp_connected_proxies") == 3.0
                && (3..6).all(|i| log.contains(&format!("default/dp-{i} connected")))
        });
        assert!(rest.is_some(), "{}", cp.log());
        for c in next {
            c.abort();
        }
    });
}

#[test]
fn a_certificate_renewal_never_becomes_a_busy_loop() {
    let dir = temp_dir("hostile-renewal");
    let files = dir.join("resources");
    std::fs::create_dir_all(&files).expect("mkdir");
    write_mesh(&files, 1, true);
    let ca = dir.join("ca");
    meshmetrics::tls::init_ca(&ca, "default").expect("CA");
    let cp = ControlPlane::start(
        &files,
        &[
            "--wasm",
            wasm().to_str().expect("UTF-8"),
            "--mesh-ca",
            ca.to_str().expect("UTF-8"),
            "--cert-lifetime",
            "3s",
        ],
    );
    let rt = runtime();
    rt.block_on(async {
        let mut s = open(
            cp.xds,
            DiscoveryRequest {
                node: Some(node("default/dp-0", "dp-0")),
                type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
                    .into(),
                ..Default::default()
            },
        )
        .await
        .expect("open");
        assert!(s.next().await.expect("a secret").is_ok());
        // mTLS removed from the mesh while the stream is open, then the dataplane deleted.
        write_mesh(&files, 1, false);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (cpu0, log0) = (cpu_seconds(cp.pid()), cp.log().len());
        tokio::time::sleep(Duration::from_secs(5)).await;
        write_mesh(&files, 0, false);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let cpu = cpu_seconds(cp.pid()) - cpu0;
        let log = cp.log().len() - log0;
        assert!(
            cpu < 1.0,
            "{cpu} s of CPU in 10 s with no certificate to renew"
        );
        assert!(log < 4096, "{log} bytes of log in 10 s:\n{}", cp.log());
        drop(s);
    });
}

/// Raw TCP connections held open, as many as the test asks; closed on drop.
fn hold(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
        .collect()
}

#[test]
fn a_full_file_descriptor_table_pauses_discovery_and_never_kills_it() {
    let dir = temp_dir("hostile-fds");
    write_mesh(&dir, 2, false);
    let port = free_port();
    let log = dir.join("discovery.log");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64; exec {} discovery -f {} --listen 127.0.0.1:{port}",
            meshmetrics_bin().display(),
            dir.join("r.yaml").display()
        ))
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn discovery");
    let url = format!("http://127.0.0.1:{port}/sd");
    assert!(
        within(Duration::from_secs(10), || meshmetrics_e2e::try_get(&url)
            .is_some())
        .is_some()
    );
    let cpu0 = cpu_seconds(child.id());
    let held = hold(port, 200);
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_seconds(child.id()) - cpu0;
    assert!(
        child.try_wait().expect("wait").is_none(),
        "discovery exited:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(cpu < 0.5, "{cpu} s of CPU in 3 s while out of descriptors");
    drop(held);
    let back = within(Duration::from_secs(15), || {
        meshmetrics_e2e::try_get(&url).is_some_and(|r| r.status == 200)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(back.is_some(), "not served after the descriptors came back");
}

#[test]
fn mads_resource_names_are_a_set_and_metrics_stay_prompt() {
    let (_files, cp) = start("hostile-mads", 2000, &[]);
    let names: Vec<String> = (0..100_000).map(|i| format!("m{i}")).collect();
    let body = serde_json::json!({"resource_names": names}).to_string();
    assert!(body.len() > 800_000 && body.len() <= meshmetrics::discovery::MAX_REQUEST_BODY);
    let cpu0 = cpu_seconds(cp.pid());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (cp.url("/v3/discovery:monitoringassignments"), body.clone());
            std::thread::spawn(move || {
                ureq::post(&url)
                    .header("content-type", "application/json")
                    .send(body.as_bytes())
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let t = Instant::now();
    let metrics = get(&cp.url("/metrics"), &[]);
    let metrics_took = t.elapsed();
    for th in threads {
        assert_eq!(th.join().expect("thread"), 200);
    }
    let cpu = cpu_seconds(cp.pid()) - cpu0;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics_took < Duration::from_millis(500),
        "/metrics took {metrics_took:?} beside eight 1 MiB MADS requests"
    );
    assert!(cpu < 2.0, "{cpu} s of CPU for eight 1 MiB MADS requests");
}

#[test]
fn strangers_strings_are_escaped_bounded_and_logged_once_per_event() {
    let (_files, cp) = start("hostile-logs", 300, &[]);
    let rt = runtime();
    rt.block_on(async {
        let forged = "x\nmeshmetrics control-plane: default/dp-0 connected\n";
        let mut big = node(forged, "dp-0\r\nforged");
        big.id = format!("{forged}{}", "A".repeat(1 << 20));
        let mut s = open(
            cp.xds,
            DiscoveryRequest {
                node: Some(big),
                type_url: CDS.into(),
                ..Default::default()
            },
        )
        .await
        .expect("open");
        let _ = s.next().await;
        // An honest stream that NACKs with a forged, huge message.
        let mut s = open_as(cp.xds, "dp-1").await.expect("open");
        let r = s.next().await.expect("clusters").expect("ok");
        let _ =
            s.tx.send(DiscoveryRequest {
                type_url: CDS.into(),
                response_nonce: r.nonce.clone(),
                error_detail: Some(envoy_types::pb::google::rpc::Status {
                    code: 3,
                    message: format!("{forged}{}", "B".repeat(1 << 20)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    let log = cp.log();
    assert!(
        log.len() < 8192,
        "{} bytes of log for two events",
        log.len()
    );
    assert!(
        !log.lines()
            .any(|l| l.starts_with("meshmetrics control-plane: default/dp-0 connected")),
        "a forged line:\n{log}"
    );
    // One line for the failed lookup, not one per dataplane.
    assert!(!log.contains("dp-299"), "{log}");
    assert!(
        log.contains("and 295 more") || log.contains("unknown_dataplane"),
        "{log}"
    );
}

#[test]
fn plain_http_answers_are_bounded_too() {
    // An HTTP client that sends nothing holds a connection only until the header timeout.
    let (_files, cp) = start("hostile-http", 1, &["--max-http-connections", "4"]);
    let mut idle = hold(cp.http, 4);
    // All places taken by idle clients: a real request waits, then is served when the idle
    // ones are dropped by the header timeout (10 s).
    let t = Instant::now();
    let r = request("GET", &cp.url("/metrics"), &[]);
    assert_eq!(r.status, 200);
    assert!(t.elapsed() < Duration::from_secs(20));
    for s in &mut idle {
        let mut b = [0u8; 1];
        let _ = s.write_all(b"G");
        let _ = s.read(&mut b);
    }
}
