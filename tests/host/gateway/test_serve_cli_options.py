"""`kiosk gateway serve` refuses options it cannot serve before it starts, with one line and exit
status 2: a busy metrics port, a serial line given twice. Run as a
user runs it (a process of its own), since workers are forked and a refusal must leave none."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from onestop.host.cli import build_parser
from onestop.host.gateway.serve_cli import _config

TIMEOUT_S = 20.0  # a refusal takes a second or two; a gateway that serves instead never ends


def session_processes(session: int) -> list[int]:
    """Live processes of this session (the gateway's, started with start_new_session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def refused(argv: list[str]) -> str:
    """Run argv; it must exit 2 with no traceback and no process left. Its one non-log line."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the gateway and any workers
        out, err = process.communicate()
        pytest.fail(f"still running after {TIMEOUT_S:g} s instead of refusing:\n{err[-2000:]}")
    assert session_processes(process.pid) == []
    assert "Traceback" not in out + err
    assert process.returncode == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("{")]  # not JSON logs
    assert len(lines) == 1, err
    # a supervisor waiting for "listening" must never be told the gateway is up
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "listening" not in events, err
    return lines[0]


def serve(db: str, *args: str) -> str:
    return refused([sys.executable, "-m", "onestop.host.cli", "gateway", "serve", "--db", db,
                    "--listen", "127.0.0.1:0", *args])


def test_an_address_without_a_host_names_its_option(db: str) -> None:
    # it said "expected HOST:PORT, got '9400'": of --listen or --metrics?
    line = serve(db, "--metrics", "9400")
    assert line == "kiosk gateway serve: --metrics 9400: expected HOST:PORT, got '9400'"


def test_a_port_out_of_range_is_named_so(db: str) -> None:
    # it said "expected HOST:PORT, got 'localhost:99999'", as if the form were wrong
    line = serve(db, "--metrics", "localhost:99999")
    assert line == ("kiosk gateway serve: --metrics localhost:99999: port 99999 is out of "
                    "range (ports go up to 65535)")


def test_the_metrics_port_is_the_one_given_whatever_the_workers(tmp_path: Path) -> None:
    # worker i served on PORT + i: 65535 with two workers was refused; now worker 0 serves
    # them all on PORT, and the others theirs on loopback ports of their own
    args = build_parser().parse_args(
        ["gateway", "serve", "--db", f"sqlite:///{tmp_path / 'l.db'}",
         "--metrics", "0.0.0.0:65535", "--workers", "2"])
    assert _config(args)[3] == ("0.0.0.0", 65535)
    assert _config(args, 0)[3] == ("0.0.0.0", 65535)
    assert _config(args, 1)[3] == ("127.0.0.1", 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_busy_metrics_port_is_refused_at_start(db: str, workers: int) -> None:
    # with workers, worker 0 used to exit for it (the gateway then stopped), its reason in
    # its own line
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = serve(db, "--metrics", f"127.0.0.1:{port}", "--workers", str(workers))
    assert line == (f"kiosk gateway serve: cannot serve metrics on 127.0.0.1:{port}: "
                    f"{os.strerror(errno.EADDRINUSE)}")


@pytest.mark.parametrize("by_link", [False, True])
def test_a_serial_line_given_twice_is_refused(db: str, tmp_path: Path, by_link: bool) -> None:
    # two readers of one line would each get part of its frames
    if by_link:  # the same line by another name
        device = tmp_path / "ttyFAKE"
        device.touch()
        (tmp_path / "ttyLINK").symlink_to(device)
        first, second, path = str(device), f"{tmp_path / 'ttyLINK'}@9600", str(device.resolve())
    else:
        first, second, path = "/dev/ttyS0", "/dev/ttyS0@9600", os.path.realpath("/dev/ttyS0")
    line = serve(db, "--serial", first, "--serial", second)
    assert line == (f"kiosk gateway serve: --serial {path} given twice ({first!r} and "
                    f"{second!r}); a line has one reader")


def test_a_serial_line_another_gateway_serves_is_refused(db: str, tmp_path: Path) -> None:
    # a second gateway started on the same kiosk's line (a service and one by hand): before,
    # both read it and the kiosk's requests were split between them
    from onestop.host.bench.gateway import GatewayProcess
    from onestop.host.sim.link import SerialLink

    link = SerialLink("kiosk-line", pace=False)
    first = GatewayProcess(db, tmp_path / "gateway.key", tmp_path / "first.log",
                           extra=("--serial", link.host_path))
    try:
        first.start()
        line = serve(db, "--serial", link.host_path)
        assert first.running  # the line stays the first one's
    finally:
        first.stop()
        link.close()
    assert line == (f"kiosk gateway serve: --serial {link.host_path} is in use by another "
                    "gateway (or another program that locked it): a line has one reader")


def test_two_serial_lines_are_accepted(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["gateway", "serve", "--db", f"sqlite:///{tmp_path / 'l.db'}",
         "--serial", "/dev/ttyS0", "--serial", "/dev/ttyS1@9600"])
    assert [spec.device for spec in _config(args)[2]] == ["/dev/ttyS0", "/dev/ttyS1"]


# Worker 0 serves; worker 1 fails to start once worker 0 has said so. Every worker has then
# closed the readiness pipe: the supervisor took that end of file for "all serve" and restarted
# worker 1 every second instead of stopping.
SUPERVISED = """
import os, signal, sys, time
from onestop.host.gateway.logs import EventLog
from onestop.host.gateway.workers import WorkersError, supervise

def run_worker(index, listener, shares, ready_fd):
    if index == 0:
        os.write(ready_fd, b".")
        os.close(ready_fd)
        signal.pause()  # serving, until the supervisor's SIGTERM
        return 0
    time.sleep(0.5)
    return 2

try:
    supervise(2, run_worker, "127.0.0.1", 0, EventLog())
except WorkersError as exc:
    print(f"kiosk gateway serve: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def test_a_worker_failing_to_start_after_the_others_serve_stops_the_gateway() -> None:
    line = refused([sys.executable, "-c", SUPERVISED])
    assert line == "kiosk gateway serve: gateway worker 1 stopped while starting (exit status 2)"


def test_stop_with_parent_is_refused_with_workers(db: str) -> None:
    # the supervisor, not the workers, is the parent's child: they would watch the wrong one
    line = serve(db, "--stop-with-parent", "--workers", "2")
    assert line == ("kiosk gateway serve: --stop-with-parent serves as one process: not with "
                    "--workers")


# Starts the gateway, says so once it listens, then waits to be killed.
PARENT = """
import subprocess, sys, time
log = open(sys.argv[1], "wb")
subprocess.Popen([sys.executable, "-m", "onestop.host.cli", "gateway", "serve", "--db",
                  sys.argv[2], "--listen", "127.0.0.1:0", "--stop-with-parent"],
                 stdout=log, stderr=log)
while b'"listening"' not in open(sys.argv[1], "rb").read():
    time.sleep(0.05)
print("up", flush=True)
time.sleep(120)
"""


def test_a_gateway_started_to_stop_with_its_parent_stops_when_the_parent_is_killed(
        db: str, tmp_path: Path) -> None:
    """`kiosk demo` or `kiosk tui` killed with SIGKILL (it cannot pass a signal on) left its
    gateway serving the hall's ledger; --stop-with-parent stops it within a second or two."""
    log = tmp_path / "gateway.log"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(log), db],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "up\n"
        assert len(session_processes(parent.pid)) == 2  # the parent and its gateway
        parent.kill()
        parent.wait()
        for _ in range(100):
            if not session_processes(parent.pid):
                break
            time.sleep(0.1)
        assert session_processes(parent.pid) == [], log.read_text()[-2000:]
        events = [json.loads(line) for line in log.read_text().splitlines()
                  if line.startswith("{")]
        assert any(e["event"] == "stopping" and e.get("signal") == "parent_exited"
                   for e in events)
    finally:
        if session_processes(parent.pid):
            os.killpg(parent.pid, signal.SIGKILL)
