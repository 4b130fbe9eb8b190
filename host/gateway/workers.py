"""`kiosk gateway serve --workers N`: N gateway processes sharing one listening port.

One gateway process runs on one core (its work is CPU and Python holds one core at a time), so
an operator with several cores runs several. The supervisor (this process) reserves the port,
forks the workers — each binds the same address with SO_REUSEPORT, and the kernel spreads new
connections over them — says `listening` once every worker is, passes SIGTERM/SIGINT on, and
starts a worker again if one dies. A worker dies with the supervisor (PR_SET_PDEATHSIG), so
`kill -9` of the gateway stops all of it, as with one process.

The workers share the ledger as separate gateways do: SQLite writers take turns on the ledger's
lock file, PostgreSQL orders them with row locks. Serial lines are served by worker 0 (a line
has one reader); with --metrics PORT, worker i serves its own metrics on PORT + i (each is a
scrape target; port 0 picks free ports, named in each worker's `metrics` event).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable

from onestop.host.gateway.logs import EventLog

RESTART_DELAY_S = 1.0  # before starting again a worker that died (never a tight crash loop)
START_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1


class WorkersError(Exception):
    """The workers could not be started; the message says why."""


def reserve_port(host: str, port: int) -> tuple[socket.socket, tuple[str, int]]:
    """A socket bound (not listening) to host:port with SO_REUSEPORT: it fixes the port (port 0
    picks one) for the workers to bind too, and is closed once they listen."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise WorkersError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise WorkersError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    bound = sock.getsockname()
    return sock, (host, int(bound[1]))


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: a worker outlives a killed supervisor until its next restart
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(1)


def supervise(count: int, run_worker: Callable[[int, int, int], int], host: str, port: int,
              log: EventLog) -> int:
    """Fork `count` workers, each running run_worker(index, port, ready_fd) -> exit status (it
    writes one byte to ready_fd once it listens on port); return when they have all stopped."""
    reserved, (host, port) = reserve_port(host, port)
    parent = os.getpid()
    ready_r, ready_w = os.pipe()
    stopping = False
    children: dict[int, int] = {}  # pid -> worker index

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _die_with_parent(parent)
                reserved.close()
                os.close(ready_r)
                status = run_worker(index, port, ready_w)
            except BaseException:  # noqa: BLE001 - a worker never returns into the supervisor
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        children[pid] = index

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(count):
        start(index)
    os.close(ready_w)
    try:
        ready = 0
        deadline = time.monotonic() + START_TIMEOUT_S
        while ready < count and not stopping:
            if time.monotonic() > deadline:
                raise WorkersError("the workers did not start listening in time")
            readable, _, _ = select.select([ready_r], [], [], 0.2)
            if readable:
                got = os.read(ready_r, count)
                if not got:
                    break
                ready += len(got)
            _reap(children, lambda pid, index, status: _early_exit(index, status))
    except WorkersError:
        stop(signal.SIGTERM, None)
        _wait_all(children)
        raise
    finally:
        reserved.close()
    log.info("listening", transport="tcp", host=host, port=port, workers=count)
    worst = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        worst = worst or code
        if not stopping:
            log.error("worker_exited", worker=index, status=code)
            time.sleep(RESTART_DELAY_S)
            if not stopping:
                start(index)
    return 0 if stopping and worst == 0 else (worst or 1)


def _early_exit(index: int, status: int) -> None:
    raise WorkersError(f"gateway worker {index} stopped while starting (exit status {status})")


def _reap(children: dict[int, int], exited: Callable[[int, int, int], None]) -> None:
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            index = children.pop(pid)
            exited(pid, index, os.waitstatus_to_exitcode(status))


def _wait_all(children: dict[int, int]) -> None:
    for pid in list(children):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        children.pop(pid, None)
