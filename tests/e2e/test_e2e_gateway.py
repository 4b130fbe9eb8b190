"""The gateway goes away: stopped while the kiosk is idle, and killed (SIGKILL) while a
settlement is in flight — after its reply was lost, and before the request reached it. The kiosk
says so, settles nothing it cannot account for, and once the gateway is back there is exactly
one settlement and one receipt.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from contextlib import closing

from e2e_support import (
    WAIT_S,
    Before,
    at_welcome,
    before_visit,
    printed_of,
    receipt_amounts,
    settle_visit,
    up_to_confirm,
    wait_screen,
)
from onestop.host.gateway.ledger import SignIn, open_ledger
from onestop.host.keys import SigningKey
from onestop.host.sim.rig import Hall, kiosk_cli
from onestop.protocol import cbor, cose

HallFactory = Callable[..., Hall]  # the make_hall fixture (a conftest is not importable here)
RESIDENT = "P001"
UNREACHABLE = ("Cannot reach the insurance service", "Nothing was settled")
IN_DOUBT = ("Settlement not yet confirmed",
            "It will be checked automatically and never settled twice")
CHECKING = ("Out of service", "Checking the last settlement")


def request_type(frame: bytes) -> str:
    """The `t` of a kiosk request frame (COSE_Sign1 around a CBOR map)."""
    return str(cbor.loads(cose.decode1(frame).payload)["t"])


def one_settlement_one_receipt(hall: Hall, before: Before) -> None:
    (settlement,) = hall.settlements()
    expected = before.expected(settlement)
    assert settlement.result == expected
    (receipt,) = hall.receipts()
    assert len(hall.printer.receipts) == 1
    assert receipt_amounts(receipt) == printed_of(expected)
    assert settlement.setl_id in receipt.text()


def retry_errors(hall: Hall) -> list[str]:
    assert hall.firmware is not None
    return [str(e["error"]) for e in hall.firmware.drain() if e.get("ev") == "gateway_retry"]


def refused(errors: list[str]) -> bool:
    """Every connection the kiosk made to the gateway that is down was refused (ECONNREFUSED),
    as by the gateway's host in a hall, not accepted and hung up. Its first attempt may instead
    find the connection its boot sign-in left open closed as the gateway went (unlogged if it
    had been quiet `gateway_idle` ms: app/link.py)."""
    if errors and errors[0] == "connection closed by the gateway":
        errors = errors[1:]
    return bool(errors) and all("ECONNREFUSED" in error for error in errors)


def test_gateway_down_then_back(hall: Hall) -> None:
    before = before_visit(hall, RESIDENT)
    hall.stop_gateway()
    since = at_welcome(hall)
    hall.insert(RESIDENT)
    message = wait_screen(hall, "error", since)
    for words in UNREACHABLE:
        assert words in message
    hall.card.pull()
    hall.wait_welcome()
    assert hall.settlements() == [] and hall.printer.receipts == []
    # As in a hall: a gateway that is down refuses the connection. The tap in between
    # accepted and hung up, and the kiosk's log said "connection closed by the gateway".
    errors = retry_errors(hall)
    assert refused(errors), errors

    hall.start_gateway()
    seen = settle_visit(hall, RESIDENT)
    one_settlement_one_receipt(hall, before)
    assert seen.you_pay == hall.settlements()[0].result["psn_cash_pay"]


def test_a_gateway_that_died_on_its_own_refuses_the_kiosk(hall: Hall) -> None:
    """Not stopped through the hall: its process ended (here SIGKILL, from outside)."""
    assert hall.gateway is not None
    since = at_welcome(hall)
    retry_errors(hall)
    hall.gateway.kill()
    hall.insert(RESIDENT)
    for words in UNREACHABLE:
        assert words in wait_screen(hall, "error", since)
    errors = retry_errors(hall)
    assert refused(errors), errors
    hall.card.pull()
    hall.wait_welcome()
    hall.start_gateway()
    settle_visit(hall, RESIDENT)
    assert len(hall.settlements()) == 1


def test_a_kiosk_pinned_to_another_gateway_key_says_so_and_settles_nothing(hall: Hall) -> None:
    """A technician provisioned the kiosk with some other gateway's public key: the gateway
    answers, nothing it says verifies. The resident is sent to staff (not told to try later),
    and the kiosk's log names the fault for the technician."""
    hall.power_cut()
    config_path = hall.flash / "config.json"
    config = json.loads(config_path.read_text())
    config["gateway_public_key"] = SigningKey(bytes(32)).public_key.hex()
    config_path.write_text(json.dumps(config))
    firmware = hall.boot()
    since = at_welcome(hall)
    hall.insert(RESIDENT)
    message = wait_screen(hall, "error", since)
    assert "The insurance service could not be verified" in message
    assert "please ask staff" in message and "Cannot reach" not in message
    assert firmware.wait_event("gateway_untrusted")["t"] == "sign_in"
    assert hall.settlements() == []


def wait_until(condition: object, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def test_gateway_killed_after_settling_but_before_its_reply_arrived(hall: Hall) -> None:
    """The settle commits, its reply is lost, the gateway dies: the kiosk cannot know. It says
    the settlement will be checked, takes no card meanwhile, asks once the gateway is back,
    and prints the receipt for the settlement that was made — once."""
    before = before_visit(hall, RESIDENT)
    assert hall.tap is not None and hall.firmware is not None
    tap = hall.tap

    def lose_the_reply(way: str, frame: bytes) -> None:
        if way == "k2g" and request_type(frame) == "settle":
            tap.blocked.add("g2k")

    tap.on_frame = lose_the_reply
    since = at_welcome(hall)
    up_to_confirm(hall, RESIDENT)
    hall.touch("b0")
    wait_until(lambda: hall.settlements(), "the gateway settled")
    hall.stop_gateway(kill=True)
    message = wait_screen(hall, "error", since)
    for words in IN_DOUBT:
        assert words in message
    hall.card.pull()  # the resident leaves
    checking = len(hall.screens) - 1
    notice = wait_screen(hall, "error", checking + 1)
    for words in CHECKING:
        assert words in notice
    assert hall.printer.receipts == []
    apdus = len(hall.card.apdus)
    hall.insert("P003")  # the next resident is not served while the last settlement is unknown

    tap.on_frame = None
    tap.blocked.clear()
    restarted = len(hall.screens)
    hall.start_gateway()
    hall.firmware.wait_event("txn_done")
    assert "Please take your card" in wait_screen(hall, "done", restarted)
    assert len(hall.card.apdus) == apdus  # P003's card was never read
    hall.card.pull()
    hall.wait_welcome()
    one_settlement_one_receipt(hall, before)


def test_gateway_killed_before_the_settle_reached_it(hall: Hall) -> None:
    """The settle is lost on the way and the gateway dies: once it is back, the kiosk learns
    nothing was settled, prints nothing; the resident's next visit settles once."""
    before = before_visit(hall, RESIDENT)
    assert hall.tap is not None and hall.firmware is not None
    tap = hall.tap
    sent = threading.Event()

    def lose_the_request(way: str, frame: bytes) -> None:
        if way == "k2g" and request_type(frame) == "settle":
            tap.blocked.add("k2g")
            sent.set()

    tap.on_frame = lose_the_request
    since = at_welcome(hall)
    up_to_confirm(hall, RESIDENT)
    hall.touch("b0")
    assert sent.wait(WAIT_S)
    hall.stop_gateway(kill=True)
    message = wait_screen(hall, "error", since)
    for words in IN_DOUBT:
        assert words in message
    hall.card.pull()
    assert hall.settlements() == []

    tap.on_frame = None
    tap.blocked.clear()
    hall.start_gateway()
    aborted = hall.firmware.wait_event("txn_aborted")
    assert aborted["reason"] == "not_found"
    assert hall.settlements() == [] and hall.printer.receipts == []

    seen = settle_visit(hall, RESIDENT)
    one_settlement_one_receipt(hall, before)
    assert seen.you_pay == hall.settlements()[0].result["psn_cash_pay"]


def last_sign_in(hall: Hall) -> SignIn | None:
    """The kiosk's last sign-in, as the gateway's ledger holds it (`kiosk keys list`)."""
    with closing(open_ledger(hall.db)) as ledger:
        return ledger.sign_ins().get(hall.kiosk_id)


def signed_in_running(hall: Hall) -> str | None:
    """The firmware the kiosk ran at its last sign-in, or None: never signed in."""
    seen = last_sign_in(hall)
    return None if seen is None else seen.fw


def backdate_sign_in(hall: Hall, fw: str) -> None:
    """The ledger says the kiosk last signed in an hour ago, running `fw`."""
    with closing(open_ledger(hall.db)) as ledger:
        ledger.record_sign_in(hall.kiosk_id, fw, "unix", int(time.time()) - 3600)


def test_an_idle_kiosk_signs_in_every_heartbeat_and_the_operator_sees_it(
        make_hall: HallFactory) -> None:
    hall = make_hall(heartbeat=1000)
    assert hall.firmware is not None
    # its first at boot; the ledger then put back an hour: only a later beat brings it back
    wait_until(lambda: last_sign_in(hall) is not None, "the kiosk signed in at boot")
    backdate_sign_in(hall, "onestop-fw 0.9")
    started = int(time.time())
    deadline = time.monotonic() + WAIT_S
    seen: SignIn | None = None
    while time.monotonic() < deadline and (seen is None or seen.at < started - 1):
        seen = last_sign_in(hall)  # no resident: only its heartbeat
        time.sleep(0.2)
    assert seen is not None and seen.at >= started - 1
    assert (seen.fw, seen.board) == ("onestop-fw 1.0", "unix")
    listed = kiosk_cli("keys", "list", "--db", hall.db)
    (line,) = [line for line in listed.splitlines() if line.startswith(hall.kiosk_id)]
    assert line.endswith("just now (onestop-fw 1.0 on unix)")


def test_a_kiosk_signs_in_as_it_boots_and_the_operator_sees_its_firmware_at_once(
        make_hall: HallFactory) -> None:
    """An operator who rebooted a kiosk, or gave it new firmware, saw its last sign-in (and
    the firmware it ran before) until its first heartbeat, 10 minutes on; its log lines had
    no `at` (the gateway's time) meanwhile. It signs in as it boots."""
    hall = make_hall()  # the heartbeat as configured: every 10 minutes
    wait_until(lambda: last_sign_in(hall) is not None, "the kiosk signed in at boot")
    hall.power_cut()
    backdate_sign_in(hall, "onestop-fw 0.9")  # the firmware it ran before this one
    listed = kiosk_cli("keys", "list", "--db", hall.db)
    assert "1 h ago (onestop-fw 0.9 on unix)" in listed, listed
    firmware = hall.boot()
    booted = int(time.time())
    wait_until(lambda: signed_in_running(hall) == "onestop-fw 1.0",
               "the rebooted kiosk signed in with its firmware")
    seen = last_sign_in(hall)
    assert seen is not None and seen.at >= booted - 1 and seen.board == "unix"
    listed = kiosk_cli("keys", "list", "--db", hall.db)
    (line,) = [line for line in listed.splitlines() if line.startswith(hall.kiosk_id)]
    assert line.endswith("just now (onestop-fw 1.0 on unix)")
    hall.wait_welcome()
    hall.printer.paper_out = True  # something to log: it carries the gateway's time
    logged = firmware.wait_event("printer_not_ready")
    assert abs(logged["at"] - time.time()) < 5


def test_a_kiosk_booted_while_its_gateway_does_not_answer_welcomes_and_serves(
        make_hall: HallFactory) -> None:
    """Its boot sign-in goes out once the welcome page is up: a gateway that does not answer
    (the kiosk's frames lost on the way, each try waited on for `gateway_reply`) is logged once
    and holds nothing back. Once the gateway answers, a resident is served (the visit signs
    in by itself)."""
    hall = make_hall()
    tap = hall.tap
    assert tap is not None
    wait_until(lambda: last_sign_in(hall) is not None, "the kiosk signed in at boot")
    hall.power_cut()
    backdate_sign_in(hall, "onestop-fw 0.9")
    tap.blocked.add("k2g")
    since = len(hall.screens)
    firmware = hall.boot()
    failed = firmware.wait_event("heartbeat_failed")
    assert "sign_in" in failed["error"]
    # the welcome page was up before the gateway was asked
    assert "welcome" in [screen.page for screen in hall.screens[since:]]
    events = [event.get("ev") for event in firmware.drain()]
    assert events.index("idle") < events.index("heartbeat_failed")
    assert signed_in_running(hall) == "onestop-fw 0.9"

    tap.blocked.clear()
    before = before_visit(hall, RESIDENT)
    settle_visit(hall, RESIDENT)
    one_settlement_one_receipt(hall, before)
    assert signed_in_running(hall) == "onestop-fw 1.0"
    events = [event.get("ev") for event in firmware.drain()]
    assert events.count("heartbeat_failed") == 1  # once; the next is 10 minutes on
