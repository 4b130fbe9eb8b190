"""frames.cddl compiled with pycddl for any of its rules (CPython only)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import cbor2
import pycddl

FRAMES_CDDL = Path(__file__).resolve().parents[2] / "protocol" / "spec" / "frames.cddl"


def _for_pycddl(text: str) -> str:
    """frames.cddl rewritten so that pycddl 0.6 checks what RFC 8610 says it means."""
    # §3.8.3: .regexp is an XSD regular expression, which matches the whole text; pycddl
    # searches instead, so "K!" would pass "[A-Za-z0-9_-]{1,32}". Anchor them.
    text = re.sub(r'\.regexp "([^"]*)"', lambda m: '.regexp "^(?:' + m.group(1) + ')$"', text)
    # §3.8.1: `bytes .size 8` is a byte string of 8 bytes; pycddl checks only the size, so the
    # text "abcdefgh" and the integer 5 would pass. Restate the type.
    return re.sub(r"\bbytes \.size (\d+)", r"bytes .and (bytes .size \1)", text)


def message_map_rules() -> list[str]:
    """Every rule that is one message map (a choice like settlement_query_reply is split)."""
    text = FRAMES_CDDL.read_text(encoding="utf-8")
    rules = re.findall(r"^(\w+) = \{ *(?:header|query_reply_header|error_header)\b", text, re.M)
    return sorted(rules)


def leaf_rules(rule: str) -> list[str]:
    """The map rules a one-line type choice like `a = b / c` stands for, else [rule].

    pycddl 0.6 validates a choice of maps loosely (keys matched by a failed alternative count
    as present or allowed in the next), so each map is checked on its own.
    """
    text = FRAMES_CDDL.read_text(encoding="utf-8")
    found = re.search(r"^" + re.escape(rule) + r" = (\w+(?: / \w+)+) *$", text, re.M)
    if not found:
        return [rule]
    return [leaf for alt in found.group(1).split(" / ") for leaf in leaf_rules(alt)]


@functools.cache
def schema(rule: str = "frame") -> pycddl.Schema:
    """A validator whose root is `rule` (frames.cddl's first rule, frame, by default).

    Validating a message against its own rule, not only against `frame`, sidesteps two pycddl
    0.6 bugs with choices of maps: a key that an earlier alternative declared gets through
    (a settle_reply with an `fw` field passes as a `frame`), and so does an array ([1, 0]).
    """
    text = _for_pycddl(FRAMES_CDDL.read_text(encoding="utf-8"))
    if rule != "frame":
        text = "onestop_root = " + rule + "\n" + text
    return pycddl.Schema(text)


def _array_item_rules() -> list[tuple[str, str]]:
    text = FRAMES_CDDL.read_text(encoding="utf-8")
    return re.findall(r"(\w+): \[\* (\w+)\]", text)


def check(rule: str, data: bytes) -> None:
    """schema(rule).validate_cbor(data), plus what pycddl 0.6 misses; raises ValidationError.

    pycddl leaves a map inside an array with an occurrence (`bills: [* bill_record]`) open
    to unknown keys, so each such element is validated against its own rule as well. A pycddl
    panic (it has some, e.g. on a byte string where text is expected) counts as rejection.
    """
    try:
        schema(rule).validate_cbor(data)
        value = cbor2.loads(data)
        if isinstance(value, dict):
            for field, item_rule in _array_item_rules():
                items = value.get(field)
                for item in items if isinstance(items, list) else ():
                    schema(item_rule).validate_cbor(cbor2.dumps(item, canonical=True))
    except pycddl.ValidationError:
        raise
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        raise pycddl.ValidationError("pycddl panicked: " + str(exc)) from None
