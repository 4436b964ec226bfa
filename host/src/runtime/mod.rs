//! Running the filter's `.wasm` on wasmtime, as Envoy runs it: a proxy-wasm ABI 0.2.1 host.
//!
//! [`Runtime`] compiles the module once, checks its imports (an import this host does not provide
//! is an error at load, naming it), and makes [`Instance`]s — one per worker, like Envoy's VM per
//! worker thread. [`Instance::handle`] serves one request: `proxy_on_context_create`,
//! `proxy_on_request_headers`, then every dispatched call performed concurrently and answered
//! through `proxy_on_http_call_response` on the root context (the SDK then sets the effective
//! context, as with Envoy), until the filter sends its local response.
//!
//! Limits: every callback runs under an epoch deadline (a loop is stopped, not waited for), and
//! the store's memory is capped. A trap fails the request (the caller answers 500), never the host.

mod abi;
mod hostcalls;
mod upstream;
mod wasi;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use wasmtime::{
    Config, Engine, Linker, Module, Store, StoreLimitsBuilder, WasmParams, WasmResults,
};

pub use hostcalls::LocalResponse;
/// Receives the module's log lines: (level, message).
pub type LogSinkFn = LogSink;
use hostcalls::{HostState, LogSink, SharedData};

const ROOT_CONTEXT: u32 = 1;
const TICK: Duration = Duration::from_millis(10);

/// Resource limits of one instance.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest a single callback may run.
    pub callback_time: Duration,
    /// Largest linear memory.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            callback_time: Duration::from_secs(10),
            memory_bytes: 1 << 30,
        }
    }
}

/// A request as the filter sees it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path with query.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// The compiled filter, its configuration, and where its clusters are.
pub struct Runtime {
    engine: Engine,
    module: Module,
    linker: Linker<HostState>,
    plugin_config: Vec<u8>,
    clusters: Arc<HashMap<String, String>>,
    shared: SharedData,
    log: LogSink,
    limits: Limits,
    ticking: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Compiles `wasm` (binary or text) for `plugin_config` (the filter's JSON), with `clusters`
    /// mapping each cluster name to `host:port`.
    pub fn load(
        wasm: &[u8],
        plugin_config: String,
        clusters: HashMap<String, String>,
        limits: Limits,
        log: LogSink,
    ) -> Result<Runtime> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // `perf record` can name the filter's functions only if the JIT tells it where they are
        // (`/tmp/perf-<pid>.map`); a profiling aid, see BENCHMARKS.md.
        if std::env::var_os("MESHMETRICS_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let module = Module::new(&engine, wasm)
            .map_err(anyhow::Error::from)
            .context("compiling the filter")?;
        let mut linker = Linker::new(&engine);
        hostcalls::link(&mut linker)?;
        wasi::link(&mut linker)?;

        let env = hostcalls::provided();
        let missing: Vec<String> = module
            .imports()
            .filter(|i| match i.module() {
                "env" => !env.contains(&i.name()),
                "wasi_snapshot_preview1" => !wasi::PROVIDED.contains(&i.name()),
                _ => true,
            })
            .map(|i| format!("{}.{}", i.module(), i.name()))
            .collect();
        if !missing.is_empty() {
            bail!(
                "the module imports {}, which this proxy-wasm host does not provide",
                missing.join(", ")
            );
        }
        for export in [
            "proxy_on_memory_allocate",
            "proxy_on_context_create",
            "proxy_on_request_headers",
        ] {
            if module.get_export(export).is_none() {
                bail!("the module exports no {export}: not a proxy-wasm filter");
            }
        }

        let ticking = Arc::new(AtomicBool::new(true));
        let (e, t) = (engine.clone(), Arc::clone(&ticking));
        std::thread::spawn(move || {
            while t.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                e.increment_epoch();
            }
        });
        Ok(Runtime {
            engine,
            module,
            linker,
            plugin_config: plugin_config.into_bytes(),
            clusters: Arc::new(clusters),
            shared: Arc::new(Mutex::new(HashMap::new())),
            log,
            limits,
            ticking,
        })
    }

    /// A new instance, started and configured (`_initialize`, root context, `proxy_on_vm_start`,
    /// `proxy_on_configure`).
    pub fn instance(&self) -> Result<Instance> {
        let state = HostState {
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .build(),
            plugin_config: self.plugin_config.clone(),
            clusters: Arc::clone(&self.clusters),
            shared: Arc::clone(&self.shared),
            log: Arc::clone(&self.log),
            effective_context: 0,
            request_headers: Vec::new(),
            call_response: None,
            local_response: None,
            dispatched: Vec::new(),
            next_token: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = (self.limits.callback_time.as_millis() / TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        let instance = self
            .linker
            .instantiate(&mut store, &self.module)
            .map_err(anyhow::Error::from)
            .context("instantiating the filter")?;
        let mut i = Instance {
            store,
            instance,
            ticks,
            next_context: ROOT_CONTEXT + 1,
            clusters: Arc::clone(&self.clusters),
            response_time: Duration::ZERO,
        };
        if i.instance.get_func(&mut i.store, "_initialize").is_some() {
            i.call::<(), ()>("_initialize", ())?;
        }
        i.call::<(i32, i32), ()>("proxy_on_context_create", (ROOT_CONTEXT as i32, 0))?;
        if i.call::<(i32, i32), i32>("proxy_on_vm_start", (ROOT_CONTEXT as i32, 0))? == 0 {
            bail!("the filter refused to start (proxy_on_vm_start returned false)");
        }
        let size = self.plugin_config.len() as i32;
        if i.call::<(i32, i32), i32>("proxy_on_configure", (ROOT_CONTEXT as i32, size))? == 0 {
            bail!(
                "the filter refused its configuration (proxy_on_configure returned false); see its log"
            );
        }
        Ok(i)
    }
}

/// One running instance of the filter (Envoy: one VM on one worker thread).
pub struct Instance {
    store: Store<HostState>,
    instance: wasmtime::Instance,
    ticks: u64,
    next_context: u32,
    clusters: Arc<HashMap<String, String>>,
    /// Time spent in `proxy_on_http_call_response` during the last request: the engine's work plus
    /// the copies across the wasm boundary (benchmarks report it).
    response_time: Duration,
}

/// What [`Instance::handle`] answers.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The filter answered itself.
    Local(LocalResponse),
    /// The filter let the request through: Envoy's router would answer (404 in our bootstrap).
    PassedThrough,
}

impl Instance {
    /// Calls an export under the epoch deadline; a trap becomes an error naming the callback.
    fn call<P: WasmParams, R: WasmResults>(&mut self, name: &str, params: P) -> Result<R> {
        self.store.set_epoch_deadline(self.ticks);
        let f = self
            .instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("the module has no usable export {name}"))?;
        f.call(&mut self.store, params).map_err(|e| {
            let reason = match e.downcast_ref::<wasmtime::Trap>() {
                Some(wasmtime::Trap::Interrupt) => {
                    "ran past its time limit and was stopped".to_owned()
                }
                Some(trap) => format!(
                    "trapped: {}",
                    trap.to_string().trim_start_matches("wasm trap: ")
                ),
                None => format!("failed: {:#}", anyhow::Error::from(e)),
            };
            anyhow!("filter callback {name} {reason}")
        })
    }

    /// Serves one request through the filter.
    pub async fn handle(&mut self, req: Request) -> Result<Outcome> {
        let ctx = self.next_context;
        self.next_context += 1;
        self.response_time = Duration::ZERO;
        let result = self.stream(ctx, req).await;
        // The stream is over whatever happened: let the filter clean up.
        let _ = self.call::<i32, i32>("proxy_on_done", ctx as i32);
        let _ = self.call::<i32, ()>("proxy_on_log", ctx as i32);
        let _ = self.call::<i32, ()>("proxy_on_delete", ctx as i32);
        let s = self.store.data_mut();
        s.dispatched.clear();
        s.call_response = None;
        result
    }

    async fn stream(&mut self, ctx: u32, req: Request) -> Result<Outcome> {
        {
            let s = self.store.data_mut();
            s.local_response = None;
            s.request_headers = vec![
                (":method".into(), req.method),
                (":path".into(), req.path),
                (":scheme".into(), "http".into()),
            ];
            s.request_headers.extend(
                req.headers
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v)),
            );
        }
        self.call::<(i32, i32), ()>("proxy_on_context_create", (ctx as i32, ROOT_CONTEXT as i32))?;
        let n = self.store.data().request_headers.len() as i32;
        let action =
            self.call::<(i32, i32, i32), i32>("proxy_on_request_headers", (ctx as i32, n, 1))?;

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut outstanding = 0usize;
        loop {
            if let Some(local) = self.store.data_mut().local_response.take() {
                return Ok(Outcome::Local(local));
            }
            for call in std::mem::take(&mut self.store.data_mut().dispatched) {
                let address = self
                    .clusters
                    .get(&call.cluster)
                    .cloned()
                    .unwrap_or_default();
                let tx = tx.clone();
                outstanding += 1;
                tokio::spawn(async move {
                    let timeout = upstream::effective_timeout(call.timeout);
                    let call = hostcalls::Dispatch { timeout, ..call };
                    let response = upstream::perform(&call, &address).await;
                    let _ = tx.send((call.token, response));
                });
            }
            if outstanding == 0 {
                return if action == abi::ACTION_CONTINUE {
                    Ok(Outcome::PassedThrough)
                } else {
                    bail!("the filter paused the request and dispatched nothing to wait for")
                };
            }
            let (token, response) = rx
                .recv()
                .await
                .ok_or_else(|| anyhow!("dispatch channel closed"))?;
            outstanding -= 1;
            let (headers, body) = (response.headers.len() as i32, response.body.len() as i32);
            self.store.data_mut().call_response = Some(response);
            let started = std::time::Instant::now();
            let called = self.call::<(i32, i32, i32, i32, i32), ()>(
                "proxy_on_http_call_response",
                (ROOT_CONTEXT as i32, token as i32, headers, body, 0),
            );
            self.response_time += started.elapsed();
            called?;
            self.store.data_mut().call_response = None;
        }
    }

    /// Time the last request spent in `proxy_on_http_call_response`.
    pub fn response_time(&self) -> Duration {
        self.response_time
    }

    /// Size of the instance's linear memory, in bytes.
    pub fn memory_size(&mut self) -> usize {
        self.instance
            .get_memory(&mut self.store, "memory")
            .map_or(0, |m| m.data_size(&self.store))
    }
}
