"""A ledger in a folder its user may not write (a service account without the right, a read-only
mount): the command says so in one sentence, exits non-zero and changes nothing.

SQLite writes its -wal and -shm files beside the ledger even to read it, so a read-only folder
stops reads too. File modes do not bind root, and the tests often run as root (CI, containers):
then the folder is made immutable (`chattr +i`), which stops root as a read-only mount does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from onestop.host.gateway.audit import audit
from onestop.host.gateway.ledger import open_ledger


def kiosk(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "onestop.host.cli", *argv],
                          capture_output=True, text=True, timeout=60)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` not writable by this process's user while the block runs."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root, and there is no chattr to make a folder read-only for root")
    made = subprocess.run([chattr, "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"running as root, and this file system cannot make {folder} immutable: "
                    f"{made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def one_sentence(stderr: str) -> str:
    assert stderr.count("\n") == 1, stderr  # no traceback
    return stderr


def says_read_only(stderr: str, folder: Path) -> bool:
    return (f"its folder {folder} is read-only" in stderr
            and "SQLite writes its -wal and -shm files beside the ledger" in stderr)


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A gateway's folder: its ledger and its key, as `kiosk gateway init` makes them."""
    folder = tmp_path / "site"
    folder.mkdir()
    ledger = folder / "ledger.sqlite"
    made = kiosk("gateway", "init", "--db", f"sqlite:///{ledger}")
    assert made.returncode == 0, made.stderr
    return folder, ledger, folder / "gateway.key"


def contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_serve_will_not_start_on_a_ledger_in_a_read_only_folder(
        site: tuple[Path, Path, Path]) -> None:
    folder, ledger, key = site
    before = contents(folder)
    with read_only(folder):
        served = kiosk("gateway", "serve", "--db", f"sqlite:///{ledger}", "--key", str(key),
                       "--listen", "127.0.0.1:0")

    assert served.returncode == 2  # cannot start (a restart would not mend it)
    assert says_read_only(one_sentence(served.stderr), folder)
    assert contents(folder) == before
    with open_ledger(f"sqlite:///{ledger}", create=False) as intact:
        assert audit(intact).ok


def test_reading_a_ledger_in_a_read_only_folder_says_to_copy_it_first(
        site: tuple[Path, Path, Path]) -> None:
    folder, ledger, _key = site
    before = contents(folder)
    with read_only(folder):
        listed = kiosk("keys", "list", "--db", str(ledger))

    assert listed.returncode == 1
    said = one_sentence(listed.stderr)
    assert says_read_only(said, folder)
    assert "copy a read-only ledger somewhere writable first" in said
    assert contents(folder) == before


def test_init_in_a_read_only_folder_says_so_and_makes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    with read_only(folder):
        made = kiosk("gateway", "init", "--db", f"sqlite:///{folder / 'ledger.sqlite'}")

    assert made.returncode == 1
    assert says_read_only(one_sentence(made.stderr), folder)
    assert list(folder.iterdir()) == []
