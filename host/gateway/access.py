"""Who looked at whose settlements. A resident's settlements are personal data: each `kiosk
gateway lookup` is recorded in the ledger's audit chain (a `looked_up` event: the operator, what
was asked, whose settlements were shown) before anything is shown, misses included, and a lookup
that cannot be recorded shows nothing. `kiosk gateway lookups` lists them, for the resident who
asks who looked at their data and for the operator's own checks. Being in the chain, a record
cannot be removed or edited without `kiosk gateway audit` saying so.
"""

from __future__ import annotations

import datetime
import getpass
import os
import pwd
import re
import socket
from typing import Any

from .ledger.base import Ledger, LedgerError
from .ledger.events import lookup_data
from .masking import mask_id
from .receipt_check import china_time, shown

OPERATOR = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
ID_NUMBER_RUN = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def operator_name(given: str | None) -> str:
    """--operator, else the login name (a counter whose clerks share one login names each
    clerk with --operator). ValueError if it is no name."""
    name = given if given is not None else _login()
    name = name.strip()
    if not OPERATOR.fullmatch(name):
        raise ValueError("--operator: a name of 1 to 64 characters, no control characters")
    return name


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        return "unknown"


def account() -> str:
    """The account this command runs under, user@host: the user of the process's uid (not
    $USER or $LOGNAME, which whoever runs it sets), on this machine (several counters may
    share one PostgreSQL ledger)."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # no passwd entry for this uid (a container)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def record(ledger: Ledger, operator: str, asked: str, persons: list[str], count: int) -> None:
    """Record one lookup, with the account it ran under, durably, before it is shown;
    LedgerError (saying that nothing is shown) if the ledger cannot. Anything in `asked`
    shaped like an ID number is recorded masked: the chain keeps it for good."""
    asked = ID_NUMBER_RUN.sub(lambda found: mask_id(found.group()), asked)
    try:
        ledger.record_lookup(lookup_data(operator, account(), asked, persons, count))
    except LedgerError as exc:
        raise LedgerError(f"the lookup could not be recorded ({exc}); nothing is shown: "
                          "a resident's settlements are shown only to a recorded lookup"
                          ) from None


def recent(ledger: Ledger, days: int, today: datetime.date,
           psn_no: str | None = None) -> list[dict[str, Any]]:
    """The lookups of the last `days` days (China time), newest first; only those that showed
    resident `psn_no`'s settlements if given."""
    since = (today - datetime.timedelta(days=days - 1)).isoformat()
    chosen = [e for e in ledger.lookups() if china_time(e["at"])[:10] >= since
              and (psn_no is None or psn_no in e["persons"])]
    return chosen[::-1]


def format_lookups(records: list[dict[str, Any]], days: int) -> str:
    if not records:
        return f"no lookups in the last {days} days"
    lines = [f"lookups in the last {days} days, newest first: {len(records)}"]
    for e in records:
        whose = ", ".join(shown(p) for p in e["persons"])
        showed = (f"showed {whose}: {e['shown']} settlement{'' if e['shown'] == 1 else 's'}"
                  if whose else "found nobody")
        who = shown(e["operator"])
        if "account" in e:  # recorded since lookups carry it
            who += f" ({shown(e['account'])})"
        lines.append(f"  {china_time(e['at'])} China time  {who}  asked "
                     f"{shown(e['asked'])}  {showed}")
    return "\n".join(lines)
