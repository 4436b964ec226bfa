//! The proxy-wasm side: what runs inside Envoy (and under the host's wasmtime runner).
//!
//! The root context reads the JSON configuration once; each request to the metrics listener gets
//! a [`scrape::Scrape`] HTTP context, which dispatches to every source, feeds each answer to the
//! engine as it arrives, and answers with one local response.

mod admission;
mod body;
mod counters;
mod inflight;
mod otel;
mod pool;
mod scrape;

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{ContextType, LogLevel};

use crate::config::FilterConfig;
use crate::exposition::LabelSet;

/// The configuration, read once, with each source's labels rendered.
pub(crate) struct Plugin {
    /// The root context this configuration came with: a listener replaced by a new
    /// configuration runs beside the old one on the same VM, and their scrapes must not share.
    pub id: u32,
    pub config: FilterConfig,
    pub labels: Vec<LabelSet>,
    pub self_labels: LabelSet,
    /// Envoy's families the scrape keeps (its source's `families`), compiled once.
    pub selection: Option<std::sync::Arc<crate::exposition::FamilySelection>>,
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> {
        Box::new(Root {
            id,
            plugin: None,
            connections: false,
            pusher: None,
        })
    });
}}

pub(crate) fn log(level: LogLevel, message: &str) {
    // Logging can only fail if the host is gone; nothing to do then.
    let _ = hostcalls::log(level, message);
}

struct Root {
    id: u32,
    plugin: Option<Rc<Plugin>>,
    /// This root is the listener's network filter ([`crate::config::CONNECTIONS_ROOT_ID`]):
    /// it only hears connections close, for the answering budget.
    connections: bool,
    /// The OTLP push, when the configuration has one.
    pusher: Option<otel::Pusher>,
}

/// One client connection to the metrics listener, as its network filter sees it.
struct Connection;

impl Context for Connection {}

impl StreamContext for Connection {
    fn on_downstream_close(&mut self, _peer: proxy_wasm::types::PeerType) {
        if let Some(id) = admission::connection_id() {
            admission::closed(id, scrape::now());
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body: usize,
        _trailers: usize,
    ) {
        if let Some(p) = self.pusher.as_mut().filter(|p| p.owns(token)) {
            p.on_answer(token, body);
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(p) = self.pusher.as_mut().filter(|p| p.owns_export(token)) {
            p.on_export(token, status, size);
        }
    }
}

impl RootContext for Root {
    /// Ticks while answers wait for the answering budget (`admission`, every 20 ms), and every
    /// second when an OTLP push is configured.
    fn on_tick(&mut self) {
        let limit = self
            .plugin
            .as_ref()
            .map_or(0, |p| p.config.max_answering_bytes);
        let waiting = scrape::hand_over_waiting(limit);
        if let Some(p) = self.pusher.as_mut() {
            p.tick();
        }
        let period = if waiting > 0 {
            admission::TICK
        } else if self.pusher.is_some() {
            otel::TICK
        } else {
            std::time::Duration::ZERO
        };
        let _ = hostcalls::set_tick_period(period);
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let root_id = hostcalls::get_property(vec!["plugin_root_id"])
            .ok()
            .flatten()
            .unwrap_or_default();
        if root_id == crate::config::CONNECTIONS_ROOT_ID.as_bytes() {
            self.connections = true;
            return true;
        }
        let raw = match hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        ) {
            Ok(Some(raw)) => raw,
            _ => {
                log(
                    LogLevel::Critical,
                    "no plugin configuration (want a StringValue holding JSON)",
                );
                return false;
            }
        };
        match FilterConfig::from_json(&raw) {
            Ok(config) => {
                let labels = config.sources.iter().map(|s| s.label_set()).collect();
                let self_labels = crate::config::label_set(&config.self_labels, "self_labels")
                    .unwrap_or_default();
                // `from_json` compiled these rules already: an error here cannot happen.
                let selection = config
                    .sources
                    .first()
                    .filter(|s| s.kind == crate::config::SourceKind::EnvoyAdmin)
                    .and_then(|s| s.families.as_ref())
                    .and_then(|r| crate::exposition::FamilySelection::new(r).ok())
                    .map(std::sync::Arc::new);
                log(
                    LogLevel::Info,
                    &format!(
                        "serving {} from {} sources",
                        config.path,
                        config.sources.len()
                    ),
                );
                let plugin = Rc::new(Plugin {
                    id: self.id,
                    config,
                    labels,
                    self_labels,
                    selection,
                });
                // Every configuration counts as the newest, with a push or without: a push
                // removed over LDS stops in the root its listener's drain keeps alive.
                let identity = otel::configured(&raw);
                if plugin.config.otel.is_some() {
                    self.pusher = Some(otel::Pusher::new(Rc::clone(&plugin), self.id, identity));
                    let _ = hostcalls::set_tick_period(otel::TICK);
                }
                self.plugin = Some(plugin);
                true
            }
            Err(e) => {
                log(LogLevel::Critical, &format!("bad configuration: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let plugin = self.plugin.clone()?;
        Some(Box::new(scrape::Scrape::new(plugin, context_id)))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        self.connections
            .then(|| Box::new(Connection) as Box<dyn StreamContext>)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(if self.connections {
            ContextType::StreamContext
        } else {
            ContextType::HttpContext
        })
    }
}
