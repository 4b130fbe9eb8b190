"""`kiosk demo --headless --workdir DIR --capture FILE`, run as a user runs it: it exits 0, shows
the resident's screens in order, prints the receipt with what the settlement engine computes,
leaves a PNG of it, and captures every kiosk-gateway frame, each a COSE_Sign1 signed by the kiosk
or the gateway whose keys `kiosk keys list --db DIR/ledger.sqlite --json` lists.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from onestop.host.demo import DEFAULT_RESIDENT
from onestop.host.gateway.bills import demo_document, parse_demo
from onestop.host.gateway.ledger import open_ledger
from onestop.host.keys import VerifyingKey
from onestop.host.settlement import Claim, load_policy, settle
from onestop.protocol import cbor, cose

sys.path.insert(0, str(Path(__file__).parent / "e2e"))
from e2e_support import POLICY, printed_of, receipt_amounts  # noqa: E402

SCREEN = re.compile(r"^\[\s*[0-9.]+ s\] screen: (\w+)$", re.MULTILINE)
# The resident's pages; "processing" (looking up, working out, settling) may flash by too.
VISIT = ["welcome", "reading", "bills", "confirm", "printing", "done", "welcome"]
RECEIPT = re.compile(r"^=+ the receipt, as printed =+\n(.*?)\n=+$", re.MULTILINE | re.DOTALL)


def kiosk_command() -> list[str]:
    script = Path(sys.executable).with_name("kiosk")
    return [str(script)] if script.exists() else [sys.executable, "-m", "onestop.host.cli"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("demo")
    workdir, capture = folder / "work", folder / "frames.jsonl"
    run = subprocess.run(
        [*kiosk_command(), "demo", "--headless", "--workdir", str(workdir),
         "--capture", str(capture)],
        capture_output=True, text=True, timeout=240, check=False)
    return {"run": run, "out": run.stdout, "workdir": workdir, "capture": capture}


def test_the_demo_exits_0(demo: dict[str, Any]) -> None:
    run = demo["run"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_the_screens_appear_in_order(demo: dict[str, Any]) -> None:
    shown = [page for page in SCREEN.findall(demo["out"]) if page != "processing"]
    pages = [page for i, page in enumerate(shown) if i == 0 or shown[i - 1] != page]
    assert pages == VISIT


def expected_breakdown(workdir: Path) -> tuple[str, dict[str, int], str]:
    """(the resident's name, the engine's breakdown of the bill the demo settled, its setl_id),
    from the bill and person in the demo's ledger and the accumulations it was seeded with."""
    with closing(open_ledger(f"sqlite:///{workdir / 'ledger.sqlite'}")) as ledger:
        person = ledger.get_person(DEFAULT_RESIDENT)
        (settlement,) = ledger.audit_read(lambda read: list(read.settlements()))
        bill = ledger.get_bill(settlement.bill_id)
    assert person is not None and bill is not None and bill.psn_no == DEFAULT_RESIDENT
    claim = Claim.from_bill(person, bill, settlement.setl_date)
    _, _, seeds = parse_demo(demo_document())
    before = next((seed.amounts for seed in seeds
                   if seed.psn_no == person.psn_no and seed.year == claim.year), {})
    breakdown = settle(load_policy(POLICY), claim, before).breakdown
    return person.name, breakdown, settlement.setl_id


def test_the_receipt_printed_carries_the_resident_and_what_the_engine_computes(
        demo: dict[str, Any]) -> None:
    match = RECEIPT.search(demo["out"])
    assert match, demo["out"][-2000:]
    receipt = match.group(1)
    name, breakdown, setl_id = expected_breakdown(demo["workdir"])
    masked = name[0] + "*" * (len(name) - 2) + name[-1]  # the receipt masks the name (3 chars)
    assert masked in receipt and name not in receipt and setl_id in receipt
    assert receipt_amounts(receipt) == printed_of(breakdown)


def test_the_receipt_png_is_where_the_demo_says(demo: dict[str, Any]) -> None:
    (where,) = re.findall(r"^receipt image:\s+(\S.*)$", demo["out"], re.MULTILINE)
    png = Path(where)
    assert png.parent == demo["workdir"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def keys_from_the_command_the_demo_states(demo: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (command,) = re.findall(r"^.*?(kiosk keys list --db .*--json)$", demo["out"], re.MULTILINE)
    args = shlex.split(command)
    assert args[4] == str(demo["workdir"] / "ledger.sqlite")
    listed = subprocess.run([*kiosk_command(), *args[1:]], capture_output=True, text=True,
                            timeout=60, check=True)
    return {key["kid"]: key for key in json.loads(listed.stdout)}


def test_the_counter_finds_the_settlement_with_the_command_the_demo_states(
        demo: dict[str, Any]) -> None:
    (command,) = re.findall(r"^at the counter:\s+(kiosk gateway lookup --db .*)$", demo["out"],
                            re.MULTILINE)
    args = shlex.split(command)
    looked = subprocess.run([*kiosk_command(), *args[1:]], capture_output=True, text=True,
                            timeout=60, check=True)
    (txn,) = re.findall(r"^settlement:\s+\S+ \(txn (\S+)\)$", demo["out"], re.MULTILINE)
    assert f"transaction {txn}" in looked.stdout
    assert "settled, receipt printed" in looked.stdout
    (pays,) = re.findall(r"^  resident pays\s+(\S+) yuan$", demo["out"], re.MULTILINE)
    assert f"{pays}  个人支付" in looked.stdout  # what the demo said the resident pays


def test_the_capture_file_is_its_owners_only(demo: dict[str, Any]) -> None:
    # its frames hold the residents' names and full ID numbers (frames are signed, not sealed)
    assert oct(demo["capture"].stat().st_mode & 0o777) == "0o600"


def test_every_captured_frame_is_signed_by_the_kiosk_or_the_gateway(
        demo: dict[str, Any]) -> None:
    keys = keys_from_the_command_the_demo_states(demo)
    roles = {key["role"]: kid for kid, key in keys.items()}
    author = {"k2g": roles["kiosk"], "g2k": roles["gateway"]}
    lines = demo["capture"].read_text(encoding="utf-8").splitlines()
    kinds: dict[str, list[str]] = {"k2g": [], "g2k": []}
    for line in lines:
        record = json.loads(line)
        assert set(record) == {"dir", "t", "frame"}
        assert record["dir"] in author and isinstance(record["t"], int | float)
        sign1 = cose.decode1(bytes.fromhex(record["frame"]))
        assert sign1.kid == author[record["dir"]]
        verifier = VerifyingKey(bytes.fromhex(keys[sign1.kid]["public_key"]))
        payload = cose.verify1(sign1, verifier)
        kinds[record["dir"]].append(cbor.loads(payload)["t"])
    assert "settle" in kinds["k2g"] and "settle_reply" in kinds["g2k"]
    times = [json.loads(line)["t"] for line in lines]
    assert times == sorted(times)
    (reported,) = re.findall(r"^frames on the kiosk-gateway link: ([0-9]+)", demo["out"],
                             re.MULTILINE)
    assert int(reported) == len(lines)


def test_a_new_demo_in_a_used_workdir_sets_the_old_one_aside_and_nothing_else(
        tmp_path: Path) -> None:
    from onestop.host.demo import set_aside_previous_demo

    (tmp_path / "ledger.sqlite").write_text("old ledger")
    (tmp_path / "flash").mkdir()
    (tmp_path / "notes.txt").write_text("the user's own file")
    aside = set_aside_previous_demo(tmp_path)
    assert aside is not None and (aside / "ledger.sqlite").read_text() == "old ledger"
    assert (aside / "flash").is_dir() and not (tmp_path / "ledger.sqlite").exists()
    assert (tmp_path / "notes.txt").read_text() == "the user's own file"
    assert set_aside_previous_demo(tmp_path) is None  # nothing of a demo left to move


def test_a_workdir_holding_a_real_gateways_ledger_is_refused_and_left_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A technician's --workdir /var/lib/onestop: the demo must not set a real gateway's
    ledger and key aside and put its own under their names."""
    from onestop.host.cli import main

    site = tmp_path / "site"
    url = f"sqlite:///{site / 'ledger.sqlite'}"
    with pytest.raises(SystemExit):
        main(["gateway", "init", "--db", url])
    before = sorted(p.name for p in site.iterdir())
    key = (site / "gateway.key").read_bytes()
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(["demo", "--headless", "--workdir", str(site)])
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert f"--workdir {site}: it holds ledger.sqlite, " in err and "that no demo made" in err
    assert sorted(p.name for p in site.iterdir()) == before  # nothing moved, nothing added
    assert (site / "gateway.key").read_bytes() == key


def processes_mentioning(text: str) -> list[str]:
    """Command lines of the running processes that name `text` (a work directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if text in cmdline and state != "Z":
                found.append(cmdline)
    return found


def test_a_second_demo_in_a_busy_workdir_is_refused_and_a_killed_one_leaves_nothing_running(
        tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    first = subprocess.Popen([*kiosk_command(), "demo", "--headless", "--workdir", str(workdir)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert first.stdout is not None
        for line in first.stdout:  # up to the resident's card: gateway and kiosk are running
            if "inserts the social-security card" in line:
                break
        assert len(processes_mentioning(str(workdir))) >= 3  # demo, gateway, kiosk
        second = subprocess.run([*kiosk_command(), "demo", "--headless", "--workdir",
                                 str(workdir)], capture_output=True, text=True, timeout=60,
                                check=False)
        assert second.returncode == 1
        assert "another demo is running there" in second.stderr
        assert "Traceback" not in second.stderr
        assert (workdir / "ledger.sqlite").exists()  # the running demo's ledger stays put
        assert not list(workdir.glob("previous-*"))
        first.terminate()  # as `kill` or systemd stops it
        assert first.wait(timeout=60) == 128 + 15
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert processes_mentioning(str(workdir)) == []


@pytest.mark.parametrize("bad", ["workdir is a file", "capture folder missing"])
def test_a_workdir_or_capture_file_that_cannot_be_used_is_one_line(tmp_path: Path,
                                                                   bad: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    args = (["--workdir", str(afile)] if bad == "workdir is a file" else
            ["--workdir", str(tmp_path / "work"), "--capture", str(tmp_path / "no" / "x.jsonl")])
    run = subprocess.run([*kiosk_command(), "demo", "--headless", *args],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().count("\n") == 0 and run.stderr.startswith("kiosk demo: ")


def test_the_expired_card_demo_shows_the_refusal_and_succeeds(tmp_path: Path) -> None:
    """P007 is in the demo to show the kiosk refusing an expired card: that refusal is the
    demo working, so it exits 0, and nothing is settled."""
    run = subprocess.run([*kiosk_command(), "demo", "--headless", "--resident", "P007",
                          "--workdir", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=240, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert "The kiosk refused this card, as it must: it expired on 2024-05-01" in run.stdout
    assert SCREEN.findall(run.stdout)[-1] in ("error", "welcome")
    with closing(open_ledger(f"sqlite:///{tmp_path / 'work' / 'ledger.sqlite'}")) as ledger:
        assert ledger.audit_read(lambda read: list(read.settlements())) == []
