"""Ledger URLs and where the gateway's key lives."""

from __future__ import annotations

from pathlib import Path

import pytest
from onestop.host.gateway.config import (
    LedgerUrlError,
    default_key_path,
    describe,
    parse_ledger_url,
)
from onestop.host.gateway.masking import mask_id


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///ledger.sqlite", Path("ledger.sqlite")),
        ("sqlite:////var/lib/onestop/ledger.sqlite", Path("/var/lib/onestop/ledger.sqlite")),
        ("data/ledger.sqlite", Path("data/ledger.sqlite")),  # a bare path
    ],
)
def test_sqlite_urls_and_bare_paths(url, path):
    location = parse_ledger_url(url)
    assert (location.backend, location.path) == ("sqlite", path)
    assert default_key_path(url) == path.parent / "gateway.key"


def test_postgresql_url_with_a_schema():
    location = parse_ledger_url("postgresql://gw:pw@db:5432/onestop?schema=site_a&sslmode=require")
    assert location.backend == "postgresql"
    assert location.schema == "site_a"
    assert location.dsn == "postgresql://gw:pw@db:5432/onestop?sslmode=require"
    assert default_key_path("postgresql://db/onestop") is None  # --key must be given


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("", "no ledger"),
        ("sqlite://", "sqlite:///PATH"),
        ("sqlite:///", "sqlite:///PATH"),
        ("mysql://db/x", "unknown ledger URL scheme"),
        # SQLite's own forms: no durable file, or another file than the one written
        ("sqlite:///:memory:", "no in-memory form"),
        (":memory:", "no in-memory form"),
        ("file:ledger.sqlite", "sqlite:///PATH"),
        ("sqlite:///ledger.sqlite?mode=ro", "sqlite:///PATH"),
        ("postgresql://db/x?schema=Robert'); DROP", "bad schema name"),
        ("postgresql://db/x?schema=" + "a" * 64, "1 to 63 lower-case letters"),
        ("postgresql://db/x?schema=a&options=-csearch_path%3Db", "not both"),
    ],
)
def test_bad_urls_say_what_is_wrong(url, complaint):
    with pytest.raises(LedgerUrlError, match=complaint):
        parse_ledger_url(url)


def test_passwords_are_not_shown_in_messages():
    assert describe("postgresql://gw:s3cret@db/onestop") == "postgresql://gw:***@db/onestop"
    # libpq's query-parameter forms too
    assert describe("postgresql://gw@db/onestop?password=s3cret&schema=hall") == \
        "postgresql://gw@db/onestop?password=***&schema=hall"
    assert describe("postgresql://gw:s3cret@db/x?sslpassword=k3y") == \
        "postgresql://gw:***@db/x?sslpassword=***"
    assert describe("sqlite:///var/ledger.sqlite") == "sqlite:///var/ledger.sqlite"


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("130630195603120048", "130630********0048"),
        ("13063019590630002X", "130630********002X"),
        ("1234567890", "**********"),  # too short to keep 6 + 4 without showing it all
        ("", ""),
    ],
)
def test_id_numbers_keep_only_the_first_6_and_last_4(number, shown):
    assert mask_id(number) == shown
