"""`kiosk gateway serve --workers N`: N gateway processes sharing one listening port.

One gateway process runs on one core (its work is CPU and Python holds one core at a time), so
an operator with several cores runs several. The supervisor (this process) opens the listening
socket and forks the workers, which all accept from it; says `listening` once every worker
serves; passes SIGTERM/SIGINT on; and starts a worker again if one dies. A worker dies with the
supervisor (PR_SET_PDEATHSIG), so `kill -9` of the gateway stops all of it, as with one
process.

Kiosks stay connected for hours, so who accepts a connection decides who carries its load. The
workers keep their open-connection counts in shared memory, and a worker that holds more than
the least loaded one leaves new connections to the others (it stops watching the socket for
ACCEPT_PAUSE_S): the kiosks spread evenly. (SO_REUSEPORT, one queue per worker filled by a hash
of the peer's address, left one worker 10-20 % more kiosks than the other, and those kiosks
waited longer.)

The workers share the ledger as separate gateways do: SQLite writers take turns on the ledger's
lock file, PostgreSQL orders them with row locks. Serial lines are served by worker 0 (a line
has one reader). With --metrics HOST:PORT, worker 0 serves that address and shows every
worker's series there, labelled `worker`: the others serve theirs on a loopback port of their
own (MetricsPorts) for worker 0 to read at each scrape.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable

from onestop.host.gateway.logs import EventLog

RESTART_DELAY_S = 1.0  # before starting again a worker that died (never a tight crash loop)
# A worker's exit status that a restart cannot mend: 2 it cannot start (its key, ledger or
# options refused), 3 its key was revoked while serving. The gateway stops instead.
FINAL_EXITS = frozenset({2, 3})
START_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1


BACKLOG = 1024  # connections the kernel holds for the workers to accept
# SIGHUP too: a closed terminal or a habitual `kill -HUP` stops the gateway cleanly (there is no
# configuration to reload) instead of killing it mid-batch.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


class WorkersError(Exception):
    """The workers could not be started; the message says why."""


class ConnectionShares:
    """Open connections per worker, in memory shared by the supervisor and its workers. Each
    worker writes only its own slot; the others only read it."""

    def __init__(self, workers: int) -> None:
        self._memory = mmap.mmap(-1, 8 * workers)  # anonymous and shared: survives fork
        self._counts = memoryview(self._memory).cast("q")

    def add(self, index: int, delta: int) -> None:
        self._counts[index] += delta

    def reset(self, index: int) -> None:
        self._counts[index] = 0

    def more_than_least(self, index: int) -> bool:
        """Whether worker `index` holds more connections than the least loaded worker."""
        return self._counts[index] > min(self._counts)


class MetricsPorts:
    """Each worker's own metrics port (0: none yet), in memory shared like ConnectionShares:
    a worker writes its slot once it serves them, worker 0 reads them all at a scrape."""

    def __init__(self, workers: int) -> None:
        self._memory = mmap.mmap(-1, 4 * workers)
        self._ports = memoryview(self._memory).cast("i")

    def set(self, index: int, port: int) -> None:
        self._ports[index] = port

    def known(self) -> list[tuple[int, int]]:
        """(worker, port) of each worker that has served its metrics."""
        return [(index, port) for index, port in enumerate(self._ports) if port]


def open_listener(host: str, port: int) -> tuple[socket.socket, tuple[str, int]]:
    """The listening socket the workers share (port 0 picks one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise WorkersError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
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


def supervise(count: int,
              run_worker: Callable[[int, socket.socket, ConnectionShares, int | None], int],
              host: str, port: int, log: EventLog) -> int:
    """Fork `count` workers, each running run_worker(index, listener, shares, ready_fd) -> exit
    status (it writes one byte to ready_fd once it serves; ready_fd is None for a worker
    started again after one died); return when all have stopped."""
    listener, (host, port) = open_listener(host, port)
    shares = ConnectionShares(count)
    parent = os.getpid()
    ready_r, ready_w = os.pipe()
    ready_to: int | None = ready_w  # where a starting worker says it serves (None: restarts)
    stopping = False
    children: dict[int, int] = {}  # pid -> worker index

    def start(index: int) -> None:
        shares.reset(index)  # a worker started again holds none of its predecessor's
        # No signal may run the supervisor's handler in the new worker before it has its own;
        # nor in the supervisor between the fork and the new worker's entry in `children`,
        # where stop() would not see it, or after a stop, which would not be told to it.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = -1
        try:
            if stopping:  # told to stop while starting the workers: start no more
                return
            pid = os.fork()
            if pid > 0:
                children[pid] = index
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if pid == 0:  # the worker
            status = 1
            try:
                for signum in STOP_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                _die_with_parent(parent)
                os.close(ready_r)
                status = run_worker(index, listener, shares, ready_to)
            except BaseException:  # noqa: BLE001 - a worker never returns into the supervisor
                import traceback

                traceback.print_exc()
            finally:
                logging.shutdown()  # log lines still waiting (os._exit skips atexit)
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for signum in STOP_SIGNALS:
        signal.signal(signum, stop)
    for index in range(count):
        start(index)
    os.close(ready_w)
    ready_to = None  # closed: a worker started again later must not write to that number
    try:
        ready = 0
        deadline = time.monotonic() + START_TIMEOUT_S
        while ready < count and not stopping:
            if time.monotonic() > deadline:
                raise WorkersError("the workers did not start listening in time")
            readable, _, _ = select.select([ready_r], [], [], 0.2)
            if readable:
                got = os.read(ready_r, count)
                if not got:  # all closed, one never ready: it is exiting; _reap will see it
                    time.sleep(0.05)
                ready += len(got)
            _reap(children, lambda pid, index, status: _early_exit(index, status))
    except WorkersError:
        stop(signal.SIGTERM, None)
        _wait_all(children)
        listener.close()
        raise
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
        if stopping:
            # A worker still starting when the stop came has no event loop to hear SIGTERM
            # yet, so the signal ends it (-SIGTERM) before it served anyone: a clean stop too.
            if code == -signal.SIGTERM:
                log.info("worker_stopped_while_starting", worker=index)
                code = 0
            worst = worst or code  # how the workers ended when told to stop
        else:
            log.error("worker_exited", worker=index, status=code)
            if code in FINAL_EXITS:  # started again it would only be refused, every second
                log.error("gateway_stopping", because=f"worker {index} exited with {code}")
                stop(signal.SIGTERM, None)
                worst = code
                continue
            time.sleep(RESTART_DELAY_S)
            if not stopping:
                start(index)
    listener.close()
    if worst in FINAL_EXITS:
        return worst
    return 0 if stopping and worst == 0 else 1


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
