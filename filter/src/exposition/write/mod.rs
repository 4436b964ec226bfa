//! Writing: the output's bytes, once `decide` has said what goes where.
//!
//! `labels.rs` (the added labels, escaped once), `header.rs` (a family's `# HELP` / `# TYPE` /
//! `# UNIT`), `sample.rs` (one sample in canonical form), `side.rs` (where the other sources' output waits), `assemble.rs` (the body from the
//! bound families, in pieces), `otlp.rs` (the same merged exposition as OTLP requests),
//! `starts.rs` (when each of the push's cumulative series was first seen).
//! Depends on `read` and `decide`, never on `merge`.

pub(crate) mod assemble;
pub(crate) mod header;
pub(crate) mod labels;
pub mod otlp;
pub(crate) mod sample;
pub(crate) mod side;
pub(crate) mod starts;

pub use labels::LabelSet;
