"""A real OTLP/gRPC metrics receiver for the tests: grpcio serving the OpenTelemetry project's
own MetricsService (opentelemetry-proto from PyPI). No collector binary runs here; this speaks
the same protocol on the wire and keeps what it gets.

    otlp_receiver.py PORT OUT MODE_FILE [CERT KEY]

With CERT and KEY (PEM), it serves TLS (gRPC's own ALPN `h2`).

Each accepted export is one line of JSON in OUT (protobuf's JSON mapping, field names as in
the .proto, plus "received_at"). MODE_FILE says how to answer, read at every export: `ok`,
`unavailable` (UNAVAILABLE), `exhausted` (RESOURCE_EXHAUSTED), `slow` (answers after 5 s),
`garbage` (an OK status with bytes that are no ExportMetricsServiceResponse), `quiet` (answers
OK at once and keeps only each export's size, its number of data points per metric name and
its first point's time, which tells the pushes apart: for large pushes, where turning megabytes
into JSON would make the receiver the slow part).

It takes what gRPC servers take by default, the OpenTelemetry Collector's among them: messages
of at most 4 MiB. Larger ones are refused (RESOURCE_EXHAUSTED) before they reach `export`.
"""

import json
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

PORT, OUT, MODE_FILE = sys.argv[1], sys.argv[2], sys.argv[3]
TLS = sys.argv[4:6] if len(sys.argv) >= 6 else None
LOCK = threading.Lock()


def mode():
    try:
        with open(MODE_FILE) as f:
            return f.read().strip() or "ok"
    except OSError:
        return "ok"


def export(request, context):
    m = mode()
    if m == "unavailable":
        context.abort(grpc.StatusCode.UNAVAILABLE, "down, for the test")
    if m == "exhausted":
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "full, for the test")
    if m == "slow":
        time.sleep(5)
    if m == "quiet":
        points = {}
        first = None
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    data = getattr(metric, kind).data_points if kind else []
                    points[metric.name] = points.get(metric.name, 0) + len(data)
                    if first is None and len(data):
                        first = data[0].time_unix_nano
        record = {"bytes": request.ByteSize(), "points": points, "time": first}
    else:
        record = MessageToDict(request, preserving_proto_field_name=True)
    record["received_at"] = time.time()
    with LOCK, open(OUT, "a") as f:
        f.write(json.dumps(record) + "\n")
    if m == "garbage":
        return b"\xff\xff\xff\xff"
    return metrics_service_pb2.ExportMetricsServiceResponse()


def serialize(response):
    return response if isinstance(response, bytes) else response.SerializeToString()


handler = grpc.method_handlers_generic_handler(
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
    {
        "Export": grpc.unary_unary_rpc_method_handler(
            export,
            request_deserializer=metrics_service_pb2.ExportMetricsServiceRequest.FromString,
            response_serializer=serialize,
        )
    },
)
# gRPC's default limits: a request over 4 MiB is refused, as a default collector refuses it.
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
if TLS:
    with open(TLS[0], "rb") as c, open(TLS[1], "rb") as k:
        credentials = grpc.ssl_server_credentials([(k.read(), c.read())])
    server.add_secure_port(f"127.0.0.1:{PORT}", credentials)
else:
    server.add_insecure_port(f"127.0.0.1:{PORT}")
server.start()
print("listening", flush=True)
server.wait_for_termination()
