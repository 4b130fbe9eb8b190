"""`kiosk gateway serve` refuses to start, with one clear line and exit status 2, when it cannot
serve as asked: no gateway key, a key the ledger does not know, a bad address or time zone."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from onestop.host.cli import main
from onestop.host.gateway.ledger import KeyRecord, open_ledger
from onestop.host.gateway.ledger.schema import SCHEMA_VERSION
from onestop.host.keys import SigningKey, save_signing_key


def serve(*args: str) -> int:
    with pytest.raises(SystemExit) as exited:
        main(["gateway", "serve", "--listen", "127.0.0.1:0", *args])
    return int(exited.value.code or 0)


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    with open_ledger(f"sqlite:///{path}") as ledger:
        ledger.init()
    return path


def test_serve_without_a_gateway_key_says_to_run_init(
        ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert serve("--db", f"sqlite:///{ledger_file}") == 2
    err = capsys.readouterr().err
    assert "gateway.key" in err and "kiosk gateway init" in err


def test_serve_without_the_key_file_of_a_ledgers_gateway_key_says_to_restore_it(
        ledger_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The key file lost (a moved folder, a disk replaced): `init` would make another key,
    which no kiosk trusts. The operator is pointed at the key the ledger holds."""
    with open_ledger(f"sqlite:///{ledger_file}") as ledger:
        ledger.add_key(KeyRecord(kid="gateway-01", role="gateway",
                                 public_key=SigningKey.generate().public_key, status="active"))
    assert serve("--db", f"sqlite:///{ledger_file}") == 2
    err = capsys.readouterr().err
    assert "gateway.key" in err
    assert "this ledger's gateway key is gateway-01" in err and "restore that key's file" in err
    assert "would make another key, which no kiosk trusts" in err


def test_serve_with_a_key_the_ledger_does_not_know_is_refused(
        ledger_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_signing_key(tmp_path / "gateway.key", SigningKey.generate())
    with open_ledger(f"sqlite:///{ledger_file}") as ledger:  # enrolled: another gateway key
        ledger.add_key(KeyRecord(kid="gateway-01", role="gateway",
                                 public_key=SigningKey.generate().public_key, status="active"))
    assert serve("--db", f"sqlite:///{ledger_file}") == 2
    err = capsys.readouterr().err
    # pointed at the key its kiosks trust, not told to run init (which would enrol this one
    # beside it, and every kiosk would refuse the replies)
    assert "not this ledger's gateway key; its active gateway key is gateway-01" in err
    assert "--key" in err and "kiosk gateway init" not in err


def test_serve_on_a_ledger_without_a_gateway_key_says_to_run_init(
        ledger_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_signing_key(tmp_path / "gateway.key", SigningKey.generate())
    assert serve("--db", f"sqlite:///{ledger_file}") == 2
    err = capsys.readouterr().err
    assert "has no active one" in err and "kiosk gateway init" in err


def test_serve_on_a_ledger_that_does_not_exist_does_not_create_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_signing_key(tmp_path / "gateway.key", SigningKey.generate())
    assert serve("--db", f"sqlite:///{tmp_path / 'missing.sqlite'}") == 2
    assert "kiosk gateway init" in capsys.readouterr().err
    assert not (tmp_path / "missing.sqlite").exists()


def test_serve_on_a_ledger_newer_than_this_gateway_is_refused(
        ledger_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # after rolling back an upgrade: old code must not write to a ledger it does not know
    key = SigningKey.generate()
    save_signing_key(tmp_path / "gateway.key", key)
    with open_ledger(f"sqlite:///{ledger_file}") as ledger:
        ledger.add_key(KeyRecord(kid="gateway-01", role="gateway", public_key=key.public_key,
                                 status="active"))
    with sqlite3.connect(ledger_file) as conn:
        conn.execute("UPDATE ledger_meta SET value = '99' WHERE name = 'schema_version'")
    conn.close()
    assert serve("--db", f"sqlite:///{ledger_file}") == 2
    assert (f"has schema version 99; this gateway knows version {SCHEMA_VERSION}"
            in capsys.readouterr().err)


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--listen", "localhost", "HOST:PORT"),
    ("--serial", "/dev/ttyUSB0@fast", "DEVICE[@BAUD]"),
    ("--metrics", "127.0.0.1:http", "HOST:PORT"),
    ("--timezone", "Mars/Olympus", "unknown time zone"),
    ("--workers", "0", "argument --workers: at least 1, not 0"),
    ("--workers", "500", "argument --workers: at most 64, not 500: give one per core"),
    ("--workers", "two", "argument --workers: 'two' is not a whole number"),
    ("--idle-timeout", "0", "--idle-timeout must be above 0"),
])
def test_serve_with_a_bad_option_names_it(ledger_file: Path, option: str, value: str, says: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert serve("--db", f"sqlite:///{ledger_file}", option, value) == 2
    assert says in capsys.readouterr().err


def test_serve_takes_up_to_64_workers() -> None:
    from onestop.host.cli import build_parser

    args = build_parser().parse_args(["gateway", "serve", "--db", "x", "--workers", "64"])
    assert args.workers == 64


def test_the_settlement_day_is_chinas_whatever_this_machines_zone(
        ledger_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a gateway host on UTC booked 00:00-08:00 Beijing time to the day before (and on 1 January
    # to the year before), while the kiosks' clocks and receipts show China's date
    from datetime import datetime

    from onestop.host.cli import build_parser
    from onestop.host.gateway.serve_cli import _config

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        args = build_parser().parse_args(
            ["gateway", "serve", "--db", f"sqlite:///{ledger_file}", "--listen", "127.0.0.1:0"])
        config = _config(args)[0]
        new_year_0130_beijing = 1798738200  # 2026-12-31 17:30 UTC
        assert datetime.fromtimestamp(new_year_0130_beijing, config.tz).date().isoformat() == (
            "2027-01-01")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_serve_by_a_clock_behind_the_ledgers_settlements_is_refused(
        ledger_file: Path, tmp_path: Path, kit, capsys: pytest.CaptureFixture[str]) -> None:
    # A host that booted without its time (1970, or a day behind) would date settlements, and
    # count them in that year's accumulations with its caps, by its clock: nothing else could
    # tell (the kiosks take the gateway's time, the audit checks the dates against each other).
    save_signing_key(tmp_path / "gateway.key", SigningKey(kit.GATEWAY_SEED))
    with open_ledger(f"sqlite:///{ledger_file}") as ledger:
        kit.enrol_gateway(ledger)
        ledger.upsert_person(kit.person("P1", 1))
        ledger.upsert_bill(kit.bill("B1", "P1"))
        kit.settle(ledger, "T-000001", "P1", "B1")
    with sqlite3.connect(ledger_file) as conn:  # settled by a gateway whose clock was right
        conn.execute("UPDATE settlements SET setl_time = ?", (int(time.time()) + 86_400,))
    conn.close()
    assert serve("--db", f"sqlite:///{ledger_file}") == 2
    err = capsys.readouterr().err
    assert "this host's clock reads" in err and "before the ledger's latest settlement" in err
    assert "Set the clock (NTP)" in err
    # with workers: refused once, up front, before any worker is started
    assert serve("--db", f"sqlite:///{ledger_file}", "--workers", "2") == 2
    assert capsys.readouterr().err.count("before the ledger's latest settlement") == 1
