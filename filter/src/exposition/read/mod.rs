//! Reading: what the bytes of an exposition say, and nothing about what to do with them.
//!
//! A line is scanned once (`scan.rs`) into spans of its name, labels, value, timestamp and
//! exemplar; `names.rs`, `value.rs` and `escape.rs` hold the grammar of each part (and how to
//! write it back canonically); `bytes.rs` the byte searches they share. Depends on nothing else
//! in the engine.

pub(crate) mod bytes;
pub(crate) mod escape;
pub(crate) mod format;
pub(crate) mod names;
pub(crate) mod scan;
pub(crate) mod value;

pub use format::Format;
