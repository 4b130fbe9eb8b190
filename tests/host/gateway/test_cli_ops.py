"""The operator's commands, run as `kiosk ...` would run them (in-process, through the real
argument parser), on both ledger backends."""

from __future__ import annotations

import datetime
import json
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from contextlib import closing
from zoneinfo import ZoneInfo

import pytest
from onestop.host import keys as host_keys
from onestop.host.cli import main
from onestop.host.gateway.bills import demo_document
from onestop.host.gateway.config import parse_ledger_url
from onestop.host.gateway.ledger import open_ledger
from onestop.host.gateway.ledger.schema import SCHEMA_VERSION
from onestop.host.keys import SigningKey, load_signing_key

KIOSK_PUBLIC = SigningKey(bytes(range(32))).public_key.hex()


def kiosk(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return done.value.code


@pytest.fixture
def db(ledger_url, tmp_path, capsys):
    """An initialised ledger via `kiosk gateway init`; PostgreSQL gets an explicit --key."""
    key = ["--key", str(tmp_path / "gw.key")] if ledger_url.startswith("postgresql") else []
    assert kiosk("gateway", "init", "--db", ledger_url, *key) == 0
    capsys.readouterr()
    return ledger_url


def keys_json(db, capsys) -> list[dict]:
    capsys.readouterr()
    assert kiosk("keys", "list", "--db", db, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_init_makes_a_private_gateway_key_and_records_its_public_half(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'site' / 'ledger.sqlite'}"
    assert kiosk("gateway", "init", "--db", url) == 0

    key_file = tmp_path / "site" / "gateway.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public = load_signing_key(key_file).public_key.hex()
    [record] = keys_json(url, capsys)
    assert record == {
        "kid": "gw-" + public[:8],
        "role": "gateway",
        "alg": "EdDSA",
        "public_key": public,
        "status": "active",
        "cert_serial": None,  # not certified (kiosk gateway certify --db)
        "certified_by": None,
    }


def test_keys_list_shows_each_kiosks_last_counter_for_a_lost_counter_file(db, capsys):
    """What `kiosk fw provision --counter-above` needs when a kiosk's counter file is gone."""
    for kiosk_id, seed in (("K0001", 1), ("K0002", 2)):
        public = SigningKey(bytes([seed]) * 32).public_key.hex()
        assert kiosk("gateway", "enroll", "--db", db, "--kiosk-id", kiosk_id,
                     "--public-key", public) == 0
    with closing(open_ledger(db)) as ledger:
        assert ledger.advance_counter("K0001", 4_117)
    capsys.readouterr()
    assert kiosk("keys", "list", "--db", db) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  last counter 4117  " in [line for line in lines if line.startswith("K0001")][0]
    assert "  last counter 0  " in [line for line in lines if line.startswith("K0002")][0]
    assert "counter" not in [line for line in lines if line.startswith("gw-")][0]
    shown = {record["kid"]: record for record in keys_json(db, capsys)}
    assert (shown["K0001"]["last_counter"], shown["K0002"]["last_counter"]) == (4_117, 0)
    assert "last_counter" not in next(r for r in shown.values() if r["role"] == "gateway")


def test_keys_list_says_when_each_kiosk_last_signed_in(db, capsys):
    """A kiosk signs in every 10 minutes, idle or busy: one not heard of for longer is off or
    cut off, which the operator could not tell from an idle one."""
    for kiosk_id, seed in (("K0001", 1), ("K0002", 2)):
        public = SigningKey(bytes([seed]) * 32).public_key.hex()
        assert kiosk("gateway", "enroll", "--db", db, "--kiosk-id", kiosk_id,
                     "--public-key", public) == 0
    now = int(time.time())
    with closing(open_ledger(db)) as ledger:
        ledger.record_sign_in("K0001", "onestop-fw 1.0", "esp32s3", now - 3 * 3600 - 60)
    capsys.readouterr()
    assert kiosk("keys", "list", "--db", db) == 0
    lines = capsys.readouterr().out.splitlines()
    at = datetime.datetime.fromtimestamp(now - 3 * 3600 - 60, ZoneInfo("Asia/Shanghai"))
    assert [line for line in lines if line.startswith("K0001")][0].endswith(
        f"signed in {at:%Y-%m-%d %H:%M} +0800, 3 h ago (onestop-fw 1.0 on esp32s3)")
    assert [line for line in lines if line.startswith("K0002")][0].endswith("never signed in")
    shown = {record["kid"]: record for record in keys_json(db, capsys)}
    assert (shown["K0001"]["signed_in_at"], shown["K0001"]["fw"], shown["K0001"]["board"]) \
        == (now - 3 * 3600 - 60, "onestop-fw 1.0", "esp32s3")
    assert (shown["K0002"]["signed_in_at"], shown["K0002"]["fw"]) == (None, None)
    assert "signed_in_at" not in next(r for r in shown.values() if r["role"] == "gateway")


def test_init_makes_the_key_folder_and_a_key_it_cannot_write_leaves_no_ledger(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    old_umask = os.umask(0)  # an operator's shell with a careless umask
    try:
        assert kiosk("gateway", "init", "--db", url, "--key",
                     str(tmp_path / "keys" / "gw.key")) == 0
    finally:
        os.umask(old_umask)
    assert load_signing_key(tmp_path / "keys" / "gw.key")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700  # made for the key
    (tmp_path / "blocked").write_text("a file where the key's folder should be")
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    capsys.readouterr()
    assert kiosk("gateway", "init", "--db", other, "--key",
                 str(tmp_path / "blocked" / "gw.key")) == 1
    err = capsys.readouterr().err
    assert err.startswith("kiosk gateway init: cannot make the folder") and "Traceback" not in err
    assert not (tmp_path / "other.sqlite").exists()  # no ledger without its gateway key


def test_init_on_a_file_others_can_read_warns_with_the_remedy(tmp_path, capsys):
    path = tmp_path / "ledger.sqlite"
    path.touch(mode=0o644)
    path.chmod(0o644)
    assert kiosk("gateway", "init", "--db", str(path)) == 0
    assert f"warning: {path} is readable by other users (mode 644)" in capsys.readouterr().out


def test_init_shows_no_database_password(ledger_url, tmp_path, capsys):
    if not ledger_url.startswith("postgresql"):
        pytest.skip("only a PostgreSQL URL holds a password")
    with_password = ledger_url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")
    assert with_password != ledger_url  # trust auth: the password is not checked
    assert kiosk("gateway", "init", "--db", with_password, "--key",
                 str(tmp_path / "gw.key")) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out and "postgres:***@" in out


def test_a_second_id_for_the_gateways_key_is_refused_with_the_id_it_has(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    assert kiosk("gateway", "init", "--db", url, "--gateway-id", "gw-main") == 0
    capsys.readouterr()
    assert kiosk("gateway", "init", "--db", url, "--gateway-id", "gw-other") == 1
    err = capsys.readouterr().err
    assert "already enrolled as 'gw-main' (gateway)" in err and "--gateway-id gw-main" in err
    assert "every kiosk" not in err
    # init is idempotent: run again without --gateway-id, the key keeps the id it has
    assert kiosk("gateway", "init", "--db", url) == 0
    assert "gateway key gw-main: kept the existing key file" in capsys.readouterr().out
    with closing(open_ledger(url)) as ledger:
        assert [k.kid for k in ledger.list_keys()] == ["gw-main"]


def test_revoking_the_gateways_own_key_as_a_kiosk_says_what_it_is(db, capsys):
    [gateway] = keys_json(db, capsys)
    assert kiosk("gateway", "revoke", "--db", db, "--kiosk-id", gateway["kid"]) == 1
    assert f"is a gateway key, not a kiosk's: revoke it with --gateway-id {gateway['kid']}" \
        in capsys.readouterr().err
    assert keys_json(db, capsys)[0]["status"] == "active"


def test_a_leaked_gateway_key_is_revoked_and_never_served_or_reinstated(tmp_path, capsys):
    """An operator whose gateway key leaked: revoke it, and neither serve nor a careless init
    with the old key file brings it back; a new key carries on."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    assert kiosk("gateway", "init", "--db", url) == 0
    [old] = keys_json(url, capsys)
    assert kiosk("gateway", "revoke", "--db", url, "--gateway-id", old["kid"]) == 0
    assert f"revoked gateway key {old['kid']}" in capsys.readouterr().out
    assert keys_json(url, capsys)[0]["status"] == "revoked"
    assert kiosk("gateway", "serve", "--db", url, "--listen", "127.0.0.1:0") == 2
    assert f"(gateway key {old['kid']}) was revoked: make a new one with `kiosk gateway init " \
        "--key NEW_PATH`" in capsys.readouterr().err
    assert kiosk("gateway", "init", "--db", url) == 1  # the old key file, beside the ledger
    assert "was revoked: make a new one with --key" in capsys.readouterr().err
    assert keys_json(url, capsys)[0]["status"] == "revoked"
    new_key = tmp_path / "new.key"
    assert kiosk("gateway", "init", "--db", url, "--key", str(new_key)) == 0
    statuses = {k["kid"]: k["status"] for k in keys_json(url, capsys)}
    assert statuses[old["kid"]] == "revoked" and list(statuses.values()).count("active") == 1
    assert kiosk("gateway", "audit", "--db", url) == 0


def test_init_on_another_applications_sqlite_file_is_refused(tmp_path, capsys):
    path = tmp_path / "clinic.db"  # a mistyped path to some other database
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE visits (id INTEGER PRIMARY KEY, patient TEXT)")
    before = path.read_bytes()
    assert kiosk("gateway", "init", "--db", f"sqlite:///{path}") == 1
    assert "already holds another database's tables (visits)" in capsys.readouterr().err
    assert path.read_bytes() == before  # nothing of ours added, nor switched to WAL
    assert not (tmp_path / "gateway.key").exists()


@pytest.mark.parametrize("content", ["text", "sqlite"])
def test_init_refused_on_a_file_that_is_no_ledger_leaves_the_folder_as_it_was(
        tmp_path, capsys, content):
    """No lock file (`-writer.lock`) of init's left beside a mistyped --db; one that was there
    before stays."""
    path = tmp_path / "notes"
    if content == "text":
        path.write_text("not a database\n")
    else:
        with closing(sqlite3.connect(path)) as other, other:
            other.execute("CREATE TABLE visits (id INTEGER PRIMARY KEY, patient TEXT)")
    before = path.read_bytes()
    assert kiosk("gateway", "init", "--db", f"sqlite:///{path}") == 1
    assert "nothing was written" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes"]
    assert path.read_bytes() == before

    lock = tmp_path / "notes-writer.lock"
    lock.touch()
    assert kiosk("gateway", "init", "--db", f"sqlite:///{path}") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "notes-writer.lock"]


def test_init_on_a_folder_says_to_name_a_file_in_it_and_leaves_it_as_it_was(tmp_path, capsys):
    folder = tmp_path / "ledgers"
    folder.mkdir()
    assert kiosk("gateway", "init", "--db", f"sqlite:///{folder}") == 1
    assert (f"ledger {folder} is a folder: name a file in it "
            f"(sqlite:///{folder / 'ledger.sqlite'}, say); nothing was written"
            in capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledgers"]  # no -writer.lock
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("command", [["keys", "list"], ["gateway", "audit"],
                                     ["gateway", "lookups"], ["gateway", "upgrade"],
                                     ["gateway", "reconcile", "--date", "2026-11-23"]])
def test_a_command_given_a_file_that_is_no_ledger_leaves_it_as_it_was(tmp_path, capsys,
                                                                     command):
    """A mistyped --db: another program's database, or an empty file."""
    other, empty = tmp_path / "clinic.db", tmp_path / "empty.sqlite"
    with closing(sqlite3.connect(other)) as clinic, clinic:
        clinic.execute("CREATE TABLE visits (id INTEGER PRIMARY KEY, patient TEXT)")
    empty.touch()
    before = other.read_bytes()
    assert kiosk(*command, "--db", f"sqlite:///{other}") == 1
    assert ("already holds another database's tables (visits); a ledger needs a file of its "
            "own; nothing was written") in capsys.readouterr().err
    assert kiosk(*command, "--db", f"sqlite:///{empty}") == 1
    assert "it is not initialised: run `kiosk gateway init`" in capsys.readouterr().err
    assert other.read_bytes() == before and empty.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clinic.db", "empty.sqlite"]

    # another program's WAL-mode database, its last commit still in its WAL: a connection
    # that closed last would fold it into the file
    wal = tmp_path / "wal" / "app.db"
    wal.parent.mkdir()
    subprocess.run([sys.executable, "-c", (
        "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA wal_autocheckpoint=0'); "
        "c.execute('CREATE TABLE t (x)'); c.commit(); os._exit(0)"), str(wal)], check=True)
    kept = {name: (wal.parent / name).read_bytes() for name in ("app.db", "app.db-wal")}
    assert kiosk(*command, "--db", f"sqlite:///{wal}") == 1
    assert "already holds another database's tables (t)" in capsys.readouterr().err
    assert {name: (wal.parent / name).read_bytes() for name in kept} == kept


def test_init_again_never_overwrites_the_key(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    kiosk("gateway", "init", "--db", url)
    before = (tmp_path / "gateway.key").read_bytes()
    capsys.readouterr()

    assert kiosk("gateway", "init", "--db", url) == 0

    assert "never overwritten" in capsys.readouterr().out
    assert (tmp_path / "gateway.key").read_bytes() == before
    assert len(keys_json(url, capsys)) == 1


def test_init_again_says_nothing_of_other_keys_but_a_second_key_is_pointed_out(tmp_path,
                                                                               capsys):
    # Another key file beside the ledger (copied from elsewhere, or a rotation): the kiosks
    # trust the first key only, and the operator is told so before serving with the new one.
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    kiosk("gateway", "init", "--db", url, "--gateway-id", "gw-first")
    capsys.readouterr()
    assert kiosk("gateway", "init", "--db", url, "--gateway-id", "gw-first") == 0
    assert "note:" not in capsys.readouterr().err
    assert kiosk("gateway", "init", "--db", url, "--key", str(tmp_path / "new.key"),
                 "--gateway-id", "gw-second") == 0
    err = capsys.readouterr().err
    assert "gw-first is active in this ledger too" in err
    assert "refuse replies signed with gw-second" in err
    assert "kiosk gateway revoke --gateway-id gw-second" in err


def test_a_second_init_at_the_same_moment_is_told_what_happened(ledger_url, tmp_path,
                                                                capsys, monkeypatch):
    """Two inits of a new ledger at once: both find no key file, the later one's write of
    its key file finds the other's (an OSError "File exists" before)."""
    argv = ["gateway", "init", "--db", ledger_url, "--key", str(tmp_path / "gw.key")]
    save = host_keys.save_signing_key

    def other_init_first(*args, **kwargs) -> None:
        monkeypatch.setattr(host_keys, "save_signing_key", save)
        assert kiosk(*argv) == 0  # the other init, all of it, between this one's steps
        save(*args, **kwargs)

    monkeypatch.setattr(host_keys, "save_signing_key", other_init_first)
    assert kiosk(*argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kiosk gateway init: another process made the key file "
                          f"{tmp_path / 'gw.key'} while this init ran")
    assert "nothing needs doing" in err and "File exists" not in err
    public = load_signing_key(tmp_path / "gw.key").public_key.hex()
    assert [k["public_key"] for k in keys_json(ledger_url, capsys)] == [public]  # the other's
    assert kiosk(*argv) == 0  # the check the message suggests
    assert f"gateway public key: {public}" in capsys.readouterr().out


def test_init_with_a_chosen_gateway_id(ledger_url, tmp_path, capsys):
    key = tmp_path / "gw.key"
    assert (
        kiosk("gateway", "init", "--db", ledger_url, "--key", str(key), "--gateway-id", "gw-a") == 0
    )
    assert [k["kid"] for k in keys_json(ledger_url, capsys)] == ["gw-a"]


@pytest.mark.parametrize("ledger_url", ["postgresql"], indirect=True)
def test_init_on_postgresql_needs_a_key_path(ledger_url, capsys):
    assert kiosk("gateway", "init", "--db", ledger_url) == 1
    assert "--key" in capsys.readouterr().err


def test_enroll_revoke_and_list(db, capsys):
    assert kiosk("gateway", "enroll", "--db", db, "--kiosk-id", "kiosk-01",
                 "--public-key", KIOSK_PUBLIC) == 0  # fmt: skip
    assert kiosk("gateway", "enroll", "--db", db, "--kiosk-id", "kiosk-01",
                 "--public-key", KIOSK_PUBLIC) == 0  # again: nothing changes  # fmt: skip
    assert kiosk("gateway", "revoke", "--db", db, "--kiosk-id", "kiosk-01") == 0

    keys = keys_json(db, capsys)
    assert [(k["kid"], k["role"], k["status"]) for k in keys][1:] == [
        ("kiosk-01", "kiosk", "revoked")
    ]
    assert keys[1]["public_key"] == KIOSK_PUBLIC
    assert all(len(k["public_key"]) == 64 and k["alg"] == "EdDSA" for k in keys)


def test_a_revoked_kiosk_is_not_quietly_reinstated(db, capsys):
    kiosk("gateway", "enroll", "--db", db, "--kiosk-id", "kiosk-01", "--public-key", KIOSK_PUBLIC)
    kiosk("gateway", "revoke", "--db", db, "--kiosk-id", "kiosk-01")
    capsys.readouterr()
    assert kiosk("gateway", "enroll", "--db", db, "--kiosk-id", "kiosk-01",
                 "--public-key", KIOSK_PUBLIC) == 1  # fmt: skip
    assert "revoked" in capsys.readouterr().err
    assert keys_json(db, capsys)[1]["status"] == "revoked"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--kiosk-id", "kiosk 01", "--public-key", KIOSK_PUBLIC], "kiosk id"),
        (["--kiosk-id", "kiosk-01", "--public-key", "abcd"], "64 hex digits"),
        # the identity point: a key of small order, under which a forged signature passes
        # lax verifiers for any message
        (["--kiosk-id", "kiosk-01", "--public-key", "01" + "00" * 31], "not a usable"),
        (["--kiosk-id", "kiosk-01", "--public-key", "ff" * 32], "not a usable"),
    ],
)
def test_enroll_refuses_bad_input_clearly(db, capsys, argv, complaint):
    assert kiosk("gateway", "enroll", "--db", db, *argv) == 1
    assert complaint in capsys.readouterr().err
    assert len(keys_json(db, capsys)) == 1  # only the gateway's


def test_enrolling_a_kiosk_under_the_gateways_id_is_refused(db, capsys):
    gateway_kid = keys_json(db, capsys)[0]["kid"]
    assert kiosk("gateway", "enroll", "--db", db, "--kiosk-id", gateway_kid,
                 "--public-key", KIOSK_PUBLIC) == 1  # fmt: skip
    assert "already enrolled" in capsys.readouterr().err


def test_one_public_key_is_enrolled_under_one_id_only(db, capsys):
    gateway = keys_json(db, capsys)[0]
    # the gateway's own key as a kiosk's: that kiosk could sign as the gateway
    assert kiosk("gateway", "enroll", "--db", db, "--kiosk-id", "kiosk-09",
                 "--public-key", gateway["public_key"]) == 1  # fmt: skip
    assert f"already enrolled as {gateway['kid']!r}" in capsys.readouterr().err
    # a revoked kiosk's key under a new id: revoking it would not have stopped the device
    kiosk("gateway", "enroll", "--db", db, "--kiosk-id", "kiosk-01", "--public-key", KIOSK_PUBLIC)
    kiosk("gateway", "revoke", "--db", db, "--kiosk-id", "kiosk-01")
    capsys.readouterr()
    assert kiosk("gateway", "enroll", "--db", db, "--kiosk-id", "kiosk-02",
                 "--public-key", KIOSK_PUBLIC) == 1  # fmt: skip
    assert "already enrolled as 'kiosk-01'" in capsys.readouterr().err
    assert [k["kid"] for k in keys_json(db, capsys)] == [gateway["kid"], "kiosk-01"]
    # the gateway's key under its own id, as a kiosk: said plainly
    assert kiosk("gateway", "enroll", "--db", db, "--kiosk-id", gateway["kid"],
                 "--public-key", gateway["public_key"]) == 1  # fmt: skip
    assert "already enrolled, as a gateway key" in capsys.readouterr().err


def test_revoking_an_unknown_kiosk_fails(db, capsys):
    assert kiosk("gateway", "revoke", "--db", db, "--kiosk-id", "kiosk-77") == 1
    assert "no kiosk kiosk-77" in capsys.readouterr().err


def test_keys_list_takes_a_bare_path(tmp_path, capsys):
    path = tmp_path / "ledger.sqlite"
    kiosk("gateway", "init", "--db", str(path))
    assert keys_json(str(path), capsys)[0]["role"] == "gateway"


def test_commands_on_a_missing_ledger_say_how_to_create_it(tmp_path, capsys):
    assert kiosk("keys", "list", "--db", str(tmp_path / "none.sqlite")) == 1
    assert "kiosk gateway init" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()


def test_seed_demo_and_import_print_id_numbers_masked_only(db, tmp_path, capsys):
    assert kiosk("gateway", "seed-demo", "--db", db) == 0
    out = capsys.readouterr().out
    residents = demo_document()["residents"]
    for resident in residents:
        assert resident["ssn"] not in out
        assert resident["ssn"][:6] + "*" * 8 + resident["ssn"][-4:] in out
    assert f"persons: {len(residents)} added" in out

    bills = tmp_path / "bills.json"
    person = {k: residents[0][k] for k in
              ("psn_no", "name", "ssn", "card_no", "insu_admdvs", "assistance")}  # fmt: skip
    person["card_no"] = "HB0000099"  # a reissued card
    bills.write_text(json.dumps({"persons": [person], "bills": residents[0]["bills"]}))
    assert kiosk("gateway", "import-bills", "--db", db, str(bills)) == 0
    out = capsys.readouterr().out
    assert "persons: 0 added, 1 updated" in out and "bills: 0 added, 0 updated, 1 unchanged" in out
    assert residents[0]["ssn"] not in out


def test_import_bills_reports_the_bad_field(db, tmp_path, capsys):
    bills = tmp_path / "bills.json"
    bills.write_text(json.dumps([{"bill_id": "B1"}]))
    assert kiosk("gateway", "import-bills", "--db", db, str(bills)) == 1
    assert "bills[0].psn_no: missing" in capsys.readouterr().err


def settle_one(db, kit):
    with closing(open_ledger(db)) as ledger:
        kit.enrol_gateway(ledger)  # the gateway that signs the kit's records
        ledger.upsert_person(kit.person("P1", 1))
        ledger.upsert_bill(kit.bill("B1", "P1"))
        kit.settle(ledger, "T-000001", "P1", "B1")


def test_audit_passes_then_fails_after_the_sqlite_file_is_edited(tmp_path, capsys, kit):
    path = tmp_path / "ledger.sqlite"
    db = f"sqlite:///{path}"
    kiosk("gateway", "init", "--db", db)
    settle_one(db, kit)
    capsys.readouterr()
    assert kiosk("gateway", "audit", "--db", db) == 0
    assert "audit OK" in capsys.readouterr().out

    with closing(sqlite3.connect(path)) as conn, conn:  # someone with the file, not the ledger
        conn.execute("UPDATE accumulations SET amounts = '{\"hifp_paid_inpatient\": 1}'")

    assert kiosk("gateway", "audit", "--db", db) == 1
    out = capsys.readouterr().out
    assert "PROBLEM: accumulations of P1 for 2026" in out and "audit FAILED" in out


def test_audit_json(db, capsys, kit):
    settle_one(db, kit)
    capsys.readouterr()
    assert kiosk("gateway", "audit", "--db", db, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["settlements"] == 1 and report["problems"] == []


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("argv", [["gateway", "audit", "--json"], ["keys", "list"]])
def test_a_reader_that_leaves_early_gets_no_traceback(db, argv):
    """`kiosk gateway audit --json | head -1`: the pipe closes before the output is written.
    No traceback, and not audit's "problems found" status (1): a shell's 141."""
    command = [sys.executable, "-m", "onestop.host.cli", *argv, "--db", db]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as run:
        run.stdout.close()  # the reader has gone before the command writes
        _, err = run.communicate(timeout=60)
    assert run.returncode == 141
    assert err == b""


def test_reconcile_prints_the_days_totals(db, capsys, kit):
    settle_one(db, kit)
    capsys.readouterr()
    assert kiosk("gateway", "reconcile", "--db", db, "--date", kit.SETTLE_DAY) == 0
    out = capsys.readouterr().out
    assert "kiosk-01" in out
    # on a UTC host, "today" is not the gateway's day for settlements made before 08:00 China
    assert "days as the gateways book them: China time, unless served with --timezone" in out
    assert kiosk("gateway", "reconcile", "--db", db, "--date", kit.SETTLE_DAY, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["totals"]["count"] == 1
    assert report["totals"]["medfee_sumamt"] == 150_000


@pytest.mark.parametrize(("date", "said"), [
    ("2026-13-01", "'2026-13-01': no such day (month must be in 1..12)"),
    ("2026-02-30", "'2026-02-30': no such day (day is out of range for month)"),
    ("30.02.2026", "'30.02.2026' is not a date YYYY-MM-DD")])
def test_reconcile_refuses_a_date_that_is_not_one(db, capsys, date, said):
    assert kiosk("gateway", "reconcile", "--db", db, "--date", date) == 2
    assert said in capsys.readouterr().err


def test_init_with_an_explicit_key_path_writes_it_private(ledger_url, tmp_path, capsys):
    key = tmp_path / "keys" / "gw.key"
    key.parent.mkdir()
    assert kiosk("gateway", "init", "--db", ledger_url, "--key", str(key)) == 0
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    if parse_ledger_url(ledger_url).backend == "sqlite":
        assert not (tmp_path / "gateway.key").exists()  # --key wins over the default


def test_operator_commands_refuse_a_ledger_newer_than_they_are(db, capsys):
    # after rolling back an upgrade, the old `kiosk` must not read or write the newer ledger
    with closing(open_ledger(db)) as ledger:
        ledger._write(lambda tx: tx.run(
            "UPDATE ledger_meta SET value = '99' WHERE name = 'schema_version'"))
    for argv in (["gateway", "enroll", "--db", db, "--kiosk-id", "K-9",
                  "--public-key", KIOSK_PUBLIC],
                 ["gateway", "audit", "--db", db]):
        assert kiosk(*argv) != 0
        assert (f"has schema version 99; this gateway knows version {SCHEMA_VERSION}"
                in capsys.readouterr().err)


def indexes(ledger, table: str) -> set[str]:
    """The names of the indexes made for `table` (not those of its keys and UNIQUE columns)."""
    if ledger.blob_type == "BLOB":  # SQLite: its own indexes for keys have no sql
        sql = ("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
               "AND sql IS NOT NULL")
    else:  # the catalogues alone (pg_indexes would read every schema's index definitions,
        # and fail on one that another test drops meanwhile)
        sql = ("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
               "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n "
               "ON n.oid = t.relnamespace WHERE n.nspname = current_schema() "
               "AND t.relname = ? AND NOT i.indisunique")
    return {name for (name,) in ledger._read(lambda tx: tx.all(sql, (table,)))}


NEW_INDEXES = {"settlements": {"settlements_by_date", "settlements_by_person"},
               "audit_log": {"settled_events", "key_revocations", "lookups"},
               "bills": {"bills_of_person"}}
VERSIONS_BEFORE = ["1", "2", "3", "4", "5"]


def make_earlier(ledger, version: str) -> None:
    """`ledger` as an earlier Onestop left it: 5 indexed bills by (psn_no, status); 4 had no
    index of lookups either; 3 no sign_ins either; 2 no index of key revocations either; 1 no
    card_reads either."""
    def work(tx):
        tx.run("DROP INDEX bills_of_person")
        tx.run("CREATE INDEX bills_by_person ON bills (psn_no, status)")
        if version == "5":
            tx.run("UPDATE ledger_meta SET value = ? WHERE name = 'schema_version'", (version,))
            return
        tx.run("DROP INDEX lookups")
        if version == "4":
            tx.run("UPDATE ledger_meta SET value = ? WHERE name = 'schema_version'", (version,))
            return
        tx.run("DROP TABLE sign_ins")
        if version != "3":
            tx.run("DROP INDEX key_revocations")
        if version == "1":
            tx.run("DROP TABLE card_reads")
        tx.run("UPDATE ledger_meta SET value = ? WHERE name = 'schema_version'", (version,))
    ledger._write(work)


def test_a_new_ledger_has_one_index_of_settlements_by_day(db):
    # each index is one more write for every settlement: one of the day, none of day and kiosk
    with closing(open_ledger(db)) as ledger:
        assert indexes(ledger, "settlements") == NEW_INDEXES["settlements"]
        assert indexes(ledger, "audit_log") == NEW_INDEXES["audit_log"]
        assert indexes(ledger, "bills") == NEW_INDEXES["bills"]


@pytest.mark.parametrize("version", VERSIONS_BEFORE)
def test_a_ledger_of_an_earlier_schema_is_brought_up_to_date_by_upgrade(
        db, version, tmp_path, capsys, kit):
    # An earlier Onestop's ledger with residents and settlements in it: serve and the
    # operator's commands name the remedy, and `upgrade` adds what it lacks and keeps
    # everything stored.
    assert kiosk("gateway", "seed-demo", "--db", db) == 0
    settle_one(db, kit)
    with closing(open_ledger(db)) as ledger:
        make_earlier(ledger, version)
        settlements_before = ledger.settlements_on(kit.SETTLE_DAY)
        assert len(settlements_before) == 1
    capsys.readouterr()
    assert kiosk("gateway", "audit", "--db", db) != 0
    said = capsys.readouterr().err
    assert f"has schema version {version}, from an earlier Onestop" in said
    assert "run `kiosk gateway upgrade --db URL`" in said
    with closing(open_ledger(db)) as ledger:
        keys_before = ledger.list_keys()
    assert kiosk("gateway", "upgrade", "--db", db) == 0
    assert f"brought from schema version {version} up to date" in capsys.readouterr().out
    with closing(open_ledger(db)) as ledger:
        assert ledger.list_keys() == keys_before  # no key made or enrolled
        assert indexes(ledger, "settlements") == NEW_INDEXES["settlements"]
        assert indexes(ledger, "audit_log") == NEW_INDEXES["audit_log"]
        assert indexes(ledger, "bills") == NEW_INDEXES["bills"]  # the old one dropped
        assert ledger.settlements_on(kit.SETTLE_DAY) == settlements_before
    assert kiosk("gateway", "upgrade", "--db", db) == 0  # again: nothing to do
    assert "is up to date" in capsys.readouterr().out
    assert kiosk("gateway", "audit", "--db", db) == 0
    with closing(open_ledger(db)) as ledger:
        assert ledger.get_person("P001") is not None
        ledger.record_card_read("K-1", "P001", 1_795_400_000)  # the new tables are there
        assert ledger.card_holder("K-1", "P001", 1_795_400_000) is not None
        ledger.record_sign_in("K-1", "fw", "board", 1_795_400_000)
        assert ledger.sign_ins()["K-1"].at == 1_795_400_000


def test_upgrade_makes_no_ledger_and_leaves_a_newer_one_alone(db, tmp_path, capsys):
    missing = f"sqlite:///{tmp_path / 'nothing-here.sqlite'}"
    assert kiosk("gateway", "upgrade", "--db", missing) != 0
    assert not (tmp_path / "nothing-here.sqlite").exists()
    with closing(open_ledger(db)) as ledger:
        ledger._write(lambda tx: tx.run(
            "UPDATE ledger_meta SET value = '99' WHERE name = 'schema_version'"))
    capsys.readouterr()
    assert kiosk("gateway", "upgrade", "--db", db) != 0
    assert (f"has schema version 99; this gateway knows version {SCHEMA_VERSION}"
            in capsys.readouterr().err)


def test_three_slashes_are_a_relative_path_and_the_operator_is_told_which_file(
        tmp_path, capsys, monkeypatch):
    """sqlite:///tmp/x is tmp/x in the working directory (sqlite:////tmp/x is /tmp/x): init
    names the file it made, and a command given the three-slash form of an absolute ledger
    says how to write it instead of only 'no ledger at tmp/...'."""
    site = tmp_path / "site"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    absolute = site / "ledger.sqlite"
    assert kiosk("gateway", "init", "--db", f"sqlite:///{absolute}") == 0  # four slashes
    assert f"(the file {absolute})" in capsys.readouterr().out

    three = f"sqlite:///{str(absolute).lstrip('/')}"
    assert kiosk("gateway", "audit", "--db", three) != 0
    said = capsys.readouterr().err
    assert f"write sqlite:///{absolute}" in said and "relative to the working directory" in said
    assert not (work / str(absolute).lstrip("/")).exists()  # nothing made where it was not meant

    assert kiosk("gateway", "init", "--db", "sqlite:///here.sqlite") == 0
    assert f"(the file {work / 'here.sqlite'})" in capsys.readouterr().out

    # init, where the slip does harm: no folders and no second gateway key made here
    other = site / "other.sqlite"
    three = f"sqlite:///{str(other).lstrip('/')}"
    assert kiosk("gateway", "init", "--db", three) == 1
    said = capsys.readouterr().err
    assert f"write sqlite:///{other}" in said and "in the working directory" in said
    assert not [p for p in work.iterdir() if not p.name.startswith(("here.sqlite", "gateway.key"))]


@pytest.mark.parametrize("url", ["sqlite:/ledger.sqlite", "sqlite:ledger.sqlite",
                                 "SQLite:/ledger.sqlite"])
def test_a_mistyped_sqlite_url_is_refused_not_taken_as_a_folder_named_sqlite(
        url, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert kiosk("gateway", "init", "--db", url) == 1
    assert "bad SQLite ledger URL" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_file_format_import_bills_help_shows_imports_as_shown(db, tmp_path, capsys):
    """An operator writes the clinics' file from `import-bills --help`: its examples must be
    what the command takes (they found the fields by trial and error, one error at a time)."""
    from onestop.host.gateway.cli import IMPORT_FORMAT

    examples, lines = [], iter(IMPORT_FORMAT.splitlines())
    for line in lines:  # an example: from a line "  {" to the line that ends with "}"
        if line.startswith("  {"):
            text = line
            while not text.endswith("}"):
                text += next(lines)
            examples.append(json.loads(text))
    bill, person = examples
    path = tmp_path / "clinic.json"
    path.write_text(json.dumps({"persons": [person], "bills": [bill]}, ensure_ascii=False))
    assert kiosk("gateway", "import-bills", "--db", db, str(path)) == 0
    ledger = open_ledger(db)
    try:
        (stored,) = ledger.pending_bills(person["psn_no"])
        assert stored.bill_id == bill["bill_id"] and stored.medfee_sumamt == 120_000
    finally:
        ledger.close()


def test_a_gateway_keys_id_given_to_enroll_is_said_to_be_a_gateway_key(db, capsys):
    [gateway] = keys_json(db, capsys)
    assert kiosk("gateway", "revoke", "--db", db, "--gateway-id", gateway["kid"]) == 0
    capsys.readouterr()
    kiosk_key = SigningKey.generate().public_key.hex()
    assert kiosk("gateway", "enroll", "--db", db, "--kiosk-id", gateway["kid"],
                 "--public-key", kiosk_key) == 1
    err = capsys.readouterr().err
    assert f"{gateway['kid']} is already enrolled, as a gateway key (revoked)" in err
    assert "revoked kiosk" not in err


def test_the_import_helps_example_imports_into_the_demo_ledger(db, tmp_path, capsys):
    """An operator trying the format out on the demo's ledger: the example's resident is
    nobody there."""
    from onestop.host.gateway.cli import IMPORT_FORMAT

    bill, person = (json.loads(block) for block in re.findall(r"\n  (\{.*?\})\n  [a-z]",
                                                               IMPORT_FORMAT, re.S))
    assert kiosk("gateway", "seed-demo", "--db", db) == 0
    example = tmp_path / "example.json"
    example.write_text(json.dumps({"persons": [person], "bills": [bill]}, ensure_ascii=False))
    capsys.readouterr()
    assert kiosk("gateway", "import-bills", "--db", db, str(example)) == 0, \
        capsys.readouterr().err


@pytest.mark.parametrize(("argv", "command", "unknown"), [
    (["gateway", "audit", "--db", "sqlite:///x.sqlite", "--jsno"], "kiosk gateway audit",
     "--jsno"),
    (["keys", "list", "--db", "sqlite:///x.sqlite", "--jsn"], "kiosk keys list", "--jsn"),
    (["gateway", "serve", "--db", "sqlite:///x.sqlite", "--listn", "127.0.0.1:7400"],
     "kiosk gateway serve", "--listn 127.0.0.1:7400"),
    (["gateway", "import-bills", "--db", "sqlite:///x.sqlite", "a.json", "b.json"],
     "kiosk gateway import-bills", "b.json"),
])
def test_a_mistyped_option_is_refused_by_the_command_it_was_given_to(
        argv, command, unknown, tmp_path, capsys, monkeypatch):
    """argparse refused an unknown option as `kiosk`, with `kiosk [-h] COMMAND ...` for its
    usage: the operator was not shown the options of the command they had typed it to."""
    monkeypatch.chdir(tmp_path)
    assert kiosk(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {command} [-h] --db ")
    assert f"\n{command}: error: unrecognized arguments: {unknown}\n" in err
    assert list(tmp_path.iterdir()) == []  # refused before anything was done


def test_a_ledger_that_lost_a_table_is_not_up_to_date_and_serves_no_one(db, capsys):
    """A ledger of this version without one of its tables (dropped by hand, a partial
    restore): `init` said it was damaged, but `upgrade` called it up to date and `serve` started
    on it, each kiosk then told `unavailable` at its first card."""
    from onestop.host.gateway.ledger.base import LedgerError

    with closing(open_ledger(db)) as ledger:
        ledger._write(lambda tx: tx.run("DROP TABLE card_reads"))
    capsys.readouterr()
    assert kiosk("gateway", "upgrade", "--db", db) == 1
    err = capsys.readouterr().err
    assert "is damaged" in err and "without its table card_reads" in err
    assert "restore it from a backup" in err
    with closing(open_ledger(db)) as ledger:
        with pytest.raises(LedgerError, match="without its table card_reads"):
            ledger.check_schema(complete=True)  # what serve checks at its start
        ledger.check_schema()  # the other commands read what they need, as before
