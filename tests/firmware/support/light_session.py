# Runs under MicroPython: boards.mcu's StatusLight against a recording `machine` and `neopixel`
# (the unix port has neither), to check what a board's LED is told, pattern by pattern.
import sys

WRITES = []  # what reached the LED: ("pin", value) or ("pixel", colour)
TIMERS = []  # [period, callback] of each timer started, None once stopped


class _Pin:
    OUT = 1

    def __init__(self, pin, mode=None):
        self.pin = pin

    def value(self, v):
        WRITES.append(("pin", v))


class _Timer:
    PERIODIC = 1

    def __init__(self, ident=-1):
        self.entry = None

    def init(self, period, mode, callback):
        self.entry = [period, callback]
        TIMERS.append(self.entry)

    def deinit(self):
        TIMERS[TIMERS.index(self.entry)] = None


class _NeoPixel:
    def __init__(self, pin, n):
        self.pixels = [(0, 0, 0)] * n

    def __setitem__(self, i, colour):
        self.pixels[i] = colour

    def write(self):
        WRITES.append(("pixel", self.pixels[0]))


class _Module:
    pass


machine = _Module()
machine.Pin = _Pin
machine.Timer = _Timer
neopixel = _Module()
neopixel.NeoPixel = _NeoPixel
sys.modules["machine"] = machine
sys.modules["neopixel"] = neopixel


def run(led, patterns, ticks):
    """Show each of `patterns` in turn, firing the running timer `ticks` times after each;
    what the LED was told, and the timers' periods (None: stopped), after each pattern."""
    from boards.mcu import StatusLight

    light = StatusLight(led, _Timer)
    steps = []
    for pattern in patterns:
        del WRITES[:]
        light.show(pattern)
        for _ in range(ticks):
            running = [t for t in TIMERS if t is not None]
            if running:
                running[-1][1](None)
        steps.append({"writes": [list(w) if isinstance(w[1], int) else [w[0], list(w[1])]
                                 for w in WRITES],
                      "timers": [None if t is None else t[0] for t in TIMERS]})
    return steps
