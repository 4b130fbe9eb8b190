"""Card-reader module simulator: a contact smart-card reader on a serial port, answering the
kiosk exactly as the module does (protocol: hardware/card-reader.md).

    link = SerialLink("card")
    reader = CardReaderSim(link.device_path)          # opens the pty end with pyserial
    reader.insert(deck_card("P001")); ...; reader.pull()
    reader.pull_after(3)   # pull the card once it has answered 3 APDUs after its next power-on

It is an implementation independent of firmware/drivers/cardreader.py (the other end of the
cable), so the two check each other. Cards and the demo deck: host/sim/cards.py.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import IntEnum

import serial
from onestop.host.sim.cards import (
    BankCard,
    Card,
    MuteCard,
    SocialSecurityCard,
    deck_card,
    demo_deck,
)

__all__ = [
    "BadBcc",
    "BankCard",
    "Card",
    "CardReaderSim",
    "Cmd",
    "Command",
    "CommandParser",
    "Latency",
    "MuteCard",
    "SlotState",
    "SocialSecurityCard",
    "Status",
    "deck_card",
    "demo_deck",
    "encode_frame",
    "t0_exchange",
]

STX = 0x02
ETX = 0x03
MAX_LEN = 272  # LEN (CMD + DATA) above this is not a frame
MAX_APDU = 261  # CLA INS P1 P2 Lc 255 bytes Le
USER_SLOT = 0x00
PSAM_SLOTS = (0x01, 0x02)
INTER_BYTE_TIMEOUT = 0.1  # s: a frame stalled this long is dropped


class Cmd(IntEnum):
    STATUS = 0x31
    POWER_ON = 0x32
    APDU = 0x33
    POWER_OFF = 0x34


_COMMANDS = frozenset(Cmd)


class Status(IntEnum):
    OK = 0x00
    NO_CARD = 0x01
    CARD_MUTE = 0x02
    CARD_REMOVED = 0x03
    NOT_POWERED = 0x04
    BAD_COMMAND = 0x05
    BAD_PARAMETER = 0x06
    BCC_ERROR = 0x07


class SlotState(IntEnum):
    ABSENT = 0x00
    PRESENT = 0x01
    POWERED = 0x02


@dataclass(frozen=True)
class Latency:
    """How long the module takes before it replies, in seconds (from the module's datasheet
    ranges); `card_silence` is how long it waits for a silent card before reporting it mute."""

    status: float = 0.003
    power_on: float = 0.1
    apdu: float = 0.03
    power_off: float = 0.003
    card_silence: float = 0.3

    @classmethod
    def instant(cls) -> Latency:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0)


def bcc(data: bytes) -> int:
    value = 0
    for byte in data:
        value ^= byte
    return value


def encode_frame(cmd: int, data: bytes = b"") -> bytes:
    """STX | LEN (2, big-endian, = 1 + len(data)) | CMD | DATA | BCC | ETX."""
    body = (len(data) + 1).to_bytes(2, "big") + bytes((cmd,)) + data
    if len(body) - 2 > MAX_LEN:
        raise ValueError("frame too long")
    return bytes((STX,)) + body + bytes((bcc(body), ETX))


@dataclass(frozen=True)
class Command:
    cmd: int
    data: bytes


@dataclass(frozen=True)
class BadBcc:
    """A frame that arrived whole but with a wrong BCC: the module answers BCC_ERROR."""

    cmd: int


class CommandParser:
    """The module's receive side: frames out of the byte stream, resynchronising on noise."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = 0  # noise bytes outside frames
        self.rejected = 0  # candidates with a bad LEN or ETX, or stalled

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pending(self) -> bool:
        return bool(self._buf)

    def expire(self) -> None:
        """Drop the candidate at the front (bad, or stalled) and rescan after its STX."""
        if self._buf:
            self.rejected += 1
            del self._buf[0]

    def next(self) -> Command | BadBcc | None:
        buf = self._buf
        while buf:
            if buf[0] != STX:
                start = buf.find(STX)
                start = len(buf) if start < 0 else start
                self.skipped += start
                del buf[:start]
                continue
            if len(buf) < 3:
                return None
            length = int.from_bytes(buf[1:3], "big")
            if not 1 <= length <= MAX_LEN:
                self.expire()
                continue
            if len(buf) < length + 5:
                return None
            frame = bytes(buf[: length + 5])
            if frame[-1] != ETX:
                self.expire()
                continue
            del buf[: length + 5]
            if bcc(frame[1:-2]) != frame[-2]:
                return BadBcc(frame[3])
            return Command(frame[3], frame[4:-2])
        return None


@dataclass
class _Fault:
    """A scripted fault, fired when the powered card has answered `after` APDUs."""

    after: int
    kind: str  # "pull" (between APDUs), "pull_mid" (during the next APDU), "mute"


class CardReaderSim:
    """The module on `device_path`, served by a background thread until close()."""

    def __init__(self, device_path: str, baud: int = 115200,
                 latency: Latency | None = None) -> None:
        self.latency = latency or Latency()
        self.apdus: list[bytes] = []  # every C-APDU the host sent, in order
        self._lock = threading.Lock()  # the slot's state, shared with the test's hand
        self._write_lock = threading.Lock()
        self._card: Card | None = None
        self._generation = 0  # bumped on every insert and pull
        self._powered = False
        self._removed_while_powered = False  # latched until the next power-on / power-off
        self._answered = 0  # APDUs answered since the last power-on
        self._fault: _Fault | None = None
        self._corrupt_frames = 0
        self._serial = serial.Serial(device_path, baud, timeout=0.02)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="card-reader-sim", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- the resident's hand
    def insert(self, card: Card) -> None:
        with self._lock:
            self._card = card
            self._generation += 1

    def pull(self) -> None:
        with self._lock:
            self._pull_locked()

    def pull_after(self, n_apdus: int, mid_apdu: bool = False) -> None:
        """Pull the card once it has answered `n_apdus` APDUs since its next power-on (0: right
        after the ATR). With `mid_apdu`, it leaves while the reader exchanges the next APDU."""
        with self._lock:
            self._fault = _Fault(n_apdus, "pull_mid" if mid_apdu else "pull")

    def mute_after(self, n_apdus: int) -> None:
        """The card stays in the slot but stops answering after `n_apdus` APDUs (a card
        half-pulled, its contacts lifted)."""
        with self._lock:
            self._fault = _Fault(n_apdus, "mute")

    @property
    def pending_fault(self) -> str | None:
        """The scripted fault still to fire ("pull", "pull_mid", "mute"), if any."""
        fault = self._fault
        return fault.kind if fault is not None else None

    def cancel_fault(self) -> None:
        """Forget a scripted fault that has not fired yet."""
        with self._lock:
            self._fault = None

    def corrupt_incoming(self, n_frames: int) -> None:
        """The next `n_frames` command frames arrive damaged (noise on the kiosk's transmit
        line): the module answers each with BCC_ERROR and does nothing."""
        with self._lock:
            self._corrupt_frames = n_frames

    def send_noise(self, data: bytes) -> None:
        """Put raw bytes on the line, as a glitch on the cable would."""
        with self._write_lock:
            self._serial.write(data)
            self._serial.flush()

    @property
    def present(self) -> bool:
        return self._card is not None

    @property
    def powered(self) -> bool:
        return self._powered

    @property
    def card(self) -> Card | None:
        return self._card

    def _pull_locked(self) -> None:
        if self._card is not None and self._powered:
            self._removed_while_powered = True
        self._card = None
        self._powered = False
        self._generation += 1

    # ---------------------------------------------------------------- the module
    def _serve(self) -> None:
        parser = CommandParser()
        last_byte = time.monotonic()
        while not self._stop.is_set():
            try:
                chunk = self._serial.read(self._serial.in_waiting or 1)
            except (serial.SerialException, OSError):
                return  # port closed under us
            now = time.monotonic()
            if chunk:
                parser.feed(chunk)
                last_byte = now
            elif parser.pending() and now - last_byte > INTER_BYTE_TIMEOUT:
                parser.expire()
            while (event := parser.next()) is not None:
                if isinstance(event, BadBcc) or self._take_corrupt_frame():
                    self._reply(event.cmd, Status.BCC_ERROR)
                else:
                    self._reply(event.cmd, *self._execute(event.cmd, event.data))
                    self._after_reply(event.cmd)

    def _take_corrupt_frame(self) -> bool:
        with self._lock:
            if not self._corrupt_frames:
                return False
            self._corrupt_frames -= 1
            return True

    def _reply(self, cmd: int, status: int, data: bytes = b"") -> None:
        try:
            with self._write_lock:
                self._serial.write(encode_frame(cmd, bytes((status,)) + data))
                self._serial.flush()
        except (serial.SerialException, OSError):
            pass  # a pulled cable: the reply is lost, as on the wire

    def _execute(self, cmd: int, data: bytes) -> tuple[int, bytes]:
        if cmd not in _COMMANDS:
            return Status.BAD_COMMAND, b""
        if not data or data[0] not in (USER_SLOT, *PSAM_SLOTS):
            return Status.BAD_PARAMETER, b""
        if cmd != Cmd.APDU and len(data) != 1:
            return Status.BAD_PARAMETER, b""
        if cmd == Cmd.APDU and not 4 <= len(data) - 1 <= MAX_APDU:
            return Status.BAD_PARAMETER, b""
        if data[0] != USER_SLOT:  # the PSAM slots are fitted but empty
            time.sleep(self.latency.status)
            return (Status.OK, bytes((SlotState.ABSENT,))) if cmd == Cmd.STATUS else (
                Status.NO_CARD, b"")
        if cmd == Cmd.STATUS:
            time.sleep(self.latency.status)
            return Status.OK, bytes((self._slot_state(),))
        if cmd == Cmd.POWER_ON:
            return self._power_on()
        if cmd == Cmd.POWER_OFF:
            time.sleep(self.latency.power_off)
            with self._lock:
                had_card = self._card is not None
                self._powered = self._removed_while_powered = False
            return (Status.OK if had_card else Status.NO_CARD), b""
        self.apdus.append(bytes(data[1:]))
        return self._apdu(bytes(data[1:]))

    def _slot_state(self) -> SlotState:
        if self._card is None:
            return SlotState.ABSENT
        return SlotState.POWERED if self._powered else SlotState.PRESENT

    def _power_on(self) -> tuple[int, bytes]:
        with self._lock:
            card, generation = self._card, self._generation
            self._powered = self._removed_while_powered = False
            self._answered = 0
        if card is None:
            time.sleep(self.latency.status)
            return Status.NO_CARD, b""
        time.sleep(self.latency.power_on)
        atr = card.answer_to_reset()
        if atr is None or atr[0] not in (0x3B, 0x3F):
            time.sleep(self.latency.card_silence)  # waits out the ATR time, then gives up
            return Status.CARD_MUTE, b""
        with self._lock:
            if self._generation != generation:
                return Status.CARD_REMOVED, b""
            self._powered = True
        return Status.OK, atr  # the ATR is passed on as received

    def _apdu(self, apdu: bytes) -> tuple[int, bytes]:
        with self._lock:
            card, generation = self._card, self._generation
            if card is None or not self._powered:
                if self._removed_while_powered:
                    return Status.CARD_REMOVED, b""
                return (Status.NOT_POWERED if card else Status.NO_CARD), b""
            fault = self._fault
            if fault and (fault.kind == "pull" or fault.after != self._answered):
                fault = None  # not this one's moment ("pull" fires after a reply)
            if fault:
                self._fault = None
        time.sleep(self.latency.apdu)
        if fault and fault.kind == "mute":
            time.sleep(self.latency.card_silence)
            with self._lock:
                self._powered = False  # the module deactivates a card that went silent
            return Status.CARD_MUTE, b""
        with self._lock:
            if fault and fault.kind == "pull_mid":
                self._pull_locked()
            if self._generation != generation:
                return Status.CARD_REMOVED, b""
        response = t0_exchange(card, apdu)
        with self._lock:
            self._answered += 1
        return Status.OK, response

    def _after_reply(self, cmd: int) -> None:
        """A scripted pull happens once the reply is on the wire, before the next command."""
        if cmd not in (Cmd.POWER_ON, Cmd.APDU):
            return
        with self._lock:
            fault = self._fault
            if fault and fault.kind == "pull" and self._powered and fault.after == self._answered:
                self._fault = None
                self._pull_locked()

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._serial.close()

    def __enter__(self) -> CardReaderSim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def t0_exchange(card: Card, apdu: bytes) -> bytes:
    """What a T=0 reader does for the host: re-issue a case-2 command with the Le the card asks
    for (6Cxx), and fetch response data the card holds (61xx) with GET RESPONSE."""
    response = card.transmit(apdu)
    if len(response) == 2 and response[0] == 0x6C and len(apdu) == 5:
        response = card.transmit(apdu[:4] + response[1:])
    collected = b""
    while len(response) == 2 and response[0] == 0x61:
        response = card.transmit(bytes((0x00, 0xC0, 0x00, 0x00, response[1])))
        collected += response[:-2]
        response = response[-2:]
    return collected + response
