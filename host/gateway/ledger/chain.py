"""The audit chain's arithmetic: canonical JSON bodies and the hash that links each event to the
one before it. The ledger writes with these; the auditor recomputes with the same functions.
"""

from __future__ import annotations

import hashlib
from typing import Any

from onestop.host.gateway import jsontext

GENESIS_HASH = "00" * 32  # prev_hash of the first event


def canonical_json(value: Any) -> str:
    """One text for one value: sorted keys, no spaces, UTF-8 kept as is, no floats."""
    _reject_floats(value)
    return jsontext.canonical(value)


def event_hash(prev_hash_hex: str, body: str) -> str:
    """sha256(prev_hash || body): the hex hash of an event whose canonical JSON is `body`."""
    return hashlib.sha256(bytes.fromhex(prev_hash_hex) + body.encode("utf-8")).hexdigest()


def digest_hex(data: bytes) -> str:
    """sha256 of `data`, hex: how an event names the signed bytes it vouches for."""
    return hashlib.sha256(data).hexdigest()


def _reject_floats(value: Any) -> None:
    # Money is integer fen; a float here is a bug upstream, never something to round.
    # (Records are shallow maps of scalars: scalars are passed over without a call.)
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list | tuple):
        items = value
    elif isinstance(value, float):
        raise TypeError(f"float {value!r} in a ledger record: money and counts are integers")
    else:
        return
    for item in items:
        kind = type(item)
        if kind is int or kind is str or kind is bool or item is None:
            continue
        _reject_floats(item)
