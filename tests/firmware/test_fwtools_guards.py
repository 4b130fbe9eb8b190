"""`kiosk fw` guards from the field: one firmware per flash directory (an flock that a kill -9
frees), a board told how to reach its gateway (Wi-Fi for TCP), and a UART that is not there named
with its device, by `kiosk fw run` before it starts and by the firmware itself."""

from __future__ import annotations

import argparse
import json
import os
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


def test_a_unix_kiosk_needs_no_wifi_but_no_lone_password() -> None:
    uarts = [f"--uart={role}=/dev/null" for role in ("card", "printer", "display")]
    config = settings_from(provision_args("--board", "unix", *uarts))
    assert config["gateway"]["kind"] == "tcp" and "network" not in config
    with pytest.raises(FirmwareToolError, match="--wifi-password needs --wifi-ssid"):
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
