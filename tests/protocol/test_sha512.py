"""SHA-512 for the board: NIST vectors and hashlib agreement on CPython and MicroPython."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onestop.protocol
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

VECTORS = json.loads(
    (Path(onestop.protocol.__file__).parent / "vectors" / "sha512_fips180.json").read_text()
)["vectors"]
# The runtime fixture is the same object for every example; nothing in it changes between them.
BOTH_RUNTIMES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def message(vector) -> bytes:
    return vector["text"].encode("ascii") * vector["repeat"]


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["repeat"] == 1], ids=lambda v: v["name"]
)
def test_nist_vectors(runtime, vector):
    digest = runtime.call("crypto_calls", "sha512_digest", message(vector))
    assert digest.hex() == vector["digest"]


def test_nist_million_a_on_cpython():
    """Too slow to be worth running on the MicroPython port (~8000 blocks)."""
    from onestop.protocol.sha512 import SHA512

    (vector,) = [v for v in VECTORS if v["repeat"] > 1]
    h = SHA512()
    chunk = vector["text"].encode("ascii") * 1000
    for _ in range(vector["repeat"] // 1000):
        h.update(chunk)
    assert h.digest().hex() == vector["digest"]


def test_every_padding_case_around_block_boundaries(runtime):
    """Lengths where the length field fits in the last block or spills into another."""
    data = bytes(range(256)) * 2
    lengths = [0, 1, 55, 56, 63, 64, 110, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 257]
    digests = runtime.call("crypto_calls", "sha512_prefixes", data, lengths)
    assert digests == [hashlib.sha512(data[:n]).digest() for n in lengths]


@BOTH_RUNTIMES
@given(data=st.binary(max_size=700))
def test_agrees_with_hashlib(runtime, data):
    assert runtime.call("crypto_calls", "sha512_digest", data) == hashlib.sha512(data).digest()


@BOTH_RUNTIMES
@given(chunks=st.lists(st.binary(max_size=300), max_size=8))
def test_incremental_hashing_in_any_chunking(runtime, chunks):
    final, peeks = runtime.call("crypto_calls", "sha512_chunks", chunks)
    assert final == hashlib.sha512(b"".join(chunks)).digest()
    # digest() part-way is the digest so far, and hashing carries on unaffected
    assert peeks == [hashlib.sha512(b"".join(chunks[: i + 1])).digest() for i in range(len(chunks))]


def test_bytes_bytearray_and_memoryview_hash_alike(runtime):
    data = b"settle " * 40
    expected = hashlib.sha512(data).digest()
    assert runtime.call("crypto_calls", "sha512_views", data) == [expected] * 6
