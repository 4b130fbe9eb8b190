# Importable on both runtimes: protocol calls whose arguments or results cannot cross the
# runtime boundary as they are (objects, memoryviews), wrapped to take and give plain values.
from onestop.protocol import cbor, cose, framing, messages


def validate_cbor(data, rule):
    """Decode a message vector and validate it as frames.cddl `rule`; returns the message."""
    value = cbor.loads(data)
    if rule == "settlement_record":
        return messages.validate_settlement(value)
    if rule == "gateway_cert":
        return messages.validate_cert(value)
    return messages.validate(value)


def decode1(data):
    """A COSE_Sign1's parts as a tuple: (kid, protected, payload, signature, to_be_signed)."""
    sign1 = cose.decode1(data)
    return (sign1.kid, sign1.protected, sign1.payload, sign1.signature, sign1.to_be_signed())


def deframe(chunks, max_frame=framing.MAX_FRAME):
    """Feed `chunks` to one Deframer, pulling after each; returns (payloads, stats, buffered)."""
    deframer = framing.Deframer(max_frame)
    payloads = []
    for chunk in chunks:
        deframer.receive_data(chunk)
        frame = deframer.next_frame()
        while frame is not None:
            payloads.append(frame)
            frame = deframer.next_frame()
    return (payloads, deframer.stats, deframer.buffered)


def deframe_view(data, start, stop):
    """receive_data from a memoryview slice of a buffer that is then overwritten (a UART's)."""
    buf = bytearray(data)
    deframer = framing.Deframer()
    deframer.receive_data(memoryview(buf)[start:stop])
    for i in range(len(buf)):
        buf[i] = 0xAA
    payloads = []
    frame = deframer.next_frame()
    while frame is not None:
        payloads.append(frame)
        frame = deframer.next_frame()
    return payloads


def build_request(t, kiosk, ctr, rid, ts, body):
    return messages.request(t, kiosk, ctr, rid, ts, **body)


def build_reply(req, t, ts, body):
    return messages.reply(req, t, ts, **body)


def texts_loaded_after_a_fault():
    """Whether protocol/texts.py is still imported after a fault was raised and caught."""
    import sys

    from onestop.protocol.errors import ProtocolError

    try:
        cbor.loads(b"\x18\x17")
    except ProtocolError:
        pass
    return "onestop.protocol.texts" in sys.modules
