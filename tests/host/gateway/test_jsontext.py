"""jsontext: orjson's speed, the standard library's text and values.

The audit chain hashes the ledger's canonical JSON: a ledger written before must keep
verifying, so the canonical text must be the standard library's character for character. And
a value read back must be the value written: an integer stays an integer of the same value.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onestop.host.gateway import jsontext
from onestop.host.gateway.ledger.chain import canonical_json, event_hash

# Every character, lone surrogates and control characters included.
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=12)
SCALARS = (st.none() | st.booleans() | st.integers() | ANY_TEXT
           | st.integers(min_value=2**63 - 3, max_value=2**64 + 3)
           | st.integers(min_value=-(2**63) - 3, max_value=-(2**63) + 3))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
READABLE = st.recursive(  # what json.loads can meet: floats of every kind too
    SCALARS | st.floats(allow_nan=True),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 == 1.0 == True in Python)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def reference_canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_the_canonical_text_is_the_standard_librarys(value: Any) -> None:
    assert jsontext.canonical(value) == reference_canonical(value)


def test_a_settlements_audit_body_hashes_as_before() -> None:
    body = {"kind": "settled", "txn_id": "T0001", "name": "张三\u2028\x1f\"\\",
            "amount": 136_500_00,
            "result": {"fund_pay": 2**63 + 1, "psn_cash_pay": 0, "items": [{"class": "甲类"}]}}
    assert canonical_json(body) == reference_canonical(body)
    assert event_hash("00" * 32, canonical_json(body)) == event_hash("00" * 32,
                                                                     reference_canonical(body))


def test_what_the_standard_library_refuses_is_still_refused() -> None:
    @dataclasses.dataclass
    class Record:
        amount: int

    for value in (Record(1), datetime.date(2026, 11, 25), {"a": object()}, {1: "a", "b": 2}):
        with pytest.raises(TypeError):
            reference_canonical(value)
        with pytest.raises(TypeError):
            jsontext.canonical(value)


@settings(max_examples=400, deadline=None)
@given(READABLE, st.booleans(), st.booleans())
def test_a_text_reads_back_as_the_standard_library_reads_it(value: Any, ascii_only: bool,
                                                              spaced: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=1 if spaced else None)
    assert same(jsontext.loads(text), json.loads(text))


@pytest.mark.parametrize("text", ["18446744073709551616", "[-9223372036854775809]",
                                  '{"fund_pay": 123456789012345678901234567890}'])
def test_an_integer_beyond_64_bits_reads_back_exactly(text: str) -> None:
    assert same(jsontext.loads(text), json.loads(text))
    assert isinstance(json.loads(text), int | list | dict)


@pytest.mark.parametrize("text", ["", "[1,", "{'a': 1}", '{"a" 1}', "[1] x", "01", '"\\x"'])
def test_a_text_that_is_not_json_is_refused_as_before(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    with pytest.raises(json.JSONDecodeError):
        jsontext.loads(text)


@dataclasses.dataclass
class Where:
    host: str


def test_a_log_line_writes_what_json_has_no_type_for_as_text() -> None:
    line = jsontext.compact({"event": "settled", "name": "张三", "at": Where("db"),
                             "day": datetime.date(2026, 11, 25), 7: "by number"})
    assert json.loads(line) == {"event": "settled", "name": "张三", "at": "Where(host='db')",
                                "day": "2026-11-25", "7": "by number"}
    assert line.startswith('{"event":"settled","name":"张三",')  # no spaces, no escapes
