"""The money invariants a stored settlement must satisfy, and accumulation sums.

The ledger refuses to store a breakdown that breaks them and the auditor reports any stored one
that does, with the same words. Neither computes a settlement: that is the engine's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# frames.cddl `breakdown`
BREAKDOWN_FIELDS: tuple[str, ...] = (
    "medfee_sumamt",
    "fulamt_ownpay_amt",
    "preselfpay_amt",
    "inscp_scp_amt",
    "act_pay_dedc",
    "hifp_pay",
    "hifmi_pay",
    "maf_pay",
    "fund_pay_sumamt",
    "psn_cash_pay",
)
FUND_FIELDS: tuple[str, ...] = ("hifp_pay", "hifmi_pay", "maf_pay")


def is_fen(value: Any) -> bool:
    """A non-negative integer (bool is not money)."""
    return type(value) is int and value >= 0


def breakdown_problems(result: Mapping[str, Any]) -> list[str]:
    """What is wrong with a settlement breakdown; empty when it adds up."""
    problems: list[str] = []
    missing = [name for name in BREAKDOWN_FIELDS if name not in result]
    extra = sorted(set(result) - set(BREAKDOWN_FIELDS))
    if missing:
        problems.append("missing " + ", ".join(missing))
    if extra:
        problems.append("unexpected " + ", ".join(extra))
    bad = [name for name in BREAKDOWN_FIELDS if name in result and not is_fen(result[name])]
    if bad:
        problems.append("not a non-negative integer of fen: " + ", ".join(bad))
    if missing or bad:
        return problems
    funds = sum(result[name] for name in FUND_FIELDS)
    if result["fund_pay_sumamt"] != funds:
        problems.append(
            f"fund_pay_sumamt {result['fund_pay_sumamt']} != hifp_pay + hifmi_pay + maf_pay {funds}"
        )
    parts = result["fulamt_ownpay_amt"] + result["preselfpay_amt"] + result["inscp_scp_amt"]
    if result["medfee_sumamt"] != parts:
        problems.append(
            f"medfee_sumamt {result['medfee_sumamt']} != fulamt_ownpay_amt + preselfpay_amt + "
            f"inscp_scp_amt {parts}"
        )
    cash = result["medfee_sumamt"] - result["fund_pay_sumamt"]
    if result["psn_cash_pay"] != cash:
        problems.append(
            f"psn_cash_pay {result['psn_cash_pay']} != medfee_sumamt - fund_pay_sumamt {cash}"
        )
    return problems


def amounts_problems(amounts: Mapping[str, Any], what: str) -> list[str]:
    """Accumulations or a delta: text keys, non-negative integer fen values."""
    return [
        f"{what} {key!r} is {value!r}, not a non-negative integer of fen"
        for key, value in amounts.items()
        if not isinstance(key, str) or not is_fen(value)
    ]


def plus(amounts: Mapping[str, int], delta: Mapping[str, int]) -> dict[str, int]:
    """`amounts` with `delta` added key by key (absent keys count as 0)."""
    total = dict(amounts)
    for key, value in delta.items():
        total[key] = total.get(key, 0) + value
    return total


def minus(amounts: Mapping[str, int], delta: Mapping[str, int]) -> dict[str, int]:
    """`amounts` with `delta` taken out; raises ValueError if any would go below zero."""
    left = dict(amounts)
    for key, value in delta.items():
        remaining = left.get(key, 0) - value
        if remaining < 0:
            raise ValueError(
                f"taking {value} out of accumulation {key!r} ({left.get(key, 0)}) goes below zero"
            )
        left[key] = remaining
    return left


def same_amounts(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """Equal as accumulations: a key absent on one side equals 0 on the other."""
    return all(a.get(key, 0) == b.get(key, 0) for key in set(a) | set(b))
