//! A family's header lines, in the output format.

use crate::exposition::decide::Kind;
use crate::exposition::read::Format;
use crate::exposition::read::escape::write_help;
use crate::exposition::read::names::{is_legacy_metric_name, write_name};

/// Writes a family's `# HELP`, `# TYPE` and (OpenMetrics) `# UNIT` lines.
pub(crate) fn write_header(
    name: &[u8],
    kind: Kind,
    help: Option<&[u8]>,
    unit: Option<&[u8]>,
    help_format: Format,
    format: Format,
    out: &mut Vec<u8>,
) {
    let legacy = is_legacy_metric_name(name);
    let write_name = |out: &mut Vec<u8>| write_name(name, legacy, out);
    if let Some(help) = help.filter(|h| !h.is_empty()) {
        out.extend_from_slice(b"# HELP ");
        write_name(out);
        out.push(b' ');
        write_help(help, help_format, format, out);
        out.push(b'\n');
    }
    out.extend_from_slice(b"# TYPE ");
    write_name(out);
    out.push(b' ');
    out.extend_from_slice(kind.type_word(format).as_bytes());
    out.push(b'\n');
    if format == Format::OpenMetrics
        && !matches!(kind, Kind::Info | Kind::StateSet)
        && let Some(unit) = unit.filter(|u| !u.is_empty())
        && name.len() > unit.len()
        && name.ends_with(unit)
        && name[name.len() - unit.len() - 1] == b'_'
    {
        out.extend_from_slice(b"# UNIT ");
        write_name(out);
        out.push(b' ');
        out.extend_from_slice(unit);
        out.push(b'\n');
    }
}
