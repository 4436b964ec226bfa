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
//! - **No sample is lost to a format.** Sample names and values never change between formats;
//!   only family headers do. Only a malformed line or a true conflict is dropped.
//! - **Deterministic.** Sources have a priority (Envoy first, then the aggregates in configured
//!   order); families are bound in that order, never in the order answers arrived: the same
//!   bodies give the same bytes. Families are written in that order (each source's in the order
//!   it wrote them), each once, its samples together, the sources' samples in priority order.
//! - `meshmetrics_*` families are the filter's own: a source's are dropped and counted.
//!
//! # Families in the output (`decide/resolve.rs`)
//! Judged on the names the output format gives, in priority order:
//!
//! | case | text 0.0.4 out | OpenMetrics out |
//! |---|---|---|
//! | same header name, same type word (two apps' `process_cpu_seconds_total`; an OM `info` `x` and a text gauge `x_info`, both gauge `x_info` in text) | one family | one family |
//! | a family whose names clash with an earlier one's but whose samples do not (Envoy's counter `rq` and counter `rq_total`: OM family `rq` twice; client_golang's gauge `x` and counter `x_total`) | the later one as `untyped`, one family per sample name | the later one as `unknown`, one family per sample name; where its name is only the *header* of the earlier (typed) one, that one becomes `unknown` too |
//! | untyped samples whose name a gauge (in text also a counter) holds | join it | join it (a gauge only) |
//! | the same sample name with another type (an OM `info` `x` and a text gauge `x_info`, in OM) | true conflict: the source of lower priority's samples are dropped and counted | same |
//!
//! A family claims its header name and every sample name its type word gives it in the output
//! format (`Kind::claimed_suffixes`): OpenMetrics parsers reserve them all (`x_created` beside a
//! counter `x` is a clash even with no `_created` sample), text parsers attach `x_count` to a
//! summary or histogram `x`. A gauge histogram in text is written `histogram`, so it claims
//! `x_count` and `x_sum` too, though its samples there are only buckets; an `untyped` `x_sum` from
//! another source then makes it `untyped` as well, one family per sample name, and both keep every
//! sample.
//!
//! # Conversions
//!
//! | input | text 0.0.4 out | OpenMetrics out |
//! |---|---|---|
//! | OM counter `x` (`x_total`, `x_created`) | counter `x_total`; `x_created` a gauge family of its own, after it | as is |
//! | OM histogram / summary `_created` | gauge family `x_created` | as is |
//! | OM gauge histogram `x` | histogram `x` of its `_bucket`s; gauges `x_gcount`, `x_gsum` (prometheus_client's rule) | as is |
//! | OM `info` `x` (`x_info`) | gauge `x_info` | as is |
//! | OM `stateset` | gauge | as is |
//! | OM `unknown` | `untyped` | as is |
//! | text counter `x_total` | as is | counter `x` |
//! | text counter without `_total` (Envoy's `envoy_cluster_upstream_rq`) | as is | `unknown`, unrenamed (renaming would break every query) |
//! | text gauge `x_created` after counter / histogram / summary `x` of the same source (prometheus_client's `generate_latest`) | as is | folded into `x`: each `_created` right after the samples with its labels |
//! | text `untyped` | as is | `unknown` |
//! | exemplars | left out (text has none) | kept where OM allows them (counter `_total`, `_bucket`), within 128 characters |
//! | `# UNIT` | left out | kept when the family name ends with it |
//! | timestamps | OM seconds → milliseconds (truncated below a millisecond) | text milliseconds → seconds |
//! | `# EOF` | ends an OM source, not written | written once, last |
//!
//! # Samples that would make the output unparseable
//!
//! Prometheus refuses a whole scrape for one bad line, so these are dropped and counted
//! (`meshmetrics_source_samples_dropped_total`), never written (`decide/validity.rs`, `decide/histogram.rs`):
//!
//! | sample | text 0.0.4 out | OpenMetrics out |
//! |---|---|---|
//! | `__name__` inside the braces | dropped | dropped |
//! | a quoted name that is not a legacy name (`{"my.metric"}`, `"my.label"=`) | dropped (0.0.4 has no quoted names) | dropped (nor has OM 1.0) |
//! | a bucket without a numeric `le`, a summary quantile without a numeric `quantile` | dropped | dropped |
//! | an infinite `le` not written `+Inf`; `quantile` outside [0, 1] | kept | dropped |
//! | a negative or NaN `_total`, `_count`, `_bucket`, `_sum`, `_gcount`; a NaN `_gsum`; a fractional `_bucket` / `_count`; an `info` sample not 1; a `stateset` sample not 0 or 1; a negative quantile value | kept | dropped |
//! | an app's histogram group without `+Inf`, with buckets out of order or decreasing, `_count` unlike `+Inf`, `_sum` without `_count` (or the reverse) | kept | the group dropped, the rest of the family kept |
//! | a family under `meshmetrics_` from a source | dropped | dropped |
//!
//! # A streamed lead
//!
//! `Merger::stream_lead` reads the lead (Envoy) piece by piece *after* the other sources, and
//! hands out what is final as it is written (`Merger::ready`): a lead family none of whose names
//! an app family may take is sealed and leaves at once; from the first one an app shares, the
//! lead is held until the scrape ends. The bytes are the buffered scrape's. A lead family that
//! comes back after another one started, or would join one already sent, cannot: its samples
//! are dropped and counted (`Merger::stream_refused`). Envoy writes each family once, contiguous.
//!
//! When the scrape is answered in Prometheus text, Envoy's samples get no labels, the scrape has
//! no `filter` and the lead is Envoy's own renderer, its families no app may take are not even
//! read: `Merger::pass_lead` looks only at the lines that start with `#`, and the filter leaves
//! Envoy's pieces where they are. The first family an app may take (or a `meshmetrics_` one,
//! or any comment but `# TYPE`) hands the rest to the engine (`Merger::take_over`), which reads
//! it as a streamed lead. The bytes are still the buffered scrape's (`merge/passing.rs`).
//!
//! # Limits
//!
//! A source stops at a line boundary when its output reaches `max_source_bytes` (64 MiB by
//! default; labels added, its families' bookkeeping included); what it wrote before stays and it
//! is reported `meshmetrics_source_up 0` with `meshmetrics_source_error{reason="output_limit"}`.
//! When families are bound, in priority order, a source that would take the scrape past
//! `max_scrape_bytes` (128 MiB) is left out whole and reported the same way. Both are applied so
//! that the arrival order changes nothing.

// The phases a byte goes through, each depending only on the ones before it:
// `read` (what the bytes say) <- `decide` (what a family is, where it goes, what is valid)
// <- `write` (the output's bytes) <- `merge` (one scrape, driving the three).
mod decide;
mod merge;
mod read;
mod write;

pub use decide::filter::{FamilyFilter, FilterError};
pub use decide::select::{
    BASIC_CONTAINS, BASIC_EXACT, BASIC_PREFIXES, FamilyRules, FamilySelection, MatchKind, Matcher,
    Matchers, Profile, SelectionError, envoy_filter,
};
pub use merge::Merger;
pub use merge::budget::Limits;
pub use merge::pass::{LeadStream, SourceReader};
pub use merge::passing::{Passed, Passing};
pub use merge::selfmetrics::{OtelStats, SourceReport, render_self_metrics};
pub use merge::stats::SourceStats;
pub use read::format::Format;
pub use read::names::is_legacy_label_name;
pub use write::labels::{LabelError, LabelSet};
pub use write::otlp;
