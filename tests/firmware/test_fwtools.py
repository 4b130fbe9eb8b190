"""`kiosk fw` (host/fwtools.py): staging and mpy-cross builds, provisioning that makes the key on
the device, the unix launcher booting the real firmware (source and precompiled)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from onestop.host.fwtools import (
    FIRMWARE_DIR,
    FirmwareToolError,
    parse_gateway,
    provision_unix,
    stage_firmware,
    start_unix_firmware,
)
from onestop.host.keys import SigningKey

GATEWAY_PUBLIC = "11" * 32


def settings(links: dict[str, str] | None = None) -> dict:
    return {"version": 1, "board": "unix", "kiosk_id": "K0001",
            "gateway": {"kind": "tcp", "host": "127.0.0.1", "port": 9},
            "gateway_kid": "gw-test", "gateway_public_key": GATEWAY_PUBLIC,
            "uarts": links or {"card": "/dev/null", "printer": "/dev/null",
                               "display": "/dev/null"}}


def kiosk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "onestop.host.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_a_board_build_is_precompiled_but_main(tmp_path: Path) -> None:
    stage = stage_firmware(tmp_path / "esp", "esp32s3", compiled=True)
    assert (stage / "main.py").exists()
    assert not list(stage.glob("app/*.py")) and (stage / "app" / "session.mpy").exists()
    assert sorted(p.name for p in (stage / "boards").iterdir()) == [
        "common.mpy", "esp32s3.json", "esp32s3.mpy", "mcu.mpy"]
    assert (stage / "onestop" / "protocol" / "messages.mpy").exists()
    assert (stage / "drivers" / "cardreader.mpy").exists()
    assert (stage / "gbk_u2g.bin").exists() and (stage / "gbk_g2u.bin").exists()
    header = (stage / "app" / "journal.mpy").read_bytes()[:2]
    assert header == b"M\x06"  # .mpy version 6, what MicroPython >= 1.22 loads


def test_staging_never_clears_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FirmwareToolError):
        stage_firmware(tmp_path, "unix", compiled=False, tables=False)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_provisioning_makes_the_key_on_the_device_and_keeps_it(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    first = provision_unix(flash, settings())
    seed = (flash / "kiosk.key").read_bytes()
    assert len(seed) == 32 and first["new_key"]
    assert first["public_key"] == SigningKey(seed).public_key.hex()
    config = json.loads((flash / "config.json").read_text())
    assert config["kiosk_id"] == "K0001" and config["gateway_public_key"] == GATEWAY_PUBLIC
    assert (flash / "counter").read_text() == "0\n"
    assert flash.stat().st_mode & 0o777 == 0o700  # the key is not for other users of the host
    assert (flash / "kiosk.key").stat().st_mode & 0o077 == 0  # nor the key file itself
    again = provision_unix(flash, dict(settings(), gateway={"kind": "tcp", "host": "10.0.0.2",
                                                           "port": 7400}))
    assert not again["new_key"] and again["public_key"] == first["public_key"]
    assert json.loads((flash / "config.json").read_text())["gateway"]["host"] == "10.0.0.2"


def test_a_flash_keeps_its_kiosk_id_while_it_keeps_its_key(tmp_path: Path) -> None:
    """Provisioning K0002's flash as K0009 kept K0002's key under a name the gateway does not
    know, and `enroll` then refuses that key as K0002's: the kiosk could not settle."""
    flash = tmp_path / "flash"
    provision_unix(flash, dict(settings(), kiosk_id="K0002"))
    before = {p.name: p.read_bytes() for p in flash.iterdir()}
    with pytest.raises(FirmwareToolError, match=r"this flash is kiosk K0002 .*--kiosk-id K0002, "
                                                r"or remove kiosk.key"):
        provision_unix(flash, dict(settings(), kiosk_id="K0009"))
    assert {p.name: p.read_bytes() for p in flash.iterdir()} == before
    (flash / "kiosk.key").unlink()  # a new kiosk: a new key
    renamed = provision_unix(flash, dict(settings(), kiosk_id="K0009"))
    assert renamed["new_key"] and renamed["kiosk_id"] == "K0009"


def test_a_damaged_counter_file_is_refused_until_the_gateways_last_counter_is_given(
        tmp_path: Path) -> None:
    """Request counters must never be reused, and only the gateway knows how far this kiosk
    got: a damaged file is not guessed over, it is replaced by the technician's floor."""
    flash = tmp_path / "flash"
    provision_unix(flash, settings())
    (flash / "counter").write_bytes(b"41")  # torn: no newline
    config_before = (flash / "config.json").read_bytes()
    other = dict(settings(), gateway={"kind": "tcp", "host": "10.0.0.2", "port": 7400})
    with pytest.raises(FirmwareToolError, match=r"counter file is damaged.*--counter-above N"):
        provision_unix(flash, other)
    assert (flash / "counter").read_bytes() == b"41"  # nothing written: refused before
    assert (flash / "config.json").read_bytes() == config_before
    provision_unix(flash, other, counter_above=4_117)
    assert (flash / "counter").read_text() == "4117\n"
    provision_unix(flash, other, counter_above=10)  # a lower floor never moves it back
    assert (flash / "counter").read_text() == "4117\n"
    assert json.loads((flash / "config.json").read_text())["gateway"]["host"] == "10.0.0.2"


def test_kiosk_fw_provision_counter_above_must_be_a_counter(tmp_path: Path) -> None:
    result = kiosk("fw", "provision", "--board", "unix", "--dir", str(tmp_path),
                   "--kiosk-id", "K0007", "--gateway-public-key", GATEWAY_PUBLIC,
                   "--gateway-kid", "gw-test", "--counter-above", "-5")
    assert result.returncode == 2 and "--counter-above: expected a whole number" in result.stderr
    assert not (tmp_path / "kiosk.key").exists()


def test_provisioning_refuses_a_configuration_the_kiosk_could_not_boot(tmp_path: Path) -> None:
    with pytest.raises(FirmwareToolError, match="kiosk id"):
        provision_unix(tmp_path, dict(settings(), kiosk_id="K 1"))
    assert not (tmp_path / "kiosk.key").exists()


def test_kiosk_fw_provision_prints_the_key_and_the_enroll_command(tmp_path: Path) -> None:
    result = kiosk("fw", "provision", "--board", "unix", "--dir", str(tmp_path),
                   "--kiosk-id", "K0007", "--gateway-public-key", GATEWAY_PUBLIC,
                   "--gateway-kid", "gw-test", "--gateway", "serial:/dev/pts/9@57600",
                   "--uart", "card=/dev/pts/1", "--uart", "printer=/dev/pts/2",
                   "--uart", "display=tcp:127.0.0.1:9003", "--db", "sqlite:///ledger.sqlite",
                   "--hall", "城关镇便民服务中心")
    assert result.returncode == 0, result.stderr
    public = SigningKey((tmp_path / "kiosk.key").read_bytes()).public_key.hex()
    assert f"kiosk public key: {public}" in result.stdout
    assert (f"kiosk gateway enroll --db sqlite:///ledger.sqlite --kiosk-id K0007 "
            f"--public-key {public}") in result.stdout
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["gateway"] == {"kind": "serial", "path": "/dev/pts/9", "baud": 57600}
    assert config["uarts"]["display"] == "tcp:127.0.0.1:9003"
    assert config["hall"] == "城关镇便民服务中心"  # printed on each receipt


def test_kiosk_fw_provision_says_what_is_missing(tmp_path: Path) -> None:
    result = kiosk("fw", "provision", "--board", "unix", "--dir", str(tmp_path),
                   "--kiosk-id", "K0007", "--gateway-public-key", GATEWAY_PUBLIC,
                   "--gateway-kid", "gw-test", "--uart", "card=/dev/pts/1")
    assert result.returncode == 1
    assert "needs --uart for printer, display" in result.stderr


@pytest.mark.parametrize(("option", "value", "says"), [
    # a kid the protocol never accepts: every reply would be refused
    ("--gateway-kid", "g" * 65, "--gateway-kid: 1 to 64 bytes"),
    ("--gateway-kid", "", "--gateway-kid: 1 to 64 bytes"),
    ("--gateway", "tcp:10.0.0.2:99999", "the port must be 1 to 65535"),
    ("--gateway", "tcp:10.0.0.2:0", "the port must be 1 to 65535"),
    ("--gateway", "serial:/tmp/gw@12345", "the baud rate must be a standard one"),
    # the hall's name: one line of the receipt, in what the printer prints
    ("--hall", "城关镇人民政府便民服务中心自助服务区", "--hall: 1 to 32 columns"),
    ("--hall", "城关镇\U0001f3e5", "cannot be printed"),
])
def test_provisioning_refuses_what_the_kiosk_could_never_use(
        tmp_path: Path, option: str, value: str, says: str) -> None:
    given = {"--gateway-kid": "gw-test", "--gateway": "tcp:127.0.0.1:7400", option: value}
    result = kiosk("fw", "provision", "--board", "unix", "--dir", str(tmp_path / "flash"),
                   "--kiosk-id", "K0007", "--gateway-public-key", GATEWAY_PUBLIC,
                   *[part for pair in given.items() for part in pair],
                   "--uart", "card=/dev/pts/1", "--uart", "printer=/dev/pts/2",
                   "--uart", "display=/dev/pts/3")
    assert result.returncode == 1 and says in result.stderr
    assert result.stderr.count("\n") == 1 and not (tmp_path / "flash").exists()


@pytest.mark.parametrize(("uarts", "says"), [
    (["card=/dev/pts/1@fast"], "the baud rate must be a standard one"),
    (["card=tcp:nohost"], "expected tcp:HOST:PORT"),
    (["card=/dev/pts/1", "card=/dev/pts/4"], "--uart card= is given twice"),
])
def test_provisioning_refuses_uarts_the_kiosk_could_not_open(tmp_path: Path, uarts: list[str],
                                                            says: str) -> None:
    given = {"card": "/dev/pts/1", "printer": "/dev/pts/2", "display": "/dev/pts/3"}
    result = kiosk("fw", "provision", "--board", "unix", "--dir", str(tmp_path / "flash"),
                   "--kiosk-id", "K0007", "--gateway-public-key", GATEWAY_PUBLIC,
                   "--gateway-kid", "gw-test",
                   *[part for item in uarts for part in ("--uart", item)],
                   *[part for role, path in given.items() if role != "card"
                     for part in ("--uart", f"{role}={path}")])
    assert result.returncode == 1 and says in result.stderr
    assert not (tmp_path / "flash").exists()


def provision_args(flash: Path, gateway: str = "tcp:127.0.0.1:7400") -> list[str]:
    return ["fw", "provision", "--board", "unix", "--dir", str(flash), "--kiosk-id", "K0007",
            "--gateway-public-key", GATEWAY_PUBLIC, "--gateway-kid", "gw-test",
            "--gateway", gateway, "--uart", "card=/dev/pts/1", "--uart", "printer=/dev/pts/2",
            "--uart", "display=/dev/pts/3"]


def flash_state(flash: Path) -> dict[str, object]:
    """Every file's bytes and the folder's mode: what a refusal must leave as it was."""
    files = {p.name: p.read_bytes() for p in sorted(flash.iterdir())}
    return {"mode": flash.stat().st_mode, "files": files}


@pytest.mark.parametrize("command", ["provision", "run"])
def test_a_file_given_as_the_flash_directory_is_one_line(tmp_path: Path, command: str) -> None:
    # a technician's slip (--dir config.json, say): it used to end in a traceback
    not_a_dir = tmp_path / "flash.img"
    not_a_dir.write_text("not a folder")
    args = (provision_args(not_a_dir) if command == "provision" else
            ["fw", "run", "--dir", str(not_a_dir), "--stage", str(tmp_path / "stage")])
    result = kiosk(*args)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"--dir {not_a_dir}: not a directory" in result.stderr
    assert not_a_dir.read_text() == "not a folder" and not (tmp_path / "stage").exists()


@pytest.mark.parametrize("damage", [b"", b"\x8f" * 7, b"garbage, not a seed\n" * 3])
def test_a_damaged_kiosk_key_says_which_file_and_what_to_do(tmp_path: Path,
                                                            damage: bytes) -> None:
    flash = tmp_path / "flash"
    assert kiosk(*provision_args(flash)).returncode == 0
    (flash / "kiosk.key").write_bytes(damage)
    result = kiosk(*provision_args(flash, gateway="tcp:10.0.0.2:7400"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f"kiosk key file {flash / 'kiosk.key'} is damaged" in result.stderr
    assert "remove it to make a new key" in result.stderr and "enrol" in result.stderr


@pytest.mark.parametrize("provisioned", [True, False], ids=["re-provisioning", "first"])
def test_a_refused_provisioning_leaves_the_flash_as_it_was(tmp_path: Path,
                                                          provisioned: bool) -> None:
    # config.json used to be written before the key was checked: a kiosk half moved to a new
    # gateway, with a key it could not use
    flash = tmp_path / "flash"
    if provisioned:
        assert kiosk(*provision_args(flash)).returncode == 0
    else:
        flash.mkdir(mode=0o755)
    (flash / "kiosk.key").write_bytes(b"\x00" * 31)
    before = flash_state(flash)
    result = kiosk(*provision_args(flash, gateway="tcp:10.0.0.2:7400"))
    assert result.returncode == 1
    assert flash_state(flash) == before


def test_a_configuration_refused_on_the_device_leaves_no_flash_directory(tmp_path: Path) -> None:
    with pytest.raises(FirmwareToolError, match="kiosk id"):
        provision_unix(tmp_path / "flash", dict(settings(), kiosk_id="K" * 25))
    assert not (tmp_path / "flash").exists()


# ---------------------------------------------------------------------------- deploying
@pytest.mark.parametrize(("built_for", "says"), [
    ("rp2040", "built for rp2040, not esp32s3"),
    (None, "not a `kiosk fw build` output"),
])
def test_deploy_refuses_a_build_for_another_board(tmp_path: Path, built_for: str | None,
                                                  says: str) -> None:
    # another board's pin map and board module would drive the wrong pins, or boot to a fault
    build = tmp_path / "build"
    if built_for:
        stage_firmware(build, built_for, compiled=False, tables=False)
    else:
        (build / "app").mkdir(parents=True)
    result = kiosk("fw", "deploy", "--board", "esp32s3", "--port", "/dev/null-board",
                   "--build", str(build))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert says in result.stderr and str(build) in result.stderr


@pytest.mark.parametrize("command", ["deploy", "provision", "status"])
def test_a_port_with_no_board_is_one_line(tmp_path: Path, command: str) -> None:
    # the error used to quote the whole program given to `mpremote exec`
    if command == "deploy":
        stage_firmware(tmp_path / "build", "esp32s3", compiled=False, tables=False)
        args = ["--build", str(tmp_path / "build")]
    elif command == "status":
        args = []
    else:
        args = ["--kiosk-id", "K0007", "--gateway-public-key", GATEWAY_PUBLIC,
                "--gateway-kid", "gw-test", "--gateway", "tcp:10.0.0.2:7400",
                "--wifi-ssid", "HALL"]
    # /dev/null: a device that is there but no board (a path not there is said before mpremote)
    result = kiosk("fw", command, "--board", "esp32s3", "--port", "/dev/null", *args)
    failed = 2 if command == "status" else 1  # status: could not look, not "a problem found"
    assert result.returncode == failed and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("kiosk fw: mpremote exec: ")
    assert "/dev/null" in result.stderr


def test_deploy_replaces_stale_code_and_keeps_the_kiosks_own_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mpremote against a fake board: its flash a folder, `exec` run by the unix port there."""
    from onestop.host import fwtools
    from onestop.host.mpy import micropython_binary

    board = tmp_path / "board"
    kept = {"config.json": b"{}", "kiosk.key": b"k" * 32, "counter": b"7\n",
            "journal.bin": b"j", "boot.py": b"# board's own\n", "lib/extra.py": b"x = 1\n"}
    stale = {"app/session.py": b"OLD = 1\n",  # an earlier --source deploy: imported before .mpy
             "app/retired.mpy": b"M", "boards/rp2040.mpy": b"M", "onestop/protocol/old.mpy": b"M"}
    for name, data in {**kept, **stale}.items():
        (board / name).parent.mkdir(parents=True, exist_ok=True)
        (board / name).write_bytes(data)

    fakes = tmp_path / "fakes"  # the board's machine module: reset() is noted
    fakes.mkdir()
    (fakes / "machine.py").write_text("def reset():\n    print('RESET')\n")
    resets: list[bool] = []  # whether the service flag was there at each reset

    def mpremote(port: str, *args: str, cwd: Path | None = None) -> str:
        if args[0] == "exec":
            code = args[-1]
            done = subprocess.run([micropython_binary(), "-c", code], cwd=board,
                                  capture_output=True, text=True, check=True,
                                  env={"MICROPYPATH": f"{fakes}:.frozen"})
            if "RESET" in done.stdout:
                assert args[1] == "--no-follow"  # the board goes away: nothing to follow
                resets.append((board / fwtools.SERVICE_FILE).exists())
            return done.stdout
        assert args[:2] == ("cp", "-r") and args[-1] == ":" and cwd is not None
        # copied with the kiosk stopped: its watchdog would reset the board mid-copy
        assert resets == [True] and (board / fwtools.SERVICE_FILE).exists()
        for name in args[2:-1]:
            if (cwd / name).is_dir():
                shutil.copytree(cwd / name, board / name, dirs_exist_ok=True)
            else:
                shutil.copy2(cwd / name, board / name)
        return ""

    monkeypatch.setattr(fwtools, "_mpremote", mpremote)
    stage = stage_firmware(tmp_path / "stage", "esp32s3", compiled=True, tables=False)
    monkeypatch.setattr(fwtools, "_wait_for_board", lambda port: None)
    fwtools.deploy("/dev/fake", stage)
    on_board = {p.relative_to(board).as_posix() for p in board.rglob("*") if p.is_file()}
    assert on_board == fwtools.stage_files(stage) | set(kept)  # the service flag gone too
    assert resets == [True, False]  # reset into service mode, then out of it: the kiosk boots
    assert all((board / name).read_bytes() == data for name, data in kept.items())


def test_a_board_must_be_told_where_the_gateway_is(tmp_path: Path) -> None:
    # the default 127.0.0.1 is the board itself: it would only fail at the first card
    result = kiosk("fw", "provision", "--board", "esp32s3", "--port", "/dev/null-board",
                   "--kiosk-id", "K0007", "--gateway-public-key", GATEWAY_PUBLIC,
                   "--gateway-kid", "gw-test")
    assert result.returncode == 1 and "--gateway tcp:HOST:PORT is needed" in result.stderr


@pytest.mark.parametrize("text, board, expected", [
    ("tcp:gw.example:7400", "unix", {"kind": "tcp", "host": "gw.example", "port": 7400}),
    ("serial:/dev/pts/4", "unix", {"kind": "serial", "path": "/dev/pts/4"}),
    ("serial:gateway", "esp32s3", {"kind": "serial", "uart": "gateway"}),
])
def test_gateway_addresses(text: str, board: str, expected: dict) -> None:
    assert parse_gateway(text, board) == expected


def test_package_json_lists_every_firmware_module() -> None:
    listed = {dest for dest, _src in json.loads(
        (FIRMWARE_DIR / "package.json").read_text())["urls"]}
    modules = {p.relative_to(FIRMWARE_DIR).as_posix() for p in FIRMWARE_DIR.rglob("*.py")
               if p.name not in ("__init__.py", "manifest.py") and "__pycache__" not in p.parts}
    assert modules <= listed
    for _dest, src in json.loads((FIRMWARE_DIR / "package.json").read_text())["urls"]:
        assert (FIRMWARE_DIR / src).resolve().exists(), src


# ---------------------------------------------------------------------------- booting
def wait_for_event(proc: subprocess.Popen[str], name: str, timeout: float = 30) -> list[dict]:
    assert proc.stdout is not None
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        try:
            seen.append(json.loads(line))
        except ValueError:
            seen.append({"text": line})
        if seen[-1].get("ev") == name:
            return seen
    proc.kill()
    raise AssertionError(f"no {name}: {seen[-10:]} {proc.stderr.read() if proc.stderr else ''}")


@pytest.mark.parametrize("compiled", [True, False], ids=["mpy-cross", "source"])
def test_the_firmware_boots_to_the_welcome_page(tmp_path: Path, ptys: dict[str, str],
                                                compiled: bool) -> None:
    provision_unix(tmp_path / "flash", settings(ptys))
    proc = start_unix_firmware(tmp_path / "flash", tmp_path / "stage", compiled=compiled)
    try:
        seen = wait_for_event(proc, "idle")
        ready = next(e for e in seen if e.get("ev") == "ready")
        assert ready["kiosk"] == "K0001" and ready["board"] == "unix"
    finally:
        proc.kill()
        proc.wait()


def test_an_unprovisioned_kiosk_says_so_and_stops(tmp_path: Path) -> None:
    (tmp_path / "flash").mkdir()
    proc = start_unix_firmware(tmp_path / "flash", tmp_path / "stage", compiled=False)
    out, _err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    fault = json.loads(out.splitlines()[-1])
    assert fault["ev"] == "fault" and "provision the kiosk first" in fault["error"]


def test_a_kiosk_in_service_mode_boots_to_nothing_and_starts_no_watchdog(
        tmp_path: Path, ptys: dict[str, str]) -> None:
    """The flag `kiosk fw deploy` and `provision` put on a board's flash before they reset it:
    no kiosk, no watchdog (which would reset the board mid-copy), the REPL for the tools."""
    provision_unix(tmp_path / "flash", settings(ptys))
    (tmp_path / "flash" / "service").write_text("")
    proc = start_unix_firmware(tmp_path / "flash", tmp_path / "stage", compiled=False)
    out, _err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert [json.loads(line)["ev"] for line in out.splitlines()] == ["service_mode"]


def test_kiosk_fw_run_on_an_unprovisioned_folder_is_one_line_and_writes_nothing(
        tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    result = kiosk("fw", "run", "--dir", str(flash))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "no config.json: not a provisioned kiosk" in result.stderr
    assert list(flash.iterdir()) == []  # no code/, no kiosk.lock left in someone's folder


def test_kiosk_fw_run_stopped_by_sigterm_stops_the_kiosk(tmp_path: Path,
                                                       ptys: dict[str, str]) -> None:
    # stopped by systemd or kill, it used to leave the firmware running on the UARTs and the
    # journal: a restart then put two kiosks on one flash
    import os
    import signal

    provision_unix(tmp_path / "flash", settings(ptys))
    proc = subprocess.Popen(
        [sys.executable, "-m", "onestop.host.cli", "fw", "run", "--dir", str(tmp_path / "flash"),
         "--stage", str(tmp_path / "stage")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_event(proc, "idle")
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert children  # the MicroPython kiosk
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) != 0
        for pid in map(int, children):
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"the kiosk {pid} still runs after `kiosk fw run` stopped")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_uart_that_is_not_there_is_one_fault_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-pty")
    provision_unix(tmp_path / "flash", settings({"card": missing, "printer": missing,
                                                 "display": missing}))
    proc = start_unix_firmware(tmp_path / "flash", tmp_path / "stage", compiled=False)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in err
    fault = json.loads(out.splitlines()[-1])
    assert fault["ev"] == "fault" and fault["error"].startswith("OSError")


@pytest.mark.parametrize("out", ["a file", "/proc/onestop-no-such-dir"])
def test_kiosk_fw_build_to_a_place_it_cannot_use_is_one_line(tmp_path: Path, out: str) -> None:
    if out == "a file":
        out = str(tmp_path / "afile")
        Path(out).write_text("")
    result = kiosk("fw", "build", "--board", "rp2040", "--out", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(f"kiosk fw: --out {out}: ")


def test_kiosk_bench_firmware_names_the_residents_it_knows() -> None:
    result = kiosk("bench", "firmware", "--resident", "P999")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "invalid choice: 'P999'" in result.stderr and "'P002'" in result.stderr


FAKE_NETWORK = """
import os
STA_IF = 0
calls = []


class WLAN:
    def __init__(self, interface):
        self.interface = interface

    def active(self, on=None):
        try:
            os.stat(FLASH + "/kiosk.key")
            key_made = True
        except OSError:
            key_made = False
        calls.append([self.interface, on, key_made])
"""
FAKE_MACHINE = "class Pin:\n    pass\n\n\nclass UART:\n    pass\n"
PROVISION_ON_ESP32 = """
import json
import network
network.FLASH = {flash!r}
from app import provision
provision.run({flash!r}, json.loads({settings!r}))
print(json.dumps(network.calls))
"""


def test_an_esp32_turns_its_radio_on_before_it_makes_its_key(tmp_path: Path) -> None:
    """An ESP32's os.urandom is truly random only while its radio runs, and at provisioning
    nothing has brought Wi-Fi up yet: the key would come from a pseudo-random generator."""
    from onestop.host.mpy import library_root, micropython_binary

    stage = stage_firmware(tmp_path / "esp", "esp32s3", compiled=False, tables=False)
    fakes = tmp_path / "fakes"  # the board's own modules, standing in on the unix port
    fakes.mkdir()
    (fakes / "network.py").write_text(FAKE_NETWORK)
    (fakes / "machine.py").write_text(FAKE_MACHINE)
    flash = tmp_path / "flash"
    flash.mkdir()
    esp32 = dict(settings(), board="esp32s3", gateway={"kind": "tcp", "host": "10.0.0.1",
                                                       "port": 7000})
    esp32.pop("uarts")
    script = tmp_path / "provision.py"
    script.write_text(PROVISION_ON_ESP32.format(flash=str(flash), settings=json.dumps(esp32)))
    run = subprocess.run(
        [micropython_binary(), str(script)], capture_output=True, text=True, timeout=60,
        env={"MICROPYPATH": ":".join([str(fakes), str(stage), str(library_root()), ".frozen"])})
    assert run.returncode == 0, run.stdout + run.stderr
    *lines, calls = run.stdout.strip().splitlines()
    assert json.loads(lines[-1])["new_key"] is True
    assert json.loads(calls) == [[0, True, False]]  # station interface on, before the key
    assert (flash / "kiosk.key").exists()


def test_a_board_that_did_not_enter_service_mode_gets_nothing_copied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`exec --no-follow` hides an error in the code it sends (the flag file unwritable on a
    full flash): the watchdog would still run, and the copy would be cut by it."""
    from onestop.host import fwtools

    calls: list[tuple[str, ...]] = []

    def mpremote(port: str, *args: str, cwd: Path | None = None) -> str:
        calls.append(args)
        return "['boot.py', 'main.py']\n" if "listdir" in args[-1] else ""  # no flag there

    monkeypatch.setattr(fwtools, "_mpremote", mpremote)
    monkeypatch.setattr(fwtools, "_wait_for_board", lambda port: None)
    stage = stage_firmware(tmp_path / "stage", "esp32s3", compiled=False, tables=False)
    with pytest.raises(FirmwareToolError, match="did not enter service mode"):
        fwtools.deploy("/dev/fake", stage)
    assert not any(args[0] == "cp" for args in calls)


@pytest.mark.parametrize("image_has_the_kiosk", [True, False])
def test_a_frozen_deploy_leaves_no_module_on_the_flash_and_checks_the_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image_has_the_kiosk: bool) -> None:
    """A Pico W runs the kiosk frozen into its image (its heap cannot hold the code too): the
    flash gets main.py, the pin map and the tables, and no module file, which would be
    imported before the frozen one; an image without the kiosk is said, in service mode."""
    from onestop.host import fwtools
    from onestop.host.mpy import micropython_binary

    stage = stage_firmware(tmp_path / "stage", "rp2040", compiled=True, tables=False)
    image = tmp_path / "image"  # the modules frozen into the board's MicroPython image
    image.mkdir()
    if image_has_the_kiosk:
        for folder in ("app", "boards", "drivers", "onestop"):  # modules only: no pin map
            shutil.copytree(stage / folder, image / folder,
                            ignore=shutil.ignore_patterns("*.json"))
    (image / "machine.py").write_text("def reset():\n    pass\n")
    board = tmp_path / "board"
    for name in ("app/session.mpy", "drivers/old.py", "config.json", "kiosk.key"):
        (board / name).parent.mkdir(parents=True, exist_ok=True)
        (board / name).write_bytes(b"x")

    def mpremote(port: str, *args: str, cwd: Path | None = None) -> str:
        if args[0] == "exec":
            done = subprocess.run([micropython_binary(), "-c", args[-1]], cwd=board,
                                  capture_output=True, text=True,
                                  env={"MICROPYPATH": f"{image}:.frozen"})
            if done.returncode:
                raise FirmwareToolError(f"mpremote exec: {done.stdout.strip()[-200:]}")
            return done.stdout
        assert args[0] == "cp" and cwd is not None and args[2].startswith(":")
        shutil.copy2(cwd / args[1], board / args[2][1:])
        return ""

    monkeypatch.setattr(fwtools, "_mpremote", mpremote)
    monkeypatch.setattr(fwtools, "_wait_for_board", lambda port: None)
    if not image_has_the_kiosk:
        with pytest.raises(FirmwareToolError,
                           match="(?s)no kiosk firmware frozen in.*nothing on the flash"):
            fwtools.deploy("/dev/fake", stage, frozen=True)
        assert (board / "app" / "session.mpy").exists()  # checked before anything was removed
        assert not (board / fwtools.SERVICE_FILE).exists()  # so the old kiosk boots again
        return
    fwtools.deploy("/dev/fake", stage, frozen=True)
    on_board = {p.relative_to(board).as_posix() for p in board.rglob("*") if p.is_file()}
    assert on_board == {"main.py", "rp2040.json", "config.json", "kiosk.key"}
    assert not any(p.is_dir() for p in board.iterdir())  # an empty app/ hid the frozen app
    # the frozen boards package finds its pin map at the flash root
    spec = json.loads(mpremote("/dev/fake", "exec", "import json\n"
                               "from boards.common import find_spec\n"
                               "print(json.dumps(find_spec('rp2040')))"))
    assert spec == json.loads((stage / "boards" / "rp2040.json").read_text())


def test_a_refused_provisioning_boots_the_kiosk_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """app/provision.py checks everything before it writes: a refusal changed nothing, so the
    board leaves service mode (a damaged counter, say, must not leave a kiosk dark)."""
    from onestop.host import fwtools

    sent: list[str] = []

    def mpremote(port: str, *args: str, cwd: Path | None = None) -> str:
        sent.append(args[-1])
        if "listdir" in args[-1]:
            return "['main.py', 'service']\n"
        if "app.provision" in args[-1]:
            return '{"error": "counter file is damaged"}\n'
        return ""

    monkeypatch.setattr(fwtools, "_mpremote", mpremote)
    monkeypatch.setattr(fwtools, "_wait_for_board", lambda port: None)
    with pytest.raises(FirmwareToolError, match="provisioning refused: counter file is damaged$"):
        fwtools.provision_board("/dev/fake", settings())
    assert sent[-1] == fwtools._LEAVE_SERVICE % fwtools.SERVICE_FILE
