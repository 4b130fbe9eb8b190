"""The gateway suite runs on both ledger backends.

`ledger_url` is parametrised over SQLite (a file in the test's tmp_path) and PostgreSQL (a fresh
schema in the database named by ONESTOP_TEST_PG, dropped after the test). Without that variable
the PostgreSQL half skips and says so. `ledger` is that URL opened and initialised.

Helpers for tests that settle: `demo_people` (a ledger with persons, bills and the test gateway's
key) and `kit` (people, bills, and `kit.build`, a stand-in for the gateway's build callback that
splits a bill by fixed shares and signs the record with the test gateway's key, as the gateway
does; the ledger stores what it is given, so these tests need no settlement engine).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from onestop.host.gateway.ledger import Bill, KeyRecord, Ledger, Person, Settlement, open_ledger
from onestop.host.gateway.ledger.transactions import Tx
from onestop.host.keys import SigningKey
from onestop.host.settlement import delta_of
from onestop.protocol import messages

PG_ENV = "ONESTOP_TEST_PG"
PG_SKIP_REASON = (
    f"PostgreSQL ledger backend not tested: set {PG_ENV}=postgresql://USER@HOST:PORT/DB "
    "(.ci/run sets it)"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}"
        return
    dsn = os.environ.get(PG_ENV)
    if not dsn:
        pytest.skip(PG_SKIP_REASON)
    schema = f"onestop_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    separator = "&" if "?" in dsn else "?"
    yield f"{dsn}{separator}schema={schema}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    opened = open_ledger(ledger_url)
    opened.init()
    yield opened
    opened.close()


# ---------------------------------------------------------------- settling helpers
YEAR = 2026
SETTLE_DAY = "2026-11-23"
KIOSK = "kiosk-01"
BuildFn = Callable[[dict[str, int], Bill], Settlement]
GATEWAY_KID = "gw-test"
GATEWAY_KEY = SigningKey(bytes(range(32)))  # a fixed test key: signatures are deterministic


def enrol_gateway(ledger: Ledger) -> None:
    """The test gateway's public key in `ledger`, so the audit can check what it signed."""
    ledger.add_key(KeyRecord(GATEWAY_KID, "gateway", GATEWAY_KEY.public_key, "active"))


def sign_record(settlement: Settlement) -> bytes:
    """The settlement's record signed by the test gateway, as the gateway signs it."""
    return messages.seal_settlement(settlement.record(), GATEWAY_KID, GATEWAY_KEY)


def make_person(psn_no: str, serial: int) -> Person:
    return Person(
        psn_no=psn_no,
        name=f"测试居民{serial}",
        ssn=f"130630195001{serial:05d}X",
        card_no=f"HB{serial:07d}",
        insu_admdvs="130630",
        assistance="none",
    )


def make_bill(bill_id: str, psn_no: str, amounts: tuple[int, ...] = (100_000, 50_000)) -> Bill:
    return Bill(
        bill_id=bill_id,
        psn_no=psn_no,
        fixmedins_name="涞源县医院",
        mdtrtarea_admvs="130630",
        med_type="inpatient",
        hosp_lv=2,
        referral=False,
        date=f"{YEAR}-11-20",
        items=tuple(
            {"name": f"item {i}", "class": "AB"[i % 2], "amount": amount}
            for i, amount in enumerate(amounts)
        ),
    )


def make_breakdown(medfee: int) -> dict[str, int]:
    """A breakdown that adds up: 60 % basic, 10 % serious illness, 5 % assistance."""
    hifp, hifmi, maf = medfee * 60 // 100, medfee * 10 // 100, medfee * 5 // 100
    funds = hifp + hifmi + maf
    return {
        "medfee_sumamt": medfee,
        "fulamt_ownpay_amt": 0,
        "preselfpay_amt": 0,
        "inscp_scp_amt": medfee,
        "act_pay_dedc": 0,
        "hifp_pay": hifp,
        "hifmi_pay": hifmi,
        "maf_pay": maf,
        "fund_pay_sumamt": funds,
        "psn_cash_pay": medfee - funds,
    }


def make_build(
    txn_id: str,
    digest: bytes,
    kiosk_id: str = KIOSK,
    setl_date: str = SETTLE_DAY,
    seen: list[dict[str, int]] | None = None,
) -> BuildFn:
    """A build callback; it records the accumulations it was given in `seen`."""

    def build(accumulations: dict[str, int], bill: Bill) -> Settlement:
        if seen is not None:
            seen.append(dict(accumulations))
        result = make_breakdown(bill.medfee_sumamt)
        settlement = Settlement(
            txn_id=txn_id,
            setl_id="S-" + txn_id,
            kiosk_id=kiosk_id,
            psn_no=bill.psn_no,
            bill_id=bill.bill_id,
            setl_time=1_795_400_000,
            setl_date=setl_date,
            result=result,
            signed=b"",
            request_digest=digest,
            delta=delta_of(result, bill.med_type),  # as the engine's: the audit checks it
        )
        return replace(settlement, signed=sign_record(settlement))

    return build


def digest_for(txn_id: str) -> bytes:
    return ("digest:" + txn_id).encode()


def settle(
    ledger: Ledger, txn_id: str, psn_no: str, bill_id: str, kiosk_id: str = KIOSK, **kwargs
) -> Settlement:
    """Settle with the digest digest_for(txn_id); the stored settlement."""
    digest = digest_for(txn_id)
    build = make_build(txn_id, digest, kiosk_id=kiosk_id, **kwargs)
    stored, _ = ledger.settle(txn_id, digest, kiosk_id, psn_no, bill_id, build)
    return stored


class Kit:
    """The helpers above, as a fixture: test modules cannot import a conftest reliably."""

    YEAR = YEAR
    SETTLE_DAY = SETTLE_DAY
    KIOSK = KIOSK
    person = staticmethod(make_person)
    bill = staticmethod(make_bill)
    breakdown = staticmethod(make_breakdown)
    build = staticmethod(make_build)
    digest = staticmethod(digest_for)
    settle = staticmethod(settle)
    GATEWAY_KID = GATEWAY_KID
    GATEWAY_SEED = GATEWAY_KEY.seed
    enrol_gateway = staticmethod(enrol_gateway)
    sign_record = staticmethod(sign_record)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit


@pytest.fixture
def demo_people(ledger: Ledger) -> Ledger:
    """Two residents, P1 with bills B1..B3 and P2 with B4, all pending; the test gateway's key."""
    enrol_gateway(ledger)
    ledger.upsert_person(make_person("P1", 1))
    ledger.upsert_person(make_person("P2", 2))
    for bill_id in ("B1", "B2", "B3"):
        ledger.upsert_bill(make_bill(bill_id, "P1"))
    ledger.upsert_bill(make_bill("B4", "P2"))
    return ledger


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite ledger `kiosk gateway serve` can serve (its key beside it), for tests of serve's
    options: only the option under test is wrong. (test_cli_ops has a `db` of its own.)"""
    from onestop.host.bench.gateway import provision_gateway

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with open_ledger(url) as ledger:
        ledger.init()
        provision_gateway(ledger, tmp_path / "gateway.key")
    return url


# ---------------------------------------------------------------- what the ledger runs
@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple, int]]:
    """The statements the ledger runs from here on: (sql, params, rows it fetched); with
    `query_plan`, tests tell a query that reads a few rows from one that reads a table."""
    ran: list[tuple[str, tuple, int]] = []
    fetch_all, fetch_one = Tx.all, Tx.one

    def all_(self: Tx, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        rows = fetch_all(self, sql, params)
        ran.append((sql, tuple(params), len(rows)))
        return rows

    def one(self: Tx, sql: str, params: Sequence[Any] = ()) -> Any:
        row = fetch_one(self, sql, params)
        ran.append((sql, tuple(params), 0 if row is None else 1))
        return row

    monkeypatch.setattr(Tx, "all", all_)
    monkeypatch.setattr(Tx, "one", one)
    return ran


@pytest.fixture
def query_plan() -> Callable[[Ledger, str, Sequence[Any]], str]:
    """plan(ledger, sql, params): how the database runs `sql` (EXPLAIN; PostgreSQL told to use
    an index whenever it can: on a small table it would rather read it all)."""
    return plan


def plan(ledger: Any, sql: str, params: Sequence[Any]) -> str:
    if ledger.blob_type == "BLOB":  # SQLite
        rows = ledger._read(lambda tx: tx.all("EXPLAIN QUERY PLAN " + sql, params))
        return "\n".join(str(row[-1]) for row in rows)
    rows = ledger._read(lambda tx: (tx.run("SET LOCAL enable_seqscan = off"),
                                    tx.all("EXPLAIN " + sql, params))[1])
    return "\n".join(str(row[0]) for row in rows)
