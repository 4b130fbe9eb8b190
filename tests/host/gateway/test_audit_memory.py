"""The audit's memory does not grow with the ledger: it streams the audit log and the tables a
batch of rows at a time and sorts what it must on disk, so a ledger of four times as many
settlements is audited in about the same memory. (It used to read every table and event into
memory at once: 2.5 GB at 120k settlements, so a busy hall's ledger outgrew its host within
months and the operator lost the tamper check.)

Measured with tracemalloc (what Python allocates; the batches are made small so that a small
ledger already fills them), not timed.
"""

from __future__ import annotations

import tracemalloc

import ledger_fill
import pytest
from onestop.host.gateway import external_sort
from onestop.host.gateway.audit import audit
from onestop.host.gateway.ledger import Ledger, postgres

SETTLEMENTS = 300  # then four times as many
RESIDENTS = 10  # few: one person-year's settlements are many, as a chronic patient's


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 50 rows (the defaults are 1000): a ledger of a few hundred settlements fills
    them, so what grows with the ledger shows at this size."""
    monkeypatch.setattr(external_sort, "WRITE_BATCH", 50)
    monkeypatch.setattr(postgres, "STREAM_BATCH_ROWS", 50)


def audit_peak(ledger: Ledger) -> int:
    """The most memory Python held at once during an audit, in bytes."""
    assert audit(ledger).ok  # once untraced: imports and caches are not the audit's growth
    tracemalloc.start()
    try:
        report = audit(ledger)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok, report.problems
    return peak


def test_the_audits_memory_does_not_grow_with_the_ledger(ledger, small_batches):
    ledger_fill.fill(ledger, SETTLEMENTS, persons=RESIDENTS)
    small = audit_peak(ledger)
    ledger_fill.fill(ledger, 3 * SETTLEMENTS, persons=RESIDENTS, start=SETTLEMENTS)
    report = audit(ledger)
    assert report.settlements == 4 * SETTLEMENTS and report.events > 12 * SETTLEMENTS
    large = audit_peak(ledger)
    # Holding the ledger would take four times as much (3.9x before); streaming, about the same.
    assert large < 1.5 * small, (small, large)
