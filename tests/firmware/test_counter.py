"""The request counter (firmware/app/counter.py) under the real MicroPython unix port: a value is
never handed out twice, across reboots and power cuts (the gateway would refuse it as a replay).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from onestop.host.mpy import Worker, library_root, micropython_binary

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = Path(__file__).parent / "support"


@pytest.fixture(scope="module")
def mp() -> Iterator[Worker]:
    worker = Worker(heapsize="64K", paths=[ROOT / "firmware", SUPPORT])
    yield worker
    worker.close()


def test_values_keep_rising_across_reboots(mp: Worker, tmp_path: Path) -> None:
    path = str(tmp_path / "counter")
    first = mp.call("app_counter", "values", path, 5, 4)
    second = mp.call("app_counter", "values", path, 5, 4)  # a reboot: a new Counter
    values, reserved = first[:-1], first[-1]
    assert values == [1, 2, 3, 4, 5]
    assert reserved == 8  # two blocks of 4 written ahead
    assert second[:-1] == [9, 10, 11, 12, 13]  # the rest of the last block is skipped
    assert Path(path).read_text() == "16\n"


def test_a_fresh_counter_starts_at_one(mp: Worker, tmp_path: Path) -> None:
    assert mp.call("app_counter", "values", str(tmp_path / "c"), 1, 32) == [1, 32]


@pytest.mark.parametrize("content", [b"12", b"", b"1x\n", b"\n"])
def test_a_damaged_counter_file_is_refused_not_guessed(mp: Worker, tmp_path: Path,
                                                       content: bytes) -> None:
    path = tmp_path / "counter"
    path.write_bytes(content)
    assert "damaged" in mp.call("app_counter", "error", str(path))


def test_an_interrupted_replace_is_finished_from_the_complete_temporary_file(
        mp: Worker, tmp_path: Path) -> None:
    # FAT cannot rename over a file: a power cut between removing the old file and renaming the
    # new one leaves only counter.tmp, which was complete before the old file was removed
    (tmp_path / "counter.tmp").write_text("40\n")
    assert mp.call("app_counter", "values", str(tmp_path / "counter"), 1, 8)[0] == 41


def test_killing_the_process_at_random_moments_never_reuses_a_value(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    env = dict(os.environ, MICROPYPATH=f"{ROOT / 'firmware'}:{library_root()}:.frozen")
    rng = random.Random(7)
    seen: list[int] = []
    for _ in range(12):
        proc = subprocess.Popen(
            [micropython_binary(), "-X", "heapsize=64K", str(SUPPORT / "app_counter_run.py"),
             str(path), "3"],
            stdout=subprocess.PIPE, env=env, text=True)
        assert proc.stdout is not None
        for _ in range(rng.randrange(1, 300)):
            line = proc.stdout.readline()
            seen.append(int(line))
        proc.send_signal(signal.SIGKILL)  # a power cut, wherever the loop happens to be
        seen.extend(int(line) for line in proc.stdout.read().split())
        proc.wait()
        proc.stdout.close()
    assert seen == sorted(set(seen))  # strictly rising: nothing handed out twice
