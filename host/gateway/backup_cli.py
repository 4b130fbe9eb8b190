"""`kiosk gateway backup --db URL --to FILE`: a verified copy of an SQLite ledger, taken while
the gateway serves (backup.py); a PostgreSQL ledger is pointed to PostgreSQL's own tools.

Exit status: 0 the copy is at FILE and audits clean; 1 no copy (the message says why; nothing
is left at FILE); 2 a PostgreSQL ledger (not copied by this command).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .cli import DB_HELP, CommandError, _guarded

if TYPE_CHECKING:
    from .audit import AuditReport

PG_DUMP_EXIT = 2


def register_backup(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "backup",
        help="copy an SQLite ledger while the gateway serves, and audit the copy",
        description="Copy the SQLite ledger, consistent as of one moment, while gateways go on "
        "settling; write it to FILE (mode 0600; an existing file is never replaced), audit "
        "the copy and keep it only if it verifies. The copy is a ledger as it stands: serve "
        "with --db sqlite:///FILE, or copy it back while the gateway is stopped. A PostgreSQL "
        "ledger is backed up with pg_dump or the server's own backups.",
    )
    parser.add_argument("--db", required=True, metavar="URL", help=DB_HELP)
    parser.add_argument("--to", required=True, type=Path, metavar="FILE",
                        help="the new file for the copy (its folder must exist)")
    parser.set_defaults(func=_guarded("gateway backup", gateway_backup))


def gateway_backup(args: argparse.Namespace) -> int:
    from .backup import BackupError, backup_sqlite
    from .config import parse_ledger_url

    location = parse_ledger_url(args.db)
    if location.path is None:
        advice = pg_dump_advice(location.dsn or "", location.schema, args.to)
        print(f"kiosk gateway backup: {advice}", file=sys.stderr)
        return PG_DUMP_EXIT
    audited: list[AuditReport] = []
    times = [time.monotonic()]

    def verify(copy: Path) -> None:
        times.append(time.monotonic())  # copied; the audit starts
        audited.append(_verified(copy))
        times.append(time.monotonic())

    try:
        size = backup_sqlite(location.path, args.to, verify)
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    report = audited[0]
    print(f"backup {args.to}: {size / 1e6:.1f} MB, mode 0600, copied in "
          f"{times[1] - times[0]:.1f} s, audited in {times[2] - times[1]:.1f} s; to restore, "
          f"serve --db sqlite:///{args.to.absolute()} with the gateway's --key")
    print(f"audit OK: {report.settlements} settlements ({report.cancelled} cancelled), "
          f"{report.events} events, last seq {report.events}, head {report.head_hash}")
    return 0


def _verified(copy: Path) -> AuditReport:
    """The copy's audit report; BackupError unless it verifies (the project's own audit).

    A ledger of an earlier schema, not yet upgraded, is copied as it is (the backup to take
    before `kiosk gateway upgrade`, and to go back to with the earlier Onestop), and audited
    in a scratch copy brought up to date, deleted afterwards."""
    from contextlib import closing

    from .audit import audit
    from .backup import BackupError, scratch_copy
    from .ledger import LedgerError, open_ledger
    from .ledger.schema import UPGRADABLE_VERSIONS

    scratches: list[str] = []
    try:
        with closing(open_ledger(f"sqlite:///{copy}", create=False)) as ledger:
            earlier = ledger.schema_version() in UPGRADABLE_VERSIONS
            if not earlier:
                ledger.check_schema()
                return _passed(audit(ledger))
        with scratch_copy(copy) as scratch:
            scratches.append(str(scratch))
            with closing(open_ledger(f"sqlite:///{scratch}", create=False)) as upgraded:
                upgraded.upgrade()
                return _passed(audit(upgraded))
    except LedgerError as exc:
        # the copies' temporary names mean nothing to the operator
        told = str(exc)
        for name in (*scratches, str(copy)):
            told = told.replace(name, "the copy")
        raise BackupError(f"the copy cannot be audited ({told}); nothing was kept") from None


def _passed(report: AuditReport) -> AuditReport:
    from .backup import BackupError

    if not report.ok:
        raise BackupError(
            f"the copy does not pass the audit ({len(report.problems)} problem(s), first: "
            f"{report.problems[0]}); nothing was kept: run `kiosk gateway audit` on the ledger")
    return report


def pg_dump_advice(dsn: str, schema: str | None, target: Path) -> str:
    """The pg_dump command for the ledger at `dsn` (its ?schema= taken out), password masked."""
    from .config import describe

    only = f" --schema={schema}" if schema else ""
    # umask: the dump holds every resident's name and ID number; pg_dump writes it with the
    # shell's mask (commonly readable by every user of the host)
    return ("a PostgreSQL ledger is backed up by PostgreSQL, not by this command: "
            f"(umask 077 && pg_dump --format=custom{only} --file={shlex.quote(str(target))} "
            f"'{describe(dsn)}') "
            "(one consistent snapshot while gateways serve, readable by its owner only: it "
            "holds residents' names and ID numbers; the password from ~/.pgpass), "
            "or the server's own backups (pg_basebackup, WAL archiving); restore with "
            "pg_restore, then check it with `kiosk gateway audit`")
