"""deploy/onestop-gateway.service, the systemd unit the README gives operators: its command
must stay one `kiosk gateway serve` accepts, as the options change."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from onestop.host.cli import build_parser

UNIT = Path(__file__).parents[3] / "deploy" / "onestop-gateway.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_the_units_command_is_one_serve_accepts() -> None:
    command = shlex.split(unit()["Service"]["ExecStart"])
    assert command[0].endswith("/kiosk") and command[1:3] == ["gateway", "serve"]
    args = build_parser().parse_args(command[1:])  # exits (SystemExit) on an unknown option
    assert args.db.startswith("sqlite:////var/lib/onestop/")
    assert args.workers == 2


def test_the_unit_keeps_the_ledger_private_and_does_not_restart_a_refusal() -> None:
    service = unit()["Service"]
    assert service["User"] != "root" and service["UMask"] == "0077"
    assert service["ReadWritePaths"] == "/var/lib/onestop"
    assert service["RestartPreventExitStatus"] == "2"  # serve's refusals to start

