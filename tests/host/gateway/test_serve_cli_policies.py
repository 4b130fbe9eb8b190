"""`kiosk gateway serve --policy` given once per enrolment region's policy: policies that would
both settle one resident (two defaults, or two claiming one region) are refused before serving,
with one line and exit status 2. Run as a user runs it, as the other serve option tests do."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from onestop.host.bench.gateway import provision_gateway
from onestop.host.cli import build_parser
from onestop.host.gateway.ledger import open_ledger
from onestop.host.gateway.serve_cli import _config

TIMEOUT_S = 20.0  # a refusal takes a second or two; a gateway that serves instead never ends


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A ledger the gateway can serve (with its key), so only the policies are wrong."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    with open_ledger(url) as ledger:
        ledger.init()
        provision_gateway(ledger, tmp_path / "gateway.key")
    return url


def policy_file(folder: Path, name: str, regions: str | None) -> str:
    """A copy of the reference policy named `name`, governing `regions` (TOML) unless None."""
    text = (resources.files("onestop.host.settlement") / "policies" / "reference.toml"
            ).read_text(encoding="utf-8")
    about = f'name = "{name}"' + (f"\nregions = {regions}" if regions is not None else "")
    assert 'name = "reference"' in text
    path = folder / f"{name}.toml"
    path.write_text(text.replace('name = "reference"', about, 1), encoding="utf-8")
    return str(path)


def refused(db: str, *args: str) -> str:
    """Serve with args; it must exit 2 with one non-log line on stderr, and no traceback."""
    argv = [sys.executable, "-m", "onestop.host.cli", "gateway", "serve", "--db", db,
            "--listen", "127.0.0.1:0", *args]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"still running after {TIMEOUT_S:g} s instead of refusing:\n{err[-2000:]}")
    assert "Traceback" not in out + err
    assert process.returncode == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("{")]  # not JSON logs
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_two_policies_claiming_one_region_are_refused_at_start(
    db: str, tmp_path: Path, workers: str
) -> None:
    city = policy_file(tmp_path, "test-4101", '["4101"]')
    also = policy_file(tmp_path, "test-41-4101", '["41", "4101"]')
    line = refused(db, "--workers", workers, "--policy", "reference", "--policy", city,
                   "--policy", also)
    assert line.startswith(f"kiosk gateway serve: policies {city} and {also} both claim "
                           "region 4101")


def test_two_default_policies_are_refused_at_start(db: str, tmp_path: Path) -> None:
    other = policy_file(tmp_path, "test-default", None)
    line = refused(db, "--policy", "reference", "--policy", other)
    assert line.startswith(f"kiosk gateway serve: policies reference and {other} are both "
                           "defaults")


def test_one_policy_or_none_is_served_as_before(tmp_path: Path) -> None:
    def policy(*args: str) -> object:
        parsed = build_parser().parse_args(
            ["gateway", "serve", "--db", f"sqlite:///{tmp_path / 'l.db'}", *args])
        return _config(parsed)[0].policy

    assert policy() == "reference"
    assert policy("--policy", "other.toml") == "other.toml"
    assert policy("--policy", "reference", "--policy", "z.toml") == ("reference", "z.toml")
