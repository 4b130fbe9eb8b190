# Runs under MicroPython: answers call requests from onestop.host.mpy.Worker, one JSON line each.
# Request: {"m": module, "f": function, "a": [tagged args]}.
# Reply: {"ok": tagged value} or {"err": type, "code": ..., "msg": ...}.
import json
import sys


def enc(v):
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"$b": "".join("%02x" % b for b in bytes(v))}
    if isinstance(v, tuple):
        return {"$t": [enc(x) for x in v]}
    if isinstance(v, list):
        return [enc(x) for x in v]
    if isinstance(v, dict):
        return {"$m": [[enc(k), enc(x)] for k, x in v.items()]}
    if isinstance(v, float):
        return {"$f": repr(v)}
    return {"$o": repr(v)}


def dec(v):
    if isinstance(v, list):
        return [dec(x) for x in v]
    if isinstance(v, dict):
        if "$b" in v:
            return bytes.fromhex(v["$b"])
        if "$t" in v:
            return tuple(dec(x) for x in v["$t"])
        if "$m" in v:
            out = {}
            for k, x in v["$m"]:
                k = dec(k)
                out[tuple(k) if isinstance(k, list) else k] = dec(x)
            return out
        if "$f" in v:
            return float(v["$f"])
    return v


def main():
    stdin = sys.stdin
    while True:
        line = stdin.readline()
        if not line:
            break
        req = json.loads(line)
        try:
            mod = __import__(req["m"], None, None, [req["f"]], 0)
            result = getattr(mod, req["f"])(*[dec(a) for a in req["a"]])
            out = {"ok": enc(result)}
        except Exception as e:  # report, keep serving
            msg = getattr(e, "msg", None)
            out = {"err": type(e).__name__, "code": getattr(e, "code", None),
                   "msg": msg if isinstance(msg, str) else str(e)}
        sys.stdout.write(json.dumps(out) + "\n")


main()
