"""`kiosk fw` guards from the field: one firmware per flash directory (an flock that a kill -9
frees), a board told how to reach its gateway (Wi-Fi for TCP), and a UART that is not there named
with its device, by `kiosk fw run` before it starts and by the firmware itself."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from onestop.host.fwtools import (
    FirmwareToolError,
    provision_unix,
    register,
    settings_from,
    stage_firmware,
    start_unix_firmware,
)
from test_fwtools import GATEWAY_PUBLIC, settings, wait_for_event


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stage_firmware(tmp_path_factory.mktemp("stage") / "unix", "unix", compiled=True)


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(child) for child in found.split()]


def kiosk_quick(*args: str) -> subprocess.CompletedProcess[str]:
    """`kiosk` expected to answer at once: if it runs on (a second kiosk started after all),
    it is killed with whatever it started, and the test fails without leaving a process."""
    proc = subprocess.Popen([sys.executable, "-m", "onestop.host.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def unconfigured(flash: Path) -> None:
    """A flash `kiosk fw run` starts on (it has a config.json) whose firmware then stops at
    once (the config is empty): for the checks of what is staged, and how."""
    flash.mkdir()
    (flash / "config.json").write_text("{}")


# ---------------------------------------------------------------------------- one flash, one kiosk
def test_a_second_kiosk_on_a_flash_in_use_is_refused_until_the_first_dies(
        tmp_path: Path, ptys: dict[str, str]) -> None:
    flash = tmp_path / "flash"
    provision_unix(flash, settings(ptys))
    run = ["fw", "run", "--dir", str(flash), "--stage", str(tmp_path / "stage")]
    first = subprocess.Popen([sys.executable, "-m", "onestop.host.cli", *run],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    firmware = 0
    try:
        wait_for_event(first, "idle")
        [firmware] = children(first.pid)
        stamp = (tmp_path / "stage" / "STAGE.json").stat()
        config = (flash / "config.json").read_bytes()

        second = kiosk_quick(*run)
        assert second.returncode == 1 and second.stderr.count("\n") == 1, second.stderr
        assert f"--dir {flash}: in use by the kiosk firmware, process {firmware}" \
            in second.stderr and f"started by process {first.pid}" in second.stderr
        after = (tmp_path / "stage" / "STAGE.json").stat()  # not restaged under the first
        assert (after.st_ino, after.st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)

        uarts = [f"--uart={role}={path}" for role, path in ptys.items()]
        provision = kiosk_quick("fw", "provision", "--board", "unix", "--dir", str(flash),
                                "--kiosk-id", "K0002", "--gateway-public-key", GATEWAY_PUBLIC,
                                "--gateway-kid", "gw-test", *uarts)
        assert provision.returncode == 1 and provision.stderr.count("\n") == 1
        assert f"process {firmware}" in provision.stderr
        assert (flash / "config.json").read_bytes() == config

        # the launcher killed, its firmware runs on: the flash is still in use
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        assert f"process {firmware}" in kiosk_quick(*run).stderr
        # a power cut: no stale lock is left, the next boot goes ahead
        os.kill(firmware, signal.SIGKILL)
        assert gone(firmware)
        provision_unix(flash, settings(ptys))
    finally:
        for pid in (first.pid, firmware):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        first.wait()


def test_two_kiosks_on_two_flashes_each_run_their_own_code(
        tmp_path: Path, ptys: dict[str, str]) -> None:
    """Without --stage, each kiosk's firmware is staged on its own flash: a second kiosk
    starting does not restage the code the first one is running (a shared default did)."""
    runs, stamps = [], []
    try:
        for name in ("a", "b"):
            flash = tmp_path / name
            provision_unix(flash, settings(ptys))
            runs.append(subprocess.Popen(
                [sys.executable, "-m", "onestop.host.cli", "fw", "run", "--dir", str(flash)],
                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                start_new_session=True))
            wait_for_event(runs[-1], "idle")
            stamps.append((flash / "code" / "STAGE.json").stat())
        first = (tmp_path / "a" / "code" / "STAGE.json").stat()
        assert (first.st_ino, first.st_mtime_ns) == (stamps[0].st_ino, stamps[0].st_mtime_ns)
        assert not (tmp_path / "build").exists()  # nothing left in the working directory
    finally:
        for run in runs:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def test_the_launcher_refuses_a_second_firmware_but_boots_again_after_a_power_cut(
        tmp_path: Path, ptys: dict[str, str], stage: Path) -> None:
    # the rig and the power-cut tests restart the firmware on the same flash once it is dead
    flash = tmp_path / "flash"
    provision_unix(flash, settings(ptys))
    proc = start_unix_firmware(flash, stage, compiled=True)
    try:
        with pytest.raises(FirmwareToolError, match=f"in use by the kiosk firmware, process "
                                                    f"{proc.pid}"):
            start_unix_firmware(flash, stage, compiled=True)
        wait_for_event(proc, "idle")
        proc.kill()
        proc.wait()
        proc = start_unix_firmware(flash, stage, compiled=True)
        wait_for_event(proc, "idle")
    finally:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------- a board's network
def provision_args(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["fw", "provision", "--kiosk-id", "K0007", "--gateway-kid",
                              "gw-test", "--gateway-public-key", GATEWAY_PUBLIC, *args])


@pytest.mark.parametrize("board", ["esp32s3", "rp2040"])
@pytest.mark.parametrize(("args", "says"), [
    ([], "reaches a TCP gateway over Wi-Fi: give --wifi-ssid (and --wifi-password if"),
    (["--wifi-ssid", ""], "reaches a TCP gateway over Wi-Fi: give --wifi-ssid"),
    (["--wifi-password", "secret"], "--wifi-password needs --wifi-ssid"),
])
def test_a_board_with_a_tcp_gateway_needs_its_wifi(board: str, args: list[str],
                                                   says: str) -> None:
    with pytest.raises(FirmwareToolError, match=r"^[^\n]*$") as refused:
        settings_from(provision_args("--board", board, "--port", "/dev/null-board",
                                     "--gateway", "tcp:10.0.0.2:7400", *args))
    assert says in str(refused.value)


@pytest.mark.parametrize("board", ["esp32s3", "rp2040"])
def test_a_board_with_its_wifi_is_accepted(board: str) -> None:
    config = settings_from(provision_args("--board", board, "--gateway", "tcp:10.0.0.2:7400",
                                            "--wifi-ssid", "HALL", "--wifi-password", "pw"))
    assert config["network"] == {"ssid": "HALL", "password": "pw"}
    open_hall = settings_from(provision_args("--board", board, "--gateway",
                                             "tcp:10.0.0.2:7400", "--wifi-ssid", "HALL"))
    assert open_hall["network"] == {"ssid": "HALL", "password": ""}


@pytest.mark.parametrize("uart", ["gateway", "card"])
def test_a_board_without_a_gateway_uart_is_refused_a_serial_gateway(uart: str) -> None:
    # their pin maps give every UART to a device: such a board would never reach its gateway
    with pytest.raises(FirmwareToolError, match="esp32s3 has no UART for a gateway"):
        settings_from(provision_args("--board", "esp32s3", "--gateway", f"serial:{uart}"))


def test_a_unix_kiosk_needs_no_wifi_and_is_given_none() -> None:
    uarts = [f"--uart={role}=/dev/null" for role in ("card", "printer", "display")]
    config = settings_from(provision_args("--board", "unix", *uarts))
    assert config["gateway"]["kind"] == "tcp" and "network" not in config
    # a Wi-Fi password for the host's network used to end up in config.json as "network"
    with pytest.raises(FirmwareToolError, match="--wifi-password is for a board's Wi-Fi"):
        settings_from(provision_args("--board", "unix", "--wifi-password", "pw", *uarts))


# ---------------------------------------------------------------------------- a UART not there
@pytest.mark.parametrize(("role", "device"), [
    ("display", "display"), ("card", "card reader"), ("gateway", "gateway link")])
def test_kiosk_fw_run_names_a_missing_uart_and_its_device(tmp_path: Path, role: str,
                                                          device: str) -> None:
    missing = str(tmp_path / "no-such-pty")
    config = settings()  # every UART /dev/null, but the one that is not there
    if role == "gateway":
        config["gateway"] = {"kind": "serial", "path": missing}
    else:
        config["uarts"][role] = missing + "@9600"
    provision_unix(tmp_path / "flash", config)
    result = kiosk_quick("fw", "run", "--dir", str(tmp_path / "flash"),
                         "--stage", str(tmp_path / "stage"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"the {device}'s UART {missing} does not exist" in result.stderr
    assert not (tmp_path / "stage").exists()  # refused before anything started


@pytest.mark.parametrize(("role", "device"), [
    ("display", "display"), ("card", "card reader"), ("printer", "printer")])
def test_the_firmware_names_a_missing_uart_and_its_device(tmp_path: Path, ptys: dict[str, str],
                                                          stage: Path, role: str,
                                                          device: str) -> None:
    missing = str(tmp_path / "no-such-pty")
    provision_unix(tmp_path / "flash", settings(dict(ptys, **{role: missing})))
    proc = start_unix_firmware(tmp_path / "flash", stage, compiled=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in err
    fault = json.loads(out.splitlines()[-1])
    assert fault["ev"] == "fault"
    assert fault["error"] == f"OSError: [Errno 2] ENOENT: cannot open the {device}'s UART " \
        f"{missing}"


def test_kiosk_fw_run_names_every_uart_it_cannot_use(tmp_path: Path) -> None:
    """All of them in one line (it named the first missing one only), and a path that is there
    but no serial device (a file, a folder) is refused too: the firmware would fault on it."""
    flash = tmp_path / "flash"
    flash.mkdir()
    (tmp_path / "capture.txt").write_text("")
    (tmp_path / "ptys").mkdir()
    config = dict(settings(), uarts={"card": str(tmp_path / "no-card"),
                                     "printer": str(tmp_path / "capture.txt") + "@9600",
                                     "display": str(tmp_path / "ptys")},
                  gateway={"kind": "serial", "path": str(tmp_path / "no-gateway")})
    (flash / "config.json").write_text(json.dumps(config))
    result = kiosk_quick("fw", "run", "--dir", str(flash), "--stage", str(tmp_path / "stage"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    for says in (f"the card reader's UART {tmp_path / 'no-card'} does not exist",
                 f"the printer's UART {tmp_path / 'capture.txt'} is not a serial device",
                 f"the display's UART {tmp_path / 'ptys'} is not a serial device",
                 f"the gateway link's UART {tmp_path / 'no-gateway'} does not exist",
                 "--uart card=PATH, --uart printer=PATH, --uart display=PATH, "
                 "--gateway serial:PATH"):
        assert says in result.stderr, result.stderr
    assert not (tmp_path / "stage").exists()  # refused before anything started


# ---------------------------------------------------------------------------- the stage run
def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file's inode and mtime: what a stage run as it is keeps."""
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def launch(*args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "onestop.host.cli", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_a_stage_given_that_another_kiosk_runs_is_run_as_it_is(
        tmp_path: Path, ptys: dict[str, str]) -> None:
    """`kiosk fw run --dir flashB --stage flashA/code` rewrote the code kiosk A was running
    (an explicit stage was always restaged, under B's lock only): it is run as it is."""
    runs = []
    try:
        for name in ("a", "b"):
            provision_unix(tmp_path / name, settings(ptys))
        runs.append(launch("fw", "run", "--dir", str(tmp_path / "a")))
        wait_for_event(runs[0], "idle")
        code = tmp_path / "a" / "code"
        before = files_of(code)
        runs.append(launch("fw", "run", "--dir", str(tmp_path / "b"), "--stage", str(code)))
        seen = wait_for_event(runs[1], "idle")
        assert any(e.get("ev") == "ready" and e.get("board") == "unix" for e in seen)
        assert files_of(code) == before
        assert runs[0].poll() is None  # kiosk A runs on
    finally:
        for run in runs:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


def test_a_stage_for_a_board_is_refused_naming_its_board(tmp_path: Path) -> None:
    # a `kiosk fw build --board esp32s3` output was silently turned into a unix stage
    build = stage_firmware(tmp_path / "build_esp", "esp32s3", compiled=False, tables=False)
    before = files_of(build)
    unconfigured(tmp_path / "flash")
    result = kiosk_quick("fw", "run", "--dir", str(tmp_path / "flash"), "--stage", str(build))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"--stage {build}: staged for esp32s3, not the unix port" in result.stderr
    assert files_of(build) == before


@pytest.mark.parametrize("content", ["a technician's file", "a damaged STAGE.json"])
def test_a_folder_given_that_is_not_a_stage_is_refused(tmp_path: Path, content: str) -> None:
    stage = tmp_path / "stage"
    stage.mkdir()
    if content == "a technician's file":
        (stage / "notes.txt").write_text("keep me")
    else:
        stage_firmware(stage, "unix", compiled=False, tables=False)
        (stage / "STAGE.json").write_text('{"board": "un')
    before = files_of(stage)
    unconfigured(tmp_path / "flash")
    result = kiosk_quick("fw", "run", "--dir", str(tmp_path / "flash"), "--stage", str(stage))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"--stage {stage}: not empty and not a kiosk fw stage" in result.stderr
    assert files_of(stage) == before


def test_compiled_asked_of_a_source_stage_is_refused(tmp_path: Path) -> None:
    stage = stage_firmware(tmp_path / "stage", "unix", compiled=False, tables=False)
    before = files_of(stage)
    unconfigured(tmp_path / "flash")
    result = kiosk_quick("fw", "run", "--dir", str(tmp_path / "flash"), "--stage", str(stage),
                         "--compiled")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"--stage {stage}: staged as source, not compiled: run it without --compiled" \
        in result.stderr
    assert files_of(stage) == before


def test_a_stage_given_empty_is_staged_by_one_launcher_at_a_time(tmp_path: Path) -> None:
    """Two launchers given one empty folder: the second waits for the first's staging (a lock
    on the folder), then runs what it staged, as it is."""
    import fcntl

    stage = tmp_path / "stage"
    stage.mkdir()
    unconfigured(tmp_path / "flash")
    fd = os.open(stage, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the first launcher, staging
        run = launch("fw", "run", "--dir", str(tmp_path / "flash"), "--stage", str(stage))
        try:
            time.sleep(1.5)
            assert run.poll() is None and not any(stage.iterdir())  # it waits its turn
            staged = stage_firmware(tmp_path / "first", "unix", compiled=False)
            shutil.copytree(staged, stage, dirs_exist_ok=True)
            before = files_of(stage)
        finally:
            os.close(fd)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 2, err  # the firmware's own refusal of its config.json
    assert "config.json" in out.splitlines()[-1]
    assert files_of(stage) == before


@pytest.mark.parametrize("held", ["junk", "a stage without its STAGE.json", "a file",
                                  "a dangling link", "a link to a folder"])
def test_the_flashs_own_code_folder_is_replaced_whatever_it_holds(tmp_path: Path,
                                                                  held: str) -> None:
    """FLASH/code is the tool's own: what it holds used to block the kiosk ("is not empty and
    was not staged by kiosk fw") or end in a traceback (a file, a link)."""
    flash = tmp_path / "flash"
    unconfigured(flash)
    code = flash / "code"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("keep me")
    if held == "junk":
        code.mkdir()
        (code / "main.py.orig").write_text("x")
    elif held == "a stage without its STAGE.json":
        stage_firmware(code, "unix", compiled=False, tables=False)
        (code / "STAGE.json").unlink()
    elif held == "a file":
        code.write_text("not a folder")
    elif held == "a dangling link":
        code.symlink_to(tmp_path / "gone")
    else:
        code.symlink_to(elsewhere)
    result = kiosk_quick("fw", "run", "--dir", str(flash))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "config.json" in result.stdout.splitlines()[-1]
    assert not code.is_symlink() and json.loads((code / "STAGE.json").read_text())["board"] \
        == "unix"
    assert [p.name for p in elsewhere.iterdir()] == ["notes.txt"]  # a link's target is kept


# ---------------------------------------------------------------------------- one-line refusals
def run_args(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["fw", "run", *args])


@pytest.mark.parametrize("given", [True, False], ids=["--stage", "FLASH/code"])
def test_a_stage_that_cannot_be_written_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], given: bool) -> None:
    import errno

    from onestop.host import fwtools

    def read_only(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(fwtools.shutil, "copy2", read_only)  # a read-only file system
    unconfigured(tmp_path / "flash")
    stage = ["--stage", str(tmp_path / "stage")] if given else []
    args = run_args("--dir", str(tmp_path / "flash"), *stage)
    assert args.func(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Read-only file system" in err, err
    assert err.startswith(f"kiosk fw: --stage {tmp_path / 'stage'}: " if given else
                          f"kiosk fw: --dir {tmp_path / 'flash'}: cannot stage the firmware in ")
    if given:
        assert not (tmp_path / "stage").exists()  # nothing half made left behind


def test_a_stage_where_no_folder_can_be_made_is_one_line(tmp_path: Path) -> None:
    unconfigured(tmp_path / "flash")
    result = kiosk_quick("fw", "run", "--dir", str(tmp_path / "flash"),
                         "--stage", "/proc/onestop-no-such-stage")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("kiosk fw: --stage /proc/onestop-no-such-stage: ")


@pytest.mark.parametrize(("heapsize", "says"), [
    ("abc", "expected a size such as 64K"),
    ("64Q", "expected a size such as 64K"),
    ("1.5M", "expected a size such as 64K"),
    ("", "expected a size such as 64K"),
    ("-5K", "expected a size such as 64K"),
    ("0", "the firmware needs at least 40K of heap for its data"),
    ("8", "the firmware needs at least 40K of heap for its data"),
    ("39K", "the firmware needs at least 40K of heap for its data"),
])
def test_kiosk_fw_run_refuses_a_heap_size_it_cannot_use(tmp_path: Path, heapsize: str,
                                                        says: str) -> None:
    unconfigured(tmp_path / "flash")
    result = kiosk_quick("fw", "run", "--dir", str(tmp_path / "flash"),
                         "--stage", str(tmp_path / "stage"), f"--heapsize={heapsize}")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"--heapsize {heapsize}: {says}" in result.stderr
    assert not (tmp_path / "stage").exists()  # refused before anything is staged


def test_the_smallest_heap_accepted_is_one_the_firmware_boots_in(
        tmp_path: Path, ptys: dict[str, str], stage: Path) -> None:
    provision_unix(tmp_path / "flash", settings(ptys))
    proc = start_unix_firmware(tmp_path / "flash", stage, heapsize="40K", compiled=True)
    try:
        wait_for_event(proc, "idle")
    finally:
        proc.kill()
        proc.wait()


def test_kiosk_fw_run_says_when_the_firmware_is_killed_by_a_signal(
        tmp_path: Path, ptys: dict[str, str], stage: Path) -> None:
    """It exited silently with 247 (-9 as an exit status): the kill is said, and the status is
    128 + the signal, as a shell gives it. A compiled stage given runs as it is: compiled."""
    provision_unix(tmp_path / "flash", settings(ptys))
    before = files_of(stage)
    run = launch("fw", "run", "--dir", str(tmp_path / "flash"), "--stage", str(stage))
    try:
        wait_for_event(run, "idle")
        [firmware] = children(run.pid)
        os.kill(firmware, signal.SIGKILL)
        assert run.wait(timeout=20) == 128 + signal.SIGKILL
        assert run.stderr is not None
        assert run.stderr.read() == \
            "kiosk fw: the kiosk firmware was killed by signal 9 (SIGKILL)\n"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert files_of(stage) == before


# ---------------------------------------------------------------------------- boards' ports
@pytest.mark.parametrize("command", ["deploy", "provision"])
def test_a_port_that_is_not_there_says_to_plug_the_board_in(tmp_path: Path,
                                                            command: str) -> None:
    # mpremote said "failed to access /dev/ttyNOPE (it may be in use by another program)"
    args = [] if command == "deploy" else [
        "--kiosk-id", "K0007", "--gateway-public-key", GATEWAY_PUBLIC, "--gateway-kid",
        "gw-test", "--gateway", "tcp:10.0.0.2:7400", "--wifi-ssid", "HALL"]
    run = launch("fw", command, "--board", "esp32s3", "--port", "/dev/ttyNOPE", *args,
                 cwd=tmp_path)
    _out, err = run.communicate(timeout=60)
    assert run.returncode == 1, err
    assert err == "kiosk fw: no device at /dev/ttyNOPE: is the board plugged in?\n"
    assert not list(tmp_path.iterdir())  # no build staged for a board that is not there


def test_mpremotes_own_port_names_are_left_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from onestop.host import fwtools

    ports = []

    def mpremote(command: list[str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
        ports.append(command[command.index("connect") + 1])
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(fwtools.subprocess, "run", mpremote)
    shortcuts = ["a0", "u1", "c99", "id:0123ABCD", "port:/dev/ttyACM0", "/dev/null"]
    for port in shortcuts:
        fwtools._mpremote(port, "exec", "pass")
    assert ports == shortcuts
    with pytest.raises(FirmwareToolError, match="^no device at /dev/ttyNOPE: is the board "):
        fwtools._mpremote("/dev/ttyNOPE", "exec", "pass")
    assert ports == shortcuts  # mpremote not run


# ---------------------------------------------------------------------------- wrong options
@pytest.mark.parametrize(("board", "option", "says"), [
    ("esp32s3", ["--dir", "FLASH"], "--dir is for --board unix (the flash directory of a "
                                    "simulated kiosk): --board esp32s3 is reached on --port"),
    ("unix", ["--port", "/dev/null"], "--port is for a board (its USB serial port)"),
    ("unix", ["--wifi-ssid", "HALL"], "--wifi-ssid is for a board's Wi-Fi: a unix kiosk uses "
                                      "the host's network"),
    ("unix", ["--wifi-ssid", "HALL", "--wifi-password", "pw"], "--wifi-ssid is for a board's"),
    ("unix", ["--wifi-password", "pw"], "--wifi-password is for a board's Wi-Fi"),
])
def test_an_option_for_the_other_kind_of_kiosk_is_refused(tmp_path: Path, board: str,
                                                          option: list[str], says: str) -> None:
    """They were ignored: --dir with a board, --port with --board unix, and Wi-Fi settings
    for a unix kiosk ended up in its config.json as "network"."""
    where = (["--port", "/dev/null", "--gateway", "tcp:10.0.0.2:7400", "--wifi-ssid", "HALL"]
             if board != "unix" else
             ["--dir", str(tmp_path / "flash"), "--uart=card=/dev/null",
              "--uart=printer=/dev/null", "--uart=display=/dev/null"])
    option = [str(tmp_path / "flash") if part == "FLASH" else part for part in option]
    result = kiosk_quick("fw", "provision", "--board", board, "--kiosk-id", "K0007",
                         "--gateway-public-key", GATEWAY_PUBLIC, "--gateway-kid", "gw-test",
                         *where, *option)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"kiosk fw: {says}" in result.stderr
    assert not (tmp_path / "flash").exists()


# ---------------------------------------------------------------------------- key rotation
def test_provision_takes_the_authority_key_and_the_gateway_keys_serial() -> None:
    uarts = [f"--uart={role}=/dev/null" for role in ("card", "printer", "display")]
    config = settings_from(provision_args("--board", "unix", *uarts))
    assert config["gateway_serial"] == 0 and "authority_kid" not in config  # as before
    authority = "AB" * 32
    config = settings_from(provision_args("--board", "unix", *uarts, "--gateway-serial", "3",
                                          "--authority-kid", "auth-1",
                                          "--authority-public-key", authority))
    assert (config["gateway_serial"], config["authority_kid"],
            config["authority_public_key"]) == (3, "auth-1", authority.lower())
    with pytest.raises(FirmwareToolError, match="go together"):
        settings_from(provision_args("--board", "unix", *uarts, "--authority-kid", "auth-1"))
    with pytest.raises(FirmwareToolError, match="--authority-public-key: 64 hex digits"):
        settings_from(provision_args("--board", "unix", *uarts, "--authority-kid", "auth-1",
                                     "--authority-public-key", "abc"))


def test_a_stage_that_cannot_be_written_whole_is_not_left_filling_the_flash(
        tmp_path: Path) -> None:
    """FLASH/code is made again at every start: a partial one (a full disk) only kept the disk
    full after the error."""
    import resource

    flash = tmp_path / "flash"
    provision_unix(flash, settings())
    before = sorted(p.name for p in flash.iterdir())

    def small_files() -> None:  # in the child: a write past 16 KB fails (EFBIG), as if full
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, resource.RLIM_INFINITY))

    result = subprocess.run([sys.executable, "-m", "onestop.host.cli", "fw", "run", "--dir",
                             str(flash)], capture_output=True, text=True, timeout=60,
                            preexec_fn=small_files)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"cannot stage the firmware in {flash.resolve() / 'code'}: File too large" \
        in result.stderr
    assert sorted(p.name for p in flash.iterdir()) == before  # no partial code/ left
