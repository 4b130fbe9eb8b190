"""`kiosk gateway backup`, run as the operator runs it: what it refuses, in one line, and that
a copy that fails leaves nothing under the name asked for. (The copy under load:
test_backup_live.py.)"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from onestop.host.cli import main
from onestop.host.gateway.audit import audit
from onestop.host.gateway.config import parse_ledger_url
from onestop.host.gateway.ledger import open_ledger


def kiosk(*argv: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    return done.value.code


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """A ledger with residents, bills and a gateway key (no settlements: see the live test)."""
    url = f"sqlite:///{tmp_path / 'site' / 'ledger.sqlite'}"
    assert kiosk("gateway", "init", "--db", url) == 0
    assert kiosk("gateway", "seed-demo", "--db", url) == 0
    capsys.readouterr()
    return url


@pytest.fixture
def backups(tmp_path: Path) -> Path:
    folder = tmp_path / "backups"
    folder.mkdir()
    return folder


def refusal(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert err.startswith("kiosk gateway backup: ")
    return err


def test_the_copy_is_private_verified_and_a_ledger_as_it_stands(
        db: str, backups: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = backups / "ledger-1.sqlite"
    old_umask = os.umask(0o022)  # an operator's shell: new files readable by all
    try:
        assert kiosk("gateway", "backup", "--db", db, "--to", str(copy)) == 0
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600  # residents' names and ID numbers
    assert sorted(p.name for p in backups.iterdir()) == ["ledger-1.sqlite"]  # nothing partial
    # a stopped gateway's ledger is left as it was: no -wal or -shm of the backup's beside it
    site = Path(parse_ledger_url(db).path or "").parent
    assert not [p for p in site.iterdir() if p.name.endswith(("-wal", "-shm"))]
    with open_ledger(f"sqlite:///{copy}", create=False) as ledger:
        ledger.check_schema()
        report = audit(ledger)
        assert report.ok and report.events > 0
        assert len(ledger.list_keys()) == 1
    out = capsys.readouterr().out
    assert f"{report.events} events, last seq {report.events}, head {report.head_hash}" in out
    assert "0 settlements" in out and "mode 0600" in out


def test_an_existing_file_is_never_replaced(
        db: str, backups: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kept = backups / "ledger.sqlite"
    kept.write_text("last night's backup")
    assert kiosk("gateway", "backup", "--db", db, "--to", str(kept)) == 1
    assert "already exists" in refusal(capsys)
    assert kept.read_text() == "last night's backup"
    dangling = backups / "link.sqlite"
    dangling.symlink_to(backups / "elsewhere.sqlite")  # would be followed by a plain open
    assert kiosk("gateway", "backup", "--db", db, "--to", str(dangling)) == 1
    assert "already exists" in refusal(capsys)
    assert sorted(p.name for p in backups.iterdir()) == ["ledger.sqlite", "link.sqlite"]


def test_a_postgresql_ledger_is_pointed_to_pg_dump(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    url = "postgresql://onestop:s3cret@dbhost/onestop?schema=hall_ledger&sslmode=require"
    assert kiosk("gateway", "backup", "--db", url, "--to", str(tmp_path / "x")) == 2
    err = refusal(capsys)
    assert (f"(umask 077 && pg_dump --format=custom --schema=hall_ledger --file={tmp_path / 'x'} "
            "'postgresql://onestop:***@dbhost/onestop?sslmode=require')") in err
    assert "s3cret" not in err  # `ps` and the journal are no place for it
    assert not (tmp_path / "x").exists()


@pytest.mark.skipif(not os.environ.get("ONESTOP_TEST_PG"), reason="needs ONESTOP_TEST_PG")
@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed")
def test_the_printed_pg_dump_line_makes_a_dump_only_its_owner_can_read(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The operator pastes the line as printed: the dump of a real ledger, with every
    resident's name and ID number, is mode 0600 whatever the shell's umask (022 here)."""
    dsn = os.environ["ONESTOP_TEST_PG"]
    schema = f"onestop_dump_{os.getpid()}"
    url = f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"
    target = tmp_path / "ledger.dump"
    try:
        with closing(open_ledger(url)) as ledger:
            ledger.init()
        assert kiosk("gateway", "seed-demo", "--db", url) == 0
        capsys.readouterr()
        assert kiosk("gateway", "backup", "--db", url, "--to", str(target)) == 2
        err = refusal(capsys)
        line = err[err.index("(umask"):err.index(") (one consistent") + 1]
        done = subprocess.run(["sh", "-c", f"umask 022 && {line}"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        listed = subprocess.run(["pg_restore", "--list", str(target)], capture_output=True,
                                text=True, timeout=60)
        assert "TABLE DATA" in listed.stdout and "persons" in listed.stdout
    finally:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_missing_ledger_or_folder_is_refused(
        db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"sqlite:///{tmp_path / 'nowhere.sqlite'}"
    assert kiosk("gateway", "backup", "--db", missing, "--to", str(tmp_path / "b.sqlite")) == 1
    assert "no ledger at" in refusal(capsys)
    assert not (tmp_path / "nowhere.sqlite").exists()  # not created by looking
    target = tmp_path / "no-such-folder" / "b.sqlite"
    assert kiosk("gateway", "backup", "--db", db, "--to", str(target)) == 1
    assert "does not exist" in refusal(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in any folder")
def test_a_folder_it_cannot_write_is_refused(
        db: str, backups: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backups.chmod(0o500)
    try:
        assert kiosk("gateway", "backup", "--db", db, "--to", str(backups / "b.sqlite")) == 1
    finally:
        backups.chmod(0o700)
    assert "not writable" in refusal(capsys)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give the ledger another owner")
def test_root_is_refused_on_a_ledger_of_the_gateways_user(
        db: str, backups: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger_file = tmp_path / "site" / "ledger.sqlite"
    os.chown(ledger_file, 4242, 4242)  # the gateway's user; -wal/-shm made by root lock it out
    assert kiosk("gateway", "backup", "--db", db, "--to", str(backups / "b.sqlite")) == 1
    assert "not as root" in refusal(capsys)
    assert list(backups.iterdir()) == []
    assert not [p for p in ledger_file.parent.iterdir() if p.name.endswith(("-wal", "-shm"))]


def test_a_copy_that_fails_the_audit_is_not_kept(
        db: str, backups: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(tmp_path / "site" / "ledger.sqlite") as edit:  # behind the ledger
        edit.execute("UPDATE persons SET name = 'someone else' WHERE psn_no = "
                     "(SELECT MIN(psn_no) FROM persons)")
    assert kiosk("gateway", "backup", "--db", db, "--to", str(backups / "b.sqlite")) == 1
    err = refusal(capsys)
    assert "does not pass the audit" in err and "nothing was kept" in err
    assert list(backups.iterdir()) == []


@pytest.mark.parametrize("version", ["1", "4", "5"])
def test_a_ledger_not_yet_upgraded_is_backed_up_as_it_is_before_the_upgrade(
        db: str, backups: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        version: str) -> None:
    """The README: take a backup before `kiosk gateway upgrade`, so with the new Onestop
    installed and the ledger still of the earlier schema. The copy stays of that schema (the
    earlier Onestop can serve it again), and is audited as upgraded, in a scratch copy."""
    from test_cli_ops import make_earlier

    with closing(open_ledger(db)) as ledger:
        make_earlier(ledger, version)
    copy = backups / "before-upgrade.sqlite"
    assert kiosk("gateway", "backup", "--db", db, "--to", str(copy)) == 0
    assert "audit OK" in capsys.readouterr().out
    assert [p.name for p in backups.iterdir()] == [copy.name]  # no scratch copy left
    for ledger_file in (tmp_path / "site" / "ledger.sqlite", copy):  # neither upgraded
        with closing(sqlite3.connect(ledger_file)) as read:
            assert read.execute("SELECT value FROM ledger_meta WHERE name = "
                                "'schema_version'").fetchone() == (version,)
    assert kiosk("gateway", "upgrade", "--db", f"sqlite:///{copy}") == 0
    assert kiosk("gateway", "audit", "--db", f"sqlite:///{copy}") == 0

    with sqlite3.connect(tmp_path / "site" / "ledger.sqlite") as edit:  # behind the ledger
        edit.execute("UPDATE persons SET name = 'someone else' WHERE psn_no = "
                     "(SELECT MIN(psn_no) FROM persons)")
    capsys.readouterr()
    assert kiosk("gateway", "backup", "--db", db, "--to", str(backups / "b.sqlite")) == 1
    err = refusal(capsys)
    assert "does not pass the audit" in err and "nothing was kept" in err
    assert ".partial" not in err and ".scratch" not in err
    assert not [p.name for p in backups.iterdir() if not p.name.startswith(copy.name)]


def _limit_file_size(limit: int):
    def apply() -> None:  # runs in the child, before exec: a write past it fails (EFBIG)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return apply


def test_a_full_disk_during_the_copy_leaves_nothing_at_the_target(
        db: str, backups: Path, tmp_path: Path) -> None:
    ledger_file = tmp_path / "site" / "ledger.sqlite"
    before = ledger_file.read_bytes()
    room = ledger_file.stat().st_size // 2  # the disk fills half-way through the copy
    done = subprocess.run(
        [sys.executable, "-m", "onestop.host.cli", "gateway", "backup", "--db", db,
         "--to", str(backups / "b.sqlite")],
        capture_output=True, text=True, timeout=60, preexec_fn=_limit_file_size(room))
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "is its disk full?" in done.stderr and str(backups) in done.stderr
    assert list(backups.iterdir()) == []  # no half file, under any name
    assert ledger_file.read_bytes() == before
    with open_ledger(db, create=False) as ledger:
        assert audit(ledger).ok
