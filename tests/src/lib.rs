//! The harness for end-to-end tests: a real Envoy (from `.venv`, installed by
//! `scripts/install-envoy`) running the real filter (`scripts/build-filter`), apps served by
//! `meshmetrics-demo-app` (the demo's app server), scrapes over real HTTP, and Prometheus' own
//! tools to judge output.

use std::cell::RefCell;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use meshmetrics::bootstrap::{self, Options};
use meshmetrics::resources::yaml::{parse, to_yaml_text};
use meshmetrics::runtime::Limits;
use meshmetrics::serve::{Endpoint, serve_on};
use meshmetrics::{Effective, Resources, effective};
use serde_json::Value;
use std::sync::{Arc, Mutex};

pub use meshmetrics_demo_app::{AppServer, Reply, Seen};

pub mod controlplane;
pub mod perf;
pub mod prometheus;
pub use prometheus::Prometheus;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The filter's `.wasm`: `MESHMETRICS_WASM`, or the release build in `target/`.
pub fn wasm() -> PathBuf {
    let p = std::env::var_os("MESHMETRICS_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root().join("target/wasm32-wasip1/release/meshmetrics_filter.wasm")
        });
    assert!(
        p.exists(),
        "{} is missing: run scripts/build-filter (scripts/test does)",
        p.display()
    );
    p
}

/// Envoy: `MESHMETRICS_ENVOY`, or `.venv/bin/envoy`.
pub fn envoy_bin() -> PathBuf {
    let p = std::env::var_os("MESHMETRICS_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-envoy (scripts/test does)",
        p.display()
    );
    p
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "meshmetrics-e2e-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A loopback port nobody listens on right now, below Linux's ephemeral range (32768–60999).
/// A port the kernel picked for `bind(0)` can be handed out again as the source port of any
/// outgoing connection before the test binds it (an Envoy's listener then fails with "address
/// in use"); ports below that range are only ever taken by an explicit bind. Each test process
/// walks its own stretch of them, starting from its pid, and skips the ones in use.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 97) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// Starts an app answering `reply` to every request, on a free port.
pub fn app(reply: Reply) -> AppServer {
    app_on(0, reply)
}

pub fn app_on(port: u16, reply: Reply) -> AppServer {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    AppServer::start(addr, std::sync::Arc::new(move |_: &Seen| reply.clone())).expect("start app")
}

/// Resources from YAML text.
pub fn resources(yaml: &str) -> Resources {
    let docs = parse(yaml, Path::new("test.yaml")).expect("test YAML parses");
    Resources::read(&docs)
}

/// The effective configuration of `dataplane`, or a panic listing the diagnostics.
pub fn effective_of(res: &Resources, dataplane: &str) -> Effective {
    match effective(res, dataplane) {
        Ok((e, _)) => e,
        Err(invalid) => panic!("{invalid}"),
    }
}

/// Where the filter runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Inside a real Envoy, loaded from the generated bootstrap.
    Envoy,
    /// Under wasmtime (`meshmetrics serve`), with a real Envoy started for its admin stats only.
    Wasmtime,
}

/// A running metrics endpoint, on either back-end; everything stops when dropped.
pub struct Proxy {
    pub backend: Backend,
    envoy: Envoy,
    pub metrics: SocketAddr,
    pub path: String,
    filter_log: Arc<Mutex<String>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts the endpoint of `e` on `backend`, its listener on a free loopback port.
    pub fn start(backend: Backend, mut e: Effective, tune: impl FnOnce(&mut Options)) -> Proxy {
        e.address = "127.0.0.1".into();
        e.port = free_port();
        for more in &mut e.more {
            more.port = free_port();
        }
        Proxy::start_exact(backend, e, tune)
    }

    /// Starts the endpoint of `e` on `backend` on exactly its address and port.
    pub fn start_exact(backend: Backend, e: Effective, tune: impl FnOnce(&mut Options)) -> Proxy {
        let mut opts = Options::new(wasm());
        opts.admin_port = free_port();
        opts.timeout_ms = 5_000;
        tune(&mut opts);
        let path = e.path.clone();
        if backend == Backend::Envoy {
            let envoy = Envoy::start(&e, &opts, true);
            return Proxy {
                backend,
                metrics: envoy.metrics,
                envoy,
                path,
                filter_log: Arc::default(),
                stop: None,
                server: None,
            };
        }
        let envoy = Envoy::start(&e, &opts, false);
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let endpoint = Endpoint::with_log(
            &std::fs::read(wasm()).expect("read wasm"),
            &e,
            &opts,
            &format!("127.0.0.1:{}", opts.admin_port),
            Limits::default(),
            Arc::new(move |level: &str, msg: &str| {
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&format!("[{level}] {msg}\n"));
                }
            }),
        )
        .expect("the filter loads under wasmtime");
        let listener = TcpListener::bind(("127.0.0.1", e.port)).expect("bind metrics port");
        listener.set_nonblocking(true).expect("nonblocking");
        let metrics = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let shutdown = async move {
                    let _ = stopped.await;
                };
                let _ = serve_on(Arc::new(endpoint), listener, shutdown).await;
            });
        });
        Proxy {
            backend,
            envoy,
            metrics,
            path,
            filter_log: log,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// The Envoy process id: the same before and after means no restart.
    pub fn envoy_pid(&self) -> u32 {
        self.envoy.pid()
    }

    /// Envoy's admin, for a source's direct answer.
    pub fn admin(&self, path: &str) -> Scrape {
        self.envoy.admin(path)
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.metrics)
    }

    /// GET the metrics path with these headers.
    pub fn scrape(&self, headers: &[(&str, &str)]) -> Scrape {
        get(&self.url(&self.path), headers)
    }

    /// The filter's log lines (Envoy's log, or what the module logged under wasmtime).
    pub fn log(&self) -> String {
        match self.backend {
            Backend::Envoy => self.envoy.log(),
            Backend::Wasmtime => self
                .filter_log
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default(),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.server.take() {
            let _ = t.join();
        }
    }
}

/// Worker threads of the Envoys a test binary starts (one: a scrape's path is then one VM's).
/// A test of what must happen once per Envoy, not once per worker's VM, raises it for its
/// whole binary.
pub static ENVOY_WORKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// A running Envoy; killed when dropped.
pub struct Envoy {
    child: Child,
    pub dir: PathBuf,
    pub admin_port: u16,
    pub metrics: SocketAddr,
}

impl Envoy {
    /// Starts Envoy with the bootstrap for `e`, or (`with_filter` false) with its admin only.
    pub fn start(e: &Effective, opts: &Options, with_filter: bool) -> Envoy {
        let mut b = bootstrap::bootstrap(e, opts)
            .unwrap_or_else(|err| panic!("bootstrap of {}: {err:#}", e.dataplane))
            .config;
        if !with_filter {
            b["static_resources"] = serde_json::json!({});
        }
        Envoy::start_config(
            &e.dataplane,
            &b,
            opts.admin_port,
            ([127, 0, 0, 1], e.port).into(),
            with_filter,
        )
    }

    /// Starts Envoy with this bootstrap; waits for the admin (and the listener at `metrics`).
    pub fn start_config(
        name: &str,
        config: &Value,
        admin_port: u16,
        metrics: SocketAddr,
        wait_listener: bool,
    ) -> Envoy {
        let envoy = Envoy::spawn_config(name, config, admin_port, metrics);
        envoy.wait_ready(wait_listener);
        envoy
    }

    /// Starts Envoy with this bootstrap and waits only for its admin to answer (an Envoy its
    /// control plane refuses never becomes ready). Its worker threads: [`ENVOY_WORKERS`].
    pub fn spawn_config(name: &str, config: &Value, admin_port: u16, metrics: SocketAddr) -> Envoy {
        let dir = temp_dir(name);
        let file = dir.join("bootstrap.yaml");
        std::fs::write(&file, to_yaml_text(config)).expect("write bootstrap");
        let log = dir.join("envoy.log");
        let child = Command::new(envoy_bin())
            .args(["-c"])
            .arg(&file)
            .args(["--use-dynamic-base-id", "-l", "info", "--concurrency"])
            .arg(
                ENVOY_WORKERS
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .to_string(),
            )
            // Envoy flushes its log file every 10 s by default; tests read it sooner.
            .args(["--file-flush-interval-msec", "100", "--log-path"])
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn envoy");
        let envoy = Envoy {
            child,
            dir,
            admin_port,
            metrics,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = format!("http://127.0.0.1:{admin_port}/server_info");
        while Instant::now() < deadline && agent().get(&admin).call().is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        envoy
    }

    /// The Envoy process id (for `/proc` readings in benchmarks).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&self, listener: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = format!("http://127.0.0.1:{}/ready", self.admin_port);
        while Instant::now() < deadline {
            let ready = agent()
                .get(&admin)
                .call()
                .map(|r| r.status() == 200)
                .unwrap_or(false);
            if ready && (!listener || TcpStream::connect(self.metrics).is_ok()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("Envoy did not become ready; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// Envoy's own admin rendering, for comparisons.
    pub fn admin(&self, path: &str) -> Scrape {
        get(&format!("http://127.0.0.1:{}{path}", self.admin_port), &[])
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `envoy --mode validate` on a bootstrap; returns (ok, output).
pub fn envoy_validate(bootstrap: &Value) -> (bool, String) {
    let dir = temp_dir("validate");
    let file = dir.join("bootstrap.yaml");
    std::fs::write(&file, to_yaml_text(bootstrap)).expect("write bootstrap");
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "--use-dynamic-base-id", "-c"])
        .arg(&file)
        .output()
        .expect("run envoy --mode validate");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Scrape {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    pub elapsed: Duration,
    /// From the request to the status line and headers, read.
    pub headers: Duration,
    /// From the request to the first byte of the body (the headers alone do not count: a
    /// streamed answer may send them before it has anything to say).
    pub first_byte: Duration,
    /// Its `Retry-After` header, if any.
    pub retry_after: Option<String>,
}

thread_local! {
    /// A thread's answers are read into one buffer that keeps its size between requests. Read
    /// into a fresh one, a 27 MB body cost the client 2–5 ms of copies and page faults while it
    /// grew, inside the timed read: the bench charged them to the server.
    static READ_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn agent() -> ureq::Agent {
    // Generous: the load tests read 80 bodies of 18 MB at once on CI's two busy cores, and the
    // timeout covers reading the body too.
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// GET, or `None` when nothing answers (for waiting on a server to start).
pub fn try_get(url: &str) -> Option<Scrape> {
    let started = Instant::now();
    let mut resp = agent().get(url).call().ok()?;
    let headers = started.elapsed();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    Some(Scrape {
        status: resp.status().as_u16(),
        content_type: String::new(),
        body,
        elapsed: started.elapsed(),
        headers,
        first_byte: started.elapsed(),
        retry_after: None,
    })
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Scrape {
    request("GET", url, headers)
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Scrape {
    try_request(method, url, headers).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// A request that may fail to get any answer (connection reset, refused).
pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Scrape, ureq::Error> {
    let started = Instant::now();
    let mut builder = http_request(method, url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let mut resp = agent().run(builder.body(()).expect("request builds"))?;
    let headers_at = started.elapsed();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let gzip = resp
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let mut reader = resp.body_mut().with_config().limit(1 << 30).reader();
    let (raw, first_byte, elapsed) = READ_BUFFER.with_borrow_mut(|raw| {
        raw.clear();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut first_byte = None;
        loop {
            match std::io::Read::read(&mut reader, &mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    first_byte.get_or_insert_with(|| started.elapsed());
                    raw.extend_from_slice(&chunk[..n]);
                }
            }
        }
        let elapsed = started.elapsed();
        // Copied out once the clock has stopped.
        (raw.clone(), first_byte, elapsed)
    });
    // A client that asked for gzip decodes it, as Prometheus does.
    let bytes = if gzip {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut plain)
            .map(|_| plain)
            .unwrap_or_default()
    } else {
        raw
    };
    let body = String::from_utf8(bytes).unwrap_or_default();
    Ok(Scrape {
        status: resp.status().as_u16(),
        content_type,
        body,
        elapsed,
        headers: headers_at,
        first_byte: first_byte.unwrap_or(elapsed),
        retry_after,
    })
}

fn http_request(method: &str, url: &str) -> ureq::http::request::Builder {
    ureq::http::Request::builder().method(method).uri(url)
}

/// The sample lines of a scrape whose metric name starts with `prefix`.
pub fn samples<'a>(body: &'a str, prefix: &str) -> Vec<&'a str> {
    body.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .collect()
}

/// The value of the self-metric `family{source="<source>"}`.
pub fn self_metric(body: &str, family: &str, source: &str) -> Option<f64> {
    let prefix = format!("{family}{{source=\"{source}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// `promtool check metrics`: panics on a parse error, returns the lint findings.
pub fn promtool_check(body: &str) -> Vec<String> {
    let (code, out) = run_stdin(Path::new("promtool"), &["check", "metrics"], body);
    assert!(
        code == 0 || code == 3,
        "promtool rejected the scrape (exit {code}):\n{out}"
    );
    out.lines().map(str::to_owned).collect()
}

/// Parses with Python's prometheus_client (text or OpenMetrics); panics if it rejects.
pub fn python_parse(body: &str, openmetrics: bool) -> String {
    let script = r#"
import sys
from prometheus_client import parser as text
from prometheus_client.openmetrics import parser as om
fams = (om if sys.argv[1] == "om" else text).text_string_to_metric_families(sys.stdin.read())
for f in fams:
    print(f.name, f.type, len(f.samples))
"#;
    let python = workspace_root().join(".venv/bin/python");
    let (code, out) = run_stdin(
        &python,
        &["-c", script, if openmetrics { "om" } else { "text" }],
        body,
    );
    assert_eq!(code, 0, "prometheus_client rejected the scrape:\n{out}");
    out
}

fn run_stdin(program: &Path, args: &[&str], input: &str) -> (i32, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (scripts/install-deps installs it)",
                program.display()
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// A Universal mesh `default` whose backend aggregates `apps` (name, port), `extra_conf` lines
/// appended to its `conf`, plus a dataplane `backend-1` at 127.0.0.1 with `dataplane_metrics`.
pub fn mesh_yaml(apps: &[(&str, u16)], extra_conf: &str, dataplane_metrics: &str) -> String {
    let mut aggregate = String::new();
    for (name, port) in apps {
        aggregate.push_str(&format!("      - {{name: {name}, port: {port}}}\n"));
    }
    format!(
        "type: Mesh\nname: default\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf:\n      skipMTLS: true\n{extra_conf}      aggregate:\n{aggregate}---\ntype: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  address: 127.0.0.1\n  inbound:\n  - port: 18080\n    tags: {{kuma.io/service: backend}}\n{dataplane_metrics}"
    )
}

/// The filter's `meshmetrics_wasm_memory_bytes` in a scrape.
pub fn wasm_memory(body: &str) -> Option<f64> {
    sample_value(body, "meshmetrics_wasm_memory_bytes ")
}

/// The value of the first sample line of `body` that starts with `prefix` (a name, with its
/// labels if any, and the space before the value).
pub fn sample_value(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}
