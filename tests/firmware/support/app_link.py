# Runs under MicroPython (a firmware stage on the path): app.link.GatewayLink over TCP, or over a
# serial line (a pty at spec["path"], opened by the unix board as a kiosk's is), against a
# gateway the test runs, one request after another; plain results back to the test.
import asyncio
import binascii

from app.clock import Clock
from app.counter import Counter
from app.link import GatewayError, GatewayLink, GatewayUnreachable, GatewayUntrusted, connector
from onestop.protocol import ed25519

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
    link = GatewayLink(spec["kiosk"], ed25519.SigningKey(spec["seed"]), counter, clock,
                       spec["gateway_kid"],
                       ed25519.VerifyingKey(binascii.unhexlify(spec["gateway_public"])),
                       connect, over_tcp, timeouts, lambda event, **fields: notes.append(
                           [event, fields.get("error")]))
    results = []
    for t, body in spec["requests"]:
        try:
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
    return {"results": results, "stats": link.stats, "offset": clock.offset,
            "next_ctr": counter.next(), "notes": notes}


def run(spec):
    return asyncio.run(_run(spec))
