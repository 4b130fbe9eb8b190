"""Reconciliation (the national platform's 3201): a day's settlement counts and totals, per kiosk
and per fund. Cancelled settlements are left out: the money never moved.

`totals_for` answers a kiosk's `reconcile` frame (frames.cddl `totals_record`); `day_report`
and `format_report` are `kiosk gateway reconcile`. The database counts and sums
(Ledger.settlement_sums): a kiosk's totals read its own rows of the day, not the whole day's
(a gateway worker answers its other kiosks meanwhile), and the day's report is one grouped
query, its memory the per-kiosk totals whatever the day's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from onestop.host.settlement.money import format_yuan

from .ledger.base import Ledger, SettlementSums

MONEY_FIELDS: tuple[str, ...] = (
    "medfee_sumamt",
    "hifp_pay",
    "hifmi_pay",
    "maf_pay",
    "fund_pay_sumamt",
    "psn_cash_pay",
)
TOTALS_FIELDS: tuple[str, ...] = ("count", *MONEY_FIELDS)  # frames.cddl totals_record

# The funds as an operator's statement lists them: (field, Chinese name, English name).
FUNDS: tuple[tuple[str, str, str], ...] = (
    ("hifp_pay", "基本医保统筹基金", "basic insurance pooling fund"),
    ("hifmi_pay", "大病保险", "serious-illness insurance"),
    ("maf_pay", "医疗救助", "medical assistance"),
    ("fund_pay_sumamt", "基金支付合计", "all funds"),
    ("psn_cash_pay", "个人现金支付", "paid by residents"),
    ("medfee_sumamt", "医疗费总额", "total medical fees"),
)


def totals_for(ledger: Ledger, date: str, kiosk_id: str | None = None) -> dict[str, int]:
    """The day's totals_record, for one kiosk or (None) the whole ledger."""
    totals = dict.fromkeys(TOTALS_FIELDS, 0)
    for sums in ledger.settlement_sums(date, MONEY_FIELDS, kiosk_id=kiosk_id, status="settled"):
        _add(totals, sums)
    return totals


def _add(totals: dict[str, int], sums: SettlementSums) -> None:
    totals["count"] += sums.count
    for field in MONEY_FIELDS:
        totals[field] += sums.sums[field]


@dataclass(frozen=True)
class DayReport:
    date: str
    per_kiosk: dict[str, dict[str, int]]  # kiosk_id -> totals, kiosks in id order
    grand: dict[str, int]
    cancelled: int  # settlements of the day that were cancelled (not in the totals)


def day_report(ledger: Ledger, date: str) -> DayReport:
    per_kiosk: dict[str, dict[str, int]] = {}
    grand = dict.fromkeys(TOTALS_FIELDS, 0)
    cancelled = 0
    for sums in ledger.settlement_sums(date, MONEY_FIELDS):  # one row per kiosk and status
        if sums.status == "settled":
            _add(per_kiosk.setdefault(sums.kiosk_id, dict.fromkeys(TOTALS_FIELDS, 0)), sums)
            _add(grand, sums)
        elif sums.status == "cancelled":
            cancelled += sums.count
    return DayReport(
        date=date,
        # in id order as Python sorts (a PostgreSQL collation may sort otherwise)
        per_kiosk={kiosk: per_kiosk[kiosk] for kiosk in sorted(per_kiosk)},
        grand=grand,
        cancelled=cancelled,
    )


def report_json(report: DayReport) -> dict[str, Any]:
    """The report as plain data; money in integer fen."""
    return {
        "date": report.date,
        "kiosks": [{"kiosk_id": k, **totals} for k, totals in report.per_kiosk.items()],
        "funds": [
            {"fund": field, "name": zh, "name_en": en, "amount": report.grand[field]}
            for field, zh, en in FUNDS
        ],
        "totals": report.grand,
        "cancelled": report.cancelled,
    }


def format_report(report: DayReport) -> str:
    """Per-kiosk and per-fund tables and the grand totals, money in yuan."""
    header = ["kiosk", "count", *MONEY_FIELDS]
    rows = [
        [kiosk, str(totals["count"]), *(format_yuan(totals[f]) for f in MONEY_FIELDS)]
        for kiosk, totals in report.per_kiosk.items()
    ]
    rows.append(
        ["TOTAL", str(report.grand["count"]), *(format_yuan(report.grand[f]) for f in MONEY_FIELDS)]
    )
    lines = [f"Reconciliation 3201 for {report.date} (amounts in yuan)",
             # a settlement made at 01:00 in Beijing is 17:00 UTC the day before
             "days as the gateways book them: China time, unless served with --timezone", ""]
    lines += _table(header, rows, "l" + "r" * (len(header) - 1))
    lines += ["", "per fund:"]
    # The name goes last: Chinese characters are double width and would skew later columns.
    lines += _table(
        ["fund", "amount", "name"],
        [[field, format_yuan(report.grand[field]), f"{zh} / {en}"] for field, zh, en in FUNDS],
        "lrl",
    )
    lines += [
        "",
        f"settlements: {report.grand['count']}; cancelled the same day (not counted): "
        f"{report.cancelled}",
    ]
    return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    """Text table; `align` has one letter per column: l (names) or r (numbers)."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if how == "l" else cell.rjust(width)
            for cell, width, how in zip(cells, widths, align, strict=True)
        ).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]
