"""Settlement engine: regional policy as data, one-stop calculation, annual accumulations.

policy = load_policy("reference")           # shipped name or path to a .toml; PolicyError
policies = load_policy_set(names)           # several; policies.for_region(insu_admdvs)
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
    delta_of,
    empty_accumulations,
)
from .claim import Claim, ClaimError, Item
from .digest import policy_digest
from .engine import BREAKDOWN_FIELDS, Outcome, settle
from .loader import PolicyError, load_policy, parse_policy, shipped_policy_names
from .policy import Policy
from .regions import PolicySet, load_policy_set

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
    "PolicySet",
    "cancel",
    "delta_of",
    "empty_accumulations",
    "load_policy",
    "load_policy_set",
    "parse_policy",
    "policy_digest",
    "settle",
    "shipped_policy_names",
]
