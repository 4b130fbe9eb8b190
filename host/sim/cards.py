"""Test cards for the card-reader simulator: ISO 7816 cards answering APDUs as T=0 cards do.

`SocialSecurityCard` models the SSSE file system (MF -> DF "sx1.sh.社会保障" -> EF05, EF06, records
as TLV); `BankCard` holds another application (the "wrong card" a resident may insert);
`MuteCard` never answers, or answers reset with a garbled ATR. `demo_deck()` builds one card per
demo resident (host/sim/demo_residents.json) plus those two. Layout: hardware/card-reader.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

RESIDENTS_FILE = Path(__file__).with_name("demo_residents.json")

SSSE_AID = b"sx1.sh." + "社会保障".encode("gbk")
PBOC_DEBIT_AID = bytes.fromhex("A000000333010101")
EF05 = 0xEF05
EF06 = 0xEF06

# Status words the cards answer.
SW_OK = b"\x90\x00"
SW_WRONG_LENGTH = b"\x67\x00"
SW_CONDITIONS_NOT_SATISFIED = b"\x69\x85"
SW_NO_CURRENT_EF = b"\x69\x86"
SW_FUNCTION_NOT_SUPPORTED = b"\x6a\x81"
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_RECORD_NOT_FOUND = b"\x6a\x83"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"

# T=0 ATRs (TS 3B, no TCK). The historical bytes are our own, shown in the reader log.
SSSE_ATR = bytes.fromhex("3B6C0000") + b"SSSE-3.0\x00\x00\x00\x01"
BANK_ATR = bytes.fromhex("3B6800000073C84013009000")
GARBLED_ATR = bytes.fromhex("3B6C00005353")  # promises 12 historical bytes, sends 2


class Card(Protocol):
    """What the reader sees of a card in its slot."""

    label: str

    def answer_to_reset(self) -> bytes | None:
        """Cold reset: clears the card's state; the ATR, or None if the card stays silent."""
        ...

    def transmit(self, apdu: bytes) -> bytes:
        """One T=0 command: response data + SW1 SW2 (61xx / 6Cxx are left to the reader)."""
        ...


def bcd(digits: str) -> bytes:
    return bytes.fromhex(digits)


def tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag, len(value))) + value


def padded(value: bytes, size: int) -> bytes:
    if len(value) > size:
        raise ValueError(f"{value!r} does not fit in {size} bytes")
    return value + b"\x00" * (size - len(value))


class _T0Card:
    """The APDU plumbing every T=0 card shares: CLA check, GET RESPONSE for 61xx, 6Cxx on a
    wrong Le. Subclasses answer the instructions they know in `_command`."""

    label = "card"
    atr: bytes | None = None

    def __init__(self) -> None:
        self._pending_response = b""

    def answer_to_reset(self) -> bytes | None:
        self._pending_response = b""
        self._reset_state()
        return self.atr

    def _reset_state(self) -> None:
        pass

    def transmit(self, apdu: bytes) -> bytes:
        if len(apdu) < 4:
            return SW_WRONG_LENGTH
        cla, ins = apdu[0], apdu[1]
        if ins == 0xC0:
            return self._get_response(apdu)
        self._pending_response = b""
        if cla != 0x00:
            return SW_CLA_NOT_SUPPORTED
        return self._command(ins, apdu[2], apdu[3], apdu[4:])

    def _command(self, ins: int, p1: int, p2: int, body: bytes) -> bytes:
        return SW_INS_NOT_SUPPORTED

    def _response_available(self, data: bytes) -> bytes:
        """A case-4 answer in T=0: the data waits for GET RESPONSE."""
        self._pending_response = data
        return bytes((0x61, len(data)))

    def _get_response(self, apdu: bytes) -> bytes:
        data, self._pending_response = self._pending_response, b""
        if not data:
            return SW_CONDITIONS_NOT_SATISFIED  # nothing waiting to be fetched
        le = apdu[4] if len(apdu) == 5 else 0
        if le != len(data):
            self._pending_response = data
            return bytes((0x6C, len(data)))
        return data + SW_OK

    @staticmethod
    def _le_answer(data: bytes, body: bytes) -> bytes:
        """Case 2: data if Le matches (or is 00: 'as much as there is'), else 6C with the size."""
        if len(body) != 1:
            return SW_WRONG_LENGTH
        le = body[0]
        if le not in (0, len(data)):
            return bytes((0x6C, len(data)))
        return data + SW_OK


class SocialSecurityCard(_T0Card):
    """A 社会保障卡 with the SSSE application. `files` maps an EF id to its records
    {record id: raw TLV bytes}; tests may corrupt or delete records there."""

    def __init__(self, *, name: str, ssn: str, card_no: str, card_id: str, issue: str,
                 expiry: str, label: str = "") -> None:
        super().__init__()
        self.label = label or card_no
        self.atr = SSSE_ATR
        self.name = name
        self.ssn = ssn
        self.card_no = card_no
        self.card_id = card_id
        self.issue = issue
        self.expiry = expiry
        sex = b"1" if int(ssn[16]) % 2 else b"2"  # GB 11643: odd 17th digit = male
        self.files: dict[int, dict[int, bytes]] = {
            EF05: {
                0x01: tlv(0x01, card_id.encode("ascii")),
                0x05: tlv(0x05, bcd(issue.replace("-", ""))),
                0x06: tlv(0x06, bcd(expiry.replace("-", ""))),
                0x07: tlv(0x07, card_no.encode("ascii")),
            },
            EF06: {
                0x08: tlv(0x08, ssn.encode("ascii")),
                0x09: tlv(0x09, padded(name.encode("gbk"), 30)),
                0x0A: tlv(0x0A, sex),
                0x0B: tlv(0x0B, b"\x01"),  # ethnicity code 01 (Han)
                0x0D: tlv(0x0D, bcd(ssn[6:14])),  # birth date, from the SSN
            },
        }
        self._in_ssse = False
        self._current_ef: int | None = None

    @classmethod
    def from_resident(cls, resident: dict[str, Any]) -> SocialSecurityCard:
        return cls(name=resident["name"], ssn=resident["ssn"], card_no=resident["card_no"],
                   card_id=resident["card_id"], issue=resident["issue"],
                   expiry=resident["expiry"], label=resident["psn_no"])

    def _reset_state(self) -> None:
        self._in_ssse = False
        self._current_ef = None

    def _command(self, ins: int, p1: int, p2: int, body: bytes) -> bytes:
        if ins == 0xA4:
            return self._select(p1, body)
        if ins == 0xB2:
            return self._read_record(p1, p2, body)
        return SW_INS_NOT_SUPPORTED

    def _select(self, p1: int, body: bytes) -> bytes:
        if not body or body[0] != len(body) - 1:
            return SW_WRONG_LENGTH
        target = body[1:]
        if p1 == 0x04:  # by DF name
            if target != SSSE_AID:
                return SW_FILE_NOT_FOUND
            self._in_ssse, self._current_ef = True, None
            return self._response_available(tlv(0x6F, tlv(0x84, SSSE_AID)))  # FCI
        if p1 in (0x00, 0x02) and len(target) == 2:
            fid = int.from_bytes(target, "big")
            if fid == 0x3F00:
                self._in_ssse, self._current_ef = False, None
                return SW_OK
            if p1 == 0x02 and self._in_ssse and fid in self.files:
                self._current_ef = fid
                return SW_OK
            return SW_FILE_NOT_FOUND
        return SW_WRONG_P1P2

    def _read_record(self, p1: int, p2: int, body: bytes) -> bytes:
        if p2 >> 3:
            return SW_FUNCTION_NOT_SUPPORTED  # SFI addressing: only the current EF
        if self._current_ef is None:
            return SW_NO_CURRENT_EF
        records = self.files[self._current_ef]
        if p2 == 0x00:  # P1 = record identifier (the tag), first occurrence
            record = records.get(p1)
        elif p2 == 0x04:  # P1 = record number, 1-based, in identifier order
            ordered = [records[tag] for tag in sorted(records)]
            record = ordered[p1 - 1] if 1 <= p1 <= len(ordered) else None
        else:
            return SW_WRONG_P1P2
        if record is None:
            return SW_RECORD_NOT_FOUND
        return self._le_answer(record, body)


class BankCard(_T0Card):
    """A PBOC debit card: selecting its own AID works, the SSSE application is not there."""

    def __init__(self, label: str = "bank card") -> None:
        super().__init__()
        self.label = label
        self.atr = BANK_ATR

    def _command(self, ins: int, p1: int, p2: int, body: bytes) -> bytes:
        if ins != 0xA4:
            return SW_INS_NOT_SUPPORTED
        if p1 == 0x04 and body and body[1:] == PBOC_DEBIT_AID:
            return self._response_available(tlv(0x6F, tlv(0x84, PBOC_DEBIT_AID)))
        return SW_FILE_NOT_FOUND


class MuteCard:
    """An unreadable card: silent at reset (dirty or broken contacts), or with a garbled ATR."""

    def __init__(self, atr: bytes | None = None, label: str = "mute card") -> None:
        self.label = label
        self._atr = atr

    def answer_to_reset(self) -> bytes | None:
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        raise AssertionError("a mute card is never powered")


def demo_residents(path: Path = RESIDENTS_FILE) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["residents"]


def demo_deck() -> dict[str, Card]:
    """Every demo resident's card by psn_no (P007's is the expired one), plus "wrong_app" (a
    bank card), "mute" (no ATR) and "garbled_atr"."""
    deck: dict[str, Card] = {
        r["psn_no"]: SocialSecurityCard.from_resident(r) for r in demo_residents()
    }
    deck["wrong_app"] = BankCard(label="wrong_app")
    deck["mute"] = MuteCard(label="mute")
    deck["garbled_atr"] = MuteCard(atr=GARBLED_ATR, label="garbled_atr")
    return deck


def deck_card(key: str) -> Card:
    """A fresh card from the demo deck: a psn_no ("P001"), "wrong_app", "mute" or
    "garbled_atr"."""
    deck = demo_deck()
    if key not in deck:
        raise KeyError(f"no card {key!r} in the demo deck; have {sorted(deck)}")
    return deck[key]
