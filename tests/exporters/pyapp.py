"""A prometheus_client app, as most Python services run one: `/text` always answers
`generate_latest` (text 0.0.4, `_created` as gauges), `/om` always OpenMetrics, `/negotiated`
what the Accept header asks (prometheus_client's own choice). Its metrics cover what the
formats disagree on: `_created`, exemplars, info, stateset, gauge histograms, NaN / +-Inf,
escapes in label values and help. Usage: pyapp.py [HOST:]PORT"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client import exposition
from prometheus_client.core import GaugeHistogramMetricFamily
from prometheus_client.openmetrics import exposition as om

registry = CollectorRegistry()
requests = Counter("app_requests", 'Requests "served", by path\\n and code.', ["path", "code"], registry=registry)
requests.labels('/a"quoted"', "200").inc(3, exemplar={"trace_id": "abc123"})
requests.labels("/back\\slash\nnewline", "500").inc(1)
latency = Histogram("app_latency_seconds", "Latency.", ["path"], registry=registry, buckets=(0.1, 0.5, float("inf")))
latency.labels("/a").observe(0.05, exemplar={"trace_id": "t1"})
latency.labels("/a").observe(0.7)
size = Summary("app_response_bytes", "Response sizes.", registry=registry)
size.observe(512)
Gauge("app_temperature", "Special values.", ["kind"], registry=registry).labels("nan").set(float("nan"))
Gauge("app_limit", "Infinities.", ["side"], registry=registry).labels("high").set(float("inf"))
Gauge("app_floor", "Infinities.", registry=registry).set(float("-inf"))
Info("app_build", "Build information.", registry=registry).info({"version": "1.2.3", "revision": "abc"})
Enum("app_state", "State.", states=["starting", "running"], registry=registry).state("running")


class Queue:
    def collect(self):
        g = GaugeHistogramMetricFamily("app_queue_wait_seconds", "Items waiting, by wait.", labels=["queue"])
        g.add_metric(["q1"], [("1.0", 3), ("+Inf", 5)], gsum_value=7.5)
        yield g


registry.register(Queue())


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/text":
            body, ctype = exposition.generate_latest(registry), exposition.CONTENT_TYPE_LATEST
        elif path == "/om":
            body, ctype = om.generate_latest(registry), om.CONTENT_TYPE_LATEST
        elif path == "/negotiated":
            encoder, ctype = exposition.choose_encoder(self.headers.get("Accept"))
            body = encoder(registry)
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1].rsplit(":", 1)[-1])), Handler).serve_forever()
