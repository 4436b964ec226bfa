//! What happened to one source's input, for the self-metrics and the logs.

/// Counts for one source in one scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Bytes of the body read.
    pub bytes: u64,
    /// Sample lines that scanned cleanly.
    pub samples_in: u64,
    /// Samples written to the output.
    pub samples_out: u64,
    /// Samples left out because the scrape's `filter` did not select their family.
    pub samples_filtered: u64,
    /// Lines that are not valid in either format, dropped (never echoed).
    pub malformed_lines: u64,
    /// Samples of a family another source already exported with a different type.
    pub type_conflicts: u64,
    /// Samples the output format cannot carry or that could not be converted (a timestamp out
    /// of range).
    pub unrepresentable: u64,
    /// The source reached its share of the scrape's output ([`Limits`](crate::exposition::Limits)): it was
    /// stopped at a line boundary; what came before is merged.
    pub output_limit: bool,
    /// Lines left unread after the source was stopped.
    pub cut_lines: u64,
}

impl SourceStats {
    /// Everything that did not reach the output for a reason other than the filter.
    pub fn dropped(&self) -> u64 {
        self.malformed_lines + self.type_conflicts + self.unrepresentable + self.cut_lines
    }
}
