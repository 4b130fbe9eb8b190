# ruff: noqa: F821
# pyright: reportUndefinedVariable=false, reportCallIssue=false, reportAttributeAccessIssue=false
# (the PIO programs below are written in rp2's assembler, whose names only exist inside them)
#
# Raspberry Pi Pico W: two hardware UARTs (card reader, display) and a PIO UART for the printer,
# the gateway over Wi-Fi. Pin map in boards/rp2040.json (hardware/wiring.md).
#
# Why the printer gets the PIO UART: it is the device that tolerates it. The PIO receive FIFO holds
# only 8 bytes, and the printer answers a status poll with one byte; the display's touch events
# (7 bytes, unsolicited) and the card reader's replies (up to 270 bytes) need a hardware UART's
# ring buffer.
import io

import machine
import rp2
from boards.mcu import McuBoard

_MP_STREAM_POLL = 3
_POLLIN = 1
_POLLOUT = 4


@rp2.asm_pio(sideset_init=rp2.PIO.OUT_HIGH, out_init=rp2.PIO.OUT_HIGH,
             out_shiftdir=rp2.PIO.SHIFT_RIGHT)
def _uart_tx():
    # 8 PIO cycles per bit: start bit, 8 data bits LSB first, stop bit.
    pull()
    set(x, 7).side(0)[7]
    label("bitloop")
    out(pins, 1)[6]
    jmp(x_dec, "bitloop")
    nop().side(1)[6]


@rp2.asm_pio(in_shiftdir=rp2.PIO.SHIFT_RIGHT, fifo_join=rp2.PIO.JOIN_RX)
def _uart_rx():
    label("start")
    wait(0, pin, 0)  # the start bit
    set(x, 7)[10]  # to the middle of the first data bit
    label("bitloop")
    in_(pins, 1)
    jmp(x_dec, "bitloop")[6]
    jmp(pin, "good_stop")
    wait(1, pin, 0)  # framing error: drop the byte, wait for idle
    jmp("start")
    label("good_stop")
    push(block)


class PioUart(io.IOBase):
    """A UART made of two PIO state machines, as a stream asyncio can poll."""

    def __init__(self, s):
        freq = 8 * s["baud"]
        tx = machine.Pin(s["tx"], machine.Pin.OUT, value=1)
        rx = machine.Pin(s["rx"], machine.Pin.IN, machine.Pin.PULL_UP)
        self._tx = rp2.StateMachine(s["sm_tx"], _uart_tx, freq=freq, sideset_base=tx,
                                    out_base=tx)
        self._rx = rp2.StateMachine(s["sm_rx"], _uart_rx, freq=freq, in_base=rx, jmp_pin=rx)
        self._tx.active(1)
        self._rx.active(1)

    def ioctl(self, req, arg):
        if req != _MP_STREAM_POLL:
            return -1
        ready = 0
        if arg & _POLLIN and self._rx.rx_fifo():
            ready |= _POLLIN
        if arg & _POLLOUT and self._tx.tx_fifo() < 4:
            ready |= _POLLOUT
        return ready

    def readinto(self, buf):
        n = 0
        while n < len(buf) and self._rx.rx_fifo():
            buf[n] = self._rx.get() >> 24
            n += 1
        return n

    def read(self, size=-1):
        buf = bytearray(8 if size < 0 else size)
        return bytes(buf[:self.readinto(buf)])

    def write(self, data):
        n = 0
        while n < len(data) and self._tx.tx_fifo() < 4:
            self._tx.put(data[n])
            n += 1
        return n or None  # None: would block, asyncio waits for POLLOUT


class Board(McuBoard):
    name = "rp2040"

    def make_uart(self, role, s):
        if s.get("kind") == "pio":
            return PioUart(s)
        return super().make_uart(role, s)


def prepare_random():
    """The RP2040's os.urandom draws on its ring oscillator's random bit, radio or not."""
