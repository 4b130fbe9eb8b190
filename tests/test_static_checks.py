"""Static checks the test command runs: ruff everywhere; pyright on the board code against the
MicroPython stubs of each board; and the MicroPython-subset rules pyright cannot see.

Code that would not exist on a board (hashlib.sha512, dataclasses, a CPython-only method) is caught
here, before it reaches one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from onestop.host.mpy import library_root

sys.path.insert(0, str(Path(__file__).parent / "support"))
import mpy_subset  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
BOARD_STUBS = {"esp32": "micropython-esp32-stubs", "rp2": "micropython-rp2-stubs"}
BOARD_FILES = {"esp32": "esp32s3.py", "rp2": "rp2040.py"}


def board_code() -> list[Path]:
    # manifest.py is read by MicroPython's manifest tool (its names are injected), not run.
    return sorted(
        p
        for p in [
            *ROOT.joinpath("protocol").rglob("*.py"),
            *ROOT.joinpath("firmware").rglob("*.py"),
        ]
        if "__pycache__" not in p.parts and p.name != "manifest.py"
    )


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "ruff"), "check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_board_code_stays_in_the_micropython_subset() -> None:
    found: list[str] = []
    for path in board_code():
        allow_machine = path.parent.name == "boards"
        found += mpy_subset.problems(path, allow_machine=allow_machine)
        found += mpy_subset.source_problems(path)
    assert not found, "\n".join(found)


def _stub_dir(board: str) -> Path:
    """The board's stubs installed alone (the two boards' packages overwrite each other's files
    in one site-packages), cached by version."""
    dist = BOARD_STUBS[board]
    versions = f"{metadata.version(dist)}-{metadata.version('micropython-stdlib-stubs')}"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "onestop" / "stubs"
    target = cache / f"{board}-{versions}"
    if not (target / "stdlib").is_dir():
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(tmp),
                f"{dist}=={metadata.version(dist)}",
                f"micropython-stdlib-stubs=={metadata.version('micropython-stdlib-stubs')}",
            ],
            check=True,
            capture_output=True,
        )
        tmp.rename(target)
    return target


@pytest.mark.parametrize("board", sorted(BOARD_STUBS))
def test_pyright_against_micropython_stubs(board: str, tmp_path: Path) -> None:
    stubs = _stub_dir(board)
    other_boards = [f for b, f in BOARD_FILES.items() if b != board] + ["unix.py"]
    files = [
        str(p) for p in board_code() if not (p.parent.name == "boards" and p.name in other_boards)
    ]
    # pyright ignores absolute paths in "include": the config lives at the repository root's
    # level (a temporary name), so every path in it is relative to ROOT.
    config = {
        "include": [os.path.relpath(f, ROOT) for f in files],
        "typeshedPath": str(stubs),
        "stubPath": str(stubs),
        "extraPaths": [str(library_root()), "firmware"],
        "pythonVersion": "3.11",
        "typeCheckingMode": "basic",
        "reportMissingModuleSource": "none",
        # The point is what exists on a board (modules, attributes, names, call signatures);
        # narrowing noise from dynamically typed board code is not.
        "reportOptionalMemberAccess": "none",
        "reportOptionalOperand": "none",
        "reportOptionalSubscript": "none",
        "reportArgumentType": "none",
        "reportIndexIssue": "none",
        "reportOperatorIssue": "none",
        "reportAssignmentType": "none",
    }
    config_path = ROOT / f".pyright-{board}-{os.getpid()}.json"
    config_path.write_text(json.dumps(config))
    try:
        result = subprocess.run(
            [str(VENV_BIN / "pyright"), "-p", str(config_path)], capture_output=True, text=True
        )
    finally:
        config_path.unlink()
    assert "No source files found" not in result.stdout, result.stdout
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
