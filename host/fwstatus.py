"""`kiosk fw status`: what a kiosk holds, for the technician called to one that will not settle.

    kiosk fw status --board unix --dir FLASH [--db LEDGER_URL] [--json]
    kiosk fw status --board esp32s3|rp2040 --port PORT [--db LEDGER_URL] [--json]

The firmware's own code reads its flash (firmware/app/status.py, run on the kiosk as
provisioning is): its id and public key, the gateway key it trusts now (after any rotation),
its request counter, and the settlements its journal still holds open. Nothing is written. A
board is put in service mode for it, so its kiosk restarts afterwards.

With --db the kiosk is set beside the gateway's ledger, which is where most "it will not
settle" calls end: a kiosk not enrolled or enrolled with another key (provisioned again), a
counter behind the ledger's (every request refused as a replay: a counter file restored from an
old copy), a trusted gateway key that was revoked or superseded, a settlement left open on the
kiosk that the ledger holds (or not). Exit status: 0 nothing wrong, 1 a problem listed, 2 the
kiosk or the ledger could not be read.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onestop.host.fwtools import (
    FirmwareToolError,
    _last_line,
    _mpremote,
    check_port,
    firmware_env,
    flash_directory,
    service_mode,
)
from onestop.host.mpy import micropython_binary
from onestop.host.settlement.money import format_yuan

COULD_NOT_CHECK = 2  # exit status: the kiosk or the ledger could not be read

STATE_WORDS = {
    "pending": "confirmed, not known to be settled (in doubt)",
    "settled": "settled, receipt not printed",
    "printed": "receipt printed, the gateway not yet told",
}


@dataclass
class Report:
    status: dict[str, Any]  # app/status.py's line
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ledger: dict[str, Any] = field(default_factory=dict)  # what the ledger says, for --json


def status_code(flash_dir: str) -> str:
    return f"import app.status\napp.status.run({flash_dir!r})\n"


def parse_status(output: str) -> dict[str, Any]:
    """app/status.py's one JSON line."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{") and ('"kiosk_id"' in line or '"error"' in line):
            status = json.loads(line)
            if "error" in status:
                raise FirmwareToolError(f"the kiosk cannot be read: {status['error']}")
            return status
    raise FirmwareToolError(f"the kiosk printed no status: {_last_line(output)}")


def read_unix(flash_dir: str) -> dict[str, Any]:
    """A unix kiosk's status, read by MicroPython from its flash directory (a running kiosk
    may keep running: its files are replaced whole, and only read here)."""
    flash = flash_directory(flash_dir, must_exist=True)
    result = subprocess.run(
        [micropython_binary(), "-X", "heapsize=1M", "-c", status_code(str(flash))],
        env=firmware_env(), capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise FirmwareToolError(f"reading the kiosk failed: "
                                f"{_last_line(result.stderr or result.stdout)}")
    return parse_status(result.stdout)


def read_board(port: str) -> dict[str, Any]:
    """A board's status, read in service mode (its kiosk restarts afterwards)."""
    check_port(port)
    with service_mode(port):
        return parse_status(_mpremote(port, "exec", status_code("")))


# ---------------------------------------------------------------------------- beside the ledger
def compare(status: dict[str, Any], ledger: Any) -> Report:
    report = Report(status)
    if "key_error" in status:
        report.problems.append(f"the kiosk's key cannot be used: {status['key_error']}")
    free, needs = status.get("flash_free"), status.get("flash_needs")
    if free is not None and needs is not None and free < needs:
        report.problems.append(f"the kiosk's flash has {free:,} bytes free, under the "
                               f"{needs:,} a visit needs: it stays out of service until room "
                               "is made on it")
    last = None if ledger is None else ledger.last_counters().get(status["kiosk_id"])
    if "counter_error" in status:
        floor = ("N, N its last counter at the gateway (`kiosk keys list --db URL`, or this "
                 "command with --db)" if ledger is None else
                 f"{last} (the gateway's last)" if last is not None else
                 f"N: this ledger has no counter of kiosk {status['kiosk_id']} (is it the "
                 "kiosk's ledger?)")
        report.problems.append(f"{status['counter_error']}: provision again with "
                               f"--counter-above {floor}")
    if ledger is None:
        return report
    kiosk = status["kiosk_id"]
    _check_enrolment(report, kiosk, status.get("public_key"), ledger)
    _check_counter(report, status.get("counter"), last)
    _check_gateway_key(report, status, ledger)
    signed_in = ledger.sign_ins().get(kiosk)
    report.ledger["signed_in_at"] = signed_in and signed_in.at
    if signed_in is None:
        report.notes.append("the ledger has no sign-in of this kiosk: it never reached a "
                            "gateway (its address, the network, or one of the above)")
    else:
        at = datetime.datetime.fromtimestamp(signed_in.at).astimezone()
        report.notes.append(f"last signed in at {at:%Y-%m-%d %H:%M %z} ({signed_in.fw} on "
                            f"{signed_in.board})")
    _check_open(report, status["open"], ledger)
    return report


def _check_enrolment(report: Report, kiosk: str, public_key: str | None, ledger: Any) -> None:
    record = ledger.get_key(kiosk)
    report.ledger["enrolled"] = None if record is None else record.status
    enroll = f"kiosk gateway enroll --db URL --kiosk-id {kiosk} --public-key {public_key}"
    if record is None or record.role != "kiosk":
        other = public_key and ledger.key_with_public_key(bytes.fromhex(public_key))
        if not other or other.role != "kiosk":
            report.problems.append(f"kiosk {kiosk} is not enrolled in this ledger: {enroll}")
        elif other.status == "active":  # provisioned again under another id: enroll refuses
            report.problems.append(
                f"this kiosk's key is enrolled as kiosk {other.kid}, not {kiosk}: provision "
                f"it again with --kiosk-id {other.kid}")
        else:
            report.problems.append(
                f"this kiosk's key was kiosk {other.kid}'s, which is {other.status}: remove "
                "kiosk.key from its flash and provision it again (a new key), then enrol the "
                "new key under a new kiosk id")
    elif public_key is not None and record.public_key.hex() != public_key:
        report.problems.append(
            f"kiosk {kiosk} is enrolled with another public key ({record.public_key.hex()[:16]}"
            f"...; this kiosk's is {public_key[:16]}...): it was provisioned again with a new "
            "key. Revoke the old one (kiosk gateway revoke) and enrol the new key under a new "
            "kiosk id, as a key is never replaced under its id")
    elif record.status != "active":
        report.problems.append(f"kiosk {kiosk} is {record.status} in this ledger: every "
                               "request is refused")


def _check_counter(report: Report, high: int | None, last: int | None) -> None:
    report.ledger["last_counter"] = last
    if high is not None and last is not None and last > high:
        report.problems.append(
            f"the kiosk's counter ({high}) is behind the last the gateway saw ({last}): its "
            "requests are refused as replays (a counter file restored from an old copy?). "
            f"Provision again with --counter-above {last}")


def _check_gateway_key(report: Report, status: dict[str, Any], ledger: Any) -> None:
    kid, serial = status["gateway_kid"], status["gateway_serial"]
    record = ledger.get_key(kid)
    certs = ledger.gateway_certs()
    report.ledger["gateway_key"] = None if record is None else record.status
    if record is None or record.role != "gateway":
        report.problems.append(f"the kiosk trusts gateway key {kid}, which this ledger does "
                               "not hold: provision it with the ledger's gateway key")
        return
    if record.public_key.hex() != status["gateway_public_key"]:
        report.problems.append(f"the kiosk trusts another public key under gateway key {kid}: "
                               "provision it with the ledger's")
        return
    newest = max(certs.values(), key=lambda c: c.serial) if certs else None
    moves = (newest is not None and newest.serial > serial
             and status.get("authority_kid") == newest.authority)
    if record.status != "active":
        if moves:
            report.notes.append(f"gateway key {kid} was revoked; the kiosk moves to "
                                f"{newest.kid} at its next sign-in (certified, serial "
                                f"{newest.serial})")
        else:
            report.problems.append(f"the kiosk trusts gateway key {kid}, which was revoked, "
                                   "and has no authority to move by: provision it with the "
                                   "current gateway key (--gateway-kid, --gateway-public-key, "
                                   "--gateway-serial)")
    elif newest is not None and newest.serial > serial:
        if moves:
            report.notes.append(f"the kiosk moves to gateway key {newest.kid} (serial "
                                f"{newest.serial}) at its next sign-in")
        else:
            report.problems.append(
                f"gateway key {newest.kid} (serial {newest.serial}) supersedes {kid}, and the "
                "kiosk was not provisioned with its authority "
                f"({newest.authority}): provision it with that key or with the authority")


def _check_open(report: Report, entries: list[dict[str, Any]], ledger: Any) -> None:
    answers = report.ledger["open"] = {}
    for entry in entries:
        settlement = ledger.get_settlement(entry["txn_id"])
        held = None if settlement is None else settlement.status
        answers[entry["txn_id"]] = held
        if entry["state"] == "pending" and held is None:
            report.notes.append(f"{entry['txn_id']}: not in the ledger; the kiosk settles "
                                "nothing for it and tells the resident so once it can ask")


# ---------------------------------------------------------------------------- output
def format_report(report: Report, where: str) -> str:
    s = report.status
    gateway = s["gateway"]
    address = (f"tcp {gateway.get('host')}:{gateway.get('port')}" if gateway["kind"] == "tcp"
               else f"serial {gateway.get('path') or gateway.get('uart')}")
    lines = [
        f"kiosk {s['kiosk_id']} ({s['board']}, {where})" + (f", {s['hall']}" if s["hall"]
                                                             else ""),
        f"  public key       {s.get('public_key', 'UNUSABLE')}",
        f"  gateway          {address}",
        f"  trusts           gateway key {s['gateway_kid']}, serial {s['gateway_serial']}"
        + (f", moves by authority {s['authority_kid']}" if s["authority_kid"] else
           ", no authority (a new key needs a technician)"),
        f"  counter          {s['counter'] if 'counter' in s else 'DAMAGED'}"
        + ("" if report.ledger.get("last_counter") is None else
           f" (the gateway's last: {report.ledger['last_counter']})"),
    ]
    if s["open"]:
        lines.append(f"  open in journal  {len(s['open'])}")
        for e in s["open"]:
            held = report.ledger.get("open", {}).get(e["txn_id"], "")
            lines.append(f"    {e['txn_id']}  {STATE_WORDS.get(e['state'], e['state'])}; "
                         f"resident pays {format_yuan(e['cash'])}"
                         + (f"; ledger: {held or 'not there'}" if "open" in report.ledger
                            else ""))
    else:
        lines.append("  open in journal  none")
    if s.get("flash_free") is not None:
        lines.append(f"  flash            {s['flash_free']:,} bytes free")
    if s.get("journal_ignored"):
        lines.append(f"  journal          {s['journal_ignored']} torn bytes at its end (a "
                     "power cut while writing): cut off at the next write")
    lines += [f"PROBLEM: {p}" for p in report.problems]
    lines += [f"note: {n}" for n in report.notes]
    if not report.problems:
        lines.append("nothing wrong found" + ("" if report.ledger else
                                              " (give --db to set it beside the ledger)"))
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    if args.board == "unix":
        if not args.dir or args.port:
            raise FirmwareToolError("--board unix needs --dir FLASH_DIR (not --port)")
        status = read_unix(args.dir)
        where = f"flash directory {Path(args.dir).resolve()}"
    else:
        if not args.port or args.dir:
            raise FirmwareToolError(f"--board {args.board} needs --port (not --dir)")
        status = read_board(args.port)
        where = f"board on {args.port}"
    if args.db is None:
        report = compare(status, None)
    else:
        from contextlib import closing

        from onestop.host.gateway.ledger import LedgerError, open_ledger

        try:
            with closing(open_ledger(args.db, create=False)) as ledger:
                ledger.check_schema()
                report = compare(status, ledger)
        except LedgerError as exc:
            raise FirmwareToolError(f"the ledger: {exc}") from None
    if args.json:
        print(json.dumps({"kiosk": status, "ledger": report.ledger or None,
                          "problems": report.problems, "notes": report.notes}, indent=2,
                         ensure_ascii=False))
    else:
        print(format_report(report, where))
    return 1 if report.problems else 0


def register(commands: argparse._SubParsersAction, guarded: Any, boards: tuple[str, ...]) -> None:
    status = commands.add_parser(
        "status", help="what a kiosk holds (key, gateway key, counter, open settlements), "
        "beside the ledger with --db",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None)
    status.add_argument("--board", choices=boards, required=True)
    status.add_argument("--dir", metavar="FLASH_DIR", help="unix: the kiosk's flash directory")
    status.add_argument("--port", help="a board: its USB serial port (its kiosk restarts)")
    status.add_argument("--db", metavar="LEDGER_URL",
                        help="the gateway's ledger, to set the kiosk beside it")
    status.add_argument("--json", action="store_true", help="print JSON")
    # 2, not 1: a script tells "could not look" from "looked and found a problem"
    status.set_defaults(func=guarded(cmd_status, COULD_NOT_CHECK))
