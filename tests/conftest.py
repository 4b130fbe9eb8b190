"""Shared fixtures.

`runtime` runs a test on both interpreters the protocol must work on (the cbor2 pattern): the
test calls `runtime.call("onestop.protocol.cbor", "dumps", value)` and gets the same answer — or
the same `ProtocolError` code — from CPython and from the real MicroPython unix port.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from onestop.host.mpy import Local, Worker

SUPPORT = Path(__file__).parent / "support"
sys.path.insert(0, str(SUPPORT))  # the same helper modules import on CPython


@pytest.fixture(scope="session")
def micropython_worker():
    worker = Worker(heapsize="4M", paths=[SUPPORT])
    yield worker
    worker.close()


@pytest.fixture(params=["cpython", "micropython"])
def runtime(request):
    if request.param == "cpython":
        return Local()
    return request.getfixturevalue("micropython_worker")
