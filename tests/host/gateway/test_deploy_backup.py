"""deploy/onestop-backup.service and .timer: the nightly backup the README gives operators. Its
command, as systemd and then sh expand it, must stay one `kiosk gateway backup` accepts, of the
ledger the gateway's unit serves, by the gateway's user, into a dated new file."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
from pathlib import Path

from onestop.host.cli import build_parser

DEPLOY = Path(__file__).parents[3] / "deploy"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((DEPLOY / name).read_text(encoding="utf-8"))
    return parser


def systemd_unescaped(line: str) -> str:
    """What systemd passes on of `line`: %% is a %, $$ a $ (no specifier or variable here)."""
    assert not re.search(r"%[^%]|\$[^$]", line.replace("%%", "").replace("$$", ""))
    return line.replace("%%", "%").replace("$$", "$")


def test_the_backup_command_is_one_backup_accepts_with_a_dated_name() -> None:
    command = shlex.split(systemd_unescaped(unit("onestop-backup.service")["Service"]
                                            ["ExecStart"]))
    assert command[:2] == ["/bin/sh", "-c"]
    script = command[2]
    kiosk = "/opt/onestop/bin/kiosk"
    assert script.startswith(f"exec {kiosk} gateway backup ")
    # sh expands the date; printf stands in for kiosk, one argument a line
    shown = subprocess.run(["sh", "-c", script.replace(f"exec {kiosk}", "printf '%s\\n'")],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    args = build_parser().parse_args(shown)  # exits (SystemExit) on an unknown option
    assert shown[:2] == ["gateway", "backup"]
    gateway = shlex.split(unit("onestop-gateway.service")["Service"]["ExecStart"])
    assert args.db == gateway[gateway.index("--db") + 1]  # the ledger the gateway serves
    assert re.fullmatch(r"/var/lib/onestop-backup/ledger-\d{8}-\d{6}\.sqlite", str(args.to))


def test_the_backup_runs_as_the_gateways_user_and_may_read_its_ledger() -> None:
    backup, gateway = unit("onestop-backup.service")["Service"], \
        unit("onestop-gateway.service")["Service"]
    assert (backup["User"], backup["Group"]) == (gateway["User"], gateway["Group"])
    assert backup["Type"] == "oneshot" and backup["UMask"] == "0077"
    assert backup["ReadWritePaths"] == gateway["ReadWritePaths"]  # SQLite's -shm file there
    assert backup["StateDirectory"] == "onestop-backup"  # where --to writes
    prune = shlex.split(backup["ExecStartPost"])  # only after a backup that succeeded
    assert prune[:2] == ["/usr/bin/find", "/var/lib/onestop-backup"]
    assert prune[prune.index("-name") + 1] == "ledger-*.sqlite"


def test_the_timer_starts_it_nightly_and_catches_up_a_missed_night() -> None:
    timer = unit("onestop-backup.timer")["Timer"]
    assert re.fullmatch(r"\*-\*-\* 0[0-5]:\d\d:00", timer["OnCalendar"])  # halls closed
    assert timer["Persistent"] == "true"
    assert unit("onestop-backup.timer")["Install"]["WantedBy"] == "timers.target"
