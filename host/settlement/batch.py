"""Settle a sequence of claims in order, each against its person's accumulations for its year.

What `kiosk policy calc` and the benchmark do; the gateway does the same through its ledger.
"""

from __future__ import annotations

from collections.abc import Sequence

from .accumulations import empty_accumulations
from .claim import Claim
from .engine import BREAKDOWN_FIELDS, settle
from .policy import Policy


def settle_in_order(
    policy: Policy | Sequence[Policy], claims: Sequence[Claim]
) -> list[dict[str, object]]:
    """One result per claim: ``psn_no`` then the breakdown fields (int fen). `policy`: one for
    every claim, or one per claim (its resident's enrolment region's)."""
    policies = [policy] * len(claims) if isinstance(policy, Policy) else policy
    accumulations: dict[tuple[str, int], dict[str, int]] = {}
    results: list[dict[str, object]] = []
    for chosen, claim in zip(policies, claims, strict=True):
        key = (claim.psn_no, claim.year)
        outcome = settle(chosen, claim, accumulations.get(key) or empty_accumulations())
        accumulations[key] = outcome.after
        result: dict[str, object] = {"psn_no": claim.psn_no}
        for name in BREAKDOWN_FIELDS:
            result[name] = outcome.breakdown[name]
        results.append(result)
    return results
