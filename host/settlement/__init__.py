"""Settlement engine: regional policy as data, one-stop calculation, annual accumulations.

policy = load_policy("reference")           # shipped name or path to a .toml; PolicyError
claim = Claim.from_dict(d)                  # or Claim.from_bill(person, bill, setl_date)
out = settle(policy, claim, accumulations)  # pure; accumulations of the person for claim.year
out.breakdown, out.after, out.delta
accumulations = cancel(accumulations, out.delta)
"""

from __future__ import annotations

from .accumulations import (
    ACCUMULATION_KEYS,
    AccumulationError,
    cancel,
    empty_accumulations,
)
from .claim import Claim, ClaimError, Item
from .engine import BREAKDOWN_FIELDS, Outcome, settle
from .loader import PolicyError, load_policy, parse_policy, shipped_policy_names
from .policy import Policy

__all__ = [
    "ACCUMULATION_KEYS",
    "BREAKDOWN_FIELDS",
    "AccumulationError",
    "Claim",
    "ClaimError",
    "Item",
    "Outcome",
    "Policy",
    "PolicyError",
    "cancel",
    "empty_accumulations",
    "load_policy",
    "parse_policy",
    "settle",
    "shipped_policy_names",
]
