"""The money invariants the ledger refuses to store without and the audit reports."""

from __future__ import annotations

from onestop.host.gateway.ledger.checks import breakdown_problems

GOOD = {"medfee_sumamt": 10_000, "fulamt_ownpay_amt": 1_000, "preselfpay_amt": 500,
        "inscp_scp_amt": 8_500, "act_pay_dedc": 0, "hifp_pay": 5_100, "hifmi_pay": 0,
        "maf_pay": 0, "fund_pay_sumamt": 5_100, "psn_cash_pay": 4_900}


def test_a_breakdown_that_adds_up_has_no_problem() -> None:
    assert breakdown_problems(GOOD) == []


def test_a_bill_total_that_is_not_its_three_parts_is_named() -> None:
    """Class C, the class-B share paid first and the in-scope amount make up the bill: a
    breakdown whose in-scope amount grew out of nothing would widen what the funds pay on."""
    grown = {**GOOD, "inscp_scp_amt": 9_500}
    assert breakdown_problems(grown) == [
        "medfee_sumamt 10000 != fulamt_ownpay_amt + preselfpay_amt + inscp_scp_amt 11000"]
