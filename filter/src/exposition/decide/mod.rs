//! Deciding: what a family is and where its samples go, from what `read` found.
//!
//! `kind.rs` (a family's type and the names it claims in each format), `family.rs` (a family as
//! one source declared it), `select.rs` and `filter.rs` (which families a scrape keeps),
//! `resolve.rs` (binding the sources' families to the output's, in priority order),
//! `validity.rs` and `histogram.rs` (which samples would make the output unparseable).
//! Depends on `read` only.

pub(crate) mod family;
pub(crate) mod filter;
pub(crate) mod histogram;
pub(crate) mod kind;
pub(crate) mod resolve;
pub(crate) mod select;
pub(crate) mod validity;

pub use filter::FamilyFilter;
pub(crate) use kind::Kind;
pub use select::FamilySelection;
