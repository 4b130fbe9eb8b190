"""Fixtures for the settlement tests: the reference policy and a claim builder with defaults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from onestop.host.settlement import Claim, Policy, load_policy

HOME = "130630"  # 涞源县: where the test residents are insured


@pytest.fixture(scope="session")
def reference() -> Policy:
    return load_policy("reference")


def claim_dict(**overrides: Any) -> dict[str, Any]:
    """A valid local level-2 inpatient claim for P001 in 2026; `items` as (class, fen) pairs."""
    items = overrides.pop("items", [("A", 1_000_000)])
    values: dict[str, Any] = {
        "psn_no": "P001",
        "insu_admdvs": HOME,
        "assistance": "none",
        "med_type": "inpatient",
        "hosp_lv": 2,
        "mdtrtarea_admvs": HOME,
        "referral": False,
        "setl_date": "2026-11-20",
        "items": [{"amount": amount, "class": cls} for cls, amount in items],
    }
    values.update(overrides)
    return values


@pytest.fixture
def make_claim() -> Callable[..., Claim]:
    return lambda **overrides: Claim.from_dict(claim_dict(**overrides))


@pytest.fixture
def claim_data() -> Callable[..., dict[str, Any]]:
    return claim_dict
