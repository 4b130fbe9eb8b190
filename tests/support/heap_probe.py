# MicroPython only: the heap the protocol takes, run in a fresh interpreter with nothing but a
# precompiled (.mpy) protocol and this module on its path. Every import is inside a function, so
# importing this module loads none of the protocol, and the figures are the protocol's own.
import gc

MODULES = ("errors", "cbor", "framing", "cose", "sha512", "ed25519", "messages")
KIOSK = "HALL-0101"
GATEWAY = "gw-2026-01"
RID = b"\x5c\x1e\x0a\x93\xd2\x77\x4b\x08"


def import_figures():
    """Live heap (bytes, after a collection) each protocol module adds when imported in turn,
    and their total."""
    gc.collect()
    start = before = gc.mem_alloc()
    figures = {}
    for name in MODULES:
        __import__("onestop.protocol." + name)
        gc.collect()
        figures[name] = gc.mem_alloc() - before
        before = gc.mem_alloc()
    figures["total"] = before - start
    return figures


def _read(path):
    # (kiosk seed and gateway public key: 64 bytes, the gateway's framed settle_reply)
    f = open(path, "rb")
    keys = f.read(64)
    frame = f.read()
    f.close()
    return keys, frame


def settle_request(messages):
    return messages.request("settle", KIOSK, 41, RID, 1767228000, psn_no="430000110000001234",
                            bill_id="B2026-000731", txn_id="T-HALL0101-000041-7Q2X",
                            confirmed_cash=193750)


def round_trip(path):
    """A kiosk's side of one settle, as on the board: seal and frame the request with the
    kiosk's key, then deframe and open the gateway's reply (verified with the gateway's key) and
    the settlement in it. The input is read first, as a board's receive buffer is allocated at
    boot. Returns (request frame as hex, settlement record)."""
    keys, received = _read(path)
    from onestop.protocol import framing, messages
    from onestop.protocol.ed25519 import SigningKey, VerifyingKey

    key = SigningKey(keys[:32])
    gateway = VerifyingKey(keys[32:])
    frame = framing.encode(messages.seal(settle_request(messages), KIOSK, key))
    deframer = framing.Deframer()
    deframer.receive_data(received)
    received = None
    reply = messages.open(deframer.next_frame(), {GATEWAY: gateway}.get)[1]
    record = messages.open_settlement(reply["settlement"], gateway)
    return frame.hex(), record


def _measure(fn, *args):
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    try:
        result = fn(*args)
        used = gc.mem_alloc() - before
    finally:
        gc.enable()
    return used, result


def operation_figures(path):
    """Heap bytes allocated (collector paused: every temporary counts) by each step of the
    kiosk's settle round trip, and frame sizes."""
    keys, received = _read(path)
    from onestop.protocol import cbor, framing, messages
    from onestop.protocol.ed25519 import SigningKey, VerifyingKey

    figures = {}
    request = settle_request(messages)
    key = SigningKey(keys[:32])
    gateway = VerifyingKey(keys[32:])
    figures["validate"], _ = _measure(messages.validate, request)
    figures["cbor_dumps"], payload = _measure(cbor.dumps, request)
    figures["cbor_loads"], _ = _measure(cbor.loads, payload)
    figures["seal"], sealed = _measure(messages.seal, request, KIOSK, key)
    figures["frame_encode"], frame = _measure(framing.encode, sealed)
    deframer = framing.Deframer()
    figures["deframe"], _ = _measure(deframer.receive_data, received)
    figures["open"], opened = _measure(messages.open, deframer.next_frame(),
                                       {GATEWAY: gateway}.get)
    figures["open_settlement"], _ = _measure(messages.open_settlement,
                                             opened[1]["settlement"], gateway)
    figures["payload_bytes"] = len(payload)
    figures["sealed_bytes"] = len(sealed)
    figures["frame_bytes"] = len(frame)
    figures["reply_frame_bytes"] = len(received)
    return figures


def _fault(data):
    from onestop.protocol import cbor
    from onestop.protocol.errors import ProtocolError

    try:
        cbor.loads(data)
    except ProtocolError as exc:
        return exc.code, exc.msg
    return None


def fault_leaves_nothing():
    """Heap left after a fault is raised and caught: the fault texts are loaded to make its
    message and dropped again. Returns (bytes left, the fault's code and text)."""
    _fault(b"\x18\x17")  # a first fault: whatever is made once is made before measuring
    gc.collect()
    before = gc.mem_alloc()
    _fault(b"\x19\x00\x17")
    gc.collect()
    return gc.mem_alloc() - before, _fault(b"\x19\x00\x17")
