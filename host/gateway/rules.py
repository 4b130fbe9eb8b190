"""What a gateway settles by, and whether the other gateways on its ledger settle by the same.

Gateways sharing one ledger must settle a resident alike: two policy files of one name with
different figures, or another --timezone (the settlement day and year), would each sign
settlements the ledger takes as equals, and nothing else would notice. Each gateway records
its rules in the ledger (policy name -> digest of the policy's content, time zone) with when it
last did, every serve_cli.KEY_CHECK_S; and compares them with those of the gateways that said
so within LIVE_S. A difference is a warning for the operator (`rules_differ`), not a refusal:
a rolling update of the policy passes through it.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from onestop.host.gateway.ledger.base import Ledger

LIVE_S = 60  # a gateway that has not said what it settles by for this long is not serving
FORGET_S = 7 * 24 * 3600  # ...and its record is removed after this long


def rules_of(policy_digests: dict[str, str], timezone: str) -> dict[str, Any]:
    """`policy_digests`: name -> digest, as the handlers computed them (Handlers.policy_digests)."""
    return {"policies": dict(policy_digests), "timezone": timezone}


def serving_name(gateway_kid: str, process: int) -> str:
    """This gateway's name among the ledger's serving gateways: its key, host and process
    (the supervisor's, which its --workers share). Gateways on one host with one key (a
    service and a hand-started one, say) are two, and compared like any others."""
    return f"{gateway_kid}@{socket.gethostname()}/{process}"


def differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """How another gateway's rules differ from ours, in words; [] if they agree."""
    found = []
    their_policies = theirs.get("policies", {})
    for name, digest in sorted(ours["policies"].items()):
        other = their_policies.get(name)
        if other is not None and other != digest:
            found.append(f"policy {name} is {digest} here, {other} there")
    if theirs.get("timezone") != ours["timezone"]:
        found.append(f"time zone {ours['timezone']} here, {theirs.get('timezone')} there")
    return found


def record_and_compare(ledger: Ledger, name: str, rules: dict[str, Any],
                       now: int) -> dict[str, list[str]]:
    """Record our rules; the live gateways (by name) whose rules differ, and how. Records
    silent for FORGET_S (gateways long stopped: a name per process) are removed."""
    ledger.record_serving(name, json.dumps(rules, sort_keys=True), now)
    differ = {}
    records = ledger.serving_records()
    gone = [other for other, (_, seen) in records.items() if now - seen > FORGET_S]
    if gone:
        ledger.forget_serving(gone)
    for other, (value, seen) in records.items():
        if other == name or now - seen > LIVE_S:
            continue
        try:
            theirs = json.loads(value)
        except ValueError:
            continue  # not written by a gateway: nothing to compare
        if isinstance(theirs, dict):
            found = differences(rules, theirs)
            if found:
                differ[other] = found
    return differ
