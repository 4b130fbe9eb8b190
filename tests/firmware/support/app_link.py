# Runs under MicroPython (a firmware stage on the path): app.link.GatewayLink over TCP, or over a
# serial line (a pty at spec["path"], opened by the unix board as a kiosk's is), against a
# gateway the test runs, one request after another; plain results back to the test.
import asyncio
import binascii

from app import config as C
from app.clock import Clock
from app.counter import Counter
from app.link import GatewayError, GatewayLink, GatewayUnreachable, GatewayUntrusted, connector
from onestop.protocol import ed25519
from onestop.protocol.errors import ProtocolError

TIMEOUTS = {"gateway_connect": 1000, "gateway_reply": 400, "gateway_attempts": 3,
            "gateway_idle": 5000, "backoff_first": 20, "backoff_max": 80}


async def _run(spec):
    async def connect():
        return await asyncio.open_connection("127.0.0.1", spec["port"])

    over_tcp = True
    if spec.get("path"):
        from boards.unix import Board

        gateway = {"kind": "serial", "path": spec["path"], "baud": 115200}
        connect, over_tcp = connector(Board({"gateway": gateway}, spec["dir"]), gateway)

    clock = Clock()
    clock.offset = spec.get("skew", 0)
    counter = Counter(spec["dir"] + "/counter")
    timeouts = dict(TIMEOUTS)
    timeouts.update(spec.get("timeouts", {}))
    notes = []  # what the link logged: [event, its error field]
    rotation = []  # gateway_key_* and gateway_cert_* events, whole

    def note(event, **fields):
        notes.append([event, fields.get("error")])
        if event.startswith("gateway_key_") or event.startswith("gateway_cert_"):
            fields["event"] = event
            rotation.append(fields)

    # Key rotation (spec "authority_kid", "authority_public"): the trusted gateway key is
    # config.json's (spec "gateway_kid", "gateway_public", "serial") or the one kept on the
    # flash since (app.config.trusted_gateway), kept there as boot.py keeps it.
    cfg = {"gateway_kid": spec["gateway_kid"], "gateway_public_key": spec["gateway_public"],
           "gateway_serial": spec.get("serial", 0)}
    authority = on_key = None
    if spec.get("authority_kid"):
        cfg["authority_kid"] = spec["authority_kid"]
        authority = (spec["authority_kid"],
                     ed25519.VerifyingKey(binascii.unhexlify(spec["authority_public"])))

        def on_key(kid, public_key, serial, old):
            C.save_gateway(spec["dir"], spec["authority_kid"], kid,
                           binascii.hexlify(public_key).decode(), serial,
                           old and [old[0], binascii.hexlify(old[1]).decode()])
    kid, public, serial, previous = C.trusted_gateway(spec["dir"], cfg)
    if previous is not None:
        previous = (previous[0], binascii.unhexlify(previous[1]))
    link = GatewayLink(spec["kiosk"], ed25519.SigningKey(spec["seed"]), counter, clock, kid,
                       ed25519.VerifyingKey(binascii.unhexlify(public)), connect, over_tcp,
                       timeouts, note, authority, serial, on_key, previous)
    results = []
    for t, body in spec["requests"]:
        try:
            if t == "sign_in" and authority:  # as a kiosk does: so the link may sign in again
                reply = await link.sign_in(body["fw"], body["board"])
            else:
                reply = await link.call(t, **body)
            results.append({"t": reply["t"], "ctr": reply["ctr"]})
        except GatewayError as e:
            results.append({"error": e.code} if getattr(e, "bound", True)
                           else {"error": e.code, "bound": False})
        except GatewayUntrusted:
            results.append({"untrusted": True})
        except GatewayUnreachable:
            results.append({"unreachable": True})
    await link.close()
    opened = []  # spec "settlements": each opened with link.open_settlement, as boot.py does
    for signed in spec.get("settlements", ()):
        try:
            opened.append(link.open_settlement(signed)["setl_id"])
        except ProtocolError as e:
            opened.append(e.code)
    return {"results": results, "opened": opened, "stats": link.stats, "offset": clock.offset,
            "next_ctr": counter.next(), "notes": notes, "rotation": rotation,
            "trusted": [link.gateway_kid, link.serial],
            "kept": list(C.trusted_gateway(spec["dir"], cfg))[:3]}


def run(spec):
    return asyncio.run(_run(spec))
