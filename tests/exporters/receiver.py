"""A real OTLP trace receiver on loopback, built from opentelemetry-proto:
a gRPC TraceService and an OTLP/HTTP (protobuf) endpoint. It can also
misbehave: answer 503/UNAVAILABLE, refuse (404/UNIMPLEMENTED), or hang.

The HTTP endpoint refuses what the OpenTelemetry Collector's OTLP receiver
refuses: a method other than POST (405), a Content-Type other than
``application/x-protobuf`` (415; this receiver reads no OTLP/JSON), a
Content-Encoding it cannot decode or a body that is not an
ExportTraceServiceRequest (400). It takes gzip as the collector does, and
keeps each export's request headers (:attr:`Received.headers`)."""

from __future__ import annotations

import gzip
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Received:
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.lock = threading.Lock()
        self.mode = "ok"  # "ok", "unavailable", "not_found", "hang"
        #: Export requests that reached the receiver, whatever it answered.
        self.posts = 0
        self.release = threading.Event()
        #: False: count the spans and drop the requests (long load tests).
        self.keep = True
        self.span_count = 0
        #: The HTTP headers of each export request taken (lower-case names).
        self.headers: list[dict[str, str]] = []

    def add(self, request) -> None:
        count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with self.lock:
            self.span_count += count
            if self.keep:
                self.requests.append(request)

    def spans(self) -> list:
        with self.lock:
            return [
                span
                for request in self.requests
                for resource in request.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            ]

    def service_names(self) -> set[str]:
        with self.lock:
            return {
                attr.value.string_value
                for request in self.requests
                for resource in request.resource_spans
                for attr in resource.resource.attributes
                if attr.key == "service.name"
            }

    def wait_until(self, ready, timeout: float = 30.0) -> list:
        """The spans received, once ``ready(spans)`` holds (or the time is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.spans()
            if ready(spans):
                return spans
            time.sleep(0.05)
        return self.spans()


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request, context):
        with self.received.lock:
            self.received.posts += 1
        if self.received.mode == "hang":
            self.received.release.wait(30)
        if self.received.mode == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "collector unavailable")
        if self.received.mode == "not_found":
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "no trace service here")
        self.received.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class GrpcReceiver:
    def __init__(self) -> None:
        self.received = Received()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceService(self.received), self.server
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.server.start()

    def stop(self) -> None:
        self.received.release.set()
        self.server.stop(grace=0)


class HttpReceiver:
    def __init__(self) -> None:
        received = self.received = Received()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with received.lock:
                    received.posts += 1
                if received.mode == "hang":
                    received.release.wait(30)
                refused = self.path != "/v1/traces" or received.mode == "not_found"
                if refused or received.mode == "unavailable":
                    self.answer(404 if refused else 503)
                    return
                content_type = self.headers.get("Content-Type", "").split(";")[0].strip()
                if content_type != "application/x-protobuf":
                    self.answer(415)
                    return
                encoding = self.headers.get("Content-Encoding", "").strip().lower()
                request = trace_service_pb2.ExportTraceServiceRequest()
                try:
                    if encoding == "gzip":
                        body = gzip.decompress(body)
                    elif encoding not in ("", "identity"):
                        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
                    request.ParseFromString(body)
                except Exception:
                    self.answer(400)
                    return
                with received.lock:
                    received.headers.append({k.lower(): v for k, v in self.headers.items()})
                received.add(request)
                payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                self.answer(405)

            def answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.received.release.set()
        self.server.shutdown()
        self.server.server_close()
