"""Reconciliation (3201): a day's totals per kiosk and per fund, cancelled settlements left out."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from onestop.host.gateway.ledger import LedgerError
from onestop.host.gateway.reconcile import (
    MONEY_FIELDS,
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


# ---------------------------------------------------------------- a busy day, many kiosks
KIOSKS = [f"K-{n:03d}" for n in range(12)] + ["k_lower", "Z-last"]


@pytest.fixture
def busy_day(demo_people, kit):
    """Settlements of many kiosks on the day (and a few the day after), each bill its own
    amount; one in nine cancelled."""
    ledger = demo_people

    def fill():
        for n in range(140):
            psn_no = f"Q{n:03d}"
            ledger.upsert_person(kit.person(psn_no, 100 + n))
            ledger.upsert_bill(kit.bill(f"BQ{n:03d}", psn_no, (10_000 + 37 * n, 2_000 + n)))
            kit.settle(ledger, f"T-Q{n:05d}", psn_no, f"BQ{n:03d}", kiosk_id=KIOSKS[n % 14],
                       setl_date=kit.SETTLE_DAY if n % 10 else "2026-11-24")
            if n % 9 == 4:
                ledger.cancel(f"T-Q{n:05d}", KIOSKS[n % 14],
                              kit.SETTLE_DAY if n % 10 else "2026-11-24")

    ledger.atomically(fill)
    return ledger


def expected_totals(ledger, date, kiosk_id=None):
    """The totals as reconcile made them before the database summed them: every settlement of
    the day read whole, the kiosk's and settled ones added up here."""
    totals = dict.fromkeys(TOTALS_FIELDS, 0)
    for settlement in ledger.settlements_on(date):
        if settlement.status == "settled" and kiosk_id in (None, settlement.kiosk_id):
            totals["count"] += 1
            for field in MONEY_FIELDS:
                totals[field] += int(settlement.result[field])
    return totals


def test_each_kiosks_totals_on_a_busy_day_are_its_own_exactly(busy_day, kit):
    for kiosk in [*KIOSKS, "K-NONE"]:
        mine = totals_for(busy_day, kit.SETTLE_DAY, kiosk_id=kiosk)
        assert mine == expected_totals(busy_day, kit.SETTLE_DAY, kiosk)
        assert all(type(value) is int for value in mine.values())  # fen, never floats
        assert list(mine) == list(TOTALS_FIELDS)
    assert totals_for(busy_day, kit.SETTLE_DAY, kiosk_id="K-NONE") == dict.fromkeys(
        TOTALS_FIELDS, 0)
    assert totals_for(busy_day, kit.SETTLE_DAY)["count"] == 112  # 126 of the day, 14 cancelled
    assert totals_for(busy_day, kit.SETTLE_DAY) == expected_totals(busy_day, kit.SETTLE_DAY)
    assert totals_for(busy_day, "2026-11-24") == expected_totals(busy_day, "2026-11-24")


def test_the_day_report_on_a_busy_day_is_what_it_was(busy_day, kit):
    report = day_report(busy_day, kit.SETTLE_DAY)
    day = busy_day.settlements_on(kit.SETTLE_DAY)
    kiosks = sorted({s.kiosk_id for s in day if s.status == "settled"})
    assert list(report.per_kiosk) == kiosks  # in id order, as Python sorts ids
    assert report.per_kiosk == {k: expected_totals(busy_day, kit.SETTLE_DAY, k) for k in kiosks}
    assert report.grand == expected_totals(busy_day, kit.SETTLE_DAY)
    assert report.cancelled == sum(1 for s in day if s.status == "cancelled") == 14


def test_a_kiosks_totals_read_only_its_own_rows_of_the_day(busy_day, kit, statements,
                                                          query_plan):
    # A kiosk's reconcile runs on the gateway worker that serves its other kiosks: reading the
    # whole day (120,000 settlements, signed copies and all: 1.5 s) stalled all of them.
    mine = totals_for(busy_day, kit.SETTLE_DAY, kiosk_id="K-003")

    [(sql, params, fetched)] = statements
    assert mine == expected_totals(busy_day, kit.SETTLE_DAY, "K-003")
    assert mine["count"] > 0
    assert fetched <= 1  # its totals, not its settlements, let alone the day's
    assert "signed" not in sql
    how = query_plan(busy_day, sql, params)
    assert "settlements_by_date" in how, how  # the day's rows, not the table's
    if busy_day.blob_type == "BLOB":
        assert "(setl_date=?)" in how, how
    else:
        assert re.search(r"Index Cond: \((s\.)?setl_date = .*\)", how), how


def test_the_day_report_is_one_grouped_query(busy_day, kit, statements, query_plan):
    # `kiosk gateway reconcile` read the whole day and then went through it once per kiosk
    # (2.5 s and 488 MB for 120,000 settlements): the database groups it by kiosk instead.
    report = day_report(busy_day, kit.SETTLE_DAY)

    assert len(report.per_kiosk) == len(KIOSKS)
    [(sql, params, fetched)] = statements
    assert fetched <= 2 * len(KIOSKS)  # a kiosk's settled and cancelled totals, no more
    assert "GROUP BY" in sql and "signed" not in sql
    assert "settlements_by_date" in query_plan(busy_day, sql, params)


def test_the_latest_settlement_time_reads_the_latest_day_by_the_index(busy_day, statements,
                                                                     query_plan):
    # serve's clock check at start-up: the index of settlements by day finds the latest day
    # without reading the table
    assert busy_day.latest_settlement_time() == 1_795_400_000
    [(sql, params, _)] = statements
    how = query_plan(busy_day, sql, params)
    assert "settlements_by_date" in how, how
    if busy_day.blob_type == "BLOB":
        assert "SCAN settlements" not in how, how  # a SCAN reads every row


def test_sums_of_a_field_no_settlement_result_has_are_refused(busy_day, kit):
    with pytest.raises(ValueError, match="not a settlement result field"):
        busy_day.settlement_sums(kit.SETTLE_DAY, ["hifp_pay') --"])
    with pytest.raises(LedgerError, match="lack a result field"):
        busy_day.settlement_sums(kit.SETTLE_DAY, ["no_such_field"])
