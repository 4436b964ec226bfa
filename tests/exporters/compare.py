"""Compares one source's direct answers with a merged scrape, sample by sample.

Usage: compare.py DIR SOURCE
DIR holds before.body/.ctype and after.body/.ctype (the source's direct answers, fetched just
before and just after the merged scrape, with the Accept the filter sends it) and
merged.body/.ctype. SOURCE is the aggregate name, or "envoy" (samples without `aggregate`).
The merged scrape is parsed with the strict parser of its format (OpenMetrics: the strict one);
labels the filter added (mesh, dataplane, service, aggregate) are taken off, `exported_X` back
to X. Prints JSON {in, out, lost, changed, lost_examples, changed_examples}:
- lost: a series of the direct answers (present in both) missing from the merged scrape;
- changed: a series whose value was the same in both direct answers but another in the merge.
"""

import json
import math
import sys

from prometheus_client import parser as text_parser
from prometheus_client.openmetrics import parser as om_parser

ADDED = ("mesh", "dataplane", "service", "aggregate")


def parse(path):
    body = open(path + ".body", encoding="utf-8").read()
    ctype = open(path + ".ctype").read().strip()
    if ctype.startswith("application/openmetrics-text"):
        fams = om_parser.text_string_to_metric_families(body)
        return [s for f in fams for s in f.samples]
    # The text parser renames a counter's samples to `<name>_total` when building families
    # (Envoy's bare counters would seem renamed): read text sample by sample, as written.
    list(text_parser.text_string_to_metric_families(body))  # still: the body must parse
    return [
        text_parser._parse_sample(line)
        for line in body.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def key(sample, labels):
    return (sample.name, tuple(sorted(labels.items())))


def same(a, b):
    return a == b or (math.isnan(a) and math.isnan(b))


def family_chunks(body):
    """The body cut into families (a new one at each HELP/TYPE/UNIT of another name)."""
    chunks, current, name = [], [], None
    for line in body.splitlines():
        if line == "# EOF":
            break
        parts = line.split(" ", 3)
        if line.startswith("# ") and len(parts) >= 3 and parts[1] in ("HELP", "TYPE", "UNIT"):
            if parts[2] != name or any(not l.startswith("#") for l in current):
                if current:
                    chunks.append(current)
                current, name = [], parts[2]
        current.append(line)
    if current:
        chunks.append(current)
    return chunks


def direct(path):
    """A source's own answer. client_golang's OpenMetrics has clashing family names (the strict
    parser refuses the whole body), so an answer the strict parser refuses is read family by
    family: what the source meant, judged as strictly as it allows."""
    try:
        samples = parse(path)
    except ValueError:
        body = open(path + ".body", encoding="utf-8").read()
        samples = []
        for chunk in family_chunks(body):
            try:
                fams = om_parser.text_string_to_metric_families("\n".join(chunk) + "\n# EOF\n")
                samples.extend(s for f in fams for s in f.samples)
            except ValueError:
                pass
    return {key(s, s.labels): s.value for s in samples}


def main():
    d, source = sys.argv[1], sys.argv[2]
    before, after = direct(d + "/before"), direct(d + "/after")
    merged = {}
    for s in parse(d + "/merged"):
        if s.name.startswith("meshmetrics_"):
            continue
        agg = s.labels.get("aggregate")
        if (source == "envoy" and agg is not None) or (source != "envoy" and agg != source):
            continue
        labels = {k: v for k, v in s.labels.items() if k not in ADDED}
        for k in list(labels):
            if k.startswith("exported_"):
                labels[k[len("exported_"):]] = labels.pop(k)
        merged[key(s, labels)] = s.value
    stable = [k for k in before if k in after]
    lost = [k for k in stable if k not in merged]
    # A live exporter's gauges move with the scrape itself (goroutines, open fds, Envoy's
    # active requests): for those only a changed *kind* of value counts (NaN, an infinity, a
    # sign); a source whose two direct answers are equal must be copied exactly.
    static = before.keys() == after.keys() and all(same(before[k], after[k]) for k in before)

    def kind(v):
        return "nan" if math.isnan(v) else ("inf" if math.isinf(v) else "finite", v < 0)

    def differs(k):
        a, m = before[k], merged[k]
        return not same(a, m) if static else kind(a) != kind(m)

    changed = [k for k in stable if k in merged and same(before[k], after[k]) and differs(k)]
    drift = [k for k in stable if k in merged and not same(before[k], merged[k])]
    print(json.dumps({
        "in": len(before), "out": len(merged), "lost": len(lost), "changed": len(changed),
        "static": static, "drift": len(drift),
        "lost_examples": [repr(k) for k in lost[:5]],
        "changed_examples": [f"{k!r}: {before[k]} -> {merged[k]}" for k in changed[:5]],
    }))


main()
