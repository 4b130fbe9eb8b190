# MicroPython only: heap bytes that protocol operations allocate, and a kiosk's settle round
# trip for running inside a board-sized heap. Allocation figures are totals with the collector
# paused (gc.mem_alloc before and after): every temporary counts, not only what survives.
import gc

from onestop.protocol import cbor, framing, messages
from onestop.protocol.ed25519 import SigningKey, VerifyingKey

KIOSK = "HALL-0101"
GATEWAY = "gw-2026-01"


def settle_request():
    return messages.request("settle", KIOSK, 41, b"\x5c\x1e\x0a\x93\xd2\x77\x4b\x08", 1767228000,
                            psn_no="430000110000001234", bill_id="B2026-000731",
                            txn_id="T-HALL0101-000041-7Q2X", confirmed_cash=193750)


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


def operation_figures(kiosk_seed, gateway_pub, reply_frame):
    """Heap bytes allocated by each step of the kiosk's settle round trip, and frame sizes."""
    figures = {}
    request = settle_request()
    key = SigningKey(kiosk_seed)
    gateway = VerifyingKey(gateway_pub)
    figures["validate"], _ = _measure(messages.validate, request)
    figures["cbor_dumps"], payload = _measure(cbor.dumps, request)
    figures["cbor_loads"], _ = _measure(cbor.loads, payload)
    figures["seal"], sealed = _measure(messages.seal, request, KIOSK, key)
    figures["frame_encode"], frame = _measure(framing.encode, sealed)
    deframer = framing.Deframer()
    figures["deframe"], _ = _measure(deframer.receive_data, reply_frame)
    reply_sealed = deframer.next_frame()
    figures["open"], opened = _measure(messages.open, reply_sealed, {GATEWAY: gateway}.get)
    figures["open_settlement"], _ = _measure(messages.open_settlement,
                                             opened[1]["settlement"], gateway)
    figures["payload_bytes"] = len(payload)
    figures["sealed_bytes"] = len(sealed)
    figures["frame_bytes"] = len(frame)
    figures["reply_frame_bytes"] = len(reply_frame)
    return figures


def kiosk_round_trip(kiosk_seed, gateway_pub, reply_frame):
    """A kiosk's side of one settle, as on the board: seal and frame the request, then deframe
    and open the gateway's reply and the settlement in it. Returns (request frame, settlement
    record, heap free at the end)."""
    request_frame = framing.encode(messages.seal(settle_request(), KIOSK, SigningKey(kiosk_seed)))
    gateway = VerifyingKey(gateway_pub)
    deframer = framing.Deframer()
    deframer.receive_data(reply_frame)
    _, reply = messages.open(deframer.next_frame(), {GATEWAY: gateway}.get)
    record = messages.open_settlement(reply["settlement"], gateway)
    gc.collect()
    return (request_frame, record, gc.mem_free())
