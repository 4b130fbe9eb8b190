"""The measurements behind `kiosk bench protocol`, run inside MicroPython (through
onestop.host.mpy.Worker, with this directory on its path) and in CPython, so both runtimes time
the very same code. Only builtins and onestop.protocol are used; results are plain dicts.
"""

import gc
import sys
import time

# `kiosk bench protocol` puts a precompiled (.mpy) copy of onestop.protocol beside this module's
# own .mpy: the form the firmware loads, without the heap that compiling source would take. The
# worker lists the source tree first, so look here before it.
if __file__.endswith(".mpy"):
    _here = __file__[: __file__.rfind("/")]
    if _here in sys.path:
        sys.path.remove(_here)
    sys.path.insert(0, _here)

from onestop.protocol import cbor, cose, ed25519, framing, messages  # noqa: E402

KIOSK = "KIOSK-0001"

try:  # MicroPython
    _ticks_us = time.ticks_us  # type: ignore[attr-defined]
    _ticks_diff = time.ticks_diff  # type: ignore[attr-defined]
except AttributeError:  # CPython

    def _ticks_us():
        return time.perf_counter_ns() // 1000

    def _ticks_diff(end, start):
        return end - start


def settle_message():
    """A settle request as the kiosk sends it when the resident confirms a bill."""
    return messages.request(
        "settle", KIOSK, 48213, b"\x8a\x1f\x03\x5c\xe2\x90\x44\x17", 1767258000,
        psn_no="P13063000012345", bill_id="ZY20260101-000017",
        txn_id="KIOSK-0001-20260101-0042", confirmed_cash=12850,
    )


def _keys(seed, backend):
    if backend == "openssl":  # CPython only: the gateway's keys
        from onestop.host.keys import SigningKey, VerifyingKey
    else:
        SigningKey = ed25519.SigningKey
        VerifyingKey = ed25519.VerifyingKey
    signer = SigningKey(seed)
    return signer, VerifyingKey, VerifyingKey(signer.public_key)


def _best_us(fn, rounds):
    return _best_of({"": fn}, rounds)[""]


def _best_of(steps, rounds):
    """Best-of-rounds microseconds for each named step. The steps take turns within a round,
    so a stretch of a busy machine slows them all, not just whichever ran then."""
    best = {}
    for _ in range(rounds):
        for name, fn in steps.items():
            start = _ticks_us()
            fn()
            took = _ticks_diff(_ticks_us(), start)
            if name not in best or took < best[name]:
                best[name] = took
    return best


def _open_wire(wire, verifier):
    deframer = framing.Deframer()
    deframer.receive_data(wire)
    return messages.open(deframer.next_frame(), lambda kid: verifier)


def timings(seed, backend, rounds):
    """Best-of-rounds microseconds for each step on a settle frame, and its sizes."""
    msg = settle_message()
    signer, verifying_key, verifier = _keys(seed, backend)
    sealed = messages.seal(msg, KIOSK, signer)
    wire = framing.encode(sealed)
    signed = cose.decode1(sealed).to_be_signed()  # the bytes Ed25519 actually signs
    sig = signer.sign(signed)

    def encode_decode():
        frame = framing.encode(cbor.dumps(msg))
        cbor.loads(framing.decode(frame[:-1]))

    result = _best_of({
        "encode_decode_us": encode_decode,
        "sign_us": lambda: signer.sign(signed),
        "verify_us": lambda: verifier.verify(signed, sig),
        "seal_us": lambda: framing.encode(messages.seal(msg, KIOSK, signer)),
        "open_us": lambda: _open_wire(wire, verifier),
    }, rounds)
    result["new_verifying_key_us"] = _best_us(
        lambda: verifying_key(signer.public_key), max(1, rounds // 4))
    result["payload_bytes"] = len(cbor.dumps(msg))
    result["signed_bytes"] = len(signed)
    result["wire_bytes"] = len(wire)
    return result


def heap_per_operation(seed):
    """Bytes of heap one seal and one open allocate (MicroPython, collector paused)."""
    msg = settle_message()
    signer, _, verifier = _keys(seed, "protocol")
    wire = framing.encode(messages.seal(msg, KIOSK, signer))
    _open_wire(wire, verifier)  # first use: anything made once is made before measuring
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()  # type: ignore[attr-defined]
        wire = framing.encode(messages.seal(msg, KIOSK, signer))
        sealed = gc.mem_alloc()  # type: ignore[attr-defined]
        _open_wire(wire, verifier)
        opened = gc.mem_alloc()  # type: ignore[attr-defined]
    finally:
        gc.enable()
    return {"seal_bytes": sealed - before, "open_bytes": opened - sealed}


def footprint(seed):
    """Live heap (MicroPython) a kiosk signing key and a gateway verifying key keep."""
    gc.collect()
    before = gc.mem_alloc()  # type: ignore[attr-defined]
    signer, _, verifier = _keys(seed, "protocol")
    gc.collect()
    keys = gc.mem_alloc() - before  # type: ignore[attr-defined]  # signer, verifier held here
    return {"keys_bytes": keys}
