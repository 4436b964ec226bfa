//! Histogram groups an OpenMetrics parser accepts. Text parsers take any buckets; OpenMetrics
//! ones refuse a whole scrape for one group (the samples of one label set) without a `+Inf`
//! bucket, with buckets out of order or decreasing, with `_count` unlike the `+Inf` bucket, or
//! with `_sum` and no `_count` (and the reverse). Such a group cannot be written validly: its
//! samples are left out and counted, the rest of the family stays.
//!
//! Checked for the apps' families when the families are bound: they are small and are copied
//! when the scrape ends anyway. Envoy's histograms are well-formed and keep their fast path.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use super::Format;
use super::kind::{Kind, Suffix, accepts_masked};
use super::merge::Merger;
use super::scan::Line;

/// The state of one group while its lines are read.
#[derive(Default)]
struct Group {
    key: u64,
    start: usize,
    end: usize,
    samples: u64,
    last_le: Option<f64>,
    inf_value: Option<f64>,
    last_bucket: f64,
    in_order: bool,
    count: Option<f64>,
    sum: bool,
    gsum: bool,
    negative_bucket: bool,
    negative_gsum: bool,
}

impl Group {
    fn valid(&self) -> bool {
        self.in_order
            && self.inf_value.is_some()
            && self.count.is_none_or(|c| Some(c) == self.inf_value)
            && (self.sum || self.gsum) == self.count.is_some()
            && !(self.negative_bucket && self.sum)
            && (!self.negative_gsum || self.negative_bucket)
    }
}

fn number(v: &[u8]) -> f64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

impl Merger {
    /// Records the groups of histogram family `id` that cannot be written in OpenMetrics as
    /// ranges to leave out, and counts their samples against the source.
    pub(crate) fn check_histograms(&mut self, id: u32) {
        let f = &self.families[id as usize];
        if self.format != Format::OpenMetrics
            || !matches!(f.kind, Kind::Histogram | Kind::GaugeHistogram)
            || f.in_main
        {
            return;
        }
        let mask = f.kind.suffix_mask(self.format);
        let (base, source) = (f.base.clone(), f.source);
        let segments = std::mem::take(&mut self.families[id as usize].segments);
        let mut skip = Vec::new();
        let mut dropped = 0u64;
        let mut group: Option<Group> = None;
        let close = |g: Group, skip: &mut Vec<(usize, usize)>, dropped: &mut u64| {
            if !g.valid() {
                skip.push((g.start, g.end));
                *dropped += g.samples;
            }
        };
        for &(s, e) in &segments {
            let mut at = s;
            while at < e {
                let nl = memchr::memchr(b'\n', &self.side[at..e]).map_or(e, |i| at + i);
                let line = &self.side[at..nl];
                let (line_start, line_end) = (at, (nl + 1).min(e));
                at = line_end;
                let Line::Sample(sample) = self.scanner.scan(line, self.format, b"") else {
                    continue;
                };
                let Some(suffix) = accepts_masked(mask, &base, sample.name.of(line)) else {
                    continue;
                };
                let mut hasher = DefaultHasher::new();
                let mut le = None;
                for l in &self.scanner.labels {
                    let name = l.name.of(line);
                    if suffix == Suffix::Bucket && name == b"le" {
                        le = Some(number(l.value.of(line)));
                    } else {
                        name.hash(&mut hasher);
                        l.value.of(line).hash(&mut hasher);
                    }
                }
                let key = hasher.finish();
                let contiguous = group
                    .as_ref()
                    .is_some_and(|g| g.key == key && g.end == line_start);
                if !contiguous {
                    if let Some(g) = group.take() {
                        close(g, &mut skip, &mut dropped);
                    }
                    group = Some(Group {
                        key,
                        start: line_start,
                        in_order: true,
                        ..Group::default()
                    });
                }
                let Some(g) = group.as_mut() else { continue };
                g.end = line_end;
                g.samples += 1;
                let value = number(sample.value.of(line));
                match suffix {
                    Suffix::Bucket => {
                        let le = le.unwrap_or(f64::NAN);
                        if g.last_le.is_some_and(|last| le <= last) || value < g.last_bucket {
                            g.in_order = false;
                        }
                        g.negative_bucket |= le < 0.0;
                        g.last_le = Some(le);
                        g.last_bucket = value;
                        if le == f64::INFINITY {
                            g.inf_value = Some(value);
                        }
                    }
                    Suffix::Count | Suffix::GCount => g.count = Some(value),
                    Suffix::Sum => g.sum = true,
                    Suffix::GSum => {
                        g.gsum = true;
                        g.negative_gsum |= value < 0.0;
                    }
                    _ => {}
                }
            }
        }
        if let Some(g) = group.take() {
            close(g, &mut skip, &mut dropped);
        }
        let f = &mut self.families[id as usize];
        f.segments = segments;
        f.skip = skip;
        if dropped > 0 {
            *self.invalid.entry(source).or_default() += dropped;
        }
    }
}
