//! The exposition engine: read Prometheus text 0.0.4 and OpenMetrics 1.0 from several sources,
//! rewrite and merge them in one pass, write one valid exposition.
//!
//! ```
//! use meshmetrics_filter::exposition::{Format, LabelSet, Merger};
//!
//! let mut merger = Merger::new();
//! merger.begin(Format::Text, None);
//! let app = LabelSet::new([("mesh", "default"), ("service", "web")]).unwrap();
//! merger.add_source(b"# TYPE rq_total counter\nrq_total{code=\"200\"} 3\n", Format::Text, &app);
//! assert_eq!(
//!     merger.finish(),
//!     b"# TYPE rq_total counter\nrq_total{mesh=\"default\",service=\"web\",code=\"200\"} 3\n"
//! );
//! ```
//!
//! # Rules
//! - Input is read leniently (blanks, trailing commas, CRLF, a missing final newline); output is
//!   always canonical: single spaces, no trailing comma, escapes `\\`, `\"`, `\n` only.
//! - A line that is not valid is dropped and counted, never copied out. So is a sample with two
//!   labels of the same name, which would make Prometheus reject the whole scrape.
//! - Added labels come first; a sample's own label of the same name is kept as
//!   `exported_<name>` (Prometheus' convention). Exemplars never get added labels.
//! - Each family is written once: one `# HELP`, one `# TYPE`, its samples together, in the order
//!   families were first seen. A family exported with another type by a later source keeps the
//!   first type; the later samples are dropped and counted.
//! - Sample names never change between formats; only family headers do (see [`kind`]).
//!
//! # OpenMetrics-only syntax, written as text 0.0.4
//! - `# UNIT` lines and exemplars are left out; `# EOF` ends the source and is not written.
//! - `_created` samples and gauge histograms are left out (counted as unrepresentable): text has
//!   no place for them.
//! - `info` families become gauges named `<name>_info`, `stateset` families gauges, `unknown`
//!   families `untyped`.
//! - Timestamps are converted from seconds to milliseconds (truncated below a millisecond).
//!
//! # Text 0.0.4, written as OpenMetrics
//! - Counters whose samples lack `_total` (Envoy has many) are written as `unknown`, unrenamed.
//! - `untyped` becomes `unknown`; HELP is re-escaped; timestamps go from ms to seconds.
//! - `# EOF` is written once, last.

mod assemble;
mod bytes;
mod escape;
mod filter;
mod format;
mod kind;
mod labels;
mod merge;
mod names;
mod resolve;
mod rewrite;
mod scan;
mod selfmetrics;
mod stats;
mod value;

pub use filter::FamilyFilter;
pub use format::Format;
pub(crate) use kind::Kind;
pub use labels::{LabelError, LabelSet};
pub use merge::Merger;
pub use names::is_legacy_label_name;
pub use rewrite::SourceReader;
pub use selfmetrics::{SourceReport, render_self_metrics};
pub use stats::SourceStats;
