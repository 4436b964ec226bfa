//! Histogram groups an OpenMetrics parser accepts. Text parsers take any buckets; OpenMetrics
//! ones refuse a whole scrape for one group (the samples of one label set) without a `+Inf`
//! bucket, with buckets out of order or decreasing, with `_count` unlike the `+Inf` bucket, or
//! with `_sum` and no `_count` (and the reverse). Such a group cannot be written validly: its
//! samples are left out and counted, the rest of the family stays.
//!
//! Checked for the apps' families as their lines are written (the line is scanned already; a
//! group is a run of lines with the same labels but `le`, hashed with FNV-1a): the apps are
//! copied when the scrape ends anyway, so leaving a group out costs nothing then. Envoy's
//! histograms are well-formed and keep their fast path.

use crate::exposition::decide::kind::Suffix;
use crate::exposition::read::scan::LabelSpan;

/// The state of one group while its lines are read.
#[derive(Default)]
pub(crate) struct Group {
    pub family: u32,
    key: u64,
    pub start: usize,
    pub end: usize,
    pub samples: u64,
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
    pub fn valid(&self) -> bool {
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

/// FNV-1a over the labels but `le` (what OpenMetrics groups histogram samples by).
fn group_key<'a>(line: &'a [u8], labels: &[LabelSpan]) -> (u64, Option<&'a [u8]>) {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut le = None;
    for l in labels {
        let name = l.name.of(line);
        if name == b"le" {
            le = Some(l.value.of(line));
            continue;
        }
        for &b in name
            .iter()
            .chain([0u8].iter())
            .chain(l.value.of(line))
            .chain([0u8].iter())
        {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (h, le)
}

/// Follows one histogram line written at `[start, end)` of the arena for `family`. Returns the
/// group that ended before it, if any, for the caller to judge.
pub(crate) fn follow(
    current: &mut Option<Group>,
    family: u32,
    line: &[u8],
    labels: &[LabelSpan],
    value: &[u8],
    suffix: Suffix,
    (start, end): (usize, usize),
) -> Option<Group> {
    let (key, le) = group_key(line, labels);
    let continues = current
        .as_ref()
        .is_some_and(|g| g.family == family && g.key == key && g.end == start);
    let ended = if continues {
        None
    } else {
        current.replace(Group {
            family,
            key,
            start,
            in_order: true,
            ..Group::default()
        })
    };
    if let Some(g) = current.as_mut() {
        g.end = end;
        g.samples += 1;
        let value = number(value);
        match suffix {
            Suffix::Bucket => {
                let le = le.map_or(f64::NAN, number);
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
    ended
}
