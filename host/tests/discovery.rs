//! The MADS wire format, checked with a client that behaves like Prometheus' `kuma_sd_configs`
//! (discovery/xds in Prometheus): POST a JSON DiscoveryRequest carrying the last `version_info`,
//! long-poll with `fetch-timeout`, treat 304 as "nothing new". Debian's Prometheus build has no
//! `kuma_sd_configs`, so this client stands in for it; the real Prometheus is tested end to end
//! through `http_sd_configs` in tests/tests/prometheus.rs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Server {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(dir: &Path) -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let paths = vec![dir.to_path_buf()];
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            meshmetrics::discovery::run(
                paths,
                listener,
                Duration::from_millis(100),
                None,
                async move {
                    let _ = stopped.await;
                },
            )
            .await
        })
    });
    let server = Server {
        url,
        stop: Some(stop),
        thread: Some(thread),
    };
    // Ready once the first load is served.
    for _ in 0..100 {
        if ureq::get(&format!("{}/sd", server.url)).call().is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("discovery did not start");
}

fn dir_with(files: &[(&str, &str)]) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "meshmetrics-mads-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

const MESH: &str = "type: Mesh\nname: default\nmetrics: {enabledBackend: p, backends: [{name: p, type: prometheus, conf: {skipMTLS: true}}]}\n";

fn dataplane(name: &str, port: u16) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: 10.0.0.{port}\n  inbound: [{{port: 8080, tags: {{kuma.io/service: web, kuma.io/zone: east}}}}]\n"
    )
}

/// POSTs a DiscoveryRequest the way Prometheus' client does; returns (status, body).
fn fetch(url: &str, body: &str, timeout: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut target = format!("{url}/v3/discovery:monitoringassignments");
    if let Some(t) = timeout {
        target.push_str(&format!("?fetch-timeout={t}"));
    }
    let mut resp = agent
        .post(&target)
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    (
        resp.status().as_u16(),
        resp.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn request(version: &str) -> String {
    format!(
        r#"{{"version_info":"{version}","node":{{"id":"prometheus"}},"type_url":"type.googleapis.com/kuma.observability.v1.MonitoringAssignment"}}"#
    )
}

#[test]
fn response_has_the_fields_kuma_sd_reads() {
    let dir = dir_with(&[("mesh.yaml", MESH), ("dp.yaml", &dataplane("dp-1", 1))]);
    let s = start(&dir);
    let (status, body) = fetch(&s.url, &request(""), None);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["type_url"],
        "type.googleapis.com/kuma.observability.v1.MonitoringAssignment"
    );
    assert_eq!(v["version_info"], "1");
    let a = &v["resources"][0];
    assert_eq!(
        a["@type"],
        "type.googleapis.com/kuma.observability.v1.MonitoringAssignment"
    );
    assert_eq!(
        (a["mesh"].as_str(), a["service"].as_str()),
        (Some("default"), Some("web"))
    );
    let t = &a["targets"][0];
    assert_eq!(t["name"], "dp-1");
    assert_eq!(t["scheme"], "http");
    assert_eq!(t["address"], "10.0.0.1:5670");
    assert_eq!(t["metrics_path"], "/metrics");
    assert_eq!(t["labels"]["kuma_io_zone"], "east", "tag names sanitized");
}

#[test]
fn camel_case_requests_from_protojson_are_understood() {
    let dir = dir_with(&[("mesh.yaml", MESH), ("dp.yaml", &dataplane("dp-1", 1))]);
    let s = start(&dir);
    let started = Instant::now();
    let (status, _) = fetch(
        &s.url,
        r#"{"versionInfo":"1","node":{"id":"p"}}"#,
        Some("300ms"),
    );
    assert_eq!(status, 304);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn long_poll_answers_304_when_nothing_changes_and_200_as_soon_as_something_does() {
    let dir = dir_with(&[("mesh.yaml", MESH), ("dp.yaml", &dataplane("dp-1", 1))]);
    let s = start(&dir);
    let started = Instant::now();
    let (status, body) = fetch(&s.url, &request("1"), Some("1s"));
    assert_eq!((status, body.as_str()), (304, ""));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "held for {:?}",
        started.elapsed()
    );

    // A new dataplane file while a client waits: it is answered before its timeout.
    let writer = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            std::fs::write(dir.join("dp2.yaml"), dataplane("dp-2", 2)).unwrap();
        })
    };
    let started = Instant::now();
    let (status, body) = fetch(&s.url, &request("1"), Some("20s"));
    writer.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version_info"], "2");
    assert_eq!(v["resources"].as_array().unwrap().len(), 2);

    // A client with an old version gets the current one at once.
    let (status, body) = fetch(&s.url, &request("1"), Some("20s"));
    assert_eq!(status, 200);
    assert!(body.contains("\"version_info\":\"2\""));
}

#[test]
fn an_invalid_file_keeps_the_last_good_version() {
    let dir = dir_with(&[("mesh.yaml", MESH), ("dp.yaml", &dataplane("dp-1", 1))]);
    let s = start(&dir);
    std::fs::write(
        dir.join("dp.yaml"),
        "type: Dataplane\nmesh: default\nname: dp-1\nnetworking: [oops\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let (status, body) = fetch(&s.url, &request(""), None);
    assert_eq!(status, 200);
    assert!(
        body.contains("\"version_info\":\"1\"") && body.contains("10.0.0.1:5670"),
        "{body}"
    );
}

#[test]
fn bad_requests_get_400_saying_why() {
    let dir = dir_with(&[("mesh.yaml", MESH), ("dp.yaml", &dataplane("dp-1", 1))]);
    let s = start(&dir);
    let (status, body) = fetch(&s.url, "{not json", None);
    assert_eq!(status, 400);
    assert!(body.starts_with("the body is not JSON"), "{body}");
    let (status, body) = fetch(&s.url, &request(""), Some("soon"));
    assert_eq!(status, 400);
    assert!(
        body.contains("fetch-timeout: \"soon\" is not a duration"),
        "{body}"
    );
    let (status, body) = fetch(
        &s.url,
        r#"{"type_url":"type.googleapis.com/envoy.config.cluster.v3.Cluster"}"#,
        None,
    );
    assert_eq!(status, 400);
    assert!(body.contains("is not served here"), "{body}");
}

#[test]
fn http_sd_groups_with_meta_labels_and_mesh_filter() {
    let other = "type: Mesh\nname: other\nmetrics: {enabledBackend: p, backends: [{name: p, type: prometheus, conf: {skipMTLS: true, port: 9999, path: /m}}]}\n---\ntype: Dataplane\nmesh: other\nname: o-1\nnetworking: {address: 10.1.0.1, inbound: [{port: 80, tags: {kuma.io/service: api}}]}\n";
    let dir = dir_with(&[
        ("mesh.yaml", MESH),
        ("dp.yaml", &dataplane("dp-1", 1)),
        ("other.yaml", other),
    ]);
    let s = start(&dir);
    let all: Value = ureq::get(&format!("{}/sd", s.url))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let only: Value = ureq::get(&format!("{}/sd?mesh=other", s.url))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let g = &only[0];
    assert_eq!(g["targets"][0], "10.1.0.1:9999");
    assert_eq!(g["labels"]["__meta_kuma_mesh"], "other");
    assert_eq!(g["labels"]["__meta_kuma_dataplane"], "o-1");
    assert_eq!(g["labels"]["__meta_kuma_service"], "api");
    assert_eq!(g["labels"]["__meta_kuma_label_kuma_io_service"], "api");
    assert_eq!(g["labels"]["__metrics_path__"], "/m");
    assert_eq!(g["labels"]["__scheme__"], "http");
}

#[test]
fn an_alias_bomb_keeps_the_last_good_version() {
    let dir = dir_with(&[("mesh.yaml", MESH), ("dp.yaml", &dataplane("dp-1", 1))]);
    let s = start(&dir);
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    std::fs::write(dir.join("bomb.yaml"), bomb).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let (status, body) = fetch(&s.url, &request(""), None);
    assert_eq!(status, 200);
    assert!(body.contains("10.0.0.1:5670"), "{body}");
}

#[test]
fn hostile_requests_are_refused_and_the_server_stays_up() {
    use std::io::{Read, Write};
    let dir = dir_with(&[("mesh.yaml", MESH), ("dp.yaml", &dataplane("dp-1", 1))]);
    let s = start(&dir);
    // Out of range: refused, not a panic of the handler (it was, with this very value).
    for t in ["99999999999999999999s", "1e400s", "6m", "300001ms"] {
        let (status, body) = fetch(&s.url, &request(""), Some(t));
        assert_eq!(status, 400, "{t}: {body}");
    }
    let (status, _) = fetch(&s.url, &request(""), Some("5m"));
    assert_eq!(status, 200, "5 minutes is allowed");
    // A body over 1 MiB: 413, answered without reading it whole (so the client may well see
    // its connection closed while it still sends).
    let addr = s.url.trim_start_matches("http://");
    let mut big = std::net::TcpStream::connect(addr).unwrap();
    big.write_all(
        format!(
            "POST /v3/discovery:monitoringassignments HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            100 << 20
        )
        .as_bytes(),
    )
    .unwrap();
    for _ in 0..40 {
        if big.write_all(&[b'x'; 64 * 1024]).is_err() {
            break;
        }
    }
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    // A half-sent request is not held: the connection is closed after the header timeout.
    let mut half = std::net::TcpStream::connect(addr).unwrap();
    half.write_all(b"POST /v3/discovery:monitoringassignments HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    half.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let n = half.read(&mut buf).unwrap_or(0);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "held {:?}",
        started.elapsed()
    );
    let _ = n; // closed (0) or a 408: either way not held
    // And the server still answers.
    let (status, _) = fetch(&s.url, &request(""), None);
    assert_eq!(status, 200);
}

#[test]
fn same_named_dataplanes_of_two_meshes_keep_their_own_mesh() {
    let other = MESH.replace("name: default", "name: other");
    let dp_other = dataplane("dp-1", 2).replace("mesh: default", "mesh: other");
    let dir = dir_with(&[
        ("mesh.yaml", MESH),
        ("other.yaml", &other),
        ("dp.yaml", &dataplane("dp-1", 1)),
        ("dp-other.yaml", &dp_other),
    ]);
    let s = start(&dir);
    let body = ureq::get(&format!("{}/sd", s.url))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let groups: Value = serde_json::from_str(&body).unwrap();
    let mut seen: Vec<(String, String)> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["labels"]["__meta_kuma_mesh"].as_str().unwrap().to_owned(),
                g["targets"][0].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("default".to_owned(), "10.0.0.1:5670".to_owned()),
            ("other".to_owned(), "10.0.0.2:5670".to_owned())
        ],
        "{body}"
    );
}
