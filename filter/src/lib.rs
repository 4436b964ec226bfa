//! meshmetrics: one Prometheus endpoint per data plane proxy, served from inside Envoy.
//!
//! This crate is two things:
//! - [`exposition`], the rewrite engine: it scans Prometheus text 0.0.4 / OpenMetrics 1.0
//!   expositions, adds identity labels, filters families and merges several sources into one valid
//!   exposition in a single pass. Plain Rust with no proxy-wasm dependency, so it builds and is tested
//!   natively as well as for `wasm32-wasip1`.
//! - [`config`], the JSON configuration the host generates and the filter reads.
//! - [`plan`], the host-independent decisions of a scrape (routing, deadlines, judging answers).
//!
//! The proxy-wasm glue that runs the engine inside Envoy lives beside them and is compiled for
//! `wasm32` only.

pub mod budget;
pub mod config;
pub mod exposition;
pub mod plan;

#[cfg(target_arch = "wasm32")]
mod proxy;
