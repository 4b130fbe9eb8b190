"""`kiosk gateway serve --policy` given once per enrolment region's policy: policies that would
both settle one resident (two defaults, or two claiming one region), or none of which is the
default (unless --no-default-policy says so), are refused before serving, with one line and exit
status 2. Run as a user runs it, as the other serve option tests do."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from importlib import resources
from pathlib import Path

import pytest
from onestop.host.cli import build_parser
from onestop.host.gateway.serve_cli import _config
from test_serve_cli_options import serve as refused  # one way to run a refusal

TIMEOUT_S = 20.0  # a refusal takes a second or two; a gateway that serves instead never ends


def policy_file(folder: Path, name: str, regions: str | None) -> str:
    """A copy of the reference policy named `name`, governing `regions` (TOML) unless None."""
    text = (resources.files("onestop.host.settlement") / "policies" / "reference.toml"
            ).read_text(encoding="utf-8")
    about = f'name = "{name}"' + (f"\nregions = {regions}" if regions is not None else "")
    assert 'name = "reference"' in text
    path = folder / f"{name}.toml"
    path.write_text(text.replace('name = "reference"', about, 1), encoding="utf-8")
    return str(path)


def served(db: str, *args: str) -> dict:
    """Serve with args until it logs `serving`, then stop it (SIGTERM: exit 0). That event."""
    argv = [sys.executable, "-m", "onestop.host.cli", "gateway", "serve", "--db", db,
            "--listen", "127.0.0.1:0", *args]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"not serving after {TIMEOUT_S:g} s:\n{''.join(seen)[-2000:]}")
            if line is None:
                pytest.fail(f"exited {process.wait()} instead of serving:\n{''.join(seen)}")
            seen.append(line)
            if line.startswith("{") and json.loads(line)["event"] == "serving":
                event = json.loads(line)
                break
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return event


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


@pytest.mark.parametrize("workers", ["1", "2"])
def test_policies_without_a_default_are_refused_at_start(
    db: str, tmp_path: Path, workers: str
) -> None:
    # everyone insured outside 4101 would have been refused at every kiosk, without a word
    city = policy_file(tmp_path, "test-4101", '["4101"]')
    county = policy_file(tmp_path, "test-130630", '["130630"]')
    line = refused(db, "--workers", workers, "--policy", city, "--policy", county)
    assert line == ("kiosk gateway serve: no --policy is a default (one without "
                    "policy.regions): residents insured outside 4101, 130630 would be refused "
                    "at every kiosk; add --policy reference (or another default), or give "
                    "--no-default-policy to leave them to the counter")


def test_without_a_default_it_serves_when_told_to(db: str, tmp_path: Path) -> None:
    city = policy_file(tmp_path, "test-4101", '["4101"]')
    serving = served(db, "--policy", city, "--no-default-policy")
    assert serving["policy"] == "test-4101"


def test_no_default_policy_with_a_default_is_refused(db: str, tmp_path: Path) -> None:
    city = policy_file(tmp_path, "test-4101", '["4101"]')
    line = refused(db, "--policy", city, "--policy", "reference", "--no-default-policy")
    assert line == ("kiosk gateway serve: --no-default-policy, but --policy reference is a "
                    "default (it has no policy.regions): give it regions, or drop "
                    "--no-default-policy")
    line = refused(db, "--no-default-policy")  # no --policy: the reference, the default
    assert line == ("kiosk gateway serve: --no-default-policy needs --policy: the regions' "
                    "policies to serve")


def test_a_default_and_a_region_are_served_and_named(db: str, tmp_path: Path) -> None:
    city = policy_file(tmp_path, "test-4101", '["4101"]')
    assert served(db, "--policy", "reference", "--policy", city)["policy"] == \
        "reference, test-4101"


def test_an_impossible_region_is_refused_at_start(db: str, tmp_path: Path) -> None:
    city = policy_file(tmp_path, "test-4100", '["4100"]')
    line = refused(db, "--policy", "reference", "--policy", city)
    assert line == (f'kiosk gateway serve: {city}: policy.regions[0]: region 4100 is the '
                    'province 41 itself: write "41"')


def test_one_policy_or_none_is_served_as_before(tmp_path: Path) -> None:
    def policy(*args: str) -> object:
        parsed = build_parser().parse_args(
            ["gateway", "serve", "--db", f"sqlite:///{tmp_path / 'l.db'}", *args])
        return _config(parsed)[0].policy

    assert policy() == "reference"
    assert policy("--policy", "other.toml") == "other.toml"
    assert policy("--policy", "reference", "--policy", "z.toml") == ("reference", "z.toml")
