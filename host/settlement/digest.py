"""A policy's digest: what its figures say, not how its file lays them out.

Gateways record it (with each settlement, and in the ledger's record of what each serving
gateway settles by), and `kiosk policy show` prints it, so an operator can tell which policy
file settled a resident.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from .policy import Policy


def policy_digest(policy: Policy) -> str:
    """16 hex digits of SHA-256 over the policy's fields as canonical JSON: the same figures
    in another file (other key order, comments, spacing) give the same digest."""
    said = {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy) if f.repr}
    text = json.dumps(said, sort_keys=True, ensure_ascii=False, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, (frozenset, set)):
        return sorted(value)
    return str(value)
