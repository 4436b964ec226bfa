//! `scripts/bench --xds`: N simulated proxies against one `meshmetrics control-plane` process.
//!
//! Each simulated proxy is a gRPC client speaking ADS the way Envoy does (its own HTTP/2
//! connection; CDS and LDS wildcard requests, every response ACKed), named like a
//! `bootstrap --control-plane` node. For each N: the time until every proxy has ACKed its first
//! listener, then a mesh-wide change (a new `filterRegex` in the watched file) and the time from
//! the file's rename to the last proxy's ACK of the new listener; the control plane's RSS before
//! and after the proxies connect (per proxy) and its CPU for the change. Reported, not asserted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value};
use meshmetrics::xds::{CLUSTER, LISTENER};
use meshmetrics_e2e::perf::cpu_seconds;
use serde_json::json;
use tokio::sync::{Mutex, mpsc};

const PER_FILE: usize = 2_000;

fn mesh(filter: &str) -> String {
    format!(
        "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf:\n      skipMTLS: true\n      envoy: {{filterRegex: {filter:?}}}\n      aggregate:\n      - {{name: app, port: 9100}}\n"
    )
}

/// N dataplanes in files of `PER_FILE` (each well under the 4 MiB file bound), the mesh in its own.
fn write_resources(dir: &Path, n: usize, filter: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    write_mesh(dir, filter)?;
    for f in 0..n.div_ceil(PER_FILE) {
        let mut y = String::new();
        for i in f * PER_FILE..((f + 1) * PER_FILE).min(n) {
            y.push_str(&format!(
                "---\ntype: Dataplane\nmesh: default\nname: dp-{i}\nnetworking:\n  address: 10.{}.{}.{}\n  inbound: [{{port: 8080, tags: {{kuma.io/service: svc-{}}}}}]\n",
                i >> 16 & 255,
                i >> 8 & 255,
                i & 255,
                i % 50
            ));
        }
        std::fs::write(dir.join(format!("dataplanes-{f}.yaml")), y)?;
    }
    Ok(())
}

fn write_mesh(dir: &Path, filter: &str) -> Result<()> {
    let tmp = dir.join(".mesh.tmp");
    std::fs::write(&tmp, mesh(filter))?;
    std::fs::rename(&tmp, dir.join("mesh.yaml"))?;
    Ok(())
}

/// A process's resident memory, in KiB.
fn rss_kb(pid: u32) -> u64 {
    (meshmetrics_e2e::perf::rss_mb(pid).0 * 1024.0) as u64
}

fn node(i: usize) -> Node {
    let s = |v: &str| PbValue {
        kind: Some(value::Kind::StringValue(v.into())),
    };
    Node {
        id: format!("default/dp-{i}"),
        cluster: format!("dp-{i}"),
        metadata: Some(Struct {
            fields: [
                ("meshmetrics.dataplane".to_owned(), s(&format!("dp-{i}"))),
                ("meshmetrics.mesh".to_owned(), s("default")),
            ]
            .into_iter()
            .collect(),
        }),
        ..Default::default()
    }
}

/// What the proxies have ACKed: each one's listener version, and when it was ACKed.
struct Fleet {
    listener: Mutex<Vec<(String, Option<Instant>)>>,
    acked_listeners: AtomicUsize,
    /// Streams that ended and were opened again.
    reconnects: AtomicUsize,
}

/// One simulated proxy for good: like Envoy, a stream that fails or ends is opened again after
/// a pause drawn at random below a ceiling that doubles from 500 ms to 30 s ("full jitter"),
/// and set back once a stream has carried a response.
async fn proxy(i: usize, addr: String, fleet: Arc<Fleet>) {
    const BASE: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(30);
    let mut ceiling = BASE;
    let mut seed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    loop {
        let served = session(i, &addr, &fleet).await;
        fleet.reconnects.fetch_add(1, Ordering::Relaxed);
        if served {
            ceiling = BASE;
        }
        // xorshift: jitter needs no cryptographic randomness, only spread.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let pause = ceiling.mul_f64((seed % 1000) as f64 / 1000.0);
        tokio::time::sleep(pause).await;
        ceiling = (ceiling * 2).min(MAX);
    }
}

/// One stream, until it ends; whether it carried a response.
async fn session(i: usize, addr: &str, fleet: &Fleet) -> bool {
    let Ok(mut client) = AggregatedDiscoveryServiceClient::connect(addr.to_owned()).await else {
        return false;
    };
    let (tx, rx) = mpsc::channel(8);
    let first = [
        DiscoveryRequest {
            node: Some(node(i)),
            type_url: CLUSTER.into(),
            ..Default::default()
        },
        DiscoveryRequest {
            type_url: LISTENER.into(),
            ..Default::default()
        },
    ];
    for r in first {
        if tx.send(r).await.is_err() {
            return false;
        }
    }
    let Ok(inbound) = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    else {
        return false;
    };
    let mut inbound = inbound.into_inner();
    let mut served = false;
    while let Ok(Some(resp)) = inbound.message().await {
        served = true;
        if tx
            .send(DiscoveryRequest {
                type_url: resp.type_url.clone(),
                version_info: resp.version_info.clone(),
                response_nonce: resp.nonce.clone(),
                ..Default::default()
            })
            .await
            .is_err()
        {
            return served;
        }
        if resp.type_url == LISTENER {
            let mut l = fleet.listener.lock().await;
            if l[i].0.is_empty() {
                fleet.acked_listeners.fetch_add(1, Ordering::Relaxed);
            }
            l[i] = (resp.version_info, Some(Instant::now()));
        }
    }
    served
}

struct Cp(Child);
impl Drop for Cp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

async fn run(n: usize, bin: &Path, wasm: &Path, work: &Path) -> Result<serde_json::Value> {
    let dir = work.join(format!("resources-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    write_resources(&dir, n, "^server\\.")?;
    let (xds, http) = (free_port(), free_port());
    let spawn = || {
        Command::new(bin)
            .arg("control-plane")
            .arg("-f")
            .arg(&dir)
            .args([
                "--xds",
                &format!("127.0.0.1:{xds}"),
                "--http",
                &format!("127.0.0.1:{http}"),
            ])
            .arg("--wasm")
            .arg(wasm)
            // The simulated proxies carry no tokens: this measures pushes, not authentication.
            .arg("--insecure")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the control plane")
    };
    let wait_up = || async {
        let started = Instant::now();
        while ureq::get(&format!("http://127.0.0.1:{http}/metrics"))
            .call()
            .is_err()
        {
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the control plane did not start");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    };
    let mut cp = Cp(spawn()?);
    let pid = cp.0.id();
    wait_up().await?;
    let rss_idle = rss_kb(pid);
    let fleet = Arc::new(Fleet {
        listener: Mutex::new(vec![(String::new(), None); n]),
        acked_listeners: AtomicUsize::new(0),
        reconnects: AtomicUsize::new(0),
    });
    let addr = format!("http://127.0.0.1:{xds}");
    let connect = Instant::now();
    for i in 0..n {
        tokio::spawn(proxy(i, addr.clone(), fleet.clone()));
    }
    while fleet.acked_listeners.load(Ordering::Relaxed) < n {
        if connect.elapsed() > Duration::from_secs(300) {
            bail!(
                "only {} of {n} proxies got a listener in 300 s",
                fleet.acked_listeners.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected_in = connect.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_connected = rss_kb(pid);
    let before: Vec<String> = fleet
        .listener
        .lock()
        .await
        .iter()
        .map(|(v, _)| v.clone())
        .collect();

    // The mesh-wide change.
    let cpu0 = cpu_seconds(pid);
    let changed_at = Instant::now();
    write_mesh(&dir, "^cluster_manager\\.")?;
    let last = loop {
        let l = fleet.listener.lock().await;
        let done = l.iter().zip(&before).all(|((v, _), b)| v != b);
        if done {
            break l.iter().filter_map(|(_, t)| *t).max().unwrap_or(changed_at);
        }
        drop(l);
        if changed_at.elapsed() > Duration::from_secs(300) {
            bail!("the change did not reach every proxy in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let update = last.duration_since(changed_at);
    let cpu = cpu_seconds(pid) - cpu0;
    let rss_after = rss_kb(pid);

    // A restart: every proxy's stream ends at once, and they all come back (with jittered
    // backoff, as Envoys do) to a new process on the same port.
    let reconnects_before = fleet.reconnects.load(Ordering::Relaxed);
    drop(cp);
    let restarted_at = Instant::now();
    cp = Cp(spawn()?);
    wait_up().await?;
    let converged = loop {
        let l = fleet.listener.lock().await;
        let back = l
            .iter()
            .filter(|(_, t)| t.is_some_and(|t| t > restarted_at))
            .count();
        if back == n {
            break restarted_at.elapsed();
        }
        drop(l);
        if restarted_at.elapsed() > Duration::from_secs(300) {
            bail!("only {back} of {n} proxies came back within 300 s of a restart");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let reconnects = fleet.reconnects.load(Ordering::Relaxed) - reconnects_before;
    drop(cp);
    let per_proxy_kb = (rss_connected.saturating_sub(rss_idle)) as f64 / n as f64;
    eprintln!(
        "N = {n}: all connected in {:.2} s; change → last ACK {:.2} s; CPU {cpu:.2} s; RSS idle {} MB, connected {} MB ({per_proxy_kb:.1} KB/proxy), after {} MB; after a restart all back in {:.2} s ({reconnects} reconnections)",
        connected_in.as_secs_f64(),
        update.as_secs_f64(),
        rss_idle / 1024,
        rss_connected / 1024,
        rss_after / 1024,
        converged.as_secs_f64()
    );
    Ok(json!({
        "proxies": n,
        "connect_seconds": connected_in.as_secs_f64(),
        "change_to_last_ack_seconds": update.as_secs_f64(),
        "cpu_seconds_for_change": cpu,
        "rss_idle_kb": rss_idle,
        "rss_connected_kb": rss_connected,
        "rss_after_change_kb": rss_after,
        "rss_per_proxy_kb": per_proxy_kb,
        "restart_converged_seconds": converged.as_secs_f64(),
        "restart_reconnections": reconnects,
    }))
}

fn main() -> Result<()> {
    let mut proxies = vec![1_000, 10_000];
    let mut out = PathBuf::from("target/bench/xds.json");
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--proxies" => {
                proxies = it
                    .next()
                    .context("--proxies needs a value")?
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse()
                            .context("--proxies: a list like 1000,10000")
                    })
                    .collect::<Result<_>>()?
            }
            "--out" => out = it.next().context("--out needs a value")?.into(),
            other => bail!("unknown argument {other:?} (--proxies 1000,10000 --out F)"),
        }
    }
    let bin = PathBuf::from(
        std::env::var("MESHMETRICS_BIN").context("MESHMETRICS_BIN: the meshmetrics binary")?,
    );
    let wasm =
        PathBuf::from(std::env::var("MESHMETRICS_WASM").context("MESHMETRICS_WASM: the filter")?);
    let work = PathBuf::from("target/bench/xds");
    let rt = tokio::runtime::Runtime::new()?;
    let mut results = Vec::new();
    for n in proxies {
        results.push(rt.block_on(run(n, &bin, &wasm, &work))?);
    }
    println!(
        "| proxies | all connected (s) | change → last ACK (s) | CP CPU for the change (s) | CP RSS idle → connected (MB) | per proxy (KB) | restart → all back (s) | reconnections |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results {
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {} → {} | {:.1} | {:.2} | {} |",
            r["proxies"],
            r["connect_seconds"].as_f64().unwrap_or(0.0),
            r["change_to_last_ack_seconds"].as_f64().unwrap_or(0.0),
            r["cpu_seconds_for_change"].as_f64().unwrap_or(0.0),
            r["rss_idle_kb"].as_u64().unwrap_or(0) / 1024,
            r["rss_connected_kb"].as_u64().unwrap_or(0) / 1024,
            r["rss_per_proxy_kb"].as_f64().unwrap_or(0.0),
            r["restart_converged_seconds"].as_f64().unwrap_or(0.0),
            r["restart_reconnections"],
        );
    }
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&results)?)?;
    Ok(())
}
