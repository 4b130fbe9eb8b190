"""A person's accumulations for one calendar year: plain dicts of int fen under fixed keys.

The ledger stores them as they are. Settling adds a claim's `delta`; cancelling takes it back out.
"""

from __future__ import annotations

from collections.abc import Mapping

SERIOUS_BURDEN = "serious_burden"  # S: compliant burden (in-scope minus basic insurance)
ASSISTANCE_BURDEN = "assistance_burden"  # M: what remains after serious illness too
HIFMI_PAID = "hifmi_paid"  # serious-illness insurance paid this year
MAF_PAID = "maf_paid"  # medical assistance paid this year


def hifp_paid_key(med_type: str) -> str:
    """Basic insurance paid this year for one med_type (each has its own cap)."""
    return f"hifp_paid_{med_type}"


ACCUMULATION_KEYS: tuple[str, ...] = (
    SERIOUS_BURDEN,
    ASSISTANCE_BURDEN,
    hifp_paid_key("inpatient"),
    hifp_paid_key("outpatient_chronic"),
    HIFMI_PAID,
    MAF_PAID,
)


class AccumulationError(ValueError):
    """Accumulations that cannot be right: unknown key, not an integer, or below zero."""


def empty_accumulations() -> dict[str, int]:
    """A person's accumulations before their first claim of the year."""
    return dict.fromkeys(ACCUMULATION_KEYS, 0)


def checked_accumulations(accumulations: Mapping[str, int]) -> dict[str, int]:
    """A full copy; absent keys count as 0 (a seed may give only the burdens)."""
    full = empty_accumulations()
    for key, value in accumulations.items():
        if key not in full:
            raise AccumulationError(f"unknown accumulation {key!r}")
        if type(value) is not int or value < 0:
            raise AccumulationError(f"accumulation {key} must be a non-negative integer of fen")
        full[key] = value
    return full


def delta_of(breakdown: Mapping[str, int], med_type: str) -> dict[str, int]:
    """What a settlement adds to the year's accumulations, from its breakdown alone: the
    engine stores this, and the audit recomputes it from the signed breakdown (a delta edited
    behind the ledger would let later claims past the funds' caps)."""
    in_scope, hifp, hifmi = (breakdown["inscp_scp_amt"], breakdown["hifp_pay"],
                             breakdown["hifmi_pay"])
    delta = empty_accumulations()
    delta[SERIOUS_BURDEN] = in_scope - hifp
    delta[ASSISTANCE_BURDEN] = in_scope - hifp - hifmi
    delta[hifp_paid_key(med_type)] = hifp
    delta[HIFMI_PAID] = hifmi
    delta[MAF_PAID] = breakdown["maf_pay"]
    return delta


def cancel(accumulations: Mapping[str, int], delta: Mapping[str, int]) -> dict[str, int]:
    """The accumulations with one settlement's contributions (its `delta`) taken back out."""
    now = checked_accumulations(accumulations)
    for key, value in delta.items():
        if key not in now:
            raise AccumulationError(f"unknown accumulation {key!r} in the delta")
        if type(value) is not int or value < 0:
            raise AccumulationError(f"delta {key} must be a non-negative integer of fen")
        if value > now[key]:
            # Only a delta that was added can be taken out; anything else is a ledger fault.
            raise AccumulationError(
                f"cancelling would take {key} below zero: this settlement is not in them"
            )
        now[key] -= value
    return now
