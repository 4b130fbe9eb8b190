"""One-stop settlement: basic insurance, then serious illness, then medical assistance, then
what the resident pays. Pure: (policy, claim, this year's accumulations) -> `Outcome`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .accumulations import (
    ASSISTANCE_BURDEN,
    HIFMI_PAID,
    MAF_PAID,
    SERIOUS_BURDEN,
    checked_accumulations,
    delta_of,
    hifp_paid_key,
)
from .claim import Claim
from .money import percent_of
from .policy import Policy

# The breakdown's fields, in the national platform's names and order (frames.cddl `breakdown`).
BREAKDOWN_FIELDS: tuple[str, ...] = (
    "medfee_sumamt",  # total of the bill
    "fulamt_ownpay_amt",  # class C: fully own-pay
    "preselfpay_amt",  # the share of class B the resident pays first
    "inscp_scp_amt",  # in scope: A + B - preselfpay
    "act_pay_dedc",  # deductible applied to this claim
    "hifp_pay",  # basic insurance (pooling fund)
    "hifmi_pay",  # serious-illness insurance
    "maf_pay",  # medical assistance
    "fund_pay_sumamt",  # all three funds
    "psn_cash_pay",  # what the resident pays at the kiosk
)


@dataclass(frozen=True, slots=True)
class Outcome:
    breakdown: dict[str, int]  # BREAKDOWN_FIELDS, in order, int fen
    after: dict[str, int]  # the accumulations with this claim added
    delta: dict[str, int]  # after - before, per accumulation key; `cancel` takes it out again


def settle(policy: Policy, claim: Claim, accumulations: Mapping[str, int]) -> Outcome:
    """Settle `claim` against the person's accumulations for `claim.year`."""
    before = checked_accumulations(accumulations)

    class_a = class_b = class_c = 0
    for item in claim.items:
        if item.catalogue_class == "A":
            class_a += item.amount
        elif item.catalogue_class == "B":
            class_b += item.amount
        else:
            class_c += item.amount
    preselfpay = percent_of(class_b, policy.class_b_preselfpay_percent)
    in_scope = class_a + class_b - preselfpay

    # Basic insurance: deductible, ratio by level less any off-site cut, what is left of the cap.
    basic = policy.basic[claim.med_type]
    level = basic.levels[claim.hosp_lv]
    deductible = min(in_scope, level.deductible_fen)
    cut = policy.offsite.cut_points(claim.insu_admdvs, claim.mdtrtarea_admvs, claim.referral)
    ratio = max(0, level.ratio_percent - cut)
    basic_paid_key = hifp_paid_key(claim.med_type)
    basic_room = max(0, basic.annual_cap_fen - before[basic_paid_key])
    hifp = min(percent_of(in_scope - deductible, ratio), basic_room)

    # Serious illness on the year's compliant burden S.
    serious_before = before[SERIOUS_BURDEN]
    serious_after = serious_before + in_scope - hifp
    hifmi = policy.serious_illness_schedule(claim.assistance).payout_fen(
        serious_before, serious_after, before[HIFMI_PAID]
    )

    # Medical assistance on the year's remaining burden M.
    assistance_before = before[ASSISTANCE_BURDEN]
    assistance_after = assistance_before + in_scope - hifp - hifmi
    maf = policy.assistance_schedule(claim.assistance).payout_fen(
        assistance_before, assistance_after, before[MAF_PAID]
    )

    total = class_a + class_b + class_c
    funds = hifp + hifmi + maf
    breakdown = {
        "medfee_sumamt": total,
        "fulamt_ownpay_amt": class_c,
        "preselfpay_amt": preselfpay,
        "inscp_scp_amt": in_scope,
        "act_pay_dedc": deductible,
        "hifp_pay": hifp,
        "hifmi_pay": hifmi,
        "maf_pay": maf,
        "fund_pay_sumamt": funds,
        "psn_cash_pay": total - funds,
    }
    delta = delta_of(breakdown, claim.med_type)
    after = {key: before[key] + delta[key] for key in before}
    return Outcome(breakdown=breakdown, after=after, delta=delta)
