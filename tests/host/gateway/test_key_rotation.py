"""Gateway key rotation through the operator's offline authority key: `kiosk gateway
authority-init` makes it, `kiosk gateway certify` certifies a gateway key (KEY.cert beside the
key file), `kiosk gateway serve` sends the cert in each sign_in_reply and refuses to start with a
cert of another key. (The kiosk's side: tests/firmware/test_link_rotation.py.)

With --db the ledger records each cert: the next rotation's serial is checked against every
key's, not only the cert file beside the same key; the newest cert's authority is the only one
accepted; `keys list` shows each gateway key's cert; `serve` checks its cert file against the
record; the audit compares the record with its events."""

from __future__ import annotations

import io
import json
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest
from onestop.host.cli import main
from onestop.host.gateway import logs
from onestop.host.gateway.certs import authority_kid, cert_path
from onestop.host.gateway.kiosk_client import KioskClient, KioskConnection, MemoryCounter
from onestop.host.gateway.ledger import KeyRecord, open_ledger
from onestop.host.gateway.server import GatewayConfig, start_gateway
from onestop.host.keys import SigningKey, VerifyingKey, load_signing_key
from onestop.protocol import messages


def kiosk(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return done.value.code


@pytest.fixture
def authority(tmp_path: Path, capsys) -> tuple[Path, str, bytes]:
    """`kiosk gateway authority-init`: its file, kid and public key."""
    path = tmp_path / "offline" / "authority.key"
    path.parent.mkdir()
    assert kiosk("gateway", "authority-init", "--out", str(path)) == 0
    out = capsys.readouterr().out
    public = load_signing_key(path).public_key
    kid = authority_kid(public)
    assert f"authority key {kid}: created {path} (mode 0600)" in out
    assert f"--authority-kid {kid} --authority-public-key {public.hex()}" in out
    return path, kid, public


def gateway_keys(url: str) -> dict[str, KeyRecord]:
    with open_ledger(url) as ledger:
        return {k.kid: k for k in ledger.list_keys() if k.role == "gateway"}


def kid_of(url: str, key: Path) -> str:
    public = load_signing_key(key).public_key
    [kid] = [kid for kid, k in gateway_keys(url).items() if k.public_key == public]
    return kid


def test_authority_init_makes_a_private_key_and_never_overwrites_it(authority, capsys) -> None:
    path, _kid, public = authority
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kiosk("gateway", "authority-init", "--out", str(path)) == 1
    assert "is never overwritten" in capsys.readouterr().err
    assert load_signing_key(path).public_key == public


def test_serials_a_site_began_high_go_on_from_there(ledger_url: str, tmp_path: Path,
                                                   authority, capsys) -> None:
    """A site that numbered its certs by date (20250101): the next rotation is 20250102, not
    refused by a fixed ceiling (nor anything lower, which the kiosks refuse)."""
    auth_path, _kid, _public = authority
    first, second = tmp_path / "gw-1.key", tmp_path / "gw-2.key"
    for key in (first, second):
        assert kiosk("gateway", "init", "--db", ledger_url, "--key", str(key)) == 0
    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(first),
                 "--serial", "20250101", "--db", ledger_url) == 0
    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(second),
                 "--serial", "20250102", "--db", ledger_url) == 0


def test_certify_signs_the_ledgers_gateway_key_with_a_serial(ledger_url: str, tmp_path: Path,
                                                             authority, capsys) -> None:
    """A rotation: a new gateway key for the ledger (init --key NEW), certified with serial 1;
    a key the ledger does not hold, a revoked one, or a lower serial than its cert's are
    refused."""
    auth_path, auth_kid, auth_public = authority
    old, new = tmp_path / "gw-old.key", tmp_path / "gw-new.key"
    assert kiosk("gateway", "init", "--db", ledger_url, "--key", str(old)) == 0
    assert kiosk("gateway", "init", "--db", ledger_url, "--key", str(new)) == 0
    capsys.readouterr()
    new_kid = kid_of(ledger_url, new)
    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(new),
                 "--serial", "1", "--db", ledger_url) == 0
    assert f"certified gateway key {new_kid} with serial 1" in capsys.readouterr().out
    data = cert_path(new).read_bytes()
    record = messages.open_cert(data, auth_kid, VerifyingKey(auth_public))
    assert record == {"kid": new_kid, "key": load_signing_key(new).public_key, "serial": 1}

    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(new),
                 "--serial", "0", "--db", ledger_url) == 1
    capsys.readouterr()
    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(new),
                 "--serial", "99999999999999999999999", "--db", ledger_url) == 1
    assert "--serial 99999999999999999999999 is over 9,223,372,036,854,775,807" \
        in capsys.readouterr().err  # was a traceback
    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(new),
                 "--serial", "3", "--db", ledger_url) == 0
    capsys.readouterr()  # 1,003 above 3: a slip kiosks could never undo
    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(new),
                 "--serial", "1004", "--db", ledger_url) == 1
    assert "--serial 1004 is more than 1,000 above the last cert's (3): give 4" \
        in capsys.readouterr().err
    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(new),
                 "--serial", "2", "--db", ledger_url) == 1
    assert "already certifies this key with serial 3" in capsys.readouterr().err

    stranger = tmp_path / "stranger.key"
    assert kiosk("gateway", "authority-init", "--out", str(stranger)) == 0  # any key file
    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(stranger),
                 "--serial", "4", "--db", ledger_url) == 1
    assert "is not a gateway key of this ledger" in capsys.readouterr().err
    old_kid = kid_of(ledger_url, old)
    assert kiosk("gateway", "revoke", "--db", ledger_url, "--gateway-id", old_kid) == 0
    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(old),
                 "--serial", "5", "--db", ledger_url) == 1
    assert f"gateway key {old_kid} ({old}) was revoked" in capsys.readouterr().err
    assert not cert_path(old).exists()


def test_serve_refuses_a_cert_of_another_key(tmp_path: Path, authority, capsys) -> None:
    auth_path = authority[0]
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    key, other = tmp_path / "gateway.key", tmp_path / "other.key"
    assert kiosk("gateway", "init", "--db", url) == 0
    assert kiosk("gateway", "init", "--db", url, "--key", str(other)) == 0
    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(other),
                 "--serial", "1", "--db", url) == 0
    cert_path(key).write_bytes(cert_path(other).read_bytes())  # copied beside the wrong key
    capsys.readouterr()
    assert kiosk("gateway", "serve", "--db", url, "--listen", "127.0.0.1:0") == 2
    err = capsys.readouterr().err
    assert f"the cert {cert_path(key)} certifies gateway key {kid_of(url, other)}" in err
    assert f"not this key {kid_of(url, key)}" in err
    cert_path(key).write_bytes(b"\x00garbage")
    assert kiosk("gateway", "serve", "--db", url, "--listen", "127.0.0.1:0") == 2
    assert "is not a gateway key certificate" in capsys.readouterr().err


async def sign_in(url: str, key: Path, kiosk_id: str) -> dict:
    """A new kiosk's sign_in to `kiosk gateway serve --key KEY`, and its verified reply."""
    logs.configure("info", io.StringIO())
    gateway = await start_gateway(GatewayConfig(db=url, key_path=key), ("127.0.0.1", 0))
    try:
        kiosk_key = SigningKey.generate()
        with open_ledger(url) as ledger:
            ledger.add_key(KeyRecord(kid=kiosk_id, role="kiosk", public_key=kiosk_key.public_key,
                                     status="active"))
        client = KioskClient(kiosk_id, kiosk_key, MemoryCounter(), kid_of(url, key),
                             VerifyingKey(load_signing_key(key).public_key))
        connection = await KioskConnection.open_tcp(client, *gateway.address)
        try:
            return await connection.call("sign_in", fw="test", board="unix")
        finally:
            await connection.close()
    finally:
        await gateway.close()


async def test_the_sign_in_reply_carries_the_gateways_cert(ledger_url: str, tmp_path: Path,
                                                           authority) -> None:
    auth_path, auth_kid, auth_public = authority
    key = tmp_path / "gw.key"
    assert kiosk("gateway", "init", "--db", ledger_url, "--key", str(key)) == 0
    assert "cert" not in await sign_in(ledger_url, key, "K-01")  # uncertified: as before
    assert kiosk("gateway", "certify", "--authority", str(auth_path), "--key", str(key),
                 "--serial", "1", "--db", ledger_url) == 0
    reply = await sign_in(ledger_url, key, "K-02")
    assert reply["cert"] == cert_path(key).read_bytes()
    assert messages.open_cert(reply["cert"], auth_kid, VerifyingKey(auth_public)) == {
        "kid": kid_of(ledger_url, key), "key": load_signing_key(key).public_key, "serial": 1}


# ---------------------------------------------------------------- the ledger's record of certs
def certify(authority_file: Path, key: Path, serial: int, *extra: str) -> int:
    return kiosk("gateway", "certify", "--authority", str(authority_file), "--key", str(key),
                 "--serial", str(serial), *extra)


@pytest.fixture
def rotation(ledger_url: str, tmp_path: Path, capsys) -> tuple[Path, Path]:
    """Two gateway keys of the ledger: the first one and the next rotation's."""
    first, second = tmp_path / "gw-1.key", tmp_path / "gw-2.key"
    assert kiosk("gateway", "init", "--db", ledger_url, "--key", str(first)) == 0
    assert kiosk("gateway", "init", "--db", ledger_url, "--key", str(second)) == 0
    capsys.readouterr()
    return first, second


def certified_events(url: str) -> list[dict]:
    with closing(open_ledger(url)) as ledger:
        return [json.loads(e["body"]) for e in ledger.audit_events()
                if e["kind"] == "key_certified"]


def test_a_new_keys_serial_must_be_above_every_other_keys(ledger_url, rotation, authority,
                                                          capsys) -> None:
    """The slip this guards against: each key's first cert given serial 1. Kiosks that moved
    to the first key at serial 1 would refuse the second's, and once the first is revoked no
    kiosk could settle."""
    first, second = rotation
    auth_file, auth_kid, _public = authority
    assert certify(auth_file, first, 1, "--db", ledger_url) == 0
    capsys.readouterr()
    assert certify(auth_file, second, 1, "--db", ledger_url) == 1
    err = capsys.readouterr().err
    assert (f"gateway key {kid_of(ledger_url, first)} was certified with serial 1: kiosks that "
            "moved to it move only to a higher serial, so this key needs --serial 2") in err
    assert not cert_path(second).exists()  # refused: no file a gateway could serve

    assert certify(auth_file, second, 2, "--db", ledger_url) == 0
    assert certify(auth_file, second, 2, "--db", ledger_url) == 0  # again: nothing new
    assert [(e["kid"], e["serial"], e["authority"]) for e in certified_events(ledger_url)] == [
        (kid_of(ledger_url, first), 1, auth_kid), (kid_of(ledger_url, second), 2, auth_kid)]
    capsys.readouterr()
    assert kiosk("gateway", "audit", "--db", ledger_url) == 0


def test_keys_list_shows_each_gateway_keys_cert(ledger_url, rotation, authority,
                                               capsys) -> None:
    first, second = rotation
    auth_file, auth_kid, _public = authority
    assert certify(auth_file, second, 1, "--db", ledger_url) == 0
    capsys.readouterr()
    assert kiosk("keys", "list", "--db", ledger_url, "--json") == 0
    shown = {k["kid"]: k for k in json.loads(capsys.readouterr().out)}
    assert shown[kid_of(ledger_url, second)]["cert_serial"] == 1
    assert shown[kid_of(ledger_url, second)]["certified_by"] == auth_kid
    assert shown[kid_of(ledger_url, first)]["cert_serial"] is None
    assert kiosk("keys", "list", "--db", ledger_url) == 0
    lines = capsys.readouterr().out.splitlines()
    [line] = [x for x in lines if x.startswith(kid_of(ledger_url, second))]
    assert line.endswith(f"active  cert serial 1 by {auth_kid}")
    [line] = [x for x in lines if x.startswith(kid_of(ledger_url, first))]
    assert line.endswith("active")


def test_another_authority_only_when_the_operator_says_it_replaces_a_lost_one(
        ledger_url, rotation, tmp_path, authority, capsys) -> None:
    first, second = rotation
    auth_file, auth_kid, _public = authority
    assert certify(auth_file, first, 1, "--db", ledger_url) == 0
    new_auth = tmp_path / "new-authority.key"
    assert kiosk("gateway", "authority-init", "--out", str(new_auth)) == 0
    capsys.readouterr()
    assert certify(new_auth, second, 2, "--db", ledger_url) == 1
    err = capsys.readouterr().err
    assert f"is by authority {auth_kid}" in err and "--new-authority" in err
    assert not cert_path(second).exists()
    assert certify(new_auth, second, 2, "--new-authority") == 1  # the ledger must hear of it
    assert "--new-authority goes with --db" in capsys.readouterr().err
    assert certify(new_auth, second, 2, "--db", ledger_url, "--new-authority") == 0
    # From now on the new authority is the one: the old one is refused in its turn.
    assert certify(auth_file, first, 3, "--db", ledger_url) == 1
    assert certify(new_auth, first, 3, "--db", ledger_url) == 0


def test_serve_refuses_a_cert_the_ledger_did_not_record(ledger_url, rotation, tmp_path,
                                                       authority, capsys) -> None:
    """A cert file replaced behind the ledger (by another authority, or with another serial)
    would be refused by every kiosk, one by one at its next sign-in: the gateway says so at
    start instead."""
    first, _second = rotation
    auth_file, auth_kid, _public = authority
    serve = ("gateway", "serve", "--db", ledger_url, "--key", str(first),
             "--listen", "127.0.0.1:0")
    assert certify(auth_file, first, 1, "--db", ledger_url) == 0
    stranger = tmp_path / "stranger.key"
    assert kiosk("gateway", "authority-init", "--out", str(stranger)) == 0
    assert certify(stranger, first, 1) == 0  # without --db: the ledger cannot refuse it
    capsys.readouterr()
    assert kiosk(*serve) == 2
    assert (f"the cert {cert_path(first)} is not signed by authority {auth_kid}"
            in capsys.readouterr().err)
    assert certify(auth_file, first, 7) == 0  # the right authority, a serial never recorded
    capsys.readouterr()
    assert kiosk(*serve) == 2
    assert (f"has serial 7, but the ledger recorded serial 1 for gateway key "
            f"{kid_of(ledger_url, first)}" in capsys.readouterr().err)


async def test_serving_a_superseded_key_is_warned_of(ledger_url, rotation, authority) -> None:
    first, second = rotation
    auth_file = authority[0]
    assert certify(auth_file, first, 1, "--db", ledger_url) == 0
    assert certify(auth_file, second, 2, "--db", ledger_url) == 0
    for key, superseded in ((first, True), (second, False)):
        out = io.StringIO()
        logs.configure("info", out)
        gateway = await start_gateway(GatewayConfig(db=ledger_url, key_path=key),
                                      ("127.0.0.1", 0))
        await gateway.close()
        warned = [json.loads(line) for line in out.getvalue().splitlines()
                  if '"gateway_key_superseded"' in line]
        assert bool(warned) is superseded
        if superseded:
            assert warned[0]["by"] == kid_of(ledger_url, second)
            assert warned[0]["by_serial"] == 2 and warned[0]["cert_serial"] == 1


def test_the_audit_finds_a_cert_record_changed_behind_the_ledger(tmp_path, authority,
                                                                 capsys) -> None:
    """Lowering the recorded serial would let a slipped rotation through: the audit sees it."""
    path = tmp_path / "ledger.sqlite"
    url = f"sqlite:///{path}"
    key = tmp_path / "gw.key"
    assert kiosk("gateway", "init", "--db", url, "--key", str(key)) == 0
    assert certify(authority[0], key, 3, "--db", url) == 0
    capsys.readouterr()
    assert kiosk("gateway", "audit", "--db", url) == 0
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE ledger_meta SET value = replace(value, '\"serial\":3', "
                     "'\"serial\":1') WHERE name LIKE 'cert/%'")
    assert kiosk("gateway", "audit", "--db", url) == 1
    out = capsys.readouterr().out
    assert f"PROBLEM: gateway cert {kid_of(url, key)}: serial changed behind the ledger" in out
