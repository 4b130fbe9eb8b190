"""The kiosk's session state machine (firmware/app/session.py, txn.py, kiosk.py, recovery.py):
every path a resident can take, with fake devices and a fake gateway, run as deployed — the
firmware precompiled by mpy-cross, under the real MicroPython unix port, with 64 KB of heap for
everything the sessions make. (The unix port loads .mpy code into the heap, about 150 KB of it;
a board runs it from flash, so the worker's heap is larger and all but 64 KB of it is held back
once the code is loaded: boards.unix.hold_heap.)"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from onestop.host.fwtables import gbk_pairs
from onestop.host.fwtools import StageWorker, compile_modules, stage_firmware
from onestop.host.keys import SigningKey, VerifyingKey
from onestop.host.sim.display import display_width
from onestop.host.sim.printer import EscPosInterpreter
from onestop.protocol import messages

SUPPORT = Path(__file__).parent / "support"
GATEWAY_KEY = SigningKey(bytes(range(32)))  # app_fakes.GATEWAY_SEED

ZHANG_CARD = {"ssn": "130630195603120048", "card_no": "HB0000001", "card_id": "130630D156000001",
              "name_gbk": "张秀兰".encode("gbk"), "issue": "2019-04-01", "expiry": "2029-04-01",
              "atr": b"\x3b"}
ZHANG = {
    "person": {"psn_no": "P001", "name": "张秀兰", "ssn_masked": "130630********0048",
               "insutype": 390, "insu_admdvs": "130630", "assistance": "none"},
    "bills": [
        {"bill_id": "B-0001", "fixmedins_name": "涞源县医院", "mdtrtarea_admvs": "130630",
         "med_type": "inpatient", "hosp_lv": 2, "referral": False, "date": "2026-11-20",
         "medfee_sumamt": 2420000},
        {"bill_id": "B-0002", "fixmedins_name": "涞源县中医院", "mdtrtarea_admvs": "130630",
         "med_type": "outpatient_chronic", "hosp_lv": 1, "referral": False,
         "date": "2026-11-21", "medfee_sumamt": 35050},
    ],
}
PEOPLE = {ZHANG_CARD["ssn"]: ZHANG}
HAPPY = {"bills": "b0", "confirm": "b0"}
ASKED_AFTER_CONFIRM = {"settle", "settlement_query", "receipt_printed"}
# the first page at power-on with a txn open, while recovery asks the gateway about it
CHECKING = ["processing", "Checking the last settlement"]
UNCLAIMED = "Not yours? Hand it to the clerk"  # texts.RECEIPT_UNCLAIMED: for the tray


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stage_firmware(tmp_path_factory.mktemp("fw") / "stage", "unix", compiled=True)


@pytest.fixture(scope="module")
def mp(stage: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StageWorker]:
    helpers = compile_modules([SUPPORT / "app_fakes.py", SUPPORT / "app_session_cases.py"],
                              tmp_path_factory.mktemp("helpers"))
    worker = StageWorker(stage, [helpers], heapsize="512K")
    yield worker
    worker.close()


class Kiosk:
    """Runs scenarios against one flash directory, keeping the gateway's ledger between runs
    (so a reboot sees the same gateway)."""

    def __init__(self, mp: StageWorker, stage: Path, flash: Path) -> None:
        self.mp = mp
        self.base = {"dir": str(flash), "tables": str(stage), "people": PEOPLE,
                     "card": ZHANG_CARD}
        self.gateway_state: dict[str, Any] | None = None

    def _run(self, function: str, spec: dict[str, Any]) -> dict[str, Any]:
        full = dict(self.base, gateway_state=self.gateway_state, **spec)
        result = self.mp.call("app_session_cases", function, full)
        self.gateway_state = result["state"]
        return result

    def session(self, **spec: Any) -> dict[str, Any]:
        return self._run("session", spec)

    def boot(self, **spec: Any) -> dict[str, Any]:
        """The main loop from power-on: recovery, then spec["rounds"] rounds (default 1)."""
        return self._run("kiosk", spec)

    @property
    def settlements(self) -> dict[str, bytes]:
        return self.gateway_state["settlements"] if self.gateway_state else {}


@pytest.fixture
def kiosk(mp: StageWorker, stage: Path, tmp_path: Path) -> Kiosk:
    return Kiosk(mp, stage, tmp_path)


def titles(result: dict[str, Any]) -> list[str]:
    return [t_en for _page, t_en in result["pages"]]


def receipt_of(data: bytes) -> Any:
    printer = EscPosInterpreter()
    printer.feed(data)
    (receipt,) = printer.receipts
    return receipt


def settled_nothing(result: dict[str, Any]) -> bool:
    return (not ASKED_AFTER_CONFIRM & set(result["calls"]) and result["receipts"] == []
            and result["open"] == [] and result["state"]["settlements"] == {})


# ---------------------------------------------------------------------------- the whole visit
def test_a_resident_settles_a_bill_and_takes_a_receipt(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY)
    assert result["outcome"] == "settled"
    assert [page for page, _ in result["pages"]] == [
        "reading", "processing", "bills", "processing", "confirm", "processing", "printing",
        "done"]
    assert result["calls"] == ["sign_in", "person_info", "pending_bills", "pre_settle", "settle",
                               "receipt_printed"]
    assert result["open"] == []  # the journal has nothing left to do
    # the done page as soon as the receipt is out; telling the gateway comes after
    assert result["events"].index("step:done") < result["events"].index("txn_done")
    (txn_id,) = result["state"]["settlements"]
    assert result["state"]["bills_settled"] == {"B-0001": txn_id}
    assert result["state"]["printed"] == [txn_id]
    assert txn_id.startswith("K0001-")


def test_a_tap_the_instant_a_page_appears_is_not_taken_as_confirming(kiosk: Kiosk) -> None:
    # a double tap on a bill lands where the confirm page puts its Confirm button
    rushed = kiosk.session(script={"bills": "b0@150", "confirm": "b0"},
                           timeouts={"touch_guard": 100})
    assert [page for page, _ in rushed["pages"]][:5] == [
        "reading", "processing", "bills", "processing", "confirm"]
    assert rushed["outcome"] == "timeout" and settled_nothing(rushed)
    assert rushed["events"].count("touch_ignored") == 1  # the log says the tap was ignored
    read_first = kiosk.session(script={"bills": "b0@150", "confirm": "b0@150"},
                               timeouts={"touch_guard": 100})
    assert read_first["outcome"] == "settled"
    assert "touch_ignored" not in read_first["events"]


def test_bills_page_greets_the_resident_and_lists_each_bill(kiosk: Kiosk) -> None:
    bills = kiosk.session(script=HAPPY)["last"]["bills"]
    assert bills["t_zh"] == "请选择要结算的费用"
    assert bills["l0"] == "张秀兰，您好"
    assert bills["b0"] == "涞源县医院 2026-11-20 总额24,200.00元"
    assert bills["b1"] == "涞源县中医院 2026-11-21 总额350.50元"
    assert "b2" not in bills


def test_confirm_page_shows_each_funds_share_and_what_the_resident_pays(kiosk: Kiosk) -> None:
    confirm = kiosk.session(script=HAPPY)["last"]["confirm"]
    # 24,200.00 yuan: basic 60 %, serious illness 10 %, assistance 5 %, the resident 25 %
    # the receipt's order, total first; the amounts flush right in one column (a Chinese
    # character is two of the panel's columns)
    assert confirm["l1"] == "费用总额 Total bill" + " " * 16 + "    24,200.00"
    assert confirm["l2"] == "医保统筹 Basic insurance" + " " * 11 + "    14,520.00"
    assert confirm["l3"] == "大病保险 Serious illness insurance" + " " + "     2,420.00"
    assert confirm["l4"] == "医疗救助 Medical assistance" + " " * 8 + "     1,210.00"
    assert len({display_width(confirm[f"l{i}"]) for i in range(1, 5)}) == 1
    assert confirm["big"] == "6,050.00"
    assert (confirm["b0"], confirm["b1"]) == ("确认 Confirm", "取消 Cancel")


def test_the_receipt_shows_who_what_and_a_verifiable_settlement(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY)
    (data,) = result["receipts"]
    receipt = receipt_of(data)
    text = receipt.text()
    assert receipt.cut and not receipt.truncated
    assert "Reprint" not in text  # the first print is the receipt, not a copy
    for expected in ("医疗保障结算凭条", "张*兰", "130630********0048", "涞源县医院",
                     "2026-11-20", "14,520.00", "2,420.00", "1,210.00", "6,050.00",
                     "SETL000001", "K0001"):
        assert expected in text
    big = [line for line in receipt.lines if line.text == "6,050.00"]
    assert big and big[0].height == 2  # what the resident pays, in large type
    (qr,) = receipt.qr_codes
    settlement = base64.urlsafe_b64decode(qr.data + b"=" * (-len(qr.data) % 4))
    assert settlement in result["state"]["settlements"].values()
    record = messages.open_settlement(settlement, VerifyingKey(GATEWAY_KEY.public_key))
    assert record["result"]["psn_cash_pay"] == 605000


def test_the_done_page_and_the_receipt_say_where_the_rest_is_paid(kiosk: Kiosk) -> None:
    """The kiosk takes no money: a resident shown "You pay 6,050.00" must learn where."""
    result = kiosk.session(script=HAPPY)
    done = result["last"]["done"]
    assert (done["l2"], done["l3"]) == ("请到窗口缴纳个人支付金额",
                                        "Please pay this amount at the counter")
    # Two bills were waiting, one is settled: the other is not forgotten at the kiosk.
    assert (done["l0"], done["l1"]) == ("请取走社保卡和凭条，另有1笔费用请再插卡",
                                        "Take your card and receipt; 1 more to settle: insert "
                                        "it again")
    assert done["big"] == "6,050.00"
    text = receipt_of(result["receipts"][0]).text()
    assert "请到窗口缴费 Pay at the counter" in text
    assert "结算号 Settlement no." in text
    rows = text.splitlines()
    txn = rows.index("交易号 Kiosk transaction")
    assert rows[txn + 1].startswith("K0001-")  # the kiosk's txn id, under its label


def test_nothing_left_to_pay_is_said_so(mp: StageWorker) -> None:
    page, shown = mp.call("app.screens", "done", {"psn_cash_pay": 0})
    assert (shown["l2"], shown["l3"], shown["big"]) == ("您无需再缴费",
                                                        "You have nothing more to pay", "0.00")
    assert (shown["l0"], shown["l1"]) == ("请取走社保卡和凭条",
                                          "Please take your card and your receipt")


def test_the_done_page_fits_its_lines_with_many_bills_still_waiting(mp: StageWorker) -> None:
    page, shown = mp.call("app.screens", "done", {"psn_cash_pay": 100}, 63)
    assert "另有63笔费用" in shown["l0"] and "63 more to settle" in shown["l1"]
    for line in ("l0", "l1"):
        assert len(shown[line].encode("gbk")) <= 80  # the text's txt_maxl: nothing cut off
        assert display_width(shown[line]) * 12 <= 760  # 24 px font, ASCII 12 px: the line's w


def test_a_long_clinic_name_ends_in_an_ellipsis_on_its_bill_button(mp: StageWorker) -> None:
    bill = {"fixmedins_name": "中国医学科学院北京协和医院河北分院门诊部", "date": "2026-11-20",
            "medfee_sumamt": 9_999_999_999}
    button = mp.call("app.screens", "bill_button", bill)
    assert button == "中国医学科学院北京协和医院… 2026-11-20 总额99,999,999.99元"
    bill["fixmedins_name"] = "中国医学科学院北京协和医院"  # 13 characters: whole
    assert mp.call("app.screens", "bill_button", bill).startswith("中国医学科学院北京协和医院 ")


def test_the_second_bill_can_be_chosen(kiosk: Kiosk) -> None:
    result = kiosk.session(script={"bills": "b1", "confirm": "b0"})
    assert result["outcome"] == "settled"
    assert list(result["state"]["bills_settled"]) == ["B-0002"]
    assert "350.50" in receipt_of(result["receipts"][0]).text()


def test_every_page_is_in_chinese_with_english(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY)
    for page, texts in result["last"].items():
        assert texts["t_zh"] and texts["t_en"], page
        assert any(ord(c) > 0x2E80 for c in texts["t_zh"]), page
        assert texts["t_en"].isascii(), page


# ---------------------------------------------------------------------------- changing one's mind
@pytest.mark.parametrize("script, outcome", [
    ({"bills": "none"}, "timeout"),
    ({"bills": "b0", "confirm": "none"}, "timeout"),
    ({"bills": "b0", "confirm": "b1"}, "cancelled"),
    ({"bills": "pull"}, "card_removed"),
    ({"bills": "b0", "confirm": "pull"}, "card_removed"),
], ids=["walks-away-at-bills", "walks-away-at-confirm", "cancels", "pulls-card-at-bills",
        "pulls-card-at-confirm"])
def test_leaving_before_confirming_settles_nothing(kiosk: Kiosk, script: dict[str, str],
                                                   outcome: str) -> None:
    result = kiosk.session(script=script)
    assert result["outcome"] == outcome
    assert result["pages"][-1][0] == "error"
    assert "nothing was settled" in result["last"]["error"]["l1"].lower()
    assert settled_nothing(result)


def countdown(seconds: int) -> str:
    """The countdown strip's text (firmware/app/texts.py MORE_TIME), as the screen gets it."""
    return f"还剩{seconds}秒，点这里继续\n{seconds} s left: touch here for more time"


# A confirm page of 2.5 s whose last 2 s are counted down (the bills page, 300 ms, has none)
COUNTED = {"confirm": 2500, "more_time": 2000}


def test_a_resident_still_there_touches_the_countdown_and_the_page_waits_again(
        kiosk: Kiosk) -> None:
    # the strip is touched 1.5 s in, the bill confirmed 1 s later: past the page's first end
    result = kiosk.session(script={"bills": "b0", "confirm": "more@1500,b0@1000"},
                           timeouts=COUNTED)
    assert result["outcome"] == "settled"
    strip = [text for page, text in result["counted"] if page == "confirm"]
    touched = strip.index("")  # the touch hides it: the page has its whole time again
    assert strip[:touched] == [countdown(2), countdown(1)]
    assert strip[touched + 1:] == [countdown(2)]  # counting again from 2.5 s, when touched
    assert result["events"].count("more_time") == 1
    assert [page for page, _ in result["counted"]] == ["confirm"] * len(strip)


def test_a_resident_who_walked_away_is_counted_down_once(kiosk: Kiosk) -> None:
    result = kiosk.session(script={"bills": "b0", "confirm": "none"}, timeouts=COUNTED)
    assert result["outcome"] == "timeout" and settled_nothing(result)
    assert result["counted"] == [["confirm", countdown(2)], ["confirm", countdown(1)]]
    assert "more_time" not in result["events"]
    assert result["pages"][-1][0] == "error"  # "Timed out": the strip went with its page


@pytest.mark.parametrize("step, page", [("person_info", "bills"), ("pending_bills", "bills"),
                                        ("pre_settle", "confirm")])
def test_a_card_swapped_while_the_gateway_answers_shows_and_settles_nothing(
        kiosk: Kiosk, step: str, page: str) -> None:
    """The first resident takes the card out while the gateway is slow to answer, and another
    puts theirs in: the reader only says that a card is in. The second must not see the
    first's name and bills, nor settle them."""
    result = kiosk.session(script=HAPPY, faults={step: ["card_swapped"]})
    assert result["outcome"] == "card_removed"
    assert titles(result)[-1] == "Card taken out"
    assert "nothing was settled" in result["last"]["error"]["l1"].lower()
    assert page not in [name for name, _ in result["pages"]]
    assert settled_nothing(result)


# ---------------------------------------------------------------------------- card problems
@pytest.mark.parametrize("code, outcome, title", [
    ("card_mute", "card_unreadable", "The card could not be read"),
    ("bad_record", "card_unreadable", "The card could not be read"),
    ("reader_timeout", "card_unreadable", "The card could not be read"),
    ("wrong_application", "wrong_card", "This is not a social security card"),
    ("card_removed", "card_removed", "Card taken out"),
])
def test_a_card_that_cannot_be_read_gets_a_clear_page(kiosk: Kiosk, code: str, outcome: str,
                                                      title: str) -> None:
    result = kiosk.session(card_error=code)
    assert result["outcome"] == outcome
    assert titles(result) == ["Reading your card", title]
    assert result["calls"] == []


def test_a_card_nobody_holds_is_unknown(kiosk: Kiosk) -> None:
    stranger = dict(ZHANG_CARD, ssn="11010119900101001X")
    result = kiosk.session(card=stranger, script=HAPPY)
    assert result["outcome"] == "unknown_person"
    assert titles(result)[-1] == "No insurance record for this card"


def test_a_card_put_back_while_a_refusal_shows_is_read_as_a_new_visit(kiosk: Kiosk) -> None:
    """The expired card is taken out and a card put in within the message's seconds: it was
    left under the first card's 'This card has expired' for a minute, then told to come out.
    Now it is read at once, a visit of its own."""
    result = kiosk.boot(rounds=2, visits=1, script={**HAPPY, "error": "reinsert@30"},
                        faults={"person_info": ["error:card_expired"]},
                        timeouts={"message": 300})  # back in well before the page's time
    assert result["reads"] == 2
    shown = titles(result)
    assert shown.count("This card has expired") == 1
    assert "Please take your card" not in shown
    assert "Settlement complete" in shown  # the second visit went the whole way


def test_an_expired_card_is_refused_by_the_gateway(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY, faults={"person_info": ["error:card_expired"]})
    assert result["outcome"] == "card_expired"
    assert result["last"]["error"]["t_zh"] == "社保卡已过有效期"
    assert result["last"]["error"]["l4"] == "请取走社保卡"  # the card is still in


def test_no_bills_waiting_says_so(kiosk: Kiosk) -> None:
    kiosk.session(script=HAPPY)
    kiosk.session(script={"bills": "b0", "confirm": "b0"})  # settles the other bill
    result = kiosk.session(script=HAPPY)
    assert result["outcome"] == "no_bills"
    assert result["last"]["error"]["t_en"] == "No bills waiting"
    assert "pre_settle" not in result["calls"]


# ---------------------------------------------------------------------------- the gateway
def test_gateway_unreachable_before_confirming(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY, faults={"person_info": ["unreachable"]})
    assert result["outcome"] == "gateway_unreachable"
    assert result["last"]["error"]["t_en"] == "Cannot reach the insurance service"
    assert settled_nothing(result)


def test_a_kiosk_given_the_wrong_gateway_key_sends_the_resident_to_staff(kiosk: Kiosk) -> None:
    # not "try again later": waiting will not mend a kiosk that cannot verify its gateway
    result = kiosk.session(script=HAPPY, faults={"sign_in": ["untrusted"]})
    assert result["outcome"] == "gateway_untrusted"
    assert result["last"]["error"]["t_en"] == "The insurance service could not be verified"
    assert result["last"]["error"]["l1"] == "Nothing was settled, please ask staff"
    assert settled_nothing(result)
    result = kiosk.session(script=HAPPY, faults={"pre_settle": ["untrusted"]})
    assert result["outcome"] == "gateway_untrusted"
    assert settled_nothing(result)


def test_the_price_changing_after_confirmation_settles_nothing(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY, price_change=100)
    assert result["outcome"] == "amount_changed"
    assert result["last"]["error"]["t_en"] == "The amount has changed"
    assert result["open"] == []  # journaled as aborted: nothing left to resolve
    assert result["state"]["settlements"] == {} and result["receipts"] == []


def test_a_bill_settled_elsewhere_meanwhile(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY, faults={"settle": ["error:bill_settled"]})
    assert result["outcome"] == "bill_settled"
    assert result["open"] == []


def test_a_lost_settle_reply_is_resolved_while_the_resident_waits(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY, faults={"settle": ["lost_reply"]})
    assert result["outcome"] == "settled"
    assert result["calls"][-3:] == ["settle", "settlement_query", "receipt_printed"]
    assert len(result["state"]["settlements"]) == 1 and len(result["receipts"]) == 1


def test_an_error_that_answers_no_request_leaves_a_settle_in_doubt_not_aborted(
        kiosk: Kiosk) -> None:
    # A man in the middle lets the settle through (the ledger settles it) and hands the kiosk,
    # in place of the reply, an `error` the gateway signed about some unauthenticated frame
    # (kiosk "", ctr 0: it echoes no request, so anyone can get one and replay it). Taken as
    # the gateway's refusal, the txn was journaled aborted: settled in the ledger, never
    # printed, never asked about again.
    result = kiosk.session(script=HAPPY, faults={"settle": ["spoofed_error:bad_signature"]})
    assert result["outcome"] == "settled"
    assert result["calls"][-3:] == ["settle", "settlement_query", "receipt_printed"]
    assert len(result["state"]["settlements"]) == 1 and len(result["receipts"]) == 1
    assert result["open"] == []


def test_a_settle_refused_as_a_replay_of_itself_is_in_doubt_not_aborted(kiosk: Kiosk) -> None:
    # A man in the middle sends the kiosk's settle frame twice (to the gateway, or to two
    # gateways of one ledger): the first copy settles, the second is refused "replay", and
    # that refusal, echoing the frame's own counter and rid, is the one the kiosk gets. It was
    # journaled aborted: settled in the ledger, never printed.
    result = kiosk.session(script=HAPPY, faults={"settle": ["duplicated"]})
    assert result["outcome"] == "settled"
    assert result["calls"][-3:] == ["settle", "settlement_query", "receipt_printed"]
    assert len(result["state"]["settlements"]) == 1 and len(result["receipts"]) == 1
    assert result["open"] == []


def test_a_settle_that_never_arrived_is_found_not_settled(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY, faults={"settle": ["unreachable"]})
    assert result["outcome"] == "not_settled"
    assert result["open"] == [] and result["state"]["settlements"] == {}


def test_in_doubt_settlement_blocks_the_kiosk_until_the_gateway_answers(kiosk: Kiosk) -> None:
    first = kiosk.session(script=HAPPY, faults={"settle": ["lost_reply"],
                                                "settlement_query": ["unreachable"]})
    assert first["outcome"] == "in_doubt"
    # the resident, after a settle unanswered through all its tries, waits for one more, not
    # for all of the query's too (~30 s more on the settling page)
    assert first["calls"][-2:] == ["settle", "settlement_query"] and first["attempts"][-1] == 1
    assert first["last"]["error"]["t_en"] == "Settlement not yet confirmed"
    assert [state for _, state in first["open"]] == ["pending"]
    # the gateway is still away: the kiosk takes no new card
    down = kiosk.boot(faults={"settlement_query": ["unreachable", "unreachable"]}, rounds=2)
    assert [page for page, _ in down["pages"]] == ["processing", "error", "error"]
    assert down["pages"][1][1] == "Out of service" and down["reads"] == 0
    # back: the settlement it made is found, printed once, and the kiosk serves again
    back = kiosk.boot(rounds=1, visits=0)
    assert back["calls"][:2] == ["settlement_query", "receipt_printed"]
    assert len(back["receipts"]) == 1 and back["open"] == []
    # found settled only now: nothing was printed before, so it is no reprint; its resident
    # took the card and left, so it asks whoever finds it in the tray to give it to the clerk
    text = receipt_of(back["receipts"][0]).text()
    assert "Reprint" not in text
    assert UNCLAIMED in text
    assert back["pages"][-1][0] == "welcome"
    assert len(kiosk.settlements) == 1


@pytest.mark.parametrize("answer, outcome, last_page", [
    ("settled", "settled", "Settlement complete"),
    ("not_found", "not_settled", "Not settled"),
])
def test_a_doubt_resolved_while_the_card_is_in_is_shown_to_the_resident(
        kiosk: Kiosk, answer: str, outcome: str, last_page: str) -> None:
    """The resident told 'not yet confirmed' who keeps the card in learns the answer there:
    the receipt, or that nothing was settled (before, the kiosk knew a minute later and
    showed only 'take your card')."""
    settle_fault = "lost_reply" if answer == "settled" else "unreachable"
    result = kiosk.session(script=HAPPY, keeps_card=True, faults={
        "settle": [settle_fault], "settlement_query": ["unreachable", "unreachable"]})
    assert result["outcome"] == outcome
    shown = titles(result)
    assert shown[-1] == last_page and "Settlement not yet confirmed" in shown
    assert result["calls"].count("settlement_query") == 3 and result["open"] == []
    assert len(result["receipts"]) == (1 if answer == "settled" else 0)
    assert len(kiosk.settlements) == (1 if answer == "settled" else 0)


def test_a_doubt_found_unsettled_at_power_on_tells_the_resident_whose_card_is_still_in(
        kiosk: Kiosk) -> None:
    """The power comes back with the card in: the gateway never saw the settle. The resident
    reads "Not settled", not only "Please take your card", and can try again."""
    first = kiosk.session(script=HAPPY, faults={"settle": ["unreachable"],
                                                "settlement_query": ["unreachable"]})
    assert first["outcome"] == "in_doubt"
    back = kiosk.boot(rounds=1, visits=0, card_in=True)
    assert back["calls"][0] == "settlement_query" and back["open"] == []
    assert back["pages"][:2] == [CHECKING, ["error", "Not settled"]]
    assert back["last"]["error"]["l4"] == "请取走社保卡"
    assert kiosk.settlements == {}


def test_a_doubt_found_settled_at_power_on_prints_for_the_resident_whose_card_is_in(
        kiosk: Kiosk) -> None:
    """The power comes back with the card in and the settle had reached the ledger: the
    receipt is printed for the resident standing there, not as one left for the clerk."""
    first = kiosk.session(script=HAPPY, faults={"settle": ["lost_reply"],
                                                "settlement_query": ["unreachable"]})
    assert first["outcome"] == "in_doubt"
    back = kiosk.boot(rounds=1, visits=0, card_in=True)
    assert back["calls"][:2] == ["settlement_query", "receipt_printed"]
    assert len(back["receipts"]) == 1 and back["open"] == []
    text = receipt_of(back["receipts"][0]).text()
    assert UNCLAIMED not in text and "Reprint" not in text
    # the visit's own done page: settled, and what to pay
    assert "Settlement complete" in titles(back)
    assert back["last"]["done"]["big"] == "6,050.00"
    assert len(kiosk.settlements) == 1


def test_a_kiosk_powered_on_with_a_txn_open_says_it_is_checking_it_before_asking(
        kiosk: Kiosk) -> None:
    """The screen comes up blank with the power (its pages are empty until the kiosk fills
    them), and recovery asked the gateway first: with the gateway away, half a minute of
    retries with nothing on the screen, the resident's card perhaps still in."""
    first = kiosk.session(script=HAPPY, faults={"settle": ["lost_reply"],
                                                "settlement_query": ["unreachable"]})
    assert first["outcome"] == "in_doubt"
    back = kiosk.boot(rounds=1, visits=0, card_in=True,
                      faults={"settlement_query": ["unreachable"]})
    assert back["pages"][0] == CHECKING
    assert back["pages"][1] == ["error", "Out of service"]
    resolved = kiosk.boot(rounds=1, visits=0)  # the gateway back: printed for the clerk
    assert resolved["pages"][0] == CHECKING
    assert resolved["open"] == [] and len(resolved["receipts"]) == 1
    # with nothing open, the kiosk starts on its welcome page as before
    assert kiosk.boot(rounds=1, visits=0)["pages"][0][0] == "welcome"


def test_not_settled_is_never_shown_to_a_card_put_in_after_the_doubt(kiosk: Kiosk) -> None:
    """The resident whose settlement went in doubt took their card and left; someone puts a
    card in while the kiosk is out of service. Recovery finds nothing was settled: that is
    not news for the one now at the kiosk."""
    result = kiosk.boot(rounds=2, script=HAPPY, faults={
        "settle": ["unreachable"], "settlement_query": ["unreachable", "card_put_in"]})
    assert result["calls"].count("settlement_query") == 2 and result["open"] == []
    assert "Settlement not yet confirmed" in titles(result)
    assert "Not settled" not in titles(result)
    assert result["pages"][-1] == ["done", "Please take your card"]


def test_recovery_that_crashes_leaves_the_kiosk_out_of_service_not_dead(kiosk: Kiosk) -> None:
    first = kiosk.session(script=HAPPY, faults={"settle": ["lost_reply"],
                                                "settlement_query": ["unreachable"]})
    assert first["outcome"] == "in_doubt"
    # the heap runs out while the txn in doubt is resolved at boot: no card is taken, the txn
    # stays in the journal, and the kiosk carries on (before, the exception ended its main loop)
    crashed = kiosk.boot(faults={"settlement_query": ["memory_error"]}, rounds=2, visits=0)
    assert crashed["pages"][:2] == [CHECKING, ["error", "Out of service"]]
    assert "recovery_crashed" in crashed["events"] and crashed["reads"] == 0
    # the boot heartbeat goes out with the out-of-service page up; the next turn of the loop
    # resolves the txn: found settled, printed once, the kiosk serves again
    assert crashed["calls"][:4] == ["settlement_query", "sign_in", "settlement_query",
                                    "receipt_printed"]
    assert len(crashed["receipts"]) == 1 and crashed["open"] == []
    assert len(kiosk.settlements) == 1


def test_a_pending_txn_unknown_to_the_gateway_is_aborted_never_resent(kiosk: Kiosk) -> None:
    first = kiosk.session(script=HAPPY, faults={"settle": ["unreachable"],
                                                "settlement_query": ["unreachable"]})
    assert first["outcome"] == "in_doubt"
    after = kiosk.boot(rounds=1, visits=0)
    assert "settle" not in after["calls"]
    assert after["calls"][0] == "settlement_query"
    assert after["open"] == [] and kiosk.settlements == {}


def test_a_settlement_with_a_bad_signature_is_not_printed(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY, faults={"settle": ["bad_signature"]})
    assert result["outcome"] == "settlement_invalid"
    assert result["receipts"] == []
    assert [state for _, state in result["open"]] == ["pending"]
    assert "settlement_invalid" in result["events"]


# ---------------------------------------------------------------------------- the printer
def test_paper_out_keeps_the_settlement_and_prints_once_paper_is_loaded(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY, printer_faults=["paper_out_during"])
    assert result["outcome"] == "paper_out"
    error = result["last"]["error"]
    assert error["l1"] == "Your settlement is saved; ask staff to load paper to print it"
    # a resident who leaves now has nothing on paper: the amount they pay is on the screen
    assert (error["l5"], error["big"]) == ("个人支付(元) You pay (yuan)", "6,050.00")
    # the kiosk will print it for one who stays: they may wait, not only take the card
    # one who leaves learns where the receipt will be
    assert error["l3"] == "Please wait, or leave: staff will give you the receipt"
    assert [state for _, state in result["open"]] == ["settled"]
    assert result["receipts"] == []
    # out of paper: out of service until a clerk loads the roll, then the receipt comes out
    later = kiosk.boot(paper="out", reload_after=2, rounds=2, visits=0)
    assert later["pages"][:2] == [CHECKING, ["error", "Out of service"]]
    assert later["last"]["error"]["l3"] == "Last settlement saved; receipt prints once staff " \
                                           "load paper"
    assert len(later["receipts"]) == 1 and later["open"] == []
    assert "Printing a saved receipt" in titles(later)
    assert len(kiosk.settlements) == 1
    # part of it may have printed before the paper ran out: this one says it is a reprint of
    # one settlement, so the two never read as two payments
    lines = [line.strip() for line in receipt_of(later["receipts"][0]).text().splitlines()]
    assert lines[2:4] == ["补打凭条 同一笔结算", "Reprint - settled once only"]
    # the resident took the card and left: it lands in the tray for the next one
    assert lines[4:6] == ["非本人凭条请交大厅工作人员", UNCLAIMED]


def test_a_receipt_whose_print_never_began_is_not_marked_a_reprint_later(kiosk: Kiosk) -> None:
    """The roll ran out before the receipt: nothing came out. The resident left; the receipt
    printed once paper is loaded is the first, not a copy (the journal says no print began)."""
    result = kiosk.session(script=HAPPY, printer_faults=["paper_out"])
    assert result["outcome"] == "paper_out" and result["receipts"] == []
    later = kiosk.boot(paper="out", reload_after=2, rounds=2, visits=0)
    assert len(later["receipts"]) == 1 and later["open"] == []
    text = receipt_of(later["receipts"][0]).text()
    assert "Reprint" not in text
    assert UNCLAIMED in text  # its resident had gone


def test_paper_loaded_while_the_resident_waits_prints_the_receipt_for_them(
        kiosk: Kiosk) -> None:
    """The page says the receipt prints once paper is loaded: a resident who keeps the card in
    and waits gets it there and then, not only after leaving."""
    result = kiosk.session(script=HAPPY, printer_faults=["paper_out_during"], reload_after=3,
                           keeps_card=True)
    assert result["outcome"] == "settled"
    assert titles(result)[-3:] == ["The printer is out of paper", "Printing a saved receipt",
                                   "Settlement complete"]
    assert len(result["receipts"]) == 1 and result["open"] == []  # printed and reported
    assert result["calls"].count("settle") == 1 and len(kiosk.settlements) == 1
    assert "Reprint - settled once only" in receipt_of(result["receipts"][0]).text()
    assert UNCLAIMED not in receipt_of(result["receipts"][0]).text()  # they are there for it


def test_a_resident_told_to_wait_for_paper_is_not_dropped_while_the_card_is_in(
        kiosk: Kiosk) -> None:
    """"Please wait here": the clerk takes longer than the take-card time to load the roll.
    The resident still gets the receipt and the done page, not an out-of-service page over
    their card."""
    take_card_ms, printer_poll_ms = 300, 20  # the rig's timeouts (app_session_cases)
    polls = 3 * take_card_ms // printer_poll_ms
    result = kiosk.session(script=HAPPY, printer_faults=["paper_out_during"],
                           reload_after=polls, keeps_card=True)
    assert result["outcome"] == "settled"
    assert titles(result)[-3:] == ["The printer is out of paper", "Printing a saved receipt",
                                   "Settlement complete"]
    assert "Out of service" not in titles(result)
    assert len(result["receipts"]) == 1 and result["open"] == []


def test_a_print_the_printer_never_confirms_is_not_printed_again_and_again(
        kiosk: Kiosk) -> None:
    """The whole receipt went out, the printer reports no fault, but never says it finished
    (a model without GS r): printing again would feed a receipt at every try, for ever."""
    result = kiosk.session(script=HAPPY, printer_faults=["unconfirmed"], keeps_card=True)
    assert result["outcome"] == "settled" and result["open"] == []
    assert result["receipts"] == []  # the one print (unconfirmed) only: no second copy
    assert "print_unconfirmed" in result["events"]
    assert result["calls"][-1] == "receipt_printed"


def test_a_receipt_the_printer_did_not_confirm_this_time_is_printed_again_for_the_resident(
        kiosk: Kiosk) -> None:
    """A printer that confirms receipts did not confirm this one (the line ate part of it, or
    its GS r): the resident still there gets it again, marked as a reprint."""
    result = kiosk.session(script=HAPPY, printer_faults=["unconfirmed_during"], keeps_card=True)
    assert result["outcome"] == "settled" and result["open"] == []
    [reprint] = result["receipts"]
    assert "Reprint - settled once only" in receipt_of(reprint).text()
    assert "print_unconfirmed" not in result["events"]
    assert titles(result)[-2:] == ["Printing a saved receipt", "Settlement complete"]


def test_a_receipt_the_printer_refused_before_printing_is_not_marked_a_reprint(
        kiosk: Kiosk) -> None:
    """The cover was open: nothing came out, so the receipt printed once it is shut is the
    resident's first, not a copy."""
    result = kiosk.session(script=HAPPY, printer_faults=["cover_open"], keeps_card=True)
    assert result["outcome"] == "settled" and len(result["receipts"]) == 1
    assert "Reprint" not in receipt_of(result["receipts"][0]).text()


def test_no_paper_before_a_visit_turns_the_resident_away_before_reading(kiosk: Kiosk) -> None:
    result = kiosk.boot(paper="out", rounds=1, script=HAPPY)
    # only the boot heartbeat, with the out-of-service page up: nothing asked for a visit
    assert result["reads"] == 0 and result["calls"] == ["sign_in"]
    assert ["error", "Out of service"] in result["pages"]
    # nothing settled waits for the paper: the reason alone, as ever
    assert result["last"]["error"] == {"t_zh": "暂停服务", "t_en": "Out of service",
                                       "l0": "打印机缺纸，请联系工作人员",
                                       "l1": "The printer is out of paper, please ask staff"}
    # out of service from the start: the welcome page never invited a card
    assert "welcome" not in [page for page, _ in result["pages"]]


def test_a_spell_out_of_service_is_logged_once_and_its_end_too(kiosk: Kiosk) -> None:
    # Hours without paper were an out_of_service and a printer_not_ready line at every retry
    # (every 20 s) in the board's log: the technician looks for when it began and ended.
    out = kiosk.boot(paper="out", rounds=4, visits=0)
    assert out["events"].count("out_of_service") == 1
    assert out["events"].count("printer_not_ready") == 1
    assert "back_in_service" not in out["events"]
    back = kiosk.boot(paper="out", reload_after=4, rounds=4, visits=0)
    assert back["events"].count("out_of_service") == 1
    assert back["events"].count("back_in_service") == 1
    assert back["events"].index("out_of_service") < back["events"].index("back_in_service")
    assert back["pages"][-1][0] == "welcome"


def test_a_card_put_in_while_out_of_service_is_told_to_come_out_and_never_read(
        kiosk: Kiosk) -> None:
    # No paper; someone puts their card in anyway and goes to find the clerk, leaving it. Once
    # paper is loaded, the kiosk asks for it to be taken out: it never shows the absent
    # holder's name and bills to whoever stands there.
    result = kiosk.boot(paper="out", reload_after=5, rounds=3, script=HAPPY, walk_up=True,
                        keeps_card=True)
    assert result["reads"] == 0 and result["calls"] == ["sign_in"]  # the boot heartbeat only
    told = [shown for page, shown in result["pages"] if page == "error"]
    assert "Out of service" in told
    assert result["last"]["error"]["l5"] == "Please take your card"  # on the same page
    assert result["pages"][-1] == ["done", "Please take your card"]


def test_paper_running_out_as_a_card_goes_in_tells_its_holder_to_take_it(kiosk: Kiosk) -> None:
    # the roll ran out after the welcome page went up: the card is not read, and the
    # out-of-service page over it says to take it back
    result = kiosk.boot(runs_out_after=1, rounds=1, script=HAPPY)
    # the boot heartbeat, as the welcome page went up and the card went in: nothing else
    assert result["reads"] == 0 and result["calls"] == ["sign_in"]
    assert result["pages"][-1] == ["error", "Out of service"]
    assert result["last"]["error"]["l4"] == "请取走社保卡"
    assert result["last"]["error"]["l5"] == "Please take your card"


def test_an_unanswered_receipt_printed_is_sent_again_later(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY, faults={"receipt_printed": ["unreachable"]})
    assert result["outcome"] == "settled"  # the resident has the receipt
    assert [state for _, state in result["open"]] == ["printed"]
    later = kiosk.boot(rounds=1, visits=0)
    assert later["calls"][0] == "receipt_printed" and later["open"] == []
    assert later["receipts"] == []  # never printed twice


def test_a_backlog_of_unanswered_reports_costs_one_try_per_pass_not_one_each(
        kiosk: Kiosk) -> None:
    """Receipts the gateway has not heard of pile up while it does not answer: once one report
    goes unanswered, the rest wait for the next pass (each try costs the link's timeouts, and a
    new resident waited for all of them)."""
    for _ in range(2):  # both of the resident's bills, each report unanswered
        result = kiosk.session(script=HAPPY, faults={"receipt_printed": ["unreachable"]})
        assert result["outcome"] == "settled"
    assert [state for _, state in result["open"]] == ["printed", "printed"]
    still_away = kiosk.boot(rounds=1, visits=0, faults={"receipt_printed": ["unreachable"]})
    # one report tried; then, the welcome page up, the boot heartbeat (one attempt of its own)
    assert still_away["calls"] == ["receipt_printed", "sign_in"]
    assert still_away["pages"][-1][0] == "welcome"  # reports never block a new card
    back = kiosk.boot(rounds=1, visits=0)
    assert back["calls"] == ["receipt_printed", "receipt_printed", "sign_in"]
    assert back["open"] == []


# ---------------------------------------------------------------------------- the heap
@pytest.mark.parametrize("heap", [[40 * 1024, 0], [64 * 1024, 512]],
                         ids=["in-40K", "in-64K-cut-into-512-byte-pieces"])
def test_a_visit_and_a_saved_receipt_need_neither_the_whole_heap_nor_a_large_block(
        kiosk: Kiosk, heap: list[int]) -> None:
    """Headroom: the paper runs out during a receipt, the saved receipt is printed at the next
    boot, and the next resident settles, with a quarter of the data heap held back too; and the
    same in a heap cut into 512-byte pieces (boards.unix.hold_heap piece=): the heap never
    compacts, so no step may count on a larger block (a whole receipt's parts did)."""
    first = kiosk.session(script=HAPPY, printer_faults=["paper_out_during"], heap=heap)
    assert first["outcome"] == "paper_out"
    assert [state for _, state in first["open"]] == ["settled"]
    later = kiosk.boot(paper="out", reload_after=2, rounds=2, visits=0, heap=heap)
    assert len(later["receipts"]) == 1 and later["open"] == []
    second = kiosk.session(script=HAPPY, heap=heap)  # the other bill
    assert second["outcome"] == "settled" and len(second["receipts"]) == 1
    assert len(kiosk.settlements) == 2


# ---------------------------------------------------------------------------- the main loop
def test_the_kiosk_serves_residents_one_after_another_signing_in_once(kiosk: Kiosk) -> None:
    result = kiosk.boot(rounds=2, visits=2, script={"bills": "b0", "confirm": "b0"})
    assert result["calls"].count("sign_in") == 1
    assert result["calls"].count("settle") == 2
    assert len(result["receipts"]) == 2
    assert [p for p, _ in result["pages"]].count("welcome") == 2


def test_a_card_left_in_must_be_taken_before_the_next_visit(kiosk: Kiosk) -> None:
    result = kiosk.boot(rounds=2, visits=1, keeps_card=True, script=HAPPY,
                        timeouts={"take_card": 20})
    assert result["calls"].count("settle") == 1
    assert result["reads"] == 1  # the card left in was not read again
    assert "Please take your card" in titles(result)


def test_signs_in_again_after_the_gateway_was_unreachable(kiosk: Kiosk) -> None:
    result = kiosk.boot(rounds=2, visits=2, script=HAPPY,
                        faults={"pending_bills": ["unreachable"]})
    assert result["calls"].count("sign_in") == 2


def test_the_kiosk_signs_in_every_heartbeat_between_visits_idle_or_not(kiosk: Kiosk) -> None:
    """A kiosk no resident used for a day was invisible to the operator: dead or idle looked
    alike. It signs in every `heartbeat` (busy or idle), one attempt each, never in a visit."""
    quiet = kiosk.boot(rounds=3, visits=0)
    # the first at boot; the next not due yet (10 minutes by default)
    assert quiet["calls"] == ["sign_in"] and quiet["attempts"] == [1]
    due = kiosk.boot(rounds=3, visits=1, script=HAPPY, timeouts={"heartbeat": 0})
    # each round begins with one; the visit's own sign_in is not needed after it
    assert due["calls"][:2] == ["sign_in", "person_info"]
    assert due["calls"].count("sign_in") == 3
    assert due["attempts"][due["calls"].index("sign_in")] == 1
    assert "settle" in due["calls"]


def test_a_heartbeat_the_gateway_does_not_answer_is_logged_once_and_keeps_the_kiosk_open(
        kiosk: Kiosk) -> None:
    result = kiosk.boot(rounds=4, visits=0, timeouts={"heartbeat": 0},
                        faults={"sign_in": ["unreachable", "unreachable", "ok", "unreachable"]})
    assert result["calls"] == ["sign_in"] * 4
    # once per spell: the first of two failures in a row, and the one after a success
    assert result["events"].count("heartbeat_failed") == 2
    assert "out_of_service" not in result["events"]
    assert result["pages"][-1][0] == "welcome"


def test_a_kiosk_signs_in_at_boot_once_its_welcome_page_is_up(kiosk: Kiosk) -> None:
    """Its heartbeat's first beat is at boot: an operator who rebooted a kiosk, or gave it new
    firmware, saw it sign in (with its firmware version) only 10 minutes later. A gateway that
    does not answer is logged once, and the welcome page was up before it was asked: no one
    waits on it. The next beat is a heartbeat on, not every turn of the loop."""
    up = kiosk.boot(rounds=3, visits=0)
    assert up["calls"] == ["sign_in"] and up["attempts"] == [1]
    assert "heartbeat_failed" not in up["events"]
    away = kiosk.boot(rounds=3, visits=0, faults={"sign_in": ["unreachable"]})
    assert away["calls"] == ["sign_in"] and away["attempts"] == [1]
    assert away["events"].count("heartbeat_failed") == 1
    assert away["events"].index("idle") < away["events"].index("heartbeat_failed")
    assert [page for page, _ in away["pages"]] == ["welcome"] * 3
    assert "out_of_service" not in away["events"]


def test_a_card_put_in_during_the_boot_heartbeat_is_served_when_it_fails(kiosk: Kiosk) -> None:
    """The resident puts the card in as the welcome page shows, while the boot heartbeat waits
    on a gateway that does not answer: the card is read once it has failed, and the visit
    signs in by itself (in full, the link's usual attempts) and settles."""
    result = kiosk.boot(rounds=1, visits=1, script=HAPPY, faults={"sign_in": ["unreachable"]})
    assert result["calls"][:3] == ["sign_in", "sign_in", "person_info"]
    assert result["attempts"][:2] == [1, 0]  # the heartbeat's one; the visit's, configured
    assert result["events"].count("heartbeat_failed") == 1
    assert result["reads"] == 1 and result["calls"].count("settle") == 1
    assert len(result["receipts"]) == 1 and result["open"] == []


# ---------------------------------------------------------------------------- an elderly resident
def test_a_wrong_card_is_asked_out_as_this_card_not_as_a_social_security_card(
        kiosk: Kiosk) -> None:
    """A bank card put in by mistake: "this is not a social security card ... please take
    your social security card" sends its holder looking for a card that is not in the slot."""
    result = kiosk.session(card_error="wrong_application")
    error = result["last"]["error"]
    assert error["t_en"] == "This is not a social security card"
    assert (error["l4"], error["l5"]) == ("请取出此卡", "Please take this card out")


@pytest.mark.parametrize("reason", ["card_unreadable", "gateway_unreachable", "not_settled"])
def test_a_page_that_says_try_again_also_says_where_to_go_if_it_keeps_failing(
        mp: StageWorker, reason: str) -> None:
    """A resident who came to the hall is not sent home with only "try again": a damaged
    chip fails every time, and the counter settles the bill while the network is down."""
    page, shown = mp.call("app.screens", "error", reason, True)
    assert "窗口" in shown["l0"] and "counter" in shown["l1"]


def test_a_resident_who_leaves_a_settlement_in_doubt_is_told_where_to_learn_how_it_ended(
        kiosk: Kiosk) -> None:
    """'Please wait, or take your card to leave': one who leaves has no receipt and does not
    know whether the bill was settled; the counter can tell them (and hand over the receipt
    that recovery prints for the clerk)."""
    result = kiosk.session(script=HAPPY, faults={"settle": ["lost_reply"],
                                                 "settlement_query": ["unreachable"]})
    assert result["outcome"] == "in_doubt"
    page = result["last"]["error"]
    assert page["t_en"] == "Settlement not yet confirmed"
    assert "窗口" in page["l4"] and "counter" in page["l5"]


def test_a_resident_with_more_bills_than_buttons_is_told_the_kiosk_settles_them_too(
        mp: StageWorker) -> None:
    """Four buttons: the fifth and sixth bills are settled here too, by inserting the card
    again after this one (they are listed then); not sent to queue at the counter."""
    bill = ZHANG["bills"][0]
    page, shown = mp.call("app.screens", "bills", "欧阳秀兰", [bill] * 6)
    assert (shown["l2"], shown["l3"]) == ("另有2笔费用，办完本笔后请重新插卡",
                                          "2 more: insert your card again after this one")
    assert [shown[f"b{i}"] for i in range(4)] == [shown["b0"]] * 4


@pytest.mark.parametrize("reason", ["timeout", "card_removed"])
def test_a_visit_cut_short_says_it_can_be_started_again(mp: StageWorker, reason: str) -> None:
    """A slow reader whose page timed out, or whose card slipped out, reads 'cancelled,
    nothing was settled': and what now? The card goes in again, and the visit starts over."""
    page, shown = mp.call("app.screens", "error", reason, reason == "timeout")
    assert "重新插卡" in shown["l0"] and "insert your card" in shown["l1"]
    assert "nothing was settled" in shown["l1"].lower()


def test_the_receipt_says_where_to_go_if_something_on_it_is_wrong(kiosk: Kiosk) -> None:
    """The resident takes the receipt home: if an amount looks wrong, or a relative has a
    question, the paper itself says where to bring it."""
    rows = [row.strip() for row in
            receipt_of(kiosk.session(script=HAPPY)["receipts"][0]).text().splitlines()]
    assert "如有疑问请持本凭条到窗口咨询" in rows
    assert "Any problem? Ask at the counter" in rows


def test_a_resident_who_owes_nothing_reads_it_on_the_receipt_as_on_the_screen(
        kiosk: Kiosk) -> None:
    """Medical assistance pays all that is left: the done page says 'You have nothing more
    to pay'; the receipt said only 0.00, which an elderly resident may still queue with."""
    tekun = {"person": dict(ZHANG["person"], assistance="tekun"), "bills": ZHANG["bills"]}
    result = kiosk.session(script=HAPPY, people={ZHANG_CARD["ssn"]: tekun})
    assert result["outcome"] == "settled"
    assert result["last"]["done"]["big"] == "0.00"
    rows = [row.strip() for row in receipt_of(result["receipts"][0]).text().splitlines()]
    assert "您无需再缴费" in rows and "You have nothing more to pay" in rows
    assert "请到窗口缴费 Pay at the counter" not in rows


@pytest.mark.parametrize("name, masked", [("张秀兰", "张*兰"), ("王明", "王*"),
                                          ("欧阳秀兰", "欧**兰"), ("李", "李")])
def test_the_receipt_masks_the_name_as_it_masks_the_id_number(mp: StageWorker, name: str,
                                                              masked: str) -> None:
    """A receipt is left in the tray, dropped, handed to the clerk by whoever finds it: it
    names the clinic and the bill, so the name is masked as the ID number is (enough for the
    resident and the counter to know it, with the settlement number)."""
    assert mp.call("app.receipt", "mask_name", name) == masked


def test_the_printed_receipt_carries_the_masked_name_only(kiosk: Kiosk) -> None:
    rows = receipt_of(kiosk.session(script=HAPPY)["receipts"][0]).text().splitlines()
    (name_row,) = [row for row in rows if row.startswith("姓名 Name")]
    assert name_row.endswith(" 张*兰") and display_width(name_row) == 32  # flush right
    assert not [row for row in rows if "张秀兰" in row]


def default_timeouts(mp: StageWorker) -> dict[str, int]:
    """The firmware's own timeouts (app.config.TIMEOUTS), as a kiosk provisioned without
    overrides runs them."""
    cfg = {"version": 1, "board": "unix", "kiosk_id": "K0001", "gateway_kid": "gw",
           "gateway": {"kind": "tcp", "host": "10.0.0.2", "port": 7700},
           "gateway_public_key": "00" * 32}
    return mp.call("app.config", "check", cfg)["timeouts_ms"]


def test_a_slow_second_tap_on_a_bill_does_not_confirm_unread(kiosk: Kiosk,
                                                             mp: StageWorker) -> None:
    """An elderly resident taps the third bill, sees nothing happen at once, and taps it
    again a second later: the confirm page is up by then, and its Confirm button lies under
    the left end of the third and fourth bill rows. That tap is not a confirmation: nobody
    has read the page's amounts within a second and a half of it appearing."""
    guard = default_timeouts(mp)["touch_guard"]
    bills = ZHANG["bills"] + [dict(ZHANG["bills"][1], bill_id=f"B-000{n}") for n in (3, 4)]
    people = {ZHANG_CARD["ssn"]: {"person": ZHANG["person"], "bills": bills}}
    timeouts = {"touch_guard": guard, "choose": guard + 1000, "confirm": 3000}
    choose = f"b2@{guard + 100}"  # a bill chosen once its page has been read
    again = kiosk.session(script={"bills": choose, "confirm": "b0@1000"}, people=people,
                          timeouts=timeouts)
    assert [page for page, _ in again["pages"]][2:5] == ["bills", "processing", "confirm"]
    assert again["outcome"] == "timeout" and settled_nothing(again)
    read = kiosk.session(script={"bills": choose, "confirm": "b0@2000"}, people=people,
                         timeouts=timeouts)
    assert read["outcome"] == "settled"


def test_the_pages_that_wait_for_a_choice_give_a_slow_reader_two_minutes(
        mp: StageWorker) -> None:
    """The confirm page is six lines in two languages and an amount to check against the
    clinic's paper bill: a minute is not always enough for poor eyes, and the page gives up
    without a warning (the visit starts over from the card). The card in the slot holds the
    kiosk for its holder anyway, so a longer wait costs no one else anything."""
    timeouts = default_timeouts(mp)
    assert timeouts["choose"] >= 120_000 and timeouts["confirm"] >= 120_000


def test_a_bill_button_says_its_amount_is_the_total_not_what_is_paid(mp: StageWorker) -> None:
    """'北京大学第一医院 2026-11-18 136,500.00元' on a button, under 'choose a bill to
    settle', reads to an elderly resident as what they are about to pay; it is the bill's
    total, before the funds' shares (the confirm page shows what they pay)."""
    button = mp.call("app.screens", "bill_button", ZHANG["bills"][0])
    assert button == "涞源县医院 2026-11-20 总额24,200.00元"
    longest = {"fixmedins_name": "中国医学科学院北京协和医院河北分院门诊部",
               "date": "2026-11-20", "medfee_sumamt": 9_999_999_999}
    button = mp.call("app.screens", "bill_button", longest)
    assert len(button.encode("gbk")) <= 60  # the button's txt_maxl: nothing cut off
    assert button.endswith(" 总额99,999,999.99元")


def test_pages_that_end_a_visit_with_nothing_done_say_where_to_ask(mp: StageWorker) -> None:
    """'No bills waiting' to a resident holding the clinic's paper bill (not uploaded yet,
    or settled at the hospital), or 'out of service: checking the last settlement' for as
    long as the gateway is away: both left an elderly resident at the kiosk not knowing
    whether to wait, come back or queue."""
    page, shown = mp.call("app.screens", "error", "no_bills", True)
    assert "窗口" in shown["l0"] and "counter" in shown["l1"]
    page, shown = mp.call("app.screens", "out_of_service", "in_doubt")
    assert "窗口" in shown["l0"] and "counter" in shown["l1"]


def test_a_long_clinic_name_does_not_push_the_date_off_the_confirm_page(
        mp: StageWorker) -> None:
    """The confirm page's first line is the clinic and the date: a name longer than the line
    (31 Chinese characters of 24 px) hid the date the resident checks the bill by."""
    clinic = "河北省保定市涞源县王家庄乡中心卫生院附属社区卫生服务站门诊部"  # 30 characters
    bill = dict(ZHANG["bills"][0], fixmedins_name=clinic)
    result = {"medfee_sumamt": 2420000, "hifp_pay": 1452000, "hifmi_pay": 242000,
              "maf_pay": 121000, "psn_cash_pay": 605000}
    page, shown = mp.call("app.screens", "confirm", bill, result)
    assert shown["l0"].endswith("… 2026-11-20") and shown["l0"].startswith(clinic[:20])
    assert display_width(shown["l0"]) <= 63
    short = dict(bill, fixmedins_name="涞源县医院")
    assert mp.call("app.screens", "confirm", short, result)[1]["l0"] == "涞源县医院 2026-11-20"


@pytest.mark.parametrize("reason", ["paper_out", "printer_fault"])
def test_a_resident_waiting_on_the_printer_is_told_to_fetch_staff(mp: StageWorker,
                                                                  reason: str) -> None:
    """'Receipt prints once paper is loaded': by whom? The kiosk tells no one in the hall
    (the gateway hears nothing of its printer), so a resident told to wait would wait out
    the quarter of an hour for a clerk who does not know."""
    page, shown = mp.call("app.screens", "error", reason, True, 605000, True)
    assert "工作人员" in shown["l0"] and "ask staff" in shown["l1"]
    assert "saved" in shown["l1"]  # still first: the money part is done


@pytest.mark.parametrize("reason", ["paper_out", "printer_fault"])
def test_an_out_of_service_page_over_a_waiting_receipt_says_the_settlement_is_saved(
        mp: StageWorker, reason: str) -> None:
    """A receipt the power cut left unprinted, the printer not ready when it came back: the
    resident read only "out of service", never that the bill was settled. With no receipt
    waiting, the page is as before."""
    page, shown = mp.call("app.screens", "out_of_service", reason, True, True)
    before = mp.call("app.screens", "out_of_service", reason)[1]
    assert (shown["l0"], shown["l1"]) == (before["l0"], before["l1"])  # the reason first
    assert "结算已保存" in shown["l2"] and "settlement saved" in shown["l3"]
    assert (shown["l4"], shown["l5"]) == ("请取走社保卡", "Please take your card")
    gbk = {cp: code for cp, code in gbk_pairs()}  # the board's flash tables
    for line in ("l2", "l3"):
        assert len(shown[line].encode("gbk")) <= 80  # the text's txt_maxl: nothing cut off
        assert display_width(shown[line]) * 12 <= 760  # 24 px font, ASCII 12 px: the line's w
        for char in shown[line]:  # a glyph the board has, not a "?" (display.encode_text)
            assert ord(char) < 0x80 or gbk.get(ord(char), 0x5C) & 0xFF != 0x5C
    assert sorted(before) == ["l0", "l1", "t_en", "t_zh"]


@pytest.mark.parametrize("fault", ["error:unavailable", "spoofed_error:invalid", "duplicated"])
def test_a_receipt_report_the_ledger_may_not_have_recorded_is_sent_again_later(
        kiosk: Kiosk, fault: str) -> None:
    """The gateway's ledger failing (unavailable), an error that echoes no request (anyone
    on the link can hand one back), or a replay refusal do not say the mark is stored: the txn
    was closed as reported all the same, and the ledger's receipt mark was lost for good."""
    result = kiosk.session(script=HAPPY, faults={"receipt_printed": [fault]})
    assert result["outcome"] == "settled"
    assert [state for _, state in result["open"]] == ["printed"]
    later = kiosk.boot(rounds=1, visits=0)
    assert later["calls"][0] == "receipt_printed" and later["open"] == []
    assert later["receipts"] == []  # never printed twice


def test_a_receipt_report_refused_for_good_is_not_sent_again(kiosk: Kiosk) -> None:
    result = kiosk.session(script=HAPPY, faults={"receipt_printed": ["error:invalid"]})
    assert result["open"] == [] and "report_refused" in result["events"]


def test_a_flash_that_fills_mid_visit_says_so_and_takes_the_kiosk_out_of_service(
        kiosk: Kiosk) -> None:
    """A write that fails for want of space (the counter's, as the resident's bills are
    fetched): the resident reads why before the take-card page, and the next resident is not
    led up to the same failure: out of service a while, then statvfs decides."""
    result = kiosk.boot(rounds=3, visits=2, script=HAPPY,
                        faults={"pending_bills": ["flash_full"]})
    assert "session_crashed" in result["events"]
    titles_shown = titles(result)
    # what failed is said (before: the take-card page at once, as if all were done)...
    assert titles_shown[:5] == ["Medical insurance self-service", "Reading your card",
                                "Looking up your bills", "Out of service", "Out of service"]
    assert result["last"]["error"]["l0"] == "存储空间已满，请联系工作人员"
    assert result["last"]["error"]["l1"] == "The kiosk's storage is full, please ask staff"
    # ...until the card is out; then a spell out of service (the second page), and with room
    # found, the second visit settles
    assert "Please take your card" not in titles_shown
    assert result["events"].count("out_of_service") == 1
    assert "back_in_service" in result["events"]
    assert result["calls"].count("settle") == 1 and len(result["receipts"]) == 1
    assert len(kiosk.settlements) == 1


def test_a_flash_short_of_room_keeps_the_kiosk_out_of_service_from_boot(kiosk: Kiosk) -> None:
    short = kiosk.boot(rounds=3, visits=1, script=HAPPY, walk_up=True,
                       min_free=1 << 62)  # more than any filesystem has free
    assert short["reads"] == 0 and "settle" not in short["calls"]  # no visit begun
    assert short["events"].count("flash_short") == 1  # once a spell, with the figures
    assert short["events"].count("out_of_service") == 1
    assert short["last"]["error"]["l1"] == "The kiosk's storage is full, please ask staff"
    assert "welcome" not in [page for page, _ in short["pages"]]
    room = kiosk.boot(rounds=1, visits=1, script=HAPPY)  # the technician made room
    assert room["calls"].count("settle") == 1 and len(room["receipts"]) == 1


def test_the_take_card_page_after_a_restart_says_how_to_tell_what_was_settled(
        mp: StageWorker) -> None:
    page, shown = mp.call("app.screens", "take_card", True)
    assert (page, shown["t_zh"], shown["t_en"]) == ("done", "请取走社保卡", "Please take your card")
    assert "已出凭条的费用已结算" in shown["l0"]
    assert "a bill with a receipt is settled" in shown["l1"]
    assert "请重新插卡" in shown["l2"] and "insert your card again" in shown["l3"]
    for line in ("l0", "l1", "l2", "l3"):
        assert len(shown[line].encode("gbk")) <= 80  # the text's txt_maxl: nothing cut off
        assert display_width(shown[line]) * 12 <= 760  # 24 px font, ASCII 12 px: the line's w
    assert mp.call("app.screens", "take_card") == ("done", {"t_zh": "请取走社保卡",
                                                            "t_en": "Please take your card"})
