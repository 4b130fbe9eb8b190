"""Settle a sequence of claims in order, each against its person's accumulations for its year.

What `kiosk policy calc` and the benchmark do; the gateway does the same through its ledger.
"""

from __future__ import annotations

from collections.abc import Iterable

from .accumulations import empty_accumulations
from .claim import Claim
from .engine import BREAKDOWN_FIELDS, settle
from .policy import Policy


def settle_in_order(policy: Policy, claims: Iterable[Claim]) -> list[dict[str, object]]:
    """One result per claim: ``psn_no`` then the breakdown fields (int fen)."""
    accumulations: dict[tuple[str, int], dict[str, int]] = {}
    results: list[dict[str, object]] = []
    for claim in claims:
        key = (claim.psn_no, claim.year)
        outcome = settle(policy, claim, accumulations.get(key) or empty_accumulations())
        accumulations[key] = outcome.after
        result: dict[str, object] = {"psn_no": claim.psn_no}
        for name in BREAKDOWN_FIELDS:
            result[name] = outcome.breakdown[name]
        results.append(result)
    return results
