"""Reading the social-security card end to end: the firmware driver under the real MicroPython
unix port (64 KB heap) talking over a paced pseudo-terminal UART to the card-reader simulator.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from onestop.host.mpy import Worker
from onestop.host.sim.card import CardReaderSim, Latency
from onestop.host.sim.cards import (
    EF05,
    EF06,
    SSSE_ATR,
    SocialSecurityCard,
    deck_card,
    demo_residents,
    tlv,
)
from onestop.host.sim.link import SerialLink

DRIVERS = ("apdu", "cardreader")  # precompiled by tests/firmware/conftest.py
RESIDENTS = {r["psn_no"]: r for r in demo_residents()}
SELECT_SSSE = bytes.fromhex("00A404000F") + b"sx1.sh." + "社会保障".encode("gbk")
READ_APDUS = [  # the documented read sequence (hardware/card-reader.md)
    SELECT_SSSE,
    bytes.fromhex("00A4020002EF05"),
    bytes.fromhex("00B2010012"),
    bytes.fromhex("00B2050006"),
    bytes.fromhex("00B2060006"),
    bytes.fromhex("00B207000B"),
    bytes.fromhex("00A4020002EF06"),
    bytes.fromhex("00B2080014"),
    bytes.fromhex("00B2090020"),
]


@pytest.fixture
def link() -> Iterator[SerialLink]:
    with SerialLink("card", baud=115200) as cable:
        yield cable


@pytest.fixture
def sim(link: SerialLink) -> Iterator[CardReaderSim]:
    with CardReaderSim(link.device_path, latency=Latency.instant()) as reader:
        yield reader


def read_card(mp: Worker, link: SerialLink) -> dict:
    return mp.call("mp_cardreader", "read_card", link.host_path)


def expected_card(psn_no: str) -> dict:
    resident = RESIDENTS[psn_no]
    return {key: resident[key] for key in ("ssn", "card_no", "card_id", "issue", "expiry")}


@pytest.mark.parametrize("psn_no", sorted(RESIDENTS))
def test_each_demo_residents_card_reads_as_issued(mp: Worker, link: SerialLink,
                                                  sim: CardReaderSim, psn_no: str) -> None:
    sim.insert(deck_card(psn_no))
    card = read_card(mp, link)["ok"]
    assert card.pop("name_gbk").decode("gbk") == RESIDENTS[psn_no]["name"]
    assert card.pop("atr") == SSSE_ATR
    assert card == expected_card(psn_no)
    assert sim.present and not sim.powered  # powered off afterwards, ready for the next


def test_the_read_sends_the_documented_apdus(mp: Worker, link: SerialLink,
                                             sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    assert "ok" in read_card(mp, link)
    assert sim.apdus == READ_APDUS


def test_the_expired_card_is_read_faithfully_for_the_app_to_refuse(
        mp: Worker, link: SerialLink, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P007"))
    assert read_card(mp, link)["ok"]["expiry"] == "2024-05-01"


@pytest.mark.parametrize("n_apdus", range(len(READ_APDUS)))
def test_card_pulled_after_each_step_is_reported_never_read(
        mp: Worker, link: SerialLink, sim: CardReaderSim, n_apdus: int) -> None:
    sim.insert(deck_card("P002"))
    sim.pull_after(n_apdus)
    result = read_card(mp, link)
    assert result.get("error") == "card_removed", result
    assert not sim.present


@pytest.mark.parametrize("n_apdus", range(len(READ_APDUS)))
def test_card_pulled_while_the_reader_talks_to_it(
        mp: Worker, link: SerialLink, sim: CardReaderSim, n_apdus: int) -> None:
    sim.insert(deck_card("P003"))
    sim.pull_after(n_apdus, mid_apdu=True)
    assert read_card(mp, link).get("error") == "card_removed"


@pytest.mark.parametrize("n_apdus", [0, 4, len(READ_APDUS) - 1])
def test_card_that_stops_answering_mid_read(mp: Worker, link: SerialLink,
                                            sim: CardReaderSim, n_apdus: int) -> None:
    sim.insert(deck_card("P004"))
    sim.mute_after(n_apdus)
    assert read_card(mp, link).get("error") == "card_removed"


def test_card_pulled_after_its_last_record_was_read_completely(
        mp: Worker, link: SerialLink, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P005"))
    sim.pull_after(len(READ_APDUS))
    card = read_card(mp, link)["ok"]
    assert card["ssn"] == RESIDENTS["P005"]["ssn"]
    assert card["name_gbk"].decode("gbk") == RESIDENTS["P005"]["name"]


def test_a_bank_card_is_the_wrong_application(mp: Worker, link: SerialLink,
                                              sim: CardReaderSim) -> None:
    sim.insert(deck_card("wrong_app"))
    result = read_card(mp, link)
    assert result["error"] == "wrong_application"
    assert "6A82" in result["msg"]
    assert not sim.powered


@pytest.mark.parametrize("key", ["mute", "garbled_atr"])
def test_an_unreadable_card_is_mute(mp: Worker, link: SerialLink, sim: CardReaderSim,
                                    key: str) -> None:
    sim.insert(deck_card(key))
    assert read_card(mp, link)["error"] == "card_mute"
    assert sim.apdus == []


def test_no_card(mp: Worker, link: SerialLink, sim: CardReaderSim) -> None:
    assert read_card(mp, link)["error"] == "no_card"


def test_reader_unplugged_times_out_and_recovers_when_plugged_back(
        mp: Worker, link: SerialLink, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    link.unplug()
    assert read_card(mp, link)["error"] == "reader_timeout"
    link.plug()
    assert read_card(mp, link)["ok"]["card_no"] == "HB0000001"


def test_status_follows_the_slot(mp: Worker, link: SerialLink, sim: CardReaderSim) -> None:
    assert mp.call("mp_cardreader", "status", link.host_path) == {"ok": "absent"}
    sim.insert(deck_card("P006"))
    assert mp.call("mp_cardreader", "status", link.host_path) == {"ok": "present"}


def test_a_missing_record_is_a_bad_status_word(mp: Worker, link: SerialLink,
                                               sim: CardReaderSim) -> None:
    card = SocialSecurityCard.from_resident(RESIDENTS["P001"])
    del card.files[EF05][0x07]
    sim.insert(card)
    result = read_card(mp, link)
    assert result["error"] == "bad_status"
    assert "6A83" in result["msg"]


@pytest.mark.parametrize(("ef", "record", "raw"), [
    pytest.param(EF05, 0x05, tlv(0x05, bytes.fromhex("20191301")), id="month-13"),
    pytest.param(EF05, 0x06, tlv(0x06, bytes.fromhex("20A90401")), id="date-not-bcd"),
    pytest.param(EF06, 0x09, tlv(0x09, "张秀兰".encode("gbk")), id="name-not-30-bytes"),
    pytest.param(EF06, 0x08, tlv(0x07, b"130630195603120048"), id="another-records-tag"),
    pytest.param(EF06, 0x08, tlv(0x08, b"13063019560312004Y"), id="not-an-ssn"),
    pytest.param(EF06, 0x09, tlv(0x09, bytes(30)), id="empty-name"),
    pytest.param(EF05, 0x07, tlv(0x07, b"hb0000001"), id="card-no-lowercase"),
])
def test_a_malformed_record_is_a_bad_record(mp: Worker, link: SerialLink, sim: CardReaderSim,
                                            ef: int, record: int, raw: bytes) -> None:
    card = SocialSecurityCard.from_resident(RESIDENTS["P001"])
    card.files[ef][record] = raw
    sim.insert(card)
    assert read_card(mp, link)["error"] == "bad_record"


def test_line_noise_before_a_reply_is_skipped(mp: Worker, link: SerialLink,
                                              sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    sim.send_noise(b"\xff\x13\x02\x00\x03\x32\x00\x00")  # junk, then a frame with a bad end
    assert read_card(mp, link)["ok"]["card_no"] == "HB0000001"


@pytest.mark.parametrize("power_on_latency", [
    pytest.param(0.15, id="quiet-gap-before-the-reply"),
    pytest.param(0.0, id="reply-right-behind-it"),
])
def test_a_noise_frame_start_does_not_swallow_the_reply(mp: Worker, link: SerialLink,
                                                        power_on_latency: float) -> None:
    # An STX and a LEN of 256 out of noise: the reply lands inside that "frame". The driver
    # abandons it when the line went quiet before the reply, else at the reply deadline.
    latency = Latency(0.0, power_on_latency, 0.0, 0.0, 0.0)
    with CardReaderSim(link.device_path, latency=latency) as sim:
        sim.insert(deck_card("P001"))
        sim.send_noise(b"\x02\x01\x00")
        assert read_card(mp, link)["ok"]["card_no"] == "HB0000001"


def test_a_command_damaged_on_the_way_is_sent_again(mp: Worker, link: SerialLink,
                                                   sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    sim.corrupt_incoming(2)  # POWER ON arrives damaged twice; the third copy gets through
    assert read_card(mp, link)["ok"]["card_no"] == "HB0000001"


def test_a_line_that_keeps_damaging_commands_is_a_reader_error(
        mp: Worker, link: SerialLink, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    sim.corrupt_incoming(3)
    assert read_card(mp, link)["error"] == "reader_error"
    assert not sim.powered  # nothing was done


def test_status_polled_from_another_task_during_a_read(mp: Worker, link: SerialLink,
                                                       sim: CardReaderSim) -> None:
    sim.insert(deck_card("P004"))
    card, statuses = mp.call("mp_cardreader", "read_while_polling", link.host_path, 5)["ok"]
    assert card["ssn"] == RESIDENTS["P004"]["ssn"]
    assert statuses == ["present"] * 5


def test_two_reads_on_one_driver(mp: Worker, link: SerialLink, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P002"))
    first, second = mp.call("mp_cardreader", "read_twice", link.host_path)["ok"]
    assert first == second and first["ssn"] == RESIDENTS["P002"]["ssn"]


def test_many_reads_fit_in_the_64k_heap(mp: Worker, link: SerialLink,
                                         sim: CardReaderSim) -> None:
    sim.insert(deck_card("P003"))
    for _ in range(15):  # a leak would run the 64 KB heap out
        assert "ok" in read_card(mp, link)


def test_reads_at_the_slowest_baud_with_the_modules_real_latency(mp: Worker) -> None:
    with SerialLink("card", baud=9600) as slow, CardReaderSim(slow.device_path, baud=9600) as sim:
        sim.insert(deck_card("P006"))
        assert read_card(mp, slow)["ok"]["card_no"] == "HA0000006"
