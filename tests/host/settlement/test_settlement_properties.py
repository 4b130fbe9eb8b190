"""Properties of any sequence of settlements and cancellations, under the reference policy and
under any valid policy: nothing negative, funds never pay more than is in scope, the parts add up,
and no year's fund payments pass a cap."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from onestop.host.settlement import (
    Claim,
    Item,
    Outcome,
    Policy,
    cancel,
    empty_accumulations,
    load_policy,
    settle,
)
from onestop.host.settlement.policy import (
    AssistanceRule,
    BasicRule,
    LevelRule,
    OffsiteRule,
    Segment,
    SeriousIllnessRule,
    Tilt,
)
from onestop.host.settlement.vocabulary import ASSISTANCE_CATEGORIES, ASSISTED_CATEGORIES

REFERENCE = load_policy("reference")
PEOPLE = ("P1", "P2")
DATES = ("2025-12-31", "2026-01-01", "2026-06-30")
EXAMPLES = settings(max_examples=150, deadline=None)

amounts = st.one_of(st.integers(0, 1_000), st.integers(0, 3_000_000), st.integers(0, 60_000_000))
items = st.lists(st.builds(Item, st.sampled_from(("A", "B", "C")), amounts), min_size=1, max_size=5)
claim_parts = st.fixed_dictionaries(
    {
        "psn_no": st.sampled_from(PEOPLE),
        "med_type": st.sampled_from(("inpatient", "outpatient_chronic")),
        "hosp_lv": st.sampled_from((1, 2, 3)),
        "mdtrtarea_admvs": st.sampled_from(("130630", "130602", "110102", "410102")),
        "referral": st.booleans(),
        "setl_date": st.sampled_from(DATES),
        "items": items.map(tuple),
    }
)
# ("settle", claim parts) or ("cancel", which live settlement)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("settle"), claim_parts),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
    ),
    max_size=14,
)
categories = st.fixed_dictionaries({p: st.sampled_from(ASSISTANCE_CATEGORIES) for p in PEOPLE})


@st.composite
def policies(draw: Any) -> Policy:
    """Any policy the loader would accept."""
    ratio = st.integers(0, 100)
    money = st.integers(0, 20_000_000)

    def basic() -> BasicRule:
        levels = {
            level: LevelRule(draw(st.integers(0, 500_000)), draw(ratio)) for level in (1, 2, 3)
        }
        return BasicRule(draw(money), levels)

    starts = sorted(draw(st.sets(st.integers(0, 15_000_000), min_size=1, max_size=4)))
    segments = tuple(Segment(start, draw(ratio)) for start in starts)
    tilt = None
    if draw(st.booleans()):
        below = starts[1] - 1 if len(starts) > 1 else 20_000_000
        tilt = Tilt(
            categories=frozenset(draw(st.sets(st.sampled_from(ASSISTED_CATEGORIES)))),
            threshold_fen=draw(st.integers(0, below)),
            ratio_bonus_points=draw(st.integers(0, 100 - max(s.ratio_percent for s in segments))),
            cap_lifted=draw(st.booleans()),
        )
    return Policy(
        name="drawn",
        title="drawn",
        class_b_preselfpay_percent=draw(ratio),
        offsite=OffsiteRule(draw(st.integers(1, 6)), draw(ratio), draw(ratio)),
        basic={"inpatient": basic(), "outpatient_chronic": basic()},
        serious_illness=SeriousIllnessRule(segments, draw(money), tilt),
        assistance={
            category: AssistanceRule(draw(ratio), draw(st.integers(0, 1_000_000)), draw(money))
            for category in ASSISTED_CATEGORIES
        },
    )


def claim_for(parts: dict[str, Any], assistance: dict[str, str]) -> Claim:
    return Claim(insu_admdvs="130630", assistance=assistance[parts["psn_no"]], **parts)


def check_breakdown(outcome: Outcome) -> None:
    b = outcome.breakdown
    assert all(type(value) is int and value >= 0 for value in b.values()), b
    assert b["medfee_sumamt"] == b["fulamt_ownpay_amt"] + b["preselfpay_amt"] + b["inscp_scp_amt"]
    assert b["act_pay_dedc"] <= b["inscp_scp_amt"]
    assert b["hifp_pay"] <= b["inscp_scp_amt"] - b["act_pay_dedc"]
    assert b["fund_pay_sumamt"] == b["hifp_pay"] + b["hifmi_pay"] + b["maf_pay"]
    assert b["fund_pay_sumamt"] <= b["inscp_scp_amt"]
    assert b["psn_cash_pay"] == b["medfee_sumamt"] - b["fund_pay_sumamt"]


def check_caps(policy: Policy, accumulations: dict[str, int], assistance: str) -> None:
    for med_type, rule in policy.basic.items():
        assert accumulations[f"hifp_paid_{med_type}"] <= rule.annual_cap_fen
    serious_cap = policy.serious_illness_schedule(assistance).cap_fen
    if serious_cap is not None:
        assert accumulations["hifmi_paid"] <= serious_cap
    assistance_cap = policy.assistance_schedule(assistance).cap_fen
    assert assistance_cap is not None  # medical assistance always has a limit
    assert accumulations["maf_paid"] <= assistance_cap


def run(policy: Policy, assistance: dict[str, str], ops: list[tuple[str, Any]]) -> None:
    """Settle and cancel in order, checking every outcome and every person-year after each step."""
    books: dict[tuple[str, int], dict[str, int]] = {}
    live: list[tuple[tuple[str, int], Outcome]] = []
    for kind, argument in ops:
        if kind == "settle":
            claim = claim_for(argument, assistance)
            key = (claim.psn_no, claim.year)
            before = books.get(key, empty_accumulations())
            outcome = settle(policy, claim, before)
            check_breakdown(outcome)
            assert outcome.after == {k: before[k] + outcome.delta[k] for k in before}
            books[key] = outcome.after
            live.append((key, outcome))
        elif live:
            key, outcome = live.pop(argument % len(live))
            books[key] = cancel(books[key], outcome.delta)
        for (person, year), accumulations in books.items():
            check_caps(policy, accumulations, assistance[person])
            # The books hold exactly the settlements still standing: nothing leaks on cancel.
            standing = empty_accumulations()
            for key, outcome in live:
                if key == (person, year):
                    for name, value in outcome.delta.items():
                        standing[name] += value
            assert accumulations == standing


@EXAMPLES
@given(assistance=categories, ops=operations)
def test_any_sequence_under_the_reference_policy(assistance, ops):
    run(REFERENCE, assistance, ops)


@EXAMPLES
@given(policy=policies(), assistance=categories, ops=operations)
def test_any_sequence_under_any_valid_policy(policy, assistance, ops):
    run(policy, assistance, ops)


@EXAMPLES
@given(
    policy=st.one_of(st.just(REFERENCE), policies()),
    category=st.sampled_from(ASSISTANCE_CATEGORIES),
    claims=st.lists(claim_parts, min_size=1, max_size=10),
)
def test_a_years_totals_follow_the_schedules_exactly(policy, category, claims):
    # Without cancellations the per-claim payments telescope: their sum is R(f(S)) and R(g(M))
    # for the year's final burdens, to the fen.
    accumulations = empty_accumulations()
    serious_total = assistance_total = 0
    for parts in claims:
        claim = claim_for({**parts, "psn_no": "P1", "setl_date": "2026-03-01"}, {"P1": category})
        outcome = settle(policy, claim, accumulations)
        serious_total += outcome.breakdown["hifmi_pay"]
        assistance_total += outcome.breakdown["maf_pay"]
        accumulations = outcome.after
    serious = policy.serious_illness_schedule(category)
    assistance = policy.assistance_schedule(category)
    assert serious_total == serious.value_fen(accumulations["serious_burden"])
    assert assistance_total == assistance.value_fen(accumulations["assistance_burden"])
