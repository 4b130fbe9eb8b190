"""CBOR diagnostic notation (RFC 8949 §8) for the vectors: CPython only, built on cbor2."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import cbor2


def diag(value: Any) -> str:
    """Diagnostic notation of a decoded value, maps in deterministic key order."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return "h'" + bytes(value).hex() + "'"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(diag(v) for v in value) + "]"
    if isinstance(value, Mapping):  # cbor2 gives frozendict inside tags
        keys = sorted(value, key=lambda k: cbor2.dumps(k, canonical=True))
        return "{" + ", ".join(f"{diag(k)}: {diag(value[k])}" for k in keys) + "}"
    if isinstance(value, cbor2.CBORTag):
        return f"{value.tag}({diag(value.value)})"
    raise TypeError(f"no diagnostic notation for {type(value).__name__}")


def diag_hex(data: bytes) -> str:
    """Diagnostic notation of encoded CBOR, decoded by the reference decoder (cbor2)."""
    return diag(cbor2.loads(data))
