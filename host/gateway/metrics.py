"""Prometheus metrics for the gateway: frames, errors by code, settlements, settle latency.

Each gateway owns its own registry, so several gateways (or tests) in one process never share
or clash over counters. `serve_http` exposes it on the `--metrics HOST:PORT` address.
"""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

# Settlement latency buckets (seconds): the target is p99 <= 150 ms, so resolve well below it.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.frames = Counter(
            "onestop_frames", "Frames by direction (in/out) and message type.",
            ["dir", "type"], registry=self.registry,
        )
        self.errors = Counter(
            "onestop_errors", "Error replies and discarded input, by error code.",
            ["code"], registry=self.registry,
        )
        self.settlements = Counter(
            "onestop_settlements", "Settle requests answered with a settlement (new or retry).",
            ["kind"], registry=self.registry,
        )
        self.settle_latency = Histogram(
            "onestop_settle_latency_seconds",
            "Time from a settle frame's arrival to its reply being written.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.connections = Gauge(
            "onestop_connections", "Open kiosk connections by transport.",
            ["transport"], registry=self.registry,
        )

        self._children: dict[tuple[str, ...], Any] = {}  # labelled series, looked up once

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def frame(self, direction: str, message_type: str) -> None:
        self._child(self.frames, direction, message_type).inc()

    def error(self, code: str) -> None:
        self._child(self.errors, code).inc()

    def settlement(self, kind: str) -> None:  # "new" | "retry"
        self._child(self.settlements, kind).inc()


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up shutdown


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # scrapes are not events; the gateway's own log stays JSON lines


class MetricsEndpoint:
    """The HTTP endpoint Prometheus scrapes (/metrics); stopped with the gateway."""

    def __init__(self, metrics: GatewayMetrics, host: str, port: int) -> None:
        self._server = make_server(host, port, make_wsgi_app(metrics.registry),
                                   _ThreadingWSGIServer, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="metrics-http", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
