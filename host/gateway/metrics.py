"""Prometheus metrics for the gateway: frames, errors by code, settlements, settle latency,
warnings, and how long the ledger work under way has run.

Each gateway owns its own registry, so several gateways (or tests) in one process never share
or clash over counters. `MetricsEndpoint` exposes it on the `--metrics HOST:PORT` address.
Under `serve --workers N` that address shows every worker's series, each labelled with its
`worker` (WorkersCollector): one scrape target per gateway, as an operator expects.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

# Settlement latency buckets (seconds): the target is p99 <= 150 ms, so resolve well below it.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class _Counts:
    """A labelled counter kept as plain integers and read by Prometheus when it scrapes.

    prometheus_client's Counter takes a lock on every increment; these are counted once or
    twice per frame on the event loop's thread, so a dict is enough (a scrape copies it in one
    step, which the GIL makes atomic).
    """

    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        self.values: dict[tuple[str, ...], int] = {}

    def inc(self, *labels: str) -> None:
        self.values[labels] = self.values.get(labels, 0) + 1

    def collect(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in list(self.values.items()):
            family.add_metric(list(labels), value)
        return [family]


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.frames = _Counts(
            "onestop_frames", "Frames by direction (in/out) and message type.", ["dir", "type"])
        self.errors = _Counts(
            "onestop_errors", "Error replies and discarded input, by error code.", ["code"])
        self.settlements = _Counts(
            "onestop_settlements", "Settle requests answered with a settlement (new or retry).",
            ["kind"])
        self.warnings = _Counts(
            "onestop_warnings",
            "Events logged as warnings for the operator (reconcile_mismatch, ledger_slow...).",
            ["event"])
        for counts in (self.frames, self.errors, self.settlements, self.warnings):
            self.registry.register(counts)
        self.settle_latency = Histogram(
            "onestop_settle_latency_seconds",
            "Time from a settle frame's arrival to its reply being written.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.connections = Gauge(
            "onestop_connections", "Open kiosk connections by transport.",
            ["transport"], registry=self.registry,
        )

    def watch_ledger(self, busy_seconds: Callable[[], float]) -> None:
        """How long the ledger work under way has run (0 when idle), read at each scrape: the
        endpoint answers from its own thread while a stalled ledger holds the gateway."""
        Gauge("onestop_ledger_busy_seconds",
              "How long the ledger work under way has been running (0: none).",
              registry=self.registry).set_function(busy_seconds)

    def gateway_key(self, kid: str, cert_serial: int) -> None:
        """The key this gateway signs with and its cert's serial (0: none): gateways of one
        ledger serving different ones are a rotation half done, and kiosks that moved refuse
        the older key."""
        Gauge("onestop_gateway_key_info",
              "The gateway's signing key (kid) and its cert's serial (0: uncertified); 1.",
              ["kid", "cert_serial"], registry=self.registry).labels(kid, str(cert_serial)).set(1)

    def warning(self, event: str) -> None:
        self.warnings.inc(event)

    def frame(self, direction: str, message_type: str) -> None:
        self.frames.inc(direction, message_type)

    def error(self, code: str) -> None:
        self.errors.inc(code)

    def settlement(self, kind: str) -> None:  # "new" | "retry"
        self.settlements.inc(kind)


# The endpoint shares the gateway's process, and so its descriptors: a client that opens
# connections and says nothing must not use them up (the kiosks' port would stop accepting).
MAX_SCRAPES = 8  # connections served at once; more are closed at once
SCRAPE_TIMEOUT_S = 5.0  # a connection silent this long is closed


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds up shutdown
    request_queue_size = 64  # the listen backlog: connections over MAX_SCRAPES are let in, closed

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(MAX_SCRAPES)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # busy: Prometheus retries at its next scrape
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a scraper that timed out or hung up: nothing for the gateway's log


class _QuietHandler(WSGIRequestHandler):
    timeout = SCRAPE_TIMEOUT_S  # socket timeout for reading the request and writing the page

    def log_message(self, format: str, *args: object) -> None:
        pass  # scrapes are not events; the gateway's own log stays JSON lines


# A worker's own endpoint is asked by worker 0 while Prometheus waits for the page: a worker
# that does not answer in this time is left out of that scrape (onestop_worker_up 0).
WORKER_SCRAPE_TIMEOUT_S = 2.0
# When a series was created: a sample of its histogram in a registry, but a gauge family of its
# own once written out and read back, so merged it would come twice. Left out of the merged
# page (Prometheus does without it).
CREATED = "_created"


def workers_page(registry: CollectorRegistry,
                 ports: Callable[[], Iterable[tuple[int, int]]]) -> CollectorRegistry:
    """What worker 0 of `serve --workers N` shows on --metrics: see WorkersCollector."""
    page = CollectorRegistry(auto_describe=False)  # nothing is read until a scrape
    page.register(WorkersCollector(registry, ports))
    return page


class WorkersCollector:
    """Every worker's series as one page, each sample labelled `worker`: worker 0's (this
    process's) from its registry, the others' read from their own endpoints on loopback
    (`ports()`: (worker, port) of each other worker that serves them). Labelled rather than
    summed: a worker started again begins its counters at 0, which Prometheus reads as a
    reset of that worker's series only."""

    def __init__(self, registry: CollectorRegistry,
                 ports: Callable[[], Iterable[tuple[int, int]]]) -> None:
        self._registry = registry
        self._ports = ports

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        up = GaugeMetricFamily("onestop_worker_up", "Whether a gateway worker's metrics were "
                               "read for this scrape (0: it did not answer).", labels=["worker"])
        for worker, families in self._each_worker(up):
            for family in families:
                if family.name.endswith(CREATED):
                    continue  # read back from a page it is a family of its own: see CREATED
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation,
                                                        family.type, family.unit)
                into.samples.extend(sample._replace(labels={**sample.labels,
                                                            "worker": str(worker)})
                                    for sample in family.samples
                                    if not sample.name.endswith(CREATED))
        yield from merged.values()
        yield up

    def _each_worker(self, up: GaugeMetricFamily) -> Iterator[tuple[int, list[Metric]]]:
        """(worker, its families) of each worker that answered; `up` says which did."""
        up.add_metric(["0"], 1)
        yield 0, list(self._registry.collect())
        for worker, port in sorted(self._ports()):
            try:
                families = _scrape(port)
            except (OSError, ValueError):  # restarting, or stuck: this scrape goes on
                up.add_metric([str(worker)], 0)
                continue
            up.add_metric([str(worker)], 1)
            yield worker, families


FLEET_READ_TIMEOUT_S = 2.0


class KioskFleetCollector:
    """Each active kiosk's last sign-in, read from the ledger at each scrape: a kiosk signs in
    every 10 minutes, idle or busy, so an alert on `time() -
    onestop_kiosk_last_sign_in_timestamp_seconds > 1200` finds one that is off, cut off or
    stuck (0: it never signed in). The ledger is every gateway's, so the series is on the page
    Prometheus scrapes, once per gateway (not per worker). The reads run on one thread of
    their own, so a scrape costs one ledger connection whatever thread serves it."""

    def __init__(self, read: Callable[[], tuple[list[Any], dict[str, Any]]]) -> None:
        self._read = read  # () -> (the key records, kiosk id -> its last SignIn)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-ledger")

    def collect(self) -> Iterator[Metric]:
        read = GaugeMetricFamily(
            "onestop_kiosk_sign_ins_read",
            "Whether this scrape read the kiosks' sign-ins from the ledger (0: it could not).")
        try:
            keys, sign_ins = self._reader.submit(self._read).result(FLEET_READ_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - a ledger down or slow: the page still answers
            read.add_metric([], 0)
            yield read
            return
        read.add_metric([], 1)
        last = GaugeMetricFamily(
            "onestop_kiosk_last_sign_in_timestamp_seconds",
            "When each active kiosk last signed in (Unix seconds, the gateway's clock; 0: "
            "never).", labels=["kiosk"])
        for key in keys:
            if key.role == "kiosk" and key.status == "active":
                signed_in = sign_ins.get(key.kid)
                last.add_metric([key.kid], 0 if signed_in is None else signed_in.at)
        yield last
        yield read

    def close(self) -> None:
        self._reader.shutdown(wait=False, cancel_futures=True)


def _scrape(port: int) -> list[Metric]:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=WORKER_SCRAPE_TIMEOUT_S) as page:
        return list(text_string_to_metric_families(page.read().decode()))


class MetricsEndpoint:
    """The HTTP endpoint Prometheus scrapes (/metrics); stopped with the gateway."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int,
                 on_close: Callable[[], None] | None = None) -> None:
        self._on_close = on_close
        self._server = make_server(host, port, make_wsgi_app(registry),
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
        if self._on_close is not None:
            self._on_close()
