"""`kiosk bench NAME`: benchmarks that print figures (never pass/fail timings in tests).

Each benchmark lives in ``onestop.host.bench.<name>`` and exposes ``add_arguments(parser)`` and
``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib

BENCHES: dict[str, str] = {
    "protocol": "CBOR, Ed25519, COSE seal/open on CPython and the MicroPython unix port",
    "settlement": "settlement engine claims per second",
    "gateway": "settlements/s and latency with N simulated kiosks over loopback TCP",
    "firmware": "firmware heap per step, UART bytes, card-in to receipt-out time",
}


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    names = bench.add_subparsers(dest="bench", metavar="NAME")
    for name, help_text in BENCHES.items():
        parser = names.add_parser(name, help=help_text)
        try:
            module = importlib.import_module(f"onestop.host.bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"onestop.host.bench.{name}":
                raise
            parser.set_defaults(func=lambda _a, n=name: _missing(n))
            continue
        module.add_arguments(parser)
        parser.set_defaults(func=module.run)
    bench.set_defaults(func=lambda _a: (bench.print_help(), 2)[1])


def _missing(name: str) -> int:
    print(f"kiosk bench {name}: not available in this build")
    return 2
