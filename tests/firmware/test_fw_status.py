"""`kiosk fw status`: the technician called to a kiosk that will not settle reads what it holds
(the firmware's own code reads its flash, under the real MicroPython unix port) and, with --db,
sets it beside the gateway's ledger: each known cause of "it will not settle" is named with
its remedy, and the exit status says whether anything is wrong."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from onestop.host.cli import main
from onestop.host.fwtools import firmware_env
from onestop.host.gateway.ledger import KeyRecord, open_ledger
from onestop.host.keys import SigningKey, load_signing_key
from onestop.host.mpy import micropython_binary


def kiosk(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    out, err = capsys.readouterr()
    return done.value.code, out, err


@pytest.fixture
def site(tmp_path: Path, capsys) -> tuple[Path, str, str]:
    """A ledger with its gateway key, and a unix kiosk K0007 provisioned with that key and
    enrolled: (flash directory, ledger URL, kiosk public key)."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    assert kiosk(capsys, "gateway", "init", "--db", url)[0] == 0
    key = load_signing_key(tmp_path / "gateway.key")
    flash = tmp_path / "flash"
    status, out, err = kiosk(
        capsys, "fw", "provision", "--board", "unix", "--dir", str(flash), "--kiosk-id",
        "K0007", "--gateway-public-key", key.public_key.hex(), "--gateway-kid",
        "gw-" + key.public_key.hex()[:8], "--uart", "card=/dev/pts/1",
        "--uart", "printer=/dev/pts/2", "--uart", "display=/dev/pts/3", "--hall", "城关镇")
    assert status == 0, err
    public = out.split("kiosk public key: ")[1].split()[0]
    assert kiosk(capsys, "gateway", "enroll", "--db", url, "--kiosk-id", "K0007",
                 "--public-key", public)[0] == 0
    return flash, url, public


def status(capsys, flash: Path, *extra: str) -> tuple[int, str, str]:
    return kiosk(capsys, "fw", "status", "--board", "unix", "--dir", str(flash), *extra)


def test_a_healthy_kiosk_beside_its_ledger(site, capsys) -> None:
    flash, url, public = site
    code, out, err = status(capsys, flash, "--db", url)
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == f"kiosk K0007 (unix, flash directory {flash}), 城关镇"
    assert f"  public key       {public}" in lines
    assert "  counter          0" in lines  # no request yet, on either side
    assert "  open in journal  none" in lines
    (free,) = [line.split()[1] for line in lines if line.startswith("  flash ")]
    assert int(free.replace(",", "")) > 16 * 1024  # statvfs of the folder, as the kiosk reads it
    assert "nothing wrong found" in lines
    assert "note: the ledger has no sign-in of this kiosk" in out
    assert (flash / "journal.bin").exists() is False  # nothing written


def test_a_counter_behind_the_ledgers_is_named_with_its_remedy(site, capsys) -> None:
    """A counter file restored from an old copy: every request would be refused as a replay."""
    flash, url, _public = site
    with open_ledger(url) as ledger:
        assert ledger.advance_counter("K0007", 500)
    code, out, _ = status(capsys, flash, "--db", url)
    assert code == 1
    assert "  counter          0 (the gateway's last: 500)" in out
    assert ("PROBLEM: the kiosk's counter (0) is behind the last the gateway saw (500)" in out
            and "Provision again with --counter-above 500" in out)
    provision = json.loads((flash / "config.json").read_text())
    assert kiosk(capsys, "fw", "provision", "--board", "unix", "--dir", str(flash),
                 "--kiosk-id", "K0007", "--gateway-public-key", provision["gateway_public_key"],
                 "--gateway-kid", provision["gateway_kid"], "--uart", "card=/dev/pts/1",
                 "--uart", "printer=/dev/pts/2", "--uart", "display=/dev/pts/3",
                 "--counter-above", "500")[0] == 0
    assert status(capsys, flash, "--db", url)[0] == 0


def test_a_damaged_counter_is_given_the_gateways_last_as_its_floor(site, capsys) -> None:
    flash, url, _public = site
    with open_ledger(url) as ledger:
        assert ledger.advance_counter("K0007", 35)
    (flash / "counter").write_text("abc\n")
    code, out, _ = status(capsys, flash, "--db", url)
    assert code == 1 and "provision again with --counter-above 35 (the gateway's last)" in out
    (flash / "config.json").write_text(json.dumps(dict(
        json.loads((flash / "config.json").read_text()), kiosk_id="K0099")))
    code, out, _ = status(capsys, flash, "--db", url)  # a ledger with no counter of it
    assert ("provision again with --counter-above N: this ledger has no counter of kiosk "
            "K0099 (is it the kiosk's ledger?)") in out
    code, out, _ = status(capsys, flash)  # no ledger to ask: where to find it
    assert code == 1
    assert ("provision again with --counter-above N, N its last counter at the gateway "
            "(`kiosk keys list --db URL`, or this command with --db)") in out


def test_a_flash_too_full_for_a_visit_is_a_problem(site, capsys) -> None:
    """The kiosk stays out of service while its flash has less free than a visit writes
    (app.kiosk): the technician is told why, in bytes."""
    from onestop.host.fwstatus import compare, format_report, read_unix

    flash, _url, _public = site
    status = read_unix(str(flash))
    assert status["flash_needs"] == 16 * 1024
    report = compare(dict(status, flash_free=12_288), None)
    assert report.problems == ["the kiosk's flash has 12,288 bytes free, under the 16,384 a "
                               "visit needs: it stays out of service until room is made on it"]
    assert "  flash            12,288 bytes free" in format_report(report, "here").splitlines()
    assert compare(status, None).problems == []


def test_a_key_enrolled_under_another_kiosk_id_is_named(site, capsys) -> None:
    flash, url, _public = site
    config = json.loads((flash / "config.json").read_text())
    (flash / "config.json").write_text(json.dumps(dict(config, kiosk_id="K0009")))
    code, out, _ = status(capsys, flash, "--db", url)
    assert code == 1
    assert ("PROBLEM: this kiosk's key is enrolled as kiosk K0007, not K0009: provision it "
            "again with --kiosk-id K0007") in out
    assert "kiosk gateway enroll" not in out  # which the ledger would refuse
    assert kiosk(capsys, "gateway", "revoke", "--db", url, "--kiosk-id", "K0007")[0] == 0
    code, out, _ = status(capsys, flash, "--db", url)  # not sent back to a revoked id
    assert code == 1 and ("PROBLEM: this kiosk's key was kiosk K0007's, which is revoked: "
                          "remove kiosk.key from its flash and provision it again") in out


def test_a_kiosk_not_enrolled_or_under_another_key(site, tmp_path, capsys) -> None:
    flash, _url, public = site
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    assert kiosk(capsys, "gateway", "init", "--db", other, "--key",
                 str(tmp_path / "gateway.key"))[0] == 0
    code, out, _ = status(capsys, flash, "--db", other)
    assert code == 1
    assert (f"PROBLEM: kiosk K0007 is not enrolled in this ledger: kiosk gateway enroll --db URL "
            f"--kiosk-id K0007 --public-key {public}") in out
    with open_ledger(other) as ledger:
        ledger.add_key(KeyRecord("K0007", "kiosk", SigningKey.generate().public_key, "active"))
    code, out, _ = status(capsys, flash, "--db", other)
    assert code == 1 and "PROBLEM: kiosk K0007 is enrolled with another public key" in out


def test_a_revoked_gateway_key_without_an_authority_needs_a_technician(site, tmp_path,
                                                                       capsys) -> None:
    flash, url, _public = site
    assert kiosk(capsys, "gateway", "init", "--db", url, "--key",
                 str(tmp_path / "gateway-2.key"))[0] == 0
    kid = json.loads((flash / "config.json").read_text())["gateway_kid"]
    assert kiosk(capsys, "gateway", "revoke", "--db", url, "--gateway-id", kid)[0] == 0
    code, out, _ = status(capsys, flash, "--db", url)
    assert code == 1
    assert (f"PROBLEM: the kiosk trusts gateway key {kid}, which was revoked, and has no "
            "authority to move by") in out


def journal_pending(flash: Path, txn_id: str, cash: int) -> None:
    """A settlement the kiosk's own journal holds as confirmed (the firmware's code writes it)."""
    code = (f"from app.journal import Journal\n"
            f"Journal({str(flash / 'journal.bin')!r}).pending({txn_id!r}, 'P001', 'B1', {cash},"
            f" 'x', '130630********0048', 'clinic', '2026-11-23')\n")
    subprocess.run([micropython_binary(), "-c", code], env=firmware_env(), check=True,
                   timeout=60)


def test_a_settlement_left_open_on_the_kiosk_is_set_beside_the_ledger(site, capsys) -> None:
    flash, url, _public = site
    journal_pending(flash, "K0007-000001-abcd", 1234)
    before = (flash / "journal.bin").read_bytes()
    code, out, _ = status(capsys, flash, "--db", url)
    assert code == 0  # in doubt is not wrong: the kiosk resolves it when it can ask
    assert "  open in journal  1" in out
    assert ("    K0007-000001-abcd  confirmed, not known to be settled (in doubt); resident "
            "pays 12.34; ledger: not there") in out
    assert "note: K0007-000001-abcd: not in the ledger" in out
    assert (flash / "journal.bin").read_bytes() == before
    code, out, _ = status(capsys, flash, "--json")
    shown = json.loads(out)
    assert shown["kiosk"]["open"] == [{"txn_id": "K0007-000001-abcd", "state": "pending",
                                       "bill_id": "B1", "cash": 1234, "date": "2026-11-23",
                                       "print_began": False}]
    assert shown["ledger"] is None and shown["problems"] == []


def test_a_folder_that_is_no_kiosk_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code, out, err = status(capsys, tmp_path / "empty")
    assert code == 2 and out == ""  # not 1: a script tells "could not look" from a problem
    assert "kiosk fw: the kiosk cannot be read: no config.json" in err
    code, out, err = status(capsys, tmp_path / "empty", "--json")
    assert code == 2 and out == ""


def test_a_kiosk_with_the_authority_is_said_to_move_to_the_newer_key(site, tmp_path,
                                                                     capsys) -> None:
    flash, url, _public = site
    authority = tmp_path / "authority.key"
    assert kiosk(capsys, "gateway", "authority-init", "--out", str(authority))[0] == 0
    auth = load_signing_key(authority).public_key
    cfg = json.loads((flash / "config.json").read_text())
    assert kiosk(capsys, "fw", "provision", "--board", "unix", "--dir", str(flash),
                 "--kiosk-id", "K0007", "--gateway-public-key", cfg["gateway_public_key"],
                 "--gateway-kid", cfg["gateway_kid"], "--uart", "card=/dev/pts/1",
                 "--uart", "printer=/dev/pts/2", "--uart", "display=/dev/pts/3",
                 "--authority-kid", "auth-" + auth.hex()[:8],
                 "--authority-public-key", auth.hex())[0] == 0
    new_key = tmp_path / "gateway-2.key"
    assert kiosk(capsys, "gateway", "init", "--db", url, "--key", str(new_key))[0] == 0
    assert kiosk(capsys, "gateway", "certify", "--authority", str(authority), "--key",
                 str(new_key), "--serial", "1", "--db", url)[0] == 0
    new_kid = "gw-" + load_signing_key(new_key).public_key.hex()[:8]
    assert kiosk(capsys, "gateway", "revoke", "--db", url, "--gateway-id",
                 cfg["gateway_kid"])[0] == 0
    code, out, _ = status(capsys, flash, "--db", url)
    assert code == 0, out
    assert (f"note: gateway key {cfg['gateway_kid']} was revoked; the kiosk moves to {new_kid} "
            "at its next sign-in (certified, serial 1)") in out


def test_a_boards_status_is_read_in_service_mode_and_the_kiosk_started_again(
        site, monkeypatch) -> None:
    """On a board the same code runs over mpremote: here MicroPython in the flash directory
    plays the board, and the service-mode steps are recorded."""
    from onestop.host import fwstatus, fwtools

    flash, _url, public = site
    sent: list[str] = []

    def mpremote(port: str, *args: str, cwd: Path | None = None) -> str:
        code = args[-1]
        sent.append(code)
        if "listdir" in code:
            return "['main.py', 'service']\n"
        if "app.status" not in code:
            return ""  # entering or leaving service mode
        return subprocess.run([micropython_binary(), "-c", code], cwd=flash, env=firmware_env(),
                              capture_output=True, text=True, check=True, timeout=60).stdout

    monkeypatch.setattr(fwtools, "_mpremote", mpremote)
    monkeypatch.setattr(fwstatus, "_mpremote", mpremote)
    monkeypatch.setattr(fwtools, "_wait_for_board", lambda port: None)
    monkeypatch.setattr(fwstatus, "check_port", lambda port: None)
    status = fwstatus.read_board("/dev/fake")
    assert (status["kiosk_id"], status["public_key"]) == ("K0007", public)
    assert sent[-1] == fwtools._LEAVE_SERVICE % fwtools.SERVICE_FILE  # the kiosk boots again
