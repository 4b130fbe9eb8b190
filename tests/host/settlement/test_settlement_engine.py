"""The one-stop calculation, rule by rule, against the reference policy (figures worked by hand)."""

from __future__ import annotations

import pytest
from onestop.host.settlement import (
    ACCUMULATION_KEYS,
    BREAKDOWN_FIELDS,
    AccumulationError,
    cancel,
    empty_accumulations,
    settle,
)

YUAN = 100  # fen


def acc(**values: int) -> dict[str, int]:
    return {**empty_accumulations(), **values}


# ---------------------------------------------------------------- the worked examples


def test_worked_example_p001_local_inpatient_level_2(reference, make_claim):
    claim = make_claim(items=[("A", 1_500_000), ("B", 800_000), ("C", 120_000)])
    out = settle(reference, claim, empty_accumulations())
    assert out.breakdown == {
        "medfee_sumamt": 2_420_000,
        "fulamt_ownpay_amt": 120_000,
        "preselfpay_amt": 80_000,
        "inscp_scp_amt": 2_220_000,
        "act_pay_dedc": 60_000,
        "hifp_pay": 1_512_000,
        "hifmi_pay": 0,
        "maf_pay": 0,
        "fund_pay_sumamt": 1_512_000,
        "psn_cash_pay": 908_000,
    }
    assert list(out.breakdown) == list(BREAKDOWN_FIELDS)


def test_worked_example_p002_dibao_offsite_with_referral(reference, make_claim):
    claim = make_claim(
        psn_no="P002",
        assistance="dibao",
        hosp_lv=3,
        mdtrtarea_admvs="110102",
        referral=True,
        items=[("A", 9_000_000), ("B", 4_000_000), ("C", 650_000)],
    )
    out = settle(reference, claim, empty_accumulations())
    assert out.breakdown == {
        "medfee_sumamt": 13_650_000,
        "fulamt_ownpay_amt": 650_000,
        "preselfpay_amt": 400_000,
        "inscp_scp_amt": 12_600_000,
        "act_pay_dedc": 200_000,
        "hifp_pay": 6_200_000,
        "hifmi_pay": 3_975_000,
        "maf_pay": 1_818_750,
        "fund_pay_sumamt": 11_993_750,
        "psn_cash_pay": 1_656_250,
    }
    # S = 12,600,000 - 6,200,000; M = S - hifmi; each fund's paid amount is recorded.
    assert out.after == acc(
        serious_burden=6_400_000,
        assistance_burden=2_425_000,
        hifp_paid_inpatient=6_200_000,
        hifmi_paid=3_975_000,
        maf_paid=1_818_750,
    )
    assert out.delta == out.after


def test_seeded_accumulations_illness_poor_already_high_burden(reference, make_claim):
    # Demo resident P005: the year's S and M are seeded; only the burdens are given.
    claim = make_claim(
        assistance="illness_poor",
        hosp_lv=3,
        mdtrtarea_admvs="130602",  # same first 4 digits (1306): local
        items=[("A", 4_200_000), ("B", 2_600_000), ("C", 300_000)],
    )
    out = settle(reference, claim, {"serious_burden": 6_000_000, "assistance_burden": 2_000_000})
    # inscp 6,540,000; hifp 60 % of 6,340,000 = 3,804,000; S 6,000,000 -> 8,736,000:
    # f = 2,400,000 + 70 % of (S - 5,000,000): 3,100,000 -> 5,015,200.
    # M 2,000,000 -> 2,820,800; g = 50 % above 500,000: 750,000 -> 1,160,400.
    assert out.breakdown["hifp_pay"] == 3_804_000
    assert out.breakdown["hifmi_pay"] == 1_915_200
    assert out.breakdown["maf_pay"] == 410_400
    assert out.breakdown["psn_cash_pay"] == 7_100_000 - 6_129_600


# ---------------------------------------------------------------- catalogue classes


def test_all_class_c_claim_is_paid_entirely_by_the_resident(reference, make_claim):
    out = settle(reference, make_claim(items=[("C", 50_000), ("C", 7)]), empty_accumulations())
    assert out.breakdown["fulamt_ownpay_amt"] == 50_007
    assert out.breakdown["inscp_scp_amt"] == 0
    assert out.breakdown["act_pay_dedc"] == 0
    assert out.breakdown["fund_pay_sumamt"] == 0
    assert out.breakdown["psn_cash_pay"] == 50_007
    assert out.delta == empty_accumulations()


@pytest.mark.parametrize(
    ("class_b", "preselfpay"),
    [(4, 0), (5, 1), (15, 2), (25, 3), (14, 1), (800_000, 80_000)],
)
def test_class_b_preselfpay_rounds_half_up_to_a_fen(reference, make_claim, class_b, preselfpay):
    out = settle(reference, make_claim(items=[("B", class_b)]), empty_accumulations())
    assert out.breakdown["preselfpay_amt"] == preselfpay
    assert out.breakdown["inscp_scp_amt"] == class_b - preselfpay


def test_zero_amount_items_are_allowed(reference, make_claim):
    out = settle(reference, make_claim(items=[("A", 0), ("B", 0)]), empty_accumulations())
    assert set(out.breakdown.values()) == {0}


# ---------------------------------------------------------------- basic insurance


@pytest.mark.parametrize(
    ("level", "deductible", "ratio"),
    [(1, 200 * YUAN, 80), (2, 600 * YUAN, 70), (3, 2000 * YUAN, 60)],
)
def test_inpatient_deductible_and_ratio_by_hospital_level(
    reference, make_claim, level, deductible, ratio
):
    out = settle(reference, make_claim(hosp_lv=level, items=[("A", 1_000_000)]), {})
    assert out.breakdown["act_pay_dedc"] == deductible
    assert out.breakdown["hifp_pay"] == (1_000_000 - deductible) * ratio // 100


def test_deductible_larger_than_in_scope_amount_takes_all_of_it(reference, make_claim):
    out = settle(reference, make_claim(hosp_lv=3, items=[("A", 150_000), ("C", 30_000)]), {})
    assert out.breakdown["act_pay_dedc"] == 150_000
    assert out.breakdown["hifp_pay"] == 0
    assert out.breakdown["psn_cash_pay"] == 180_000


def test_deductible_applies_to_every_admission_not_once_a_year(reference, make_claim):
    first = settle(reference, make_claim(items=[("A", 100_000)]), {})
    second = settle(reference, make_claim(items=[("A", 100_000)]), first.after)
    assert first.breakdown["act_pay_dedc"] == second.breakdown["act_pay_dedc"] == 60_000
    assert second.breakdown["hifp_pay"] == 28_000


def test_basic_payment_rounds_half_up(reference, make_claim):
    # Level 2, 70 %: 60,005 in scope leaves 5 fen above the deductible; 3.5 fen -> 4 fen.
    out = settle(reference, make_claim(items=[("A", 60_005)]), {})
    assert out.breakdown["hifp_pay"] == 4


def test_outpatient_chronic_has_no_deductible_and_pays_60_percent_at_any_level(
    reference, make_claim
):
    for level in (1, 2, 3):
        claim = make_claim(med_type="outpatient_chronic", hosp_lv=level, items=[("A", 42_000)])
        out = settle(reference, claim, {})
        assert out.breakdown["act_pay_dedc"] == 0
        assert out.breakdown["hifp_pay"] == 25_200


@pytest.mark.parametrize(
    ("treated_in", "referral", "ratio"),
    [
        ("130630", False, 70),  # local
        ("130602", False, 70),  # same city (first 4 digits): still local
        ("110102", True, 60),  # off-site with a referral: 10 points less
        ("110102", False, 55),  # off-site without one: 15 points less
        ("130630", True, 70),  # a referral changes nothing locally
    ],
)
def test_offsite_treatment_lowers_the_basic_ratio(
    reference, make_claim, treated_in, referral, ratio
):
    claim = make_claim(mdtrtarea_admvs=treated_in, referral=referral, items=[("A", 1_060_000)])
    out = settle(reference, claim, {})
    assert out.breakdown["hifp_pay"] == 1_000_000 * ratio // 100


def test_offsite_cut_applies_to_chronic_outpatient_too(reference, make_claim):
    claim = make_claim(
        med_type="outpatient_chronic", mdtrtarea_admvs="410102", items=[("A", 10_000)]
    )
    assert settle(reference, claim, {}).breakdown["hifp_pay"] == 4_500  # 60 - 15 = 45 %


def test_inpatient_cap_crossed_mid_claim_pays_only_what_is_left(reference, make_claim):
    cap = 120_000 * YUAN
    out = settle(
        reference, make_claim(items=[("A", 1_060_000)]), acc(hifp_paid_inpatient=cap - 1_234)
    )
    assert out.breakdown["hifp_pay"] == 1_234
    # What basic insurance did not pay counts towards the serious-illness burden.
    assert out.delta["serious_burden"] == 1_060_000 - 1_234
    assert out.after["hifp_paid_inpatient"] == cap


def test_inpatient_cap_reached_pays_nothing_more(reference, make_claim):
    out = settle(
        reference, make_claim(items=[("A", 1_060_000)]), acc(hifp_paid_inpatient=120_000 * YUAN)
    )
    assert out.breakdown["hifp_pay"] == 0


def test_chronic_outpatient_cap_is_its_own(reference, make_claim):
    chronic = make_claim(med_type="outpatient_chronic", items=[("A", 100_000)])
    near_cap = acc(hifp_paid_outpatient_chronic=5_000 * YUAN - 100, hifp_paid_inpatient=0)
    assert settle(reference, chronic, near_cap).breakdown["hifp_pay"] == 100
    # A full inpatient cap does not touch the chronic one, nor the other way round.
    full_inpatient = acc(hifp_paid_inpatient=120_000 * YUAN)
    assert settle(reference, chronic, full_inpatient).breakdown["hifp_pay"] == 60_000
    full_chronic = acc(hifp_paid_outpatient_chronic=5_000 * YUAN)
    inpatient = make_claim(items=[("A", 160_000)])
    assert settle(reference, inpatient, full_chronic).breakdown["hifp_pay"] == 70_000


# ---------------------------------------------------------------- serious illness


def serious_pay(
    reference, make_claim, burden_before: int, added: int, assistance="none", **acc_values
):
    """hifmi for a claim that adds exactly `added` to S (cap-full basic insurance pays nothing)."""
    claim = make_claim(assistance=assistance, hosp_lv=1, items=[("A", added)])
    before = acc(serious_burden=burden_before, hifp_paid_inpatient=120_000 * YUAN, **acc_values)
    return settle(reference, claim, before).breakdown["hifmi_pay"]


@pytest.mark.parametrize(
    ("burden", "entitlement"),
    [
        (10_000 * YUAN, 0),  # the threshold itself pays nothing
        (10_000 * YUAN + 1, 1),  # 0.6 fen rounds to 1
        (50_000 * YUAN, 2_400_000),  # 60 % of 40,000 yuan
        (50_000 * YUAN + 1, 2_400_001),  # 0.7 fen: 2,400,000.7 -> 2,400,001
        (100_000 * YUAN, 5_900_000),  # + 70 % of 50,000 yuan
        (100_000 * YUAN + 10, 5_900_008),  # 80 % above
        (401_250 * YUAN - 1, 29_999_999),  # 29,999,999.2 rounds down
        (401_250 * YUAN, 30_000_000),  # 5,900,000 + 80 % of 301,250 yuan = exactly the cap
        (900_000 * YUAN, 30_000_000),  # capped at 300,000 yuan
    ],
)
def test_serious_illness_segment_edges(reference, make_claim, burden, entitlement):
    assert serious_pay(reference, make_claim, 0, burden) == entitlement


def test_serious_illness_claim_spanning_segments(reference, make_claim):
    # S from 40,000 to 60,000 yuan: 10,000 at 60 % + 10,000 at 70 %.
    paid = serious_pay(reference, make_claim, 40_000 * YUAN, 20_000 * YUAN)
    assert paid == 1_300_000


@pytest.mark.parametrize("category", ["tekun", "dibao"])
def test_serious_illness_tilt_lowers_threshold_raises_ratios_and_lifts_cap(
    reference, make_claim, category
):
    assert serious_pay(reference, make_claim, 0, 5_000 * YUAN, category) == 0
    assert serious_pay(reference, make_claim, 0, 50_000 * YUAN, category) == 2_925_000  # 65 %
    assert serious_pay(reference, make_claim, 0, 100_000 * YUAN, category) == 6_675_000  # +75 %
    # 85 % above 100,000 yuan, and no 300,000-yuan cap.
    huge = serious_pay(reference, make_claim, 0, 1_000_000 * YUAN, category)
    assert huge == 6_675_000 + 900_000 * YUAN * 85 // 100
    assert huge > 300_000 * YUAN


@pytest.mark.parametrize("category", ["none", "low_income", "illness_poor"])
def test_serious_illness_without_tilt_for_other_categories(reference, make_claim, category):
    assert serious_pay(reference, make_claim, 0, 10_000 * YUAN, category) == 0
    assert serious_pay(reference, make_claim, 0, 900_000 * YUAN, category) == 300_000 * YUAN


def test_serious_illness_cap_binds_what_was_actually_paid(reference, make_claim):
    # The schedule alone would owe 1,200 yuan; the fund has 100 yuan left of its cap.
    paid = serious_pay(
        reference, make_claim, 20_000 * YUAN, 2_000 * YUAN, hifmi_paid=299_900 * YUAN
    )
    assert paid == 100 * YUAN


def test_serious_illness_cumulative_rounding_never_drifts(reference, make_claim):
    # Ten claims each adding 7 fen above the threshold: each alone would round 4.2 fen down to 4;
    # the year's total follows R(f(S)) exactly.
    before = acc(serious_burden=10_000 * YUAN, hifp_paid_inpatient=120_000 * YUAN)
    total = 0
    for _ in range(10):
        out = settle(reference, make_claim(hosp_lv=1, items=[("A", 7)]), before)
        total += out.breakdown["hifmi_pay"]
        before = out.after
    assert total == 42  # 60 % of 70 fen; per-claim rounding would have paid 40


# ---------------------------------------------------------------- medical assistance


def assistance_pay(reference, make_claim, category, remaining_before, added, **acc_values):
    """maf for a claim that adds exactly `added` to M (basic cap full; S below any threshold)."""
    claim = make_claim(assistance=category, hosp_lv=1, items=[("A", added)])
    before = acc(
        assistance_burden=remaining_before,
        hifp_paid_inpatient=120_000 * YUAN,
        hifmi_paid=0,
        **acc_values,
    )
    # Keep S far below the tilted threshold so serious illness pays nothing here.
    assert added <= 5_000 * YUAN
    return settle(reference, claim, before).breakdown["maf_pay"]


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("tekun", 180_000),
        ("dibao", 150_000),
        ("low_income", 120_000),
        ("illness_poor", 0),
        ("none", 0),
    ],
)
def test_assistance_ratio_by_category(reference, make_claim, category, expected):
    assert assistance_pay(reference, make_claim, category, 0, 200_000) == expected


def test_illness_poor_assistance_starts_above_5000_yuan(reference, make_claim):
    assert assistance_pay(reference, make_claim, "illness_poor", 0, 5_000 * YUAN) == 0
    assert assistance_pay(reference, make_claim, "illness_poor", 5_000 * YUAN, 3) == 2  # 1.5 -> 2
    assert (
        assistance_pay(reference, make_claim, "illness_poor", 4_000 * YUAN, 2_000 * YUAN) == 50_000
    )


@pytest.mark.parametrize(
    ("category", "limit"),
    [
        ("tekun", 60_000 * YUAN),
        ("dibao", 60_000 * YUAN),
        ("low_income", 40_000 * YUAN),
        ("illness_poor", 30_000 * YUAN),
    ],
)
def test_assistance_annual_limit(reference, make_claim, category, limit):
    # The schedule is already at its limit: nothing more, however large the burden grows.
    assert assistance_pay(reference, make_claim, category, 500_000 * YUAN, 1_000 * YUAN) == 0
    # Limit crossed mid-claim: only what is left of it, as actually paid.
    assert (
        assistance_pay(
            reference, make_claim, category, 10_000 * YUAN, 5_000 * YUAN, maf_paid=limit - 77
        )
        == 77
    )


def test_fund_payments_never_exceed_in_scope_amount_with_every_fund_paying(reference, make_claim):
    claim = make_claim(assistance="tekun", hosp_lv=1, items=[("A", 20_000_000), ("B", 3)])
    out = settle(reference, claim, acc(serious_burden=200_000 * YUAN))
    b = out.breakdown
    assert b["hifp_pay"] > 0 and b["hifmi_pay"] > 0 and b["maf_pay"] > 0
    assert b["fund_pay_sumamt"] <= b["inscp_scp_amt"]
    assert b["psn_cash_pay"] == b["medfee_sumamt"] - b["fund_pay_sumamt"]


# ---------------------------------------------------------------- accumulations and cancellation


def test_settle_does_not_change_the_accumulations_it_is_given(reference, make_claim):
    before = acc(serious_burden=1_000)
    snapshot = dict(before)
    settle(reference, make_claim(), before)
    assert before == snapshot


def test_cancel_takes_a_settlement_back_out(reference, make_claim):
    start = acc(serious_burden=3_000_000, assistance_burden=100, maf_paid=5)
    out = settle(reference, make_claim(assistance="dibao", items=[("A", 9_000_000)]), start)
    assert cancel(out.after, out.delta) == start


def test_cancelled_then_resettled_claim_gets_the_same_breakdown(reference, make_claim):
    claim = make_claim(assistance="tekun", items=[("A", 6_000_000), ("B", 1_000_001)])
    first = settle(reference, claim, {})
    again = settle(reference, claim, cancel(first.after, first.delta))
    assert again.breakdown == first.breakdown


def test_cancelling_an_earlier_claim_cannot_push_payments_past_a_cap(reference, make_claim):
    # Two large claims fill the serious-illness cap; cancelling the first lowers S, but the
    # second's payment stays. Re-settling cannot pay more than the cap in the year.
    big = make_claim(hosp_lv=1, items=[("A", 300_000 * YUAN)])
    first = settle(reference, big, {})
    second = settle(reference, big, first.after)
    after_cancel = cancel(second.after, first.delta)
    third = settle(reference, big, after_cancel)
    assert third.after["hifmi_paid"] <= 300_000 * YUAN
    assert third.after["hifp_paid_inpatient"] <= 120_000 * YUAN


def test_cancel_refuses_a_delta_that_was_never_added(reference, make_claim):
    out = settle(reference, make_claim(), {})
    with pytest.raises(AccumulationError, match="below zero"):
        cancel(empty_accumulations(), out.delta)


def test_accumulations_with_unknown_keys_or_negative_values_are_refused(reference, make_claim):
    with pytest.raises(AccumulationError, match="unknown"):
        settle(reference, make_claim(), {"serious": 1})
    with pytest.raises(AccumulationError, match="non-negative"):
        settle(reference, make_claim(), {"maf_paid": -1})
    with pytest.raises(AccumulationError, match="non-negative"):
        settle(reference, make_claim(), {"maf_paid": 1.0})


def test_empty_accumulations_have_the_fixed_keys_at_zero():
    assert empty_accumulations() == dict.fromkeys(ACCUMULATION_KEYS, 0)
    assert len(ACCUMULATION_KEYS) == 6
