"""An online copy of an SQLite ledger (`kiosk gateway backup`), taken while gateways serve it.

The copy is one read transaction of SQLite's backup API, all pages in one step. On a WAL
ledger a reader never blocks a writer: settlements go on committing (to the WAL) throughout,
and the copy is the ledger as of the moment that read began. Copied in several steps instead,
SQLite would restart the copy each time another process commits between two steps, so under
load it might never finish. `VACUUM INTO` would also be one read transaction, but it rebuilds
every table and index, which takes several times as long; the read transaction's length is what
matters here, as the WAL cannot be checkpointed past it and grows until it ends.

The copy is written under a temporary name in the target's folder (mode 0600 from the start:
it holds residents' names and ID numbers), checked by `verify` (the audit), flushed to disk,
and only then linked under its final name, which it never replaces; the folder is flushed
too. A copy that fails half-way (a full disk) or does not verify leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

BUSY_TIMEOUT_S = 30.0  # as the gateway's: a checkpoint holding a lock a moment is waited for
# what SQLite may make beside a database file, to be removed with a copy that failed
SIDE_FILES = ("-wal", "-shm", "-journal", "-writer.lock")


class BackupError(Exception):
    """Why there is no backup, in one line; nothing was left at the target."""


def backup_sqlite(source: Path, target: Path, verify: Callable[[Path], None]) -> int:
    """Copy the SQLite ledger `source` to the new file `target`; returns its size in bytes.

    `verify(path)` checks the copy under its temporary name and raises BackupError if it must
    not be kept. Raises BackupError for anything that stops the copy."""
    _check_source(source)
    folder = _check_target(target)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial",
                                         dir=folder)  # mode 0600 whatever the umask
    except OSError as exc:
        raise BackupError(f"cannot write in {folder}: {exc.strerror}") from None
    os.close(fd)
    partial = Path(temporary)
    try:
        _copy(source, partial)
        verify(partial)
        _flush(partial)
        _link_new(partial, target)
        _flush(folder)
    except BaseException:
        _remove(partial)
        raise
    _remove(partial)  # the name it was written under; the copy stays as `target`
    return target.stat().st_size


def _check_source(source: Path) -> None:
    if not source.is_file():
        from .config import relative_hint

        raise BackupError(f"no ledger at {source}{relative_hint(source)}")
    owner = source.stat().st_uid
    if os.geteuid() == 0 and owner != 0:
        # SQLite makes -wal and -shm files beside the ledger if the gateway is stopped;
        # root's would lock the gateway's user out of its own ledger
        raise BackupError(f"run the backup as the ledger's owner (uid {owner}), not as root: "
                          f"sudo -u '#{owner}' kiosk gateway backup ...")


def _check_target(target: Path) -> Path:
    if os.path.lexists(target):
        what = "a folder" if target.is_dir() else "a file"
        raise BackupError(f"{target} already exists ({what}); a backup never replaces "
                          "anything: give a new file name")
    folder = target.parent
    if not folder.is_dir():
        raise BackupError(f"the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BackupError(f"the folder {folder} is not writable by this user")
    return folder


def _copy(source: Path, partial: Path) -> None:
    try:
        with contextlib.closing(sqlite3.connect(
                source, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as reader, \
                contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as copy:
            reader.execute("PRAGMA query_only=ON")  # this connection reads, whatever happens
            # No journal for the copy (a failed copy is deleted whole) and no flushes while
            # it is written: it is flushed once, when complete.
            copy.execute("PRAGMA journal_mode=OFF")
            copy.execute("PRAGMA synchronous=OFF")
            reader.backup(copy, pages=-1)  # every page in one step: one read transaction
    except sqlite3.Error as exc:
        raise BackupError(_copy_failure(str(exc), source, partial.parent)) from None


@contextlib.contextmanager
def scratch_copy(ledger: Path) -> Iterator[Path]:
    """A second copy of `ledger` beside it, for work that must not touch it (auditing an
    earlier schema's ledger as upgraded); deleted afterwards, side files too."""
    fd, name = tempfile.mkstemp(prefix=f".{ledger.name}.", suffix=".scratch",
                                dir=ledger.parent)
    os.close(fd)
    scratch = Path(name)
    try:
        _copy(ledger, scratch)
        yield scratch
    finally:
        _remove(scratch)


def _copy_failure(text: str, source: Path, folder: Path) -> str:
    if "disk is full" in text or "disk I/O error" in text:
        return (f"writing the copy in {folder} failed ({text}): is its disk full? nothing "
                "was kept; the ledger is untouched")
    if "not a database" in text:
        return f"{source} is not an SQLite database"
    return f"copying {source} failed ({text}); nothing was kept"


def _flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        raise BackupError(f"flushing {path} to disk failed: {exc.strerror}") from None
    finally:
        os.close(fd)


def _link_new(partial: Path, target: Path) -> None:
    """`partial` also named `target`, which must not exist: a link fails if it does, where a
    rename would replace a file made meanwhile (a second backup run at the same minute)."""
    try:
        os.link(partial, target)
    except FileExistsError:
        raise BackupError(f"{target} was made while the copy was taken; a backup never "
                          "replaces anything: give a new file name") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise BackupError(f"cannot name the copy {target}: {exc.strerror}") from None
        # a filesystem without hard links (a FAT-formatted USB disk): checked, then renamed
        if os.path.lexists(target):
            raise BackupError(f"{target} was made while the copy was taken") from None
        os.rename(partial, target)


def _remove(partial: Path) -> None:
    for name in (str(partial), *(f"{partial}{suffix}" for suffix in SIDE_FILES)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
