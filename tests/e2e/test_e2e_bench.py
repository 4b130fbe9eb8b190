"""`kiosk bench firmware --visits 1` prints its figures, and they are plausible (never timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from onestop.host.bench.firmware import DATA_HEAP

# Steps every settlement goes through (firmware/app/session.py).
STEPS = ("reading", "lookup", "choosing", "pricing", "confirming", "settling", "printing")
SIGNATURE = 64  # every frame on the gateway link carries an Ed25519 signature


def test_bench_firmware_prints_plausible_figures(tmp_path: Path, stage: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "onestop.host.cli", "bench", "firmware", "--visits", "1",
         "--json", "--stage", str(stage), "--workdir", str(tmp_path / "hall")],
        capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table, _, rest = run.stdout.partition("\n{")
    figures = json.loads("{" + rest)
    for heading in ("heap per session step", "bytes per settlement on each UART",
                    "gateway link per settlement", "card in -> receipt out"):
        assert heading in table
    for step in STEPS:
        assert step in table

    heap = figures["heap"]
    assert set(STEPS) <= set(heap)
    for step in heap.values():
        for figure in ("heap_peak", "heap_live", "heap_free"):
            assert 0 < step[figure] < DATA_HEAP

    uart = figures["uart_bytes"]
    for role in ("card", "printer", "display"):
        assert uart[role]["to_device"] > 0 and uart[role]["to_kiosk"] > 0
        assert f"{uart[role]['to_device']:,}" in table
    # the receipt carries the gateway-signed settlement (in its QR code): more than a signature
    assert uart["printer"]["to_device"] > SIGNATURE > uart["printer"]["to_kiosk"]

    gateway = figures["gateway"]
    # one visit: person info, bills, pre-settle, settle, receipt printed; each answered (the
    # kiosk signed in as it booted, before the first visit)
    assert gateway["k2g"]["frames"] == gateway["g2k"]["frames"] >= 5
    for way in ("k2g", "g2k"):
        assert gateway[way]["bytes"] > gateway[way]["frames"] * SIGNATURE

    seconds = figures["seconds"]
    for span in seconds.values():
        assert 0 < span["median"] <= span["worst"]
    whole = seconds["card_in_to_receipt_out"]["median"]
    assert seconds["confirm_to_receipt_out"]["median"] < whole
    assert seconds["card_in_to_bills"]["median"] < whole


def test_bench_firmware_on_a_folder_that_is_not_a_stage_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("not firmware")
    run = subprocess.run(
        [sys.executable, "-m", "onestop.host.cli", "bench", "firmware", "--visits", "1",
         "--stage", str(folder), "--workdir", str(tmp_path / "hall")],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 1 and "Traceback" not in run.stdout + run.stderr
    assert run.stdout.splitlines()[-1].startswith(f"kiosk bench firmware: --stage {folder}")
    assert (folder / "todo.txt").read_text() == "not firmware"  # left as it was
