//! `meshmetrics control-plane` as a process, and Envoys bootstrapped to it
//! (`meshmetrics bootstrap --control-plane`), for the live-configuration tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Envoy, free_port, temp_dir, try_get};

/// The `meshmetrics` binary `cargo test` built beside the test (target/debug/meshmetrics).
pub fn meshmetrics_bin() -> PathBuf {
    built_bin("meshmetrics")
}

/// The demo's app (`meshmetrics-demo-app`), built beside the test as `meshmetrics_bin`.
pub fn demo_app_bin() -> PathBuf {
    built_bin("meshmetrics-demo-app")
}

fn built_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/debug/deps/<test>")
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: cargo test --workspace builds it",
        bin.display()
    );
    bin
}

/// A running control plane; killed when dropped.
pub struct ControlPlane {
    child: Option<Child>,
    pub files: PathBuf,
    pub xds: u16,
    pub http: u16,
    args: Vec<String>,
    log: PathBuf,
    runs: usize,
    /// The CA of its certificate, when it serves TLS (`--xds-cert`).
    pub ca: Option<PathBuf>,
}

impl ControlPlane {
    /// Starts one on free ports, watching `files`, with `args` added (`--wasm ...`).
    pub fn start(files: &Path, args: &[&str]) -> ControlPlane {
        ControlPlane::start_with_ca(files, args, None)
    }

    /// [`start`](Self::start) for one serving TLS with a certificate of `ca`.
    pub fn start_with_ca(files: &Path, args: &[&str], ca: Option<&Path>) -> ControlPlane {
        let mut cp = ControlPlane {
            child: None,
            files: files.to_owned(),
            xds: free_port(),
            http: free_port(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log: temp_dir("control-plane").join("cp.log"),
            runs: 0,
            ca: ca.map(Path::to_owned),
        };
        cp.spawn();
        cp
    }

    /// GET on its HTTP side (over TLS with curl when it serves TLS): status and body.
    pub fn fetch(&self, path: &str, headers: &[&str]) -> Option<(u16, String)> {
        let Some(ca) = &self.ca else {
            return try_get(&self.url(path)).map(|s| (s.status, s.body));
        };
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--max-time", "5", "-w", "\n%{http_code}", "--cacert"])
            .arg(ca);
        for h in headers {
            cmd.args(["-H", h]);
        }
        let out = cmd.arg(self.url(path)).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n')?;
        let code: u16 = code.trim().parse().ok()?;
        (code != 0).then(|| (code, body.to_owned()))
    }

    fn spawn(&mut self) {
        self.runs += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open control-plane log");
        let child = Command::new(meshmetrics_bin())
            .arg("control-plane")
            .arg("-f")
            .arg(&self.files)
            .args(["--xds", &format!("127.0.0.1:{}", self.xds)])
            .args(["--http", &format!("127.0.0.1:{}", self.http)])
            .args(["--poll-ms", "100"])
            .args(&self.args)
            // Tests that are not about trust run the loopback-only mode; tests/trust.rs does not.
            .args(
                (!self.args.iter().any(|a| a == "--keys" || a == "--xds-cert"))
                    .then_some("--insecure"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn meshmetrics control-plane");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Over TLS, listening is enough: a test may give it a certificate for another name.
            let up = if self.ca.is_some() {
                std::net::TcpStream::connect(("127.0.0.1", self.http)).is_ok()
            } else {
                self.fetch("/metrics", &[]).is_some_and(|(s, _)| s == 200)
            };
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the control plane did not start; log:\n{}", self.log());
    }

    /// Kills it (proxies keep what they have).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.http)
    }

    /// Its process id (for `/proc` readings).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its resident memory, in MB.
    pub fn rss_mb(&self) -> f64 {
        crate::perf::rss_mb(self.pid()).0
    }

    /// Whether its process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One sample of its `/metrics` (`name{labels}` as written), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let body = self
            .fetch("/metrics", &[])
            .map(|(_, b)| b)
            .unwrap_or_default();
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// The minimal bootstrap of `dataplane`, as the CLI writes it.
    pub fn bootstrap(&self, dataplane: &str, admin_port: u16) -> Value {
        self.bootstrap_with(dataplane, admin_port, &[])
    }

    /// [`bootstrap`](Self::bootstrap) with more of the CLI's flags (`--token-file`, ...).
    pub fn bootstrap_with(&self, dataplane: &str, admin_port: u16, args: &[&str]) -> Value {
        let out = Command::new(meshmetrics_bin())
            .args(["bootstrap", "--dataplane", dataplane, "--mesh", "default"])
            .args(["--control-plane", &format!("127.0.0.1:{}", self.xds)])
            .args(["--admin-port", &admin_port.to_string()])
            .args(args)
            .output()
            .expect("run meshmetrics bootstrap");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("UTF-8 bootstrap");
        let docs = meshmetrics::resources::yaml::parse(&text, Path::new("bootstrap.yaml"))
            .expect("the bootstrap is YAML");
        docs.into_iter().next().expect("one document").value
    }

    /// Starts an Envoy for `dataplane` from its control-plane bootstrap and waits until its
    /// metrics listener (pushed over xDS) accepts connections on `metrics_port`.
    pub fn envoy(&self, dataplane: &str, metrics_port: u16) -> Envoy {
        let admin = free_port();
        let b = self.bootstrap(dataplane, admin);
        let metrics: SocketAddr = ([127, 0, 0, 1], metrics_port).into();
        Envoy::start_config(dataplane, &b, admin, metrics, true)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits up to `limit` for `check`; returns how long it took, or `None`.
pub fn within(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check().then(|| start.elapsed())
}
