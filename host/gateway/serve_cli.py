"""`kiosk gateway serve`: one asyncio process serving kiosks over TCP and serial lines.

    kiosk gateway serve --db URL --listen HOST:PORT [--serial DEVICE[@BAUD] ...]
                        [--metrics HOST:PORT] [--key PATH] [--policy NAME ...]
                        [--no-default-policy]

The gateway signs its replies with the key made by `kiosk gateway init` (for SQLite, the
`gateway.key` beside the database; for PostgreSQL give --key). The key's cert (KEY.cert beside
it, `kiosk gateway certify`), if there is one, goes with each sign_in_reply: kiosks provisioned
with the authority key move to a certified key by it (key rotation; certs.py). Logs are JSON
lines on stderr; the first `listening` event carries the bound port (useful with port 0).
`--workers N` runs N gateway processes on the one port (see workers.py), e.g. one per core
(at most MAX_WORKERS).
`--policy` may be given once per region's policy: each resident is settled under their enrolment
region's (异地就医; see settlement/regions.py). One of them must be the default (without
policy.regions), or every resident of another region would be refused at the kiosk:
`--no-default-policy` says that is meant (the counter settles them).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from onestop.host.gateway import eventloop
from onestop.host.gateway.config import SETTLEMENT_TIMEZONE

if TYPE_CHECKING:
    from onestop.host.gateway.transports import SerialSpec

# Kept light: `kiosk --help` imports this module; the server's imports wait for `serve`.

T = TypeVar("T")

DEFAULT_IDLE_TIMEOUT_S = 120.0
DEFAULT_LISTEN = "127.0.0.1:7400"
DEFAULT_POLICY = "reference"


# --workers: one per core is the point (workers.py); past the cores more only compete for
# them, and each worker holds ledger connections of its own and answers every --metrics scrape.
# 64 is more cores than a gateway host has; a slip (500) would fork that many processes.
MAX_WORKERS = 64
PARENT_CHECK_S = 1.0  # --stop-with-parent: how soon the gateway stops after its parent
KEY_CHECK_S = 10.0  # how soon a gateway stops once its key is revoked (a settle finds it at once)


def register_serve(gateway_subparsers: argparse._SubParsersAction) -> None:
    parser = gateway_subparsers.add_parser(
        "serve", help="serve kiosks over TCP and serial lines",
        description="Serve kiosks: verify every signed frame, settle exactly once, reply signed.",
    )
    parser.add_argument("--db", required=True, metavar="URL",
                        help="ledger: sqlite:///PATH (embedded) or postgresql://...")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"TCP address for kiosks (default {DEFAULT_LISTEN}; port 0 = any)")
    parser.add_argument("--serial", action="append", default=[], metavar="DEVICE[@BAUD]",
                        help="also serve a serial line, e.g. /dev/ttyUSB0@115200 (repeatable)")
    parser.add_argument("--metrics", metavar="HOST:PORT",
                        help="serve Prometheus metrics on this address")
    parser.add_argument("--key", type=Path, metavar="PATH",
                        help="the gateway's signing key (default: gateway.key beside an SQLite "
                             "ledger; required for PostgreSQL)")
    parser.add_argument("--policy", action="append", metavar="NAME",
                        help=f"settlement policy, shipped name or .toml path (default "
                             f"{DEFAULT_POLICY}); repeatable: each resident is settled under "
                             "the one whose policy.regions hold their insured region, else "
                             "the one without regions (the default: one is required)")
    parser.add_argument("--no-default-policy", action="store_true",
                        help="serve without a default policy (one without policy.regions): "
                             "residents of other regions are refused and settled at the "
                             "counter")
    parser.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S,
                        metavar="SECONDS",
                        help=f"close a TCP connection silent this long "
                             f"(default {DEFAULT_IDLE_TIMEOUT_S:g})")
    parser.add_argument("--workers", type=_worker_count, default=1, metavar="N",
                        help="gateway processes accepting from one listening socket, kiosks "
                             "spread evenly over them, e.g. one per core (default 1, at most "
                             f"{MAX_WORKERS}); worker 0 "
                             "serves the serial lines, and on --metrics every worker's metrics "
                             "(labelled worker)")
    parser.add_argument("--timezone", metavar="ZONE", default=SETTLEMENT_TIMEZONE,
                        help="time zone of the settlement day and year (default "
                             f"{SETTLEMENT_TIMEZONE}, as the kiosks' clocks and the national "
                             "platform count days, whatever this machine's own zone)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    parser.add_argument("--stop-with-parent", action="store_true",
                        help="stop when the process that started this one exits, however it "
                             "ends (kill -9 included): for the simulated hall, demo and TUI")
    parser.set_defaults(func=run_serve)


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {count}")
    if count > MAX_WORKERS:
        cores = os.cpu_count()
        raise argparse.ArgumentTypeError(f"at most {MAX_WORKERS}, not {count}: give one per "
                                         f"core{f' (this host has {cores})' if cores else ''}")
    return count


def run_serve(args: argparse.Namespace) -> int:
    from onestop.host.gateway import logs
    from onestop.host.gateway.server import ServeError

    # The parent as it is now, before start-up (a parent killed meanwhile is seen at once).
    args.parent_pid = os.getppid() if args.stop_with_parent else None
    logs.configure(args.log_level)
    logs.skip_caller_lookup()
    from onestop.host.gateway.server import raise_fd_limit

    raise_fd_limit()  # a descriptor per kiosk: as many as the system allows this process
    try:
        if args.stop_with_parent and args.workers > 1:
            raise ServeError("--stop-with-parent serves as one process: not with --workers")
        _check_default_policy(args)
        if args.workers == 1:
            return eventloop.run(_serve(args))
        return _serve_workers(args)
    except ServeError as exc:
        print(f"kiosk gateway serve: {exc}", file=sys.stderr)
        return 2


def _serve_workers(args: argparse.Namespace) -> int:
    from onestop.host.gateway import logs
    from onestop.host.gateway.logs import EventLog
    from onestop.host.gateway.server import ServeError, check_config
    from onestop.host.gateway.workers import MetricsPorts, WorkersError, supervise

    config, listen, _serials, metrics_at = _config(args)
    check_config(config)  # one clear line now, not one per worker
    _check_metrics_port(metrics_at)
    ports = MetricsPorts(args.workers) if metrics_at is not None else None

    def run_worker(index: int, listener: Any, shares: Any, ready_fd: int | None) -> int:
        logs.configure(args.log_level, static={"worker": index})
        try:
            return eventloop.run(_serve(args, worker=(index, listener, shares, ports),
                                        ready_fd=ready_fd))
        except ServeError as exc:
            print(f"kiosk gateway serve (worker {index}): {exc}", file=sys.stderr)
            return 2

    try:
        return supervise(args.workers, run_worker, listen[0], listen[1], EventLog())
    except WorkersError as exc:
        raise ServeError(str(exc)) from None


def _check_default_policy(args: argparse.Namespace) -> None:
    """Refuse policies none of which is the default, unless --no-default-policy says so: every
    resident of a region none claims would be refused at the kiosk. And the flag with one."""
    from onestop.host.gateway.server import ServeError
    from onestop.host.settlement import PolicyError, load_policy_set

    if args.no_default_policy and not args.policy:
        raise ServeError("--no-default-policy needs --policy: the regions' policies to serve")
    given = args.policy or [DEFAULT_POLICY]
    try:
        policies = load_policy_set(given)  # clashing policies: the message start_gateway gives
    except PolicyError as exc:
        raise ServeError(str(exc)) from None
    default = next((source for source, policy in zip(given, policies.policies, strict=True)
                    if not policy.regions), None)
    if default is None and not args.no_default_policy:
        regions = ", ".join(region for policy in policies.policies for region in policy.regions)
        raise ServeError(f"no --policy is a default (one without policy.regions): residents "
                         f"insured outside {regions} would be refused at every kiosk; add "
                         f"--policy {DEFAULT_POLICY} (or another default), or give "
                         "--no-default-policy to leave them to the counter")
    if default is not None and args.no_default_policy:
        raise ServeError(f"--no-default-policy, but --policy {default} is a default (it has no "
                         "policy.regions): give it regions, or drop --no-default-policy")


def _check_serials(serials: list[SerialSpec], texts: list[str]) -> None:
    """Refuse a line given twice (even by another name): two readers would split its frames."""
    from onestop.host.gateway.server import ServeError

    seen: dict[str, str] = {}
    for spec, text in zip(serials, texts, strict=True):
        path = os.path.realpath(spec.device)
        if path in seen:
            raise ServeError(f"--serial {path} given twice ({seen[path]!r} and {text!r}); "
                             "a line has one reader")
        seen[path] = text


def _check_metrics_port(metrics_at: tuple[str, int] | None) -> None:
    """Refuse now a metrics port worker 0 could not bind: one line, not a worker's exit."""
    import socket

    from onestop.host.gateway.server import ServeError

    if metrics_at is None or not metrics_at[1]:
        return  # port 0: a free one is picked
    host, port = metrics_at
    try:
        with socket.socket() as sock:  # as MetricsEndpoint binds: IPv4, SO_REUSEADDR
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise ServeError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None


def _timezone(name: str | None) -> tzinfo | None:
    from onestop.host.gateway.server import ServeError

    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ServeError(f"unknown time zone {name!r} (try Asia/Shanghai)") from None


def _config(args: argparse.Namespace, worker: int | None = None) -> tuple[Any, ...]:
    """(config, listen, serials, metrics_at) for the gateway, or worker number `worker`."""
    from onestop.host.gateway.server import GatewayConfig, ServeError
    from onestop.host.gateway.transports import SerialSpec, parse_host_port

    def option(name: str, parse: Callable[[str], Any], text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:  # which option it was: `--metrics 9400` named none
            raise ServeError(f"{name} {text}: {exc}") from None

    listen = option("--listen", parse_host_port, args.listen)
    serials = [option("--serial", SerialSpec.parse, text) for text in args.serial]
    metrics_at = option("--metrics", parse_host_port, args.metrics) if args.metrics else None
    _check_serials(serials, args.serial)
    if not args.idle_timeout > 0:
        raise ServeError(f"--idle-timeout must be above 0 seconds, not {args.idle_timeout:g}")
    policies = args.policy or [DEFAULT_POLICY]
    config = GatewayConfig(
        db=args.db, key_path=args.key,
        policy=policies[0] if len(policies) == 1 else tuple(policies),
        tz=_timezone(args.timezone),
        idle_timeout_s=args.idle_timeout,
    )
    if worker:  # worker 0 serves the serial lines and the metrics address as given
        serials = []
        if metrics_at is not None:  # its own, on loopback, for worker 0 to read
            metrics_at = ("127.0.0.1", 0)
    return config, listen, serials, metrics_at


async def _serve(args: argparse.Namespace, worker: tuple[int, Any, Any, Any] | None = None,
                 ready_fd: int | None = None) -> int:
    from onestop.host.gateway.server import SharedListener, start_gateway

    config, listen, serials, metrics_at = _config(args, None if worker is None else worker[0])
    shared = None if worker is None else SharedListener(*worker)
    gateway = await start_gateway(config, listen, serials, metrics_at, shared=shared)
    eventloop.tune_gc_for_serving()
    if ready_fd is not None:
        os.write(ready_fd, b".")
        os.close(ready_fd)
    stop = asyncio.Event()
    heard: list[str] = []
    loop = asyncio.get_running_loop()

    def stopping(signum: signal.Signals) -> None:
        heard.append(signum.name)
        stop.set()

    from onestop.host.gateway.workers import STOP_SIGNALS

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stopping, signal.Signals(signum))
    parent = getattr(args, "parent_pid", None)
    orphan = asyncio.create_task(_watch_parent(parent, stop, heard)) if parent else None
    revoked: list[str] = []

    def key_revoked(status: str) -> None:  # a settle found it revoked: stop now
        if not revoked:
            revoked.append(status)
        stop.set()

    gateway.server.service.on_signer_revoked = key_revoked
    # The gateway's process: a worker's supervisor, whose workers are one gateway.
    compare_rules, forget_rules = _rules_watch(
        gateway, args.timezone, os.getppid() if worker is not None else os.getpid())
    # The key check and the rules record use the ledger, and the record writes to it: on a
    # thread of their own, so the event loop never waits for another program's write turn (a
    # long `import-bills`) or the disk. One thread: one more ledger connection, not one a check.
    checks = concurrent.futures.ThreadPoolExecutor(1, "ledger-watch")

    async def off_loop(work: Callable[[], T]) -> T:
        return await loop.run_in_executor(checks, work)

    await off_loop(compare_rules)
    watch = asyncio.create_task(_watch_key(gateway, stop, revoked, off_loop, compare_rules))
    try:
        await stop.wait()
    finally:
        watch.cancel()
        if orphan is not None:
            orphan.cancel()
        if revoked:
            gateway.log.error("gateway_key_revoked", kid=gateway.kid, status=revoked[0])
        gateway.log.info("stopping", signal=heard[0] if heard else None)
        # after the check under way, if any: no other gateway is to warn against this one
        await off_loop(forget_rules)
        checks.shutdown(wait=True)
        await gateway.close()
    return 3 if revoked else 0


async def _watch_parent(parent: int, stop: asyncio.Event, heard: list[str]) -> None:
    """--stop-with-parent: a parent that exits (even by SIGKILL, which it cannot pass on)
    leaves this process to init, so its parent id changes; then stop, as on SIGTERM. Asked
    every PARENT_CHECK_S: the kernel's parent-death signal is tied to the thread that forked,
    and a simulator may start the gateway from a thread that ends."""
    while not stop.is_set():
        if os.getppid() != parent:
            heard.append("parent_exited")
            stop.set()
            return
        await asyncio.sleep(PARENT_CHECK_S)


def _rules_watch(gateway: Any, timezone: str,
                 process: int) -> tuple[Callable[[], None], Callable[[], None]]:
    """Record what this gateway settles by in the ledger and warn (`rules_differ`, once per
    change) of live gateways on it that settle otherwise: see rules.py. Returns (compare,
    forget): forget removes the record as the gateway stops (a gateway restarted with a new
    policy was warned against its own stopped self for a minute, LIVE_S)."""
    from onestop.host.gateway import rules

    service = gateway.server.service
    ours = rules.rules_of(service.handlers.policy_digests, timezone)
    name = rules.serving_name(gateway.kid, process)
    told: dict[str, list[str]] = {}

    def compare() -> None:
        try:
            differ = rules.record_and_compare(service.ledger, name, ours, int(time.time()))
        except Exception as exc:  # noqa: BLE001 - the ledger away: serving goes on, said
            gateway.log.warning("rules_check_failed", error=str(exc)[:200])
            return
        for other, found in differ.items():
            if told.get(other) != found:
                gateway.log.warning("rules_differ", gateway=name, other=other,
                                    differences=found)
                gateway.server.metrics.warning("rules_differ")
        told.clear()
        told.update(differ)

    def forget() -> None:
        try:
            service.ledger.forget_serving([name])
        except Exception as exc:  # noqa: BLE001 - stopping anyway; the record ages out
            gateway.log.warning("rules_forget_failed", error=str(exc)[:200])

    return compare, forget


async def _watch_key(gateway: Any, stop: asyncio.Event, revoked: list[str],
                     off_loop: Callable[[Callable[[], Any]], Awaitable[Any]],
                     also: Callable[[], None] | None = None) -> None:
    """Every KEY_CHECK_S: is the key this gateway signs with still active? An operator who
    revokes a leaked key (`kiosk gateway revoke --gateway-id`) must not have gateways go on
    signing settlements with it until someone restarts them. Asked on the gateway's own ledger
    (through `off_loop`: a thread's connection, not the event loop's); a check that fails is
    logged, never silent."""
    ledger = gateway.server.service.ledger
    while not stop.is_set():
        await asyncio.sleep(KEY_CHECK_S)
        try:
            record = await off_loop(lambda: ledger.get_key(gateway.kid))
        except Exception as exc:  # noqa: BLE001 - the ledger away: keep serving, say so
            gateway.log.warning("key_check_failed", kid=gateway.kid, error=str(exc)[:200])
            continue
        if record is None or record.status != "active":
            if not revoked:
                revoked.append("gone" if record is None else record.status)
            stop.set()
        elif also is not None:
            await off_loop(also)



