"""JSON text on a request's path, by orjson, with the same text and values as the standard
library's `json` would give.

Every settlement writes its audit event, its result and the person's accumulations as canonical
JSON and reads its bill's items back from JSON; every visit logs JSON lines. The standard
library's encoder and decoder spend more of a settlement's CPU on that than orjson (in C).

The ledger's text must not change with the library: the audit chain hashes it, and ledgers
written before keep verifying. So each call here takes orjson's result only where orjson is
known to give exactly what `json` gives, and `json` itself everywhere else:
- orjson cannot write an integer beyond 64 bits, a lone surrogate or a non-text key: it
  raises, and `json` writes (or refuses) it as before;
- orjson reads an integer beyond 64 bits as a float, silently: text holding a run of 19 or
  more digits (or any fraction or exponent) is read by `json`. The ledger holds only integers
  (money is integer fen), so its texts never take that path in practice.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# Types orjson writes itself where `json` refuses them (without a default): handed back to
# `json`, whose refusal (or `default`) stands.
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_CANONICAL_OPTIONS = orjson.OPT_SORT_KEYS | _PASSTHROUGH
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)

# A number orjson might not read exactly: a fraction, an exponent, or 19 digits and more
# (2**63 has 19). Strings holding such text (a "1.5" in a name) only cost the slower reader.
_MAYBE_INEXACT = re.compile(r"\d(?:[.eE]|\d{18})")


def canonical(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept as is: json.dumps(value, sort_keys=True,
    separators=(",", ":"), ensure_ascii=False), character for character."""
    try:
        return orjson.dumps(value, option=_CANONICAL_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError: see the module docstring
        return _CANONICAL.encode(value)


def compact(value: Any) -> str:
    """No spaces, UTF-8 kept as is, str() of anything JSON has no type for (a log line)."""
    try:
        return orjson.dumps(value, default=str, option=_PASSTHROUGH).decode()
    except TypeError:
        return _COMPACT.encode(value)


def loads(text: str) -> Any:
    """json.loads(text): the same values, or the same refusal."""
    if isinstance(text, str) and _MAYBE_INEXACT.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:  # NaN, a lone surrogate...: json decides
            pass
    return json.loads(text)
