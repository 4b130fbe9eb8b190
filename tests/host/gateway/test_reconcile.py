"""Reconciliation (3201): a day's totals per kiosk and per fund, cancelled settlements left out."""

from __future__ import annotations

import re
from importlib import resources

from onestop.host.gateway.reconcile import (
    TOTALS_FIELDS,
    day_report,
    format_report,
    report_json,
    totals_for,
)


def test_totals_have_exactly_the_fields_of_the_cddl_totals_record():
    cddl = resources.files("onestop.protocol").joinpath("spec/frames.cddl").read_text()
    record = re.search(r"totals_record = \{(.*?)\}", cddl, re.S).group(1)
    assert set(re.findall(r"(\w+):", record)) == set(TOTALS_FIELDS)


def settle_a_day(ledger, kit):
    kit.settle(ledger, "T-000001", "P1", "B1")  # kiosk-01
    kit.settle(ledger, "T-000002", "P1", "B2", kiosk_id="kiosk-02")
    kit.settle(ledger, "T-000003", "P2", "B4")  # kiosk-01, cancelled below
    kit.settle(ledger, "T-000004", "P1", "B3", setl_date="2026-11-24")  # another day
    ledger.cancel("T-000003", kit.KIOSK, kit.SETTLE_DAY)


def test_a_kiosks_totals_count_its_live_settlements_of_the_day(demo_people, kit):
    settle_a_day(demo_people, kit)
    one = kit.breakdown(150_000)  # every demo bill is 1,500.00 yuan

    mine = totals_for(demo_people, kit.SETTLE_DAY, kiosk_id=kit.KIOSK)

    assert mine == {"count": 1, **{f: one[f] for f in TOTALS_FIELDS if f != "count"}}
    everyone = totals_for(demo_people, kit.SETTLE_DAY)
    assert everyone["count"] == 2
    assert everyone["psn_cash_pay"] == 2 * one["psn_cash_pay"]
    assert totals_for(demo_people, "2026-01-01") == dict.fromkeys(TOTALS_FIELDS, 0)


def test_the_day_report_has_kiosks_funds_and_grand_totals(demo_people, kit):
    settle_a_day(demo_people, kit)
    report = day_report(demo_people, kit.SETTLE_DAY)

    assert list(report.per_kiosk) == ["kiosk-01", "kiosk-02"]
    assert report.grand == totals_for(demo_people, kit.SETTLE_DAY)
    assert report.cancelled == 1
    data = report_json(report)
    funds = {f["fund"]: f["amount"] for f in data["funds"]}
    assert funds["hifp_pay"] + funds["hifmi_pay"] + funds["maf_pay"] == funds["fund_pay_sumamt"]
    assert funds["fund_pay_sumamt"] + funds["psn_cash_pay"] == funds["medfee_sumamt"]


def test_the_printed_report_shows_yuan_per_kiosk_and_per_fund(demo_people, kit):
    settle_a_day(demo_people, kit)
    text = format_report(day_report(demo_people, kit.SETTLE_DAY))
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert rows["kiosk-01"][1] == "1" and rows["kiosk-02"][1] == "1"
    assert rows["TOTAL"][1:3] == ["2", "3,000.00"]  # two bills of 1,500.00 yuan
    assert rows["hifp_pay"][1] == "1,800.00"  # 60 % of 3,000.00
    assert "cancelled the same day (not counted): 1" in text
