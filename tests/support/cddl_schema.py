"""frames.cddl compiled with pycddl for any of its rules (CPython only)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

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
