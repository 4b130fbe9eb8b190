"""The card-reader simulator as the kiosk sees it over the serial line, and its deck of cards."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import serial
from onestop.host.sim.card import (
    CardReaderSim,
    Cmd,
    Command,
    CommandParser,
    Latency,
    Status,
    encode_frame,
    t0_exchange,
)
from onestop.host.sim.cards import (
    BANK_ATR,
    GARBLED_ATR,
    SSSE_AID,
    SSSE_ATR,
    Card,
    SocialSecurityCard,
    deck_card,
    demo_deck,
    demo_residents,
)
from onestop.host.sim.link import SerialLink

USER = b"\x00"
SELECT_SSSE = bytes.fromhex("00A404000F") + SSSE_AID
SELECT_EF05 = bytes.fromhex("00A4020002EF05")
SELECT_EF06 = bytes.fromhex("00A4020002EF06")


class Host:
    """The kiosk's end of the cable, speaking the module protocol with pyserial."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, 115200, timeout=2)
        self.parser = CommandParser()  # the frame format is the same both ways

    def send_raw(self, data: bytes) -> None:
        self.port.write(data)

    def reply(self) -> tuple[int, int, bytes]:
        """(cmd, reader status, data) of the next reply frame."""
        while (frame := self.parser.next()) is None:
            chunk = self.port.read(self.port.in_waiting or 1)
            assert chunk, "the reader did not answer"
            self.parser.feed(chunk)
        assert isinstance(frame, Command)
        return frame.cmd, frame.data[0], frame.data[1:]

    def command(self, cmd: int, data: bytes = USER) -> tuple[int, bytes]:
        self.send_raw(encode_frame(cmd, data))
        reply_cmd, status, body = self.reply()
        assert reply_cmd == cmd
        return status, body

    def apdu(self, capdu: bytes) -> tuple[int, bytes]:
        return self.command(Cmd.APDU, USER + capdu)


@pytest.fixture
def link() -> Iterator[SerialLink]:
    with SerialLink("card", pace=False) as cable:
        yield cable


@pytest.fixture
def sim(link: SerialLink) -> Iterator[CardReaderSim]:
    with CardReaderSim(link.device_path, latency=Latency.instant()) as reader:
        yield reader


@pytest.fixture
def host(link: SerialLink, sim: CardReaderSim) -> Iterator[Host]:
    kiosk = Host(link.host_path)
    yield kiosk
    kiosk.port.close()


# ---------------------------------------------------------------- the module protocol
def test_status_reports_absent_present_and_powered(host: Host, sim: CardReaderSim) -> None:
    assert host.command(Cmd.STATUS) == (Status.OK, b"\x00")
    sim.insert(deck_card("P001"))
    assert host.command(Cmd.STATUS) == (Status.OK, b"\x01")
    host.command(Cmd.POWER_ON)
    assert host.command(Cmd.STATUS) == (Status.OK, b"\x02")
    assert host.command(Cmd.POWER_OFF) == (Status.OK, b"")
    assert host.command(Cmd.STATUS) == (Status.OK, b"\x01")


def test_power_on_answers_with_the_cards_atr(host: Host, sim: CardReaderSim) -> None:
    assert host.command(Cmd.POWER_ON) == (Status.NO_CARD, b"")
    sim.insert(deck_card("wrong_app"))
    assert host.command(Cmd.POWER_ON) == (Status.OK, BANK_ATR)
    sim.insert(deck_card("mute"))
    assert host.command(Cmd.POWER_ON) == (Status.CARD_MUTE, b"")
    sim.insert(deck_card("garbled_atr"))
    assert host.command(Cmd.POWER_ON) == (Status.OK, GARBLED_ATR)  # passed on as received


def test_a_whole_read_through_the_module(host: Host, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    host.command(Cmd.POWER_ON)
    status, fci = host.apdu(SELECT_SSSE)  # the module fetched the FCI behind 61xx
    assert status == Status.OK and fci.endswith(b"\x90\x00") and SSSE_AID in fci
    assert host.apdu(SELECT_EF06) == (Status.OK, b"\x90\x00")
    status, rapdu = host.apdu(bytes.fromhex("00B2090020"))
    assert rapdu[:2] == b"\x09\x1e" and rapdu[-2:] == b"\x90\x00"
    assert rapdu[2:-2].rstrip(b"\x00").decode("gbk") == "张秀兰"
    assert sim.apdus == [SELECT_SSSE, SELECT_EF06, bytes.fromhex("00B2090020")]


def test_an_apdu_to_an_unpowered_card_is_refused(host: Host, sim: CardReaderSim) -> None:
    assert host.apdu(SELECT_SSSE) == (Status.NO_CARD, b"")
    sim.insert(deck_card("P001"))
    assert host.apdu(SELECT_SSSE) == (Status.NOT_POWERED, b"")


def test_removal_is_latched_even_if_another_card_goes_in(host: Host,
                                                         sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    host.command(Cmd.POWER_ON)
    sim.pull()
    sim.insert(deck_card("P002"))
    assert host.apdu(SELECT_SSSE) == (Status.CARD_REMOVED, b"")
    assert host.command(Cmd.POWER_ON) == (Status.OK, SSSE_ATR)  # a new session clears it
    assert host.apdu(SELECT_SSSE)[0] == Status.OK


def test_pull_after_n_apdus_counts_from_power_on(host: Host, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    sim.pull_after(2)
    host.command(Cmd.POWER_ON)
    assert host.apdu(SELECT_SSSE)[0] == Status.OK
    assert host.apdu(SELECT_EF05) == (Status.OK, b"\x90\x00")
    assert host.apdu(bytes.fromhex("00B2010012")) == (Status.CARD_REMOVED, b"")
    assert not sim.present


def test_pull_after_zero_is_right_after_the_atr(host: Host, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    sim.pull_after(0)
    assert host.command(Cmd.POWER_ON) == (Status.OK, SSSE_ATR)
    assert host.apdu(SELECT_SSSE) == (Status.CARD_REMOVED, b"")


def test_pull_mid_apdu_interrupts_that_apdu(host: Host, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    sim.pull_after(1, mid_apdu=True)
    host.command(Cmd.POWER_ON)
    assert host.apdu(SELECT_SSSE)[0] == Status.OK
    assert host.apdu(SELECT_EF05) == (Status.CARD_REMOVED, b"")
    assert not sim.present


def test_a_card_that_goes_silent_stays_in_the_slot(host: Host, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    sim.mute_after(1)
    host.command(Cmd.POWER_ON)
    assert host.apdu(SELECT_SSSE)[0] == Status.OK
    assert host.apdu(SELECT_EF05) == (Status.CARD_MUTE, b"")
    assert sim.present and not sim.powered
    assert host.apdu(SELECT_EF05) == (Status.NOT_POWERED, b"")


def test_a_frame_with_a_bad_bcc_is_answered_bcc_error_and_not_executed(
        host: Host, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    frame = bytearray(encode_frame(Cmd.POWER_ON, USER))
    frame[-2] ^= 0x55
    host.send_raw(bytes(frame))
    assert host.reply() == (Cmd.POWER_ON, Status.BCC_ERROR, b"")
    assert not sim.powered


def test_unknown_commands_and_bad_parameters_are_refused(host: Host) -> None:
    assert host.command(0x7E) == (Status.BAD_COMMAND, b"")
    assert host.command(Cmd.STATUS, b"\x09") == (Status.BAD_PARAMETER, b"")
    assert host.command(Cmd.APDU, USER + b"\x00\xa4") == (Status.BAD_PARAMETER, b"")
    assert host.command(Cmd.STATUS, b"\x01") == (Status.OK, b"\x00")  # PSAM slot: empty


def test_noise_on_the_line_is_skipped(host: Host, sim: CardReaderSim) -> None:
    sim.insert(deck_card("P001"))
    host.send_raw(b"\xff\x00\x13\x37")
    assert host.command(Cmd.STATUS) == (Status.OK, b"\x01")


def test_a_stalled_partial_frame_does_not_swallow_the_next_command(host: Host) -> None:
    host.send_raw(b"\x02\x01\x00\x33")  # a frame start promising 256 bytes, then nothing
    time.sleep(0.25)  # longer than the module's inter-byte timeout
    assert host.command(Cmd.STATUS) == (Status.OK, b"\x00")


# ---------------------------------------------------------------- the cards
def powered(card: Card) -> Card:
    card.answer_to_reset()
    return card


def test_the_deck_holds_every_resident_and_the_bad_cards() -> None:
    deck = demo_deck()
    residents = {r["psn_no"] for r in demo_residents()}
    assert set(deck) == residents | {"wrong_app", "mute", "garbled_atr"}
    expired = deck_card("P007")
    assert isinstance(expired, SocialSecurityCard) and expired.expiry == "2024-05-01"
    with pytest.raises(KeyError):
        deck_card("P999")


def test_records_need_the_application_and_the_file_selected() -> None:
    card = powered(deck_card("P001"))
    read_ssn = bytes.fromhex("00B2080014")
    assert card.transmit(read_ssn) == b"\x69\x86"  # no current EF
    assert card.transmit(SELECT_EF06) == b"\x6a\x82"  # not in the SSSE DF yet
    assert t0_exchange(card, SELECT_SSSE)[-2:] == b"\x90\x00"
    assert card.transmit(SELECT_EF06) == b"\x90\x00"
    assert card.transmit(read_ssn) == b"\x08\x12130630195603120048\x90\x00"
    card.answer_to_reset()  # a reset forgets the selection
    assert card.transmit(read_ssn) == b"\x69\x86"


@pytest.mark.parametrize(("capdu", "sw"), [
    pytest.param("00B2030012", "6A83", id="record-not-found"),
    pytest.param("00B201000C", "6C12", id="wrong-Le"),
    pytest.param("00B2010312", "6A86", id="unknown-P2-mode"),
    pytest.param("00B2010C12", "6A81", id="SFI-addressing"),
    pytest.param("80B2010012", "6E00", id="wrong-CLA"),
    pytest.param("00CA9F7F00", "6D00", id="unknown-INS"),
    pytest.param("00A4020002EF07", "6A82", id="no-such-file"),
    pytest.param("00C0000010", "6985", id="nothing-to-get"),
])
def test_card_status_words(capdu: str, sw: str) -> None:
    card = powered(deck_card("P001"))
    t0_exchange(card, SELECT_SSSE)
    card.transmit(SELECT_EF05)
    assert card.transmit(bytes.fromhex(capdu)).hex().upper().endswith(sw)


def test_record_number_mode_counts_records_in_order() -> None:
    card = powered(deck_card("P001"))
    t0_exchange(card, SELECT_SSSE)
    card.transmit(SELECT_EF05)
    by_number = card.transmit(bytes.fromhex("00B2020400"))  # 2nd record: identifier 05
    assert by_number == bytes.fromhex("0504201904019000")


def test_the_reader_reissues_a_wrong_le_with_the_cards_length() -> None:
    card = powered(deck_card("P001"))
    t0_exchange(card, SELECT_SSSE)
    card.transmit(SELECT_EF05)
    assert t0_exchange(card, bytes.fromhex("00B2070001")) == b"\x07\x09HB0000001\x90\x00"


def test_a_bank_card_has_its_own_application_not_ssse() -> None:
    card = powered(deck_card("wrong_app"))
    assert t0_exchange(card, SELECT_SSSE) == b"\x6a\x82"
    assert t0_exchange(card, bytes.fromhex("00A4040008A000000333010101"))[-2:] == b"\x90\x00"
