"""The audit chain's canonical JSON: one text per value, and money never as a float."""

from __future__ import annotations

import pytest
from onestop.host.gateway.ledger.chain import canonical_json


def test_keys_sorted_no_spaces_and_chinese_kept_as_written() -> None:
    record = {"psn_cash_pay": 1656250, "name": "张三", "items": [{"b": None, "a": True}]}
    assert canonical_json(record) == \
        '{"items":[{"a":true,"b":null}],"name":"张三","psn_cash_pay":1656250}'


@pytest.mark.parametrize("value", [
    12.5,
    {"fund_pay": 100.0},
    {"result": {"medfee": 1, "hifp_pay": 0.5}},
    [1, [2, (3, {"deep": float("nan")})]],
])
def test_a_float_anywhere_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match="money and counts are integers"):
        canonical_json(value)
