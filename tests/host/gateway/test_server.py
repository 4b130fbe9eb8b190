"""The gateway over TCP, in this process: a kiosk's whole visit, retries, and every way a frame
can be wrong — each answered with a signed `error` (or skipped), never a crash, and never a
problem for another kiosk. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from onestop.host.gateway import fastwire, logs, metrics
from onestop.host.gateway.kiosk_client import (
    GatewayRefused,
    KioskClient,
    KioskConnection,
    MemoryCounter,
    enroll_kiosk,
    new_txn_id,
)
from onestop.host.gateway.ledger import KeyRecord, Ledger, open_ledger
from onestop.host.gateway.server import GatewayConfig, RunningGateway, start_gateway
from onestop.host.keys import SigningKey, save_signing_key
from onestop.protocol import cbor, cose, framing, messages
from test_handlers import card_of, demo_card, seed_demo

ZERO_HEADER = ("", 0, bytes(8))
IDLE_TIMEOUT_S = 0.5


class Site:
    """A running gateway with demo residents, its log, and enrolled kiosks."""

    def __init__(self, ledger: Ledger, running: RunningGateway, log: io.StringIO) -> None:
        self.ledger = ledger
        self.running = running
        self.log = log
        self.residents: dict[str, Any] = {}
        self.connections: list[KioskConnection] = []

    @property
    def port(self) -> int:
        return self.running.address[1]

    async def kiosk(self, kiosk_id: str = "K-01") -> KioskConnection:
        client = enroll_kiosk(self.ledger, kiosk_id)
        return await self.connect(client)

    async def connect(self, client: KioskClient) -> KioskConnection:
        connection = await KioskConnection.open_tcp(client, "127.0.0.1", self.port)
        self.connections.append(connection)
        return connection

    async def raw(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    def metrics(self) -> str:
        endpoint = self.running.metrics_endpoint
        assert endpoint is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics") as page:
            return page.read().decode()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    async def close(self) -> None:
        for connection in self.connections:
            await connection.close()
        await self.running.close()


async def _start_site(ledger: Ledger, gateway_url: str, folder: Path) -> Site:
    key = SigningKey.generate()
    save_signing_key(folder / "gateway.key", key)
    ledger.add_key(KeyRecord(kid="gateway-01", role="gateway", public_key=key.public_key,
                             status="active"))
    log = io.StringIO()
    logs.configure("debug", log)
    config = GatewayConfig(db=gateway_url, key_path=folder / "gateway.key",
                           idle_timeout_s=IDLE_TIMEOUT_S)
    running = await start_gateway(config, ("127.0.0.1", 0), metrics_at=("127.0.0.1", 0))
    site = Site(ledger, running, log)
    site.residents = seed_demo(ledger)
    return site


@pytest.fixture
async def site(ledger: Ledger, ledger_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    site = await _start_site(ledger, ledger_url, tmp_path)
    yield site
    await site.close()


async def settle_bill(
    kiosk: KioskConnection, psn_no: str, bill_id: str, txn_id: str, card_read: bool = False
) -> dict[str, Any]:
    """A demo resident's bill settled as a kiosk does it: their card read (unless card_read:
    it was, on this kiosk), the price shown, confirmed."""
    if not card_read:
        await kiosk.call("person_info", card=demo_card(psn_no))
    pre = await kiosk.call("pre_settle", psn_no=psn_no, bill_id=bill_id)
    return await kiosk.call(
        "settle",
        psn_no=psn_no,
        bill_id=bill_id,
        txn_id=txn_id,
        confirmed_cash=pre["result"]["psn_cash_pay"],
    )


async def refusal(kiosk: KioskConnection, sent: bytes) -> dict[str, Any]:
    """Send raw bytes; the gateway's answer, verified with its key."""
    await kiosk.send_raw(sent)
    return kiosk.client.open_reply(await kiosk.receive_payload())


def header(reply: dict[str, Any]) -> tuple[str, int, bytes]:
    return reply["kiosk"], reply["ctr"], reply["rid"]


async def test_a_resident_settles_end_to_end(site: Site) -> None:
    kiosk = await site.kiosk()
    signed_in = await kiosk.call("sign_in", fw="1.0.0", board="esp32s3")
    assert signed_in["gateway"] == "gateway-01"
    assert site.ledger.sign_ins()["K-01"].board == "esp32s3"  # the kiosk is seen alive
    person = await kiosk.call("person_info", card=card_of(site.residents["P001"]))
    assert person["ssn_masked"] == "130630********0048"
    bills = await kiosk.call("pending_bills", psn_no="P001")
    assert [b["bill_id"] for b in bills["bills"]] == ["B-130630-0001"]
    settled = await settle_bill(kiosk, "P001", "B-130630-0001", "TXN-E2E-0001", card_read=True)
    record = kiosk.client.open_settlement(settled["settlement"])
    await kiosk.call("receipt_printed", txn_id="TXN-E2E-0001", setl_id=record["setl_id"])
    stored = site.ledger.get_settlement("TXN-E2E-0001")
    assert stored is not None and stored.receipt_printed and stored.signed == settled["settlement"]
    totals = await kiosk.call(
        "reconcile",
        date=stored.setl_date,
        totals={
            "count": 1,
            **{
                k: record["result"][k]
                for k in (
                    "medfee_sumamt",
                    "hifp_pay",
                    "hifmi_pay",
                    "maf_pay",
                    "fund_pay_sumamt",
                    "psn_cash_pay",
                )
            },
        },
    )
    assert totals["stmt_rslt"] == 0
    off = await kiosk.call("reconcile", date=stored.setl_date, totals=dict(
        totals["totals"], count=2))
    assert (off["stmt_rslt"], off["totals"]) == (1, totals["totals"])
    reported = [e for e in site.events() if e["event"] == "reconcile_mismatch"]
    assert [(e["level"], e["mismatched"]) for e in reported] == [("warning", ["count"])]
    scraped = site.metrics()
    assert 'onestop_settlements_total{kind="new"} 1.0' in scraped
    assert 'onestop_frames_total{dir="in",type="settle"} 1.0' in scraped
    assert 'onestop_frames_total{dir="out",type="settle_reply"} 1.0' in scraped
    assert "onestop_settle_latency_seconds_count 1.0" in scraped


async def test_a_retry_on_a_new_connection_gets_the_same_settlement(site: Site) -> None:
    kiosk = await site.kiosk()
    first = await settle_bill(kiosk, "P001", "B-130630-0001", "TXN-RETRY-001")
    await kiosk.close()
    again = await site.connect(kiosk.client)  # the reply was "lost": ask again
    cash = kiosk.client.open_settlement(first["settlement"])["result"]["psn_cash_pay"]
    retry = await again.call(
        "settle",
        psn_no="P001",
        bill_id="B-130630-0001",
        txn_id="TXN-RETRY-001",
        confirmed_cash=cash,
    )
    assert retry["settlement"] == first["settlement"]
    assert retry["ctr"] > first["ctr"]
    assert 'onestop_settlements_total{kind="retry"} 1.0' in site.metrics()


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
async def test_a_card_read_is_on_disk_before_the_kiosk_hears_of_it(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The card read is what the resident's next requests stand on: lost in a power cut of the
    gateway's machine just after the answer, the insured resident would be told at the next
    step that there is no record of them."""
    from onestop.host.gateway.ledger import sqlite

    monkeypatch.setattr(sqlite, "FLUSH_AFTER_S", 3600.0)  # only the commit itself may flush
    flushed: list[int] = []
    real = sqlite.os.fdatasync
    monkeypatch.setattr(sqlite.os, "fdatasync", lambda fd: (flushed.append(fd), real(fd))[1])
    kiosk = await site.kiosk()
    flushed.clear()
    await kiosk.call("person_info", card=card_of(site.residents["P001"]))
    assert flushed, "person_info was answered before its card read reached the disk"
    await kiosk.call("pending_bills", psn_no="P001")  # a read as before: no wait for the disk
    assert len(flushed) == 1


async def test_a_refused_card_ends_the_last_residents_turn_at_the_kiosk(site: Site) -> None:
    """Another card in, refused (expired): what the refusal wrote (the last card read
    forgotten) stands, though person_info waits for the disk like a settle."""
    kiosk = await site.kiosk()
    await kiosk.call("person_info", card=card_of(site.residents["P001"]))
    assert (await kiosk.call("pending_bills", psn_no="P001"))["bills"]
    with pytest.raises(GatewayRefused) as expired:
        await kiosk.call("person_info", card=card_of(site.residents["P007"]))
    assert expired.value.code == "card_expired"
    with pytest.raises(GatewayRefused) as gone:
        await kiosk.call("pending_bills", psn_no="P001")
    assert gone.value.code == "unknown_person"


async def test_a_reply_sent_by_a_kiosk_is_refused_before_the_kiosk_it_names_is_looked_at(
    site: Site,
) -> None:
    """A reply's `kiosk` is not tied to its signer (only a request's is): K-01 sending a
    sign_in_reply that names K-02 got a gateway-signed error addressed to K-02, counted under
    K-02's key status ("revoked": "kiosk K-02 is active")."""
    kiosk = await site.kiosk("K-01")
    await site.kiosk("K-02")
    client = kiosk.client
    theirs = messages.request("sign_in", "K-02", 5_000, os.urandom(8), client.now(),
                              fw="x", board="y")
    sent = messages.reply(theirs, "sign_in_reply", client.now(), sign_no="S1", now=client.now(),
                          gateway="gw", policy="reference")
    reply = await refusal(kiosk, framing.encode(messages.seal(sent, "K-01", client.key)))
    assert (reply["t"], reply["code"]) == ("error", "invalid")
    assert "sign_in_reply is not a request" in reply["msg"]
    scraped = site.metrics()
    assert 'onestop_errors_total{code="invalid"} 1.0' in scraped
    assert 'code="revoked"' not in scraped


async def test_unauthenticatable_frames_get_a_signed_error_and_the_link_stays_up(
    site: Site,
) -> None:
    kiosk = await site.kiosk("K-01")
    client = kiosk.client
    impostor = SigningKey.generate()  # K-01's name, another key
    request = messages.request("sign_in", "K-01", 1, os.urandom(8), client.now(), fw="x", board="y")
    forged = framing.encode(messages.seal(request, "K-01", impostor))
    unknown = framing.encode(messages.seal(dict(request, kiosk="K-99"), "K-99", impostor))
    garbage = framing.encode(b"\xff\x00 not cbor")
    future = dict(request, v=[2, 0], ctr=2)
    wrong_version = framing.encode(cose.sign1(cbor.dumps(future), "K-01", client.key))
    for sent, code in (
        (forged, "bad_signature"),
        (unknown, "unknown_kiosk"),
        (garbage, "malformed"),
        (wrong_version, "unsupported_version"),
    ):
        reply = await refusal(kiosk, sent)  # open_reply has checked the gateway's signature
        assert (reply["t"], reply["code"]) == ("error", code)
        assert header(reply) == ZERO_HEADER
    assert (await kiosk.call("sign_in", fw="1.0.0", board="esp32s3"))["t"] == "sign_in_reply"
    scraped = site.metrics()
    for code in ("bad_signature", "unknown_kiosk", "malformed", "unsupported_version"):
        assert f'onestop_errors_total{{code="{code}"}} 1.0' in scraped


async def test_a_kid_no_ledger_can_hold_is_an_unknown_kiosk(site: Site) -> None:
    """A kid is looked up before anything ties it to an enrolled kiosk. One holding a NUL
    (UTF-8, 1..64 bytes: a valid kid) failed the lookup on PostgreSQL: anyone on the network
    was answered "unavailable", put a ledger outage in the log and the metrics, and, that being
    no link fault, was never disconnected for it. It is a kiosk no one enrolled."""
    kiosk = await site.kiosk("K-01")
    client = kiosk.client
    request = messages.request("sign_in", "K-01", 1, os.urandom(8), client.now(), fw="x",
                               board="y")
    for kid in ("K-01\x00", "\x00"):
        sent = framing.encode(cose.sign1(cbor.dumps(request), kid, client.key))
        reply = await refusal(kiosk, sent)
        assert (reply["t"], reply["code"], header(reply)) == ("error", "unknown_kiosk",
                                                               ZERO_HEADER)
    assert (await kiosk.call("sign_in", fw="1.0.0", board="esp32s3"))["t"] == "sign_in_reply"
    assert not [e for e in site.events() if e.get("code") in ("unavailable", "internal")]


def last_sign_ins(scraped: str) -> dict[str, float]:
    """onestop_kiosk_last_sign_in_timestamp_seconds by kiosk, from a metrics page."""
    found = {}
    for line in scraped.splitlines():
        if line.startswith("onestop_kiosk_last_sign_in_timestamp_seconds{"):
            labels, value = line.split("} ")
            found[labels.split('kiosk="')[1].rstrip('"')] = float(value)
    return found


async def test_each_active_kiosks_last_sign_in_is_on_the_metrics_page(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's alert finds a kiosk gone silent (it signs in every 10 minutes): its last
    sign-in, from the ledger every gateway shares, 0 for one never heard from; a revoked kiosk
    is no longer watched; a ledger that cannot be read is said so and the page still answers."""
    alive = await site.kiosk("K-01")
    await site.kiosk("K-02")  # enrolled, never signed in
    await site.kiosk("K-03")
    before = int(time.time())
    await alive.call("sign_in", fw="1.0.0", board="esp32s3")
    site.ledger.set_key_status("K-03", "revoked")
    scraped = await asyncio.to_thread(site.metrics)
    seen = last_sign_ins(scraped)
    assert set(seen) == {"K-01", "K-02"}
    assert before - 2 <= seen["K-01"] <= time.time() + 2 and seen["K-02"] == 0
    assert "onestop_kiosk_sign_ins_read 1.0" in scraped
    # which key this gateway signs with (uncertified: serial 0), for a rotation's progress
    assert 'onestop_gateway_key_info{cert_serial="0",kid="gateway-01"} 1.0' in scraped

    def ledger_down(_ledger: Ledger) -> None:
        from onestop.host.gateway.ledger.base import LedgerError

        raise LedgerError("the ledger is down")

    # the gateway's own ledger object, of the same class as the test's
    monkeypatch.setattr(type(site.ledger), "sign_ins", ledger_down)
    scraped = await asyncio.to_thread(site.metrics)
    assert "onestop_kiosk_sign_ins_read 0.0" in scraped and last_sign_ins(scraped) == {}
    assert "onestop_frames_total" in scraped  # the gateway's own series all the same


async def test_a_revoked_kiosk_is_refused(site: Site) -> None:
    kiosk = await site.kiosk("K-01")
    await kiosk.call("sign_in", fw="1.0.0", board="esp32s3")
    site.ledger.set_key_status("K-01", "revoked")
    with pytest.raises(GatewayRefused) as refused:
        await kiosk.call("person_info", card=card_of(site.residents["P001"]))
    assert refused.value.code == "revoked"


async def test_a_replayed_frame_is_refused_even_a_settle(site: Site) -> None:
    kiosk = await site.kiosk()
    await kiosk.call("person_info", card=demo_card("P001"))
    pre = await kiosk.call("pre_settle", psn_no="P001", bill_id="B-130630-0001")
    request, sealed = kiosk.client.request(
        "settle",
        psn_no="P001",
        bill_id="B-130630-0001",
        txn_id="TXN-REPLAY-01",
        confirmed_cash=pre["result"]["psn_cash_pay"],
    )
    first = await refusal(kiosk, framing.encode(sealed))
    assert first["t"] == "settle_reply"
    replayed = await refusal(kiosk, framing.encode(sealed))
    assert (replayed["code"], header(replayed)) == ("replay", header(request))
    assert (
        len(site.ledger.settlements_on(site.ledger.get_settlement("TXN-REPLAY-01").setl_date)) == 1
    )


async def test_a_stale_request_is_told_the_time_and_sign_in_is_exempt(site: Site) -> None:
    kiosk = await site.kiosk()
    kiosk.client.clock_offset = -3600  # a board whose clock is an hour behind
    assert (await kiosk.call("sign_in", fw="1.0.0", board="esp32s3"))["t"] == "sign_in_reply"
    with pytest.raises(GatewayRefused) as refused:
        await kiosk.call("person_info", card=card_of(site.residents["P001"]))
    assert refused.value.code == "stale"
    assert refused.value.now is not None
    assert abs(kiosk.client.clock_offset) < 5  # the client took the gateway's time
    person = await kiosk.call("person_info", card=card_of(site.residents["P001"]))
    assert person["psn_no"] == "P001"


async def test_an_oversized_frame_is_refused_once_and_the_link_recovers(site: Site) -> None:
    kiosk = await site.kiosk()
    reply = await refusal(kiosk, b"\x01" * (3 * framing.MAX_FRAME) + b"\x00")
    assert (reply["code"], header(reply)) == ("too_large", ZERO_HEADER)
    assert (await kiosk.call("sign_in", fw="1.0.0", board="esp32s3"))["t"] == "sign_in_reply"
    assert 'onestop_errors_total{code="too_large"} 1.0' in site.metrics()


async def test_a_corrupted_frame_is_skipped_and_the_next_one_answered(site: Site) -> None:
    kiosk = await site.kiosk()
    _request, sealed = kiosk.client.request("sign_in", fw="1.0.0", board="esp32s3")
    damaged = bytearray(framing.encode(sealed))
    damaged[10] ^= 0x55  # line noise: the CRC no longer matches
    await kiosk.send_raw(bytes(damaged))
    assert (await kiosk.call("sign_in", fw="1.0.0", board="esp32s3"))["t"] == "sign_in_reply"
    assert 'onestop_errors_total{code="malformed"} 1.0' in site.metrics()


async def test_a_silent_client_is_disconnected_after_the_idle_timeout(site: Site) -> None:
    reader, writer = await site.raw()
    async with asyncio.timeout(IDLE_TIMEOUT_S * 10):
        assert await reader.read() == b""  # the gateway hung up
    writer.close()
    assert any(
        e["event"] == "disconnected" and e["reason"] == "idle timeout" for e in site.events()
    )


async def drain_until_closed(reader: asyncio.StreamReader, within_s: float = 10.0) -> int:
    """Read what the gateway sends until it hangs up; the bytes read."""
    read = 0
    async with asyncio.timeout(within_s):
        while chunk := await reader.read(65536):
            read += len(chunk)
    return read


async def test_a_client_whose_frames_are_refused_again_and_again_is_disconnected(
        site: Site) -> None:
    """A robustness probe sent 11,000 empty frames (6 bytes each, a signed error each): one
    connection held the loop for seconds and another kiosk's visit timed out."""
    steady = await site.kiosk("K-STEADY")
    reader, writer = await site.raw()
    writer.write(fastwire.encode_frame(b"") * 11_000)
    answered = await drain_until_closed(reader)
    writer.close()
    assert 0 < answered < 40 * 200  # some errors, then the door: not 11,000 of them
    assert any(e["event"] == "disconnected_for_refusals" and e["refused"] >= 32
               for e in site.events())
    settled = await settle_bill(steady, "P001", "B-130630-0001", "TXN-STEADY-02")
    assert settled["t"] == "settle_reply"
    assert 'onestop_warnings_total{event="refused_in_a_row"} 1.0' in site.metrics()


async def test_a_client_sending_oversized_frames_and_reading_nothing_is_cut_off(
        site: Site) -> None:
    """Each over-long run got a too_large reply, written whether the client read or not: the
    gateway's memory grew by 5 MB a second for as long as the client sent."""
    reader, writer = await site.raw()
    run = b"\x01" * (framing.MAX_FRAME + 100) + b"\x00"
    with pytest.raises(ConnectionError):
        async with asyncio.timeout(10):
            for _ in range(100_000):  # 420 MB, unless the gateway hangs up first
                writer.write(run)
                await writer.drain()
    writer.close()
    assert any(e["event"] == "disconnected_for_refusals" for e in site.events())


async def test_a_frame_trickled_a_byte_at_a_time_is_cut_off_at_its_deadline(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each byte reset the idle timer: a frame never finished held its connection (and a file
    descriptor) for as long as its client liked."""
    from onestop.host.gateway import server

    monkeypatch.setattr(server, "FRAME_DEADLINE_S", 0.6)
    reader, writer = await site.raw()
    started = time.monotonic()
    with pytest.raises((ConnectionError, TimeoutError, AssertionError)):
        async with asyncio.timeout(5):
            for _ in range(100):  # 1 byte every 0.1 s: well within the idle timeout
                writer.write(b"\x05")
                await writer.drain()
                await asyncio.sleep(0.1)
                assert not reader.at_eof()
    assert time.monotonic() - started < 3
    writer.close()
    assert any(e["event"] == "disconnected" and "not finished" in e["reason"]
               for e in site.events())


async def test_a_half_closed_link_with_many_frames_closes_once_they_are_answered(
        site: Site) -> None:
    # answered 8 a pass, the rest on the next: the last pass never closed the link, which then
    # waited for the idle timeout (the review's reproduction: 20 frames and a half-close)
    site.running.server.idle_timeout_s = 60
    reader, writer = await site.raw()
    writer.write(framing.encode(b"\xff not cbor") * 20)
    writer.write_eof()
    async with asyncio.timeout(3):
        answers = await reader.read()  # to the gateway's own close
    assert answers.count(b"\x00") == 20
    writer.close()


async def test_a_kiosk_that_sends_a_delimiter_before_each_frame_is_served(site: Site) -> None:
    """A 0x00 before a frame (resynchronising a link after noise) is an empty frame, not a
    fault: 40 requests sent so in one write got no answer and a disconnect."""
    kiosk = await site.kiosk("K-SYNC")
    wire = b"".join(b"\x00" + framing.encode(kiosk.client.request(
        "sign_in", fw="1.0.0", board="esp32s3")[1]) for _ in range(40))
    reader, writer = await site.raw()
    writer.write(wire)
    replies = []
    deframer = framing.Deframer()
    async with asyncio.timeout(10):
        while len(replies) < 40:
            chunk = await reader.read(65536)
            assert chunk, "the gateway hung up"
            deframer.receive_data(chunk)
            while (payload := deframer.next_frame()) is not None:
                replies.append(kiosk.client.open_reply(payload))
    assert {reply["t"] for reply in replies} == {"sign_in_reply"}
    writer.close()


async def test_the_frame_deadline_runs_per_frame_and_through_a_dropped_run(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from onestop.host.gateway import server

    monkeypatch.setattr(server, "FRAME_DEADLINE_S", 0.5)
    site.running.server.idle_timeout_s = 60
    # frames that each end within the deadline, the next always begun in the same write:
    # served for as long as the client sends (the clock restarts as each frame ends)
    kiosk = await site.kiosk("K-PIPE")
    reader, writer = await site.raw()
    frames = [framing.encode(kiosk.client.request("sign_in", fw="1", board="b")[1])
              for _ in range(15)]
    wire = b"".join(frames)
    step = len(frames[0])
    cuts = [0, *range(step // 2, len(wire), step), len(wire)]  # each write ends one, begins one
    for begin, end in zip(cuts, cuts[1:], strict=False):
        writer.write(wire[begin:end])
        await asyncio.sleep(0.1)  # 1.6 s in all, always inside a frame
    await asyncio.sleep(0.3)
    assert not any("not finished" in str(e.get("reason")) for e in site.events())
    writer.close()
    # a run past a frame's size, then a byte at a time: dropped, yet still inside a frame
    reader, writer = await site.raw()
    writer.write(b"\x01" * 5000)
    with pytest.raises((ConnectionError, AssertionError)):
        async with asyncio.timeout(5):
            for _ in range(40):
                writer.write(b"\x01")
                await writer.drain()
                await asyncio.sleep(0.1)
                assert not reader.at_eof()
    writer.close()
    assert any("not finished" in str(e.get("reason")) for e in site.events())


async def test_refused_frames_beyond_a_burst_are_counted_in_one_log_line(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """One warning per refused frame let a flood of bad frames fill the disk with log (and a
    full disk stops the ledger for every kiosk)."""
    from onestop.host.gateway import server

    monkeypatch.setattr(server, "REFUSED_LOG_BURST", 5)
    monkeypatch.setattr(server, "REFUSED_LOG_WINDOW_S", 0.5)
    reader, writer = await site.raw()
    writer.write(framing.encode(b"\xff not cbor") * 20)
    async with asyncio.timeout(5):
        while sum(e["event"] == "refused" for e in site.events()) < 5:
            await asyncio.sleep(0.05)
        while not any(e["event"] == "refused_unlogged" for e in site.events()):
            await asyncio.sleep(0.05)
    writer.close()
    events = site.events()
    assert sum(e["event"] == "refused" for e in events) == 5
    (summary,) = [e for e in events if e["event"] == "refused_unlogged"]
    assert summary["frames"] == 15
    assert 'onestop_errors_total{code="malformed"} 20.0' in site.metrics()  # every one


async def test_connections_near_the_open_files_limit_are_warned_of(site: Site) -> None:
    """At the limit the listener takes no one more, and kiosks were turned away with nothing in
    the log (a probe at ulimit -n 200: 179 connections, then silence)."""
    server = site.running.server
    server.fd_limit = 10  # as if the process could open 10 files
    links = [await site.raw() for _ in range(10)]
    await asyncio.sleep(0.2)
    (warning,) = [e for e in site.events() if e["event"] == "connections_near_fd_limit"]
    assert warning["connections"] == 9 and warning["fd_limit"] == 10  # once, not per link
    assert "ulimit -n" in warning["remedy"]
    for _reader, writer in links:
        writer.close()


def test_serve_raises_its_open_files_limit_to_the_hard_one() -> None:
    import resource
    import subprocess
    import sys

    code = ("import resource\n"
            "from onestop.host.gateway.server import raise_fd_limit\n"
            "print(raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 200:
        pytest.skip("needs a finite hard limit above 200")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (100, hard)))
    assert done.stdout.split() == [str(hard), str(hard)]


async def test_a_kiosk_vanishing_mid_frame_does_not_disturb_another(site: Site) -> None:
    steady = await site.kiosk("K-STEADY")
    flaky = await site.kiosk("K-FLAKY")
    _request, sealed = flaky.client.request("sign_in", fw="1.0.0", board="esp32s3")
    wire = framing.encode(sealed)
    await flaky.send_raw(wire[: len(wire) // 2])
    await flaky.close()
    settled = await settle_bill(steady, "P001", "B-130630-0001", "TXN-STEADY-01")
    assert settled["t"] == "settle_reply"
    for _ in range(50):  # the gateway notices the hang-up on its own schedule
        if 'onestop_errors_total{code="truncated"} 1.0' in site.metrics():
            break
        await asyncio.sleep(0.02)
    assert 'onestop_errors_total{code="truncated"} 1.0' in site.metrics()


async def test_logs_are_json_lines_with_no_id_number_in_them(site: Site) -> None:
    kiosk = await site.kiosk()
    resident = site.residents["P005"]
    await kiosk.call("person_info", card=card_of(resident))
    await settle_bill(kiosk, "P005", "B-130602-0005", "TXN-LOGGED-01", card_read=True)
    text = site.log.getvalue()
    events = site.events()  # every line parses as one JSON object
    settled = [e for e in events if e["event"] == "settled"]
    assert len(settled) == 1
    assert settled[0]["kiosk"] == "K-01" and settled[0]["txn_id"] == "TXN-LOGGED-01"
    assert {"ts", "level", "latency_ms"} <= set(settled[0])
    assert resident["ssn"] not in text and resident["card_no"] not in text


async def test_a_settle_with_a_new_txn_for_a_settled_bill_is_refused(site: Site) -> None:
    kiosk = await site.kiosk()
    await settle_bill(kiosk, "P001", "B-130630-0001", new_txn_id())
    with pytest.raises(GatewayRefused) as refused:
        await kiosk.call(
            "settle", psn_no="P001", bill_id="B-130630-0001", txn_id=new_txn_id(), confirmed_cash=0
        )
    assert refused.value.code == "bill_settled"


async def test_a_database_that_goes_away_gets_a_clear_error_and_comes_back(
        ledger: Ledger, ledger_url: str, tmp_path: Path) -> None:
    if not ledger_url.startswith("postgresql"):
        pytest.skip("a database server that goes away is a PostgreSQL event; SQLite's full "
                    "disk is in test_crash_storage")
    # the gateway's own connections carry a name, so only they are cut (not other tests')
    marker = f"onestop-gw-{uuid.uuid4().hex[:12]}"
    site = await _start_site(ledger, f"{ledger_url}&application_name={marker}", tmp_path)
    try:
        kiosk = await site.kiosk()
        await kiosk.call("person_info", card=demo_card("P001"))
        pre = await kiosk.call("pre_settle", psn_no="P001", bill_id="B-130630-0001")
        with psycopg.connect(os.environ["ONESTOP_TEST_PG"], autocommit=True) as admin:
            cut = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE application_name = %s", (marker,)).fetchone()
        assert cut is not None and cut[0] >= 1
        outcomes = []
        for _ in range(3):
            try:
                outcomes.append((await kiosk.call(
                    "settle", psn_no="P001", bill_id="B-130630-0001", txn_id="TXN-DBGONE-01",
                    confirmed_cash=pre["result"]["psn_cash_pay"]))["t"])
                break
            except GatewayRefused as exc:
                outcomes.append(exc.code)
                assert exc.reply["msg"].startswith("the gateway's ledger is unavailable; ")
                assert marker not in exc.reply["msg"] and "127.0.0.1" not in exc.reply["msg"]
        assert outcomes[-1] == "settle_reply"  # the gateway reconnected by itself
        assert set(outcomes[:-1]) <= {"unavailable"}
        # what was wrong, and which ledger, is for the operator's log, not the kiosks' network
        refused = [e for e in site.events() if e["event"] == "refused"]
        assert len(refused) == outcomes.count("unavailable")
        assert all(marker in e["msg"] for e in refused)
        assert [s.txn_id for s in ledger.settlements_on(
            ledger.get_settlement("TXN-DBGONE-01").setl_date)] == ["TXN-DBGONE-01"]
    finally:
        await site.close()


class FreezingProxy:
    """A TCP relay to the database that can stop passing bytes while keeping every
    connection open: a server that hangs (a stuck disk, a frozen pooler), not one that dies."""

    @classmethod
    def to(cls, ledger_url: str) -> FreezingProxy:
        parts = urllib.parse.urlsplit(ledger_url)
        return cls((parts.hostname or "127.0.0.1", parts.port or 5432))

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.frozen = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.accepted = 0  # connections made through it
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            server = socket.create_connection(self.target)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._relay, args=(a, b), daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.05)
        while not self._closed.is_set():
            if self.frozen.is_set():
                time.sleep(0.05)
                continue
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                sink.close()
                return
            while self.frozen.is_set() and not self._closed.is_set():
                time.sleep(0.05)  # what came in as it froze is held too
            sink.sendall(data)

    def url(self, ledger_url: str) -> str:
        """`ledger_url` (PostgreSQL) through this proxy."""
        parts = urllib.parse.urlsplit(ledger_url)
        user = f"{parts.username}@" if parts.username else ""
        return parts._replace(netloc=f"{user}127.0.0.1:{self.port}").geturl()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()


async def test_a_database_that_stops_answering_is_told_of_while_it_lasts_and_cut_off(
        ledger: Ledger, ledger_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger runs on the event loop: a database that keeps the link up and answers
    nothing held every kiosk of the gateway, silently, for as long as it lasted. The stall is
    logged while it lasts, and the connection is broken: kiosks are answered `unavailable`."""
    if not ledger_url.startswith("postgresql"):
        pytest.skip("a database server that hangs is a PostgreSQL event")
    from onestop.host.gateway import stallwatch
    from onestop.host.gateway.ledger import postgres

    monkeypatch.setattr(stallwatch, "WARN_AFTER_S", 0.5)
    monkeypatch.setattr(stallwatch, "BREAK_AFTER_S", 1.5)
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT_S", 2)
    proxy = FreezingProxy.to(ledger_url)
    site = await _start_site(ledger, proxy.url(ledger_url), tmp_path)
    try:
        kiosk = await site.kiosk()
        await kiosk.call("person_info", card=demo_card("P001"))
        proxy.frozen.set()
        with pytest.raises(GatewayRefused) as refused:
            await kiosk.call("person_info", card=demo_card("P001"), timeout=30)
        assert refused.value.code == "unavailable"
        warned = [e["event"] for e in site.events() if e["level"] == "warning"]
        assert "ledger_stalled" in warned and "ledger_connection_broken" in warned
        assert 'onestop_warnings_total{event="ledger_stalled"} 1.0' in site.metrics()
        proxy.frozen.clear()  # it answers again: the gateway carries on by itself
        kiosk = await site.connect(kiosk.client)  # (the test's idle timeout closed the other)
        assert (await kiosk.call("person_info", card=demo_card("P001")))["psn_no"] == "P001"
    finally:
        proxy.frozen.clear()
        await site.close()
        proxy.close()


async def test_a_commit_that_failed_tells_a_read_to_ask_again_and_a_settle_to_query(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    # A connection lost at COMMIT: only a write may have been stored (settlement_query tells);
    # a person_info or pre_settle was told to ask with settlement_query too.
    from onestop.host.gateway.ledger.base import LedgerError, RequestOutcome

    kiosk = await site.kiosk()
    await kiosk.call("person_info", card=demo_card("P001"))
    pre = await kiosk.call("pre_settle", psn_no="P001", bill_id="B-130630-0001")
    lost = LedgerError("the connection was lost at COMMIT")
    lost.at_commit = True
    ledger = site.running.server.service.ledger
    monkeypatch.setattr(ledger, "run_requests", lambda jobs: [
        RequestOutcome("failed", error=lost) for _ in jobs])
    told = {}
    for t, body in (("pre_settle", {"bill_id": "B-130630-0001"}),
                    ("settle", {"bill_id": "B-130630-0001", "txn_id": new_txn_id(),
                                "confirmed_cash": pre["result"]["psn_cash_pay"]})):
        with pytest.raises(GatewayRefused) as refused:
            await kiosk.call(t, psn_no="P001", **body)
        told[t] = (refused.value.code, refused.value.reply["msg"])
    assert told == {
        "pre_settle": ("unavailable", "the gateway's ledger is unavailable; ask again"),
        "settle": ("unavailable", "the gateway's ledger is unavailable; the request may have "
                   "been stored: ask with settlement_query")}


async def test_a_lock_held_elsewhere_is_waited_for_a_bounded_time_and_the_operator_told(
        ledger: Ledger, ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator's psql session holds the settlements table: the gateway (whose kiosks all
    wait while its ledger work waits) gives up after LOCK_WAIT_MS, answers `unavailable`, logs
    `ledger_slow`, and its metrics show the stall while it lasts; then it settles as before."""
    if not ledger_url.startswith("postgresql"):
        pytest.skip("SQLite's writers wait busy_timeout_s, see test_ledger_concurrency")
    from onestop.host.gateway import server
    from onestop.host.gateway.ledger import postgres

    monkeypatch.setattr(postgres, "LOCK_WAIT_MS", 1500)
    monkeypatch.setattr(server, "SLOW_LEDGER_S", 0.5)
    site = await _start_site(ledger, ledger_url, tmp_path)
    schema = ledger_url.split("schema=")[1].split("&")[0]
    try:
        kiosk = await site.kiosk()
        await kiosk.call("person_info", card=demo_card("P001"))
        pre = await kiosk.call("pre_settle", psn_no="P001", bill_id="B-130630-0001")
        scraped: list[str] = []
        scraper = threading.Timer(0.7, lambda: scraped.append(site.metrics()))
        with psycopg.connect(os.environ["ONESTOP_TEST_PG"]) as holder:
            holder.execute(f'LOCK TABLE "{schema}".settlements IN ACCESS EXCLUSIVE MODE')
            scraper.start()
            started = time.monotonic()
            with pytest.raises(GatewayRefused) as refused:
                await kiosk.call("settle", psn_no="P001", bill_id="B-130630-0001",
                                 txn_id="TXN-LOCKED-01",
                                 confirmed_cash=pre["result"]["psn_cash_pay"])
            waited = time.monotonic() - started
            scraper.join()
            holder.rollback()
        assert refused.value.code == "unavailable"
        assert waited < 5  # a kiosk waits 10 s for its answer
        [busy] = [line for line in scraped[0].splitlines()
                  if line.startswith("onestop_ledger_busy_seconds ")]
        assert float(busy.split()[1]) > 0.5  # the stall, seen from outside while it lasts
        slow = [e for e in site.events() if e["event"] == "ledger_slow"]
        assert slow and slow[0]["level"] == "warning" and slow[0]["seconds"] >= 1.5
        assert 'onestop_warnings_total{event="ledger_slow"} 1.0' in site.metrics()
        assert "onestop_ledger_busy_seconds 0.0" in site.metrics()
        [why] = [e["msg"] for e in site.events() if e["event"] == "refused"]
        assert "another session held a lock it needs for over 1.5 s" in why
        kiosk = await site.connect(kiosk.client)  # the site's idle timeout (0.5 s) passed
        settled = await kiosk.call("settle", psn_no="P001", bill_id="B-130630-0001",
                                   txn_id="TXN-LOCKED-01",
                                   confirmed_cash=pre["result"]["psn_cash_pay"])
        assert settled["txn_id"] == "TXN-LOCKED-01"
    finally:
        await site.close()


# ------------------------------------------- SQLite: the event loop does not wait on the ledger


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
async def test_while_another_writer_holds_the_ledger_other_kiosks_are_still_answered(
        site: Site, ledger_url: str) -> None:
    """`kiosk gateway import-bills` (or a second gateway process) has the writers' queue: a
    kiosk's request waits its turn, but the gateway goes on reading and answering the frames
    it can answer without the ledger, instead of freezing whole until the import ends."""
    import fcntl

    waiting = await site.kiosk("K-01")
    other = await site.kiosk("K-02")
    lock = os.open(f"{urllib.parse.urlparse(ledger_url).path}-writer.lock", os.O_RDWR)
    # let go after 3 s whatever happens: a gateway frozen until then freezes this test too
    valve = threading.Timer(3.0, fcntl.flock, (lock, fcntl.LOCK_UN))
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process's turn, as `_writer` takes it
        valve.start()
        asked = asyncio.ensure_future(waiting.call("person_info", card=demo_card("P001")))
        await asyncio.sleep(0.3)
        assert not asked.done(), "answered while another writer had the ledger"
        garbage = framing.encode(b"\xff\x00 not cbor")
        reply = await asyncio.wait_for(refusal(other, garbage), 2.0)
        assert (reply["t"], reply["code"]) == ("error", "malformed")
        assert not asked.done()
    finally:
        valve.cancel()
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    assert (await asyncio.wait_for(asked, 5.0))["t"] == "person_info_reply"


@pytest.mark.timeout(60)  # a regression deadlocks the test's own event loop
@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
async def test_a_write_on_the_loop_while_its_turn_is_being_waited_for_does_not_deadlock(
        site: Site, ledger_url: str) -> None:
    """The gateway's key check (every 10 s) and its stop write to the ledger on the event
    loop's thread. One that came while a worker thread waited for the loop's turn (another
    process writing) froze the gateway for good, and with it the writer lock: no other gateway
    or `kiosk gateway` command could write either. It waits for that turn and writes in it."""
    import fcntl

    kiosk = await site.kiosk("K-01")
    ledger = site.running.server.service.ledger
    lock = os.open(f"{urllib.parse.urlparse(ledger_url).path}-writer.lock", os.O_RDWR)
    valve = threading.Timer(0.2, fcntl.flock, (lock, fcntl.LOCK_UN))  # < IDLE_TIMEOUT_S
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        asked = asyncio.ensure_future(kiosk.call("person_info", card=demo_card("P001")))
        await asyncio.sleep(0.1)  # the batch's worker thread now waits for the loop's turn
        assert not asked.done()
        valve.start()
        ledger.record_sign_in("K-02", "1.0.0", "esp32s3", int(time.time()))  # on the loop
    finally:
        valve.cancel()
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    assert (await asyncio.wait_for(asked, 5.0))["t"] == "person_info_reply"
    assert "K-02" in ledger.sign_ins()
    # the turn is given back: another process (a `kiosk gateway` command) writes at once
    other = open_ledger(ledger_url)
    try:
        other.record_sign_in("K-03", "1.0.0", "esp32s3", int(time.time()))
    finally:
        other.close()


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
async def test_a_reply_waits_for_its_disk_flush_and_the_gateway_does_not(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow disk (an SD card's flush can take tens of milliseconds): the settle is answered
    only once its commit is on disk, and meanwhile the gateway reads and answers other frames."""
    from onestop.host.gateway.ledger import sqlite

    kiosk = await site.kiosk("K-01")
    other = await site.kiosk("K-02")
    await kiosk.call("person_info", card=demo_card("P001"))
    pre = await kiosk.call("pre_settle", psn_no="P001", bill_id="B-130630-0001")
    disk_done = threading.Event()
    flushing = threading.Event()
    real = sqlite.os.fdatasync

    def slow_disk(fd: int) -> None:
        flushing.set()
        disk_done.wait(5.0)
        real(fd)

    monkeypatch.setattr(sqlite.os, "fdatasync", slow_disk)
    settled = asyncio.ensure_future(kiosk.call(
        "settle", psn_no="P001", bill_id="B-130630-0001", txn_id="TXN-SLOW-DISK-1",
        confirmed_cash=pre["result"]["psn_cash_pay"]))
    try:
        while not flushing.is_set():
            await asyncio.sleep(0.01)
        garbage = framing.encode(b"\xff\x00 not cbor")
        reply = await asyncio.wait_for(refusal(other, garbage), 2.0)
        assert reply["code"] == "malformed"
        assert not settled.done(), "the settle was answered before its commit was on disk"
    finally:
        disk_done.set()
    assert (await asyncio.wait_for(settled, 5.0))["txn_id"] == "TXN-SLOW-DISK-1"


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
async def test_a_disk_flush_that_fails_tells_the_kiosk_to_ask_with_settlement_query(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    from onestop.host.gateway.ledger import sqlite

    kiosk = await site.kiosk()
    await kiosk.call("person_info", card=demo_card("P001"))
    pre = await kiosk.call("pre_settle", psn_no="P001", bill_id="B-130630-0001")

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sqlite.os, "fdatasync", failing)
    with pytest.raises(GatewayRefused) as refused:
        await kiosk.call("settle", psn_no="P001", bill_id="B-130630-0001",
                         txn_id="TXN-BAD-DISK-1", confirmed_cash=pre["result"]["psn_cash_pay"])
    assert refused.value.code == "unavailable"
    assert "ask with settlement_query" in refused.value.reply["msg"]
    monkeypatch.undo()
    answer = await kiosk.call("settlement_query", txn_id="TXN-BAD-DISK-1")
    assert answer["status"] == "settled"  # the commit went through; only its flush failed


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
async def test_a_revoked_gateway_key_stops_the_gateway_even_when_the_disk_flush_fails(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """The settle finds the key revoked (nothing signed) and the batch's flush fails: the
    kiosk is told `unavailable`, and serving stops all the same (found by a review)."""
    from onestop.host.gateway.ledger import sqlite

    kiosk = await site.kiosk()
    await kiosk.call("person_info", card=demo_card("P001"))
    pre = await kiosk.call("pre_settle", psn_no="P001", bill_id="B-130630-0001")
    stopped: list[str] = []
    site.running.server.service.on_signer_revoked = stopped.append
    site.ledger.set_key_status("gateway-01", "revoked")

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sqlite.os, "fdatasync", failing)
    with pytest.raises(GatewayRefused) as refused:
        await kiosk.call("settle", psn_no="P001", bill_id="B-130630-0001",
                         txn_id="TXN-REVOKED-BAD-DISK",
                         confirmed_cash=pre["result"]["psn_cash_pay"])
    assert refused.value.code == "unavailable"
    assert stopped == ["revoked"]
    monkeypatch.undo()
    assert site.ledger.get_settlement("TXN-REVOKED-BAD-DISK") is None


async def test_requests_from_a_client_with_a_reused_counter_are_replays(site: Site) -> None:
    kiosk = await site.kiosk()
    await kiosk.call("sign_in", fw="1.0.0", board="esp32s3")
    # a kiosk that lost its counter (flash wiped) starts again from 1
    rebooted = KioskClient(
        "K-01",
        kiosk.client.key,
        MemoryCounter(),
        kiosk.client.gateway_kid,
        kiosk.client.gateway_key,
    )
    again = await site.connect(rebooted)
    with pytest.raises(GatewayRefused) as refused:
        await again.call("sign_in", fw="1.0.0", board="esp32s3")
    assert refused.value.code == "replay"


def _handle_with(site: Site, monkeypatch: pytest.MonkeyPatch,
                 change: Callable[[dict[str, Any], Callable[[], Any]], Any]) -> None:
    """For one test, the gateway handles each request as change(request, handle) does, where
    handle() is its real handling."""
    handlers = site.running.server.service.handlers
    real = handlers.handle
    monkeypatch.setattr(handlers, "handle", lambda ledger, request, now, *ahead: change(
        request, lambda: real(ledger, request, now, *ahead)))


async def test_a_bug_in_a_handler_costs_one_reply_not_the_connection(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    kiosk = await site.kiosk()

    def broken(request: dict[str, Any], handle: Callable[[], Any]) -> Any:
        if request["t"] == "pending_bills":
            raise KeyError("a bug")
        return handle()

    _handle_with(site, monkeypatch, broken)
    with pytest.raises(GatewayRefused) as refused:
        await kiosk.call("pending_bills", psn_no="P001")
    assert refused.value.code == "internal"
    assert "KeyError" in refused.value.reply["msg"]
    assert (await kiosk.call("sign_in", fw="1.0.0", board="esp32s3"))["t"] == "sign_in_reply"
    errors = [e for e in site.events() if e["event"] == "internal_error"]
    assert len(errors) == 1 and "KeyError" in errors[0]["exc"]


async def test_a_reply_too_large_for_a_frame_is_an_internal_error_not_silence(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    kiosk = await site.kiosk()

    def oversized(request: dict[str, Any], handle: Callable[[], Any]) -> Any:
        handled = handle()
        if request["t"] == "person_info":
            handled.reply["name"] = "名" * 2000  # 6,000 bytes of UTF-8
        return handled

    _handle_with(site, monkeypatch, oversized)
    with pytest.raises(GatewayRefused) as refused:
        await kiosk.call("person_info", card=card_of(site.residents["P001"]))
    assert refused.value.code == "internal"
    assert (await kiosk.call("sign_in", fw="1.0.0", board="esp32s3"))["t"] == "sign_in_reply"
    errors = [e for e in site.events() if e["event"] == "internal_error"]
    assert len(errors) == 1 and "frame limit" in errors[0]["exc"]


async def test_idle_connections_to_the_metrics_port_cannot_use_up_the_gateway(
        site: Site, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each connection used to hold a thread and a descriptor for as long as it stayed open.
    if not ledger_url.startswith("sqlite"):
        pytest.skip("the metrics endpoint does not depend on the backend")
    monkeypatch.setattr(metrics._QuietHandler, "timeout", 0.5)
    endpoint = site.running.metrics_endpoint
    assert endpoint is not None

    def scrapes() -> int:  # threads serving a metrics connection
        return sum("process_request_thread" in t.name for t in threading.enumerate())

    idle = [socket.create_connection(("127.0.0.1", endpoint.port)) for _ in range(24)]
    try:
        await asyncio.sleep(0.2)
        assert 0 < scrapes() <= metrics.MAX_SCRAPES
        kiosk = await site.kiosk()
        assert (await kiosk.call("sign_in", fw="1.0.0", board="esp32s3"))["t"] == "sign_in_reply"
        await asyncio.sleep(1.0)  # the silent ones are closed; a scrape is served again
        assert "onestop_frames_total" in await asyncio.to_thread(site.metrics)
        for _ in range(100):
            if scrapes() == 0:
                break
            await asyncio.sleep(0.05)
        assert scrapes() == 0
    finally:
        for connection in idle:
            connection.close()


class _ListenerOutOfDescriptors:
    """A worker's shared listener whose accept() fails as when the process has no descriptor
    left, for `failing_s` from its first call, then accepts."""

    def __init__(self, failing_s: float) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.socket.setblocking(False)
        self.failing_s = failing_s
        self.failing_until: float | None = None
        self.calls = 0

    def fileno(self) -> int:
        return self.socket.fileno()

    def getsockname(self) -> Any:
        return self.socket.getsockname()

    def accept(self) -> Any:
        self.calls += 1
        if self.failing_until is None:
            self.failing_until = time.monotonic() + self.failing_s
        if time.monotonic() < self.failing_until:
            raise OSError(24, "Too many open files")
        return self.socket.accept()


class _EvenShares:
    def more_than_least(self, index: int) -> bool:
        return False

    def add(self, index: int, count: int) -> None:
        pass


async def test_a_worker_out_of_descriptors_backs_off_and_logs_once(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    # accept() failing left the listener readable: the worker retried at once, spinning a
    # core and writing ~30,000 warnings a second
    from onestop.host.gateway import server

    monkeypatch.setattr(server, "ACCEPT_RETRY_S", 0.05)
    listener = _ListenerOutOfDescriptors(failing_s=0.3)
    try:
        site.running.server.accept_shared(
            server.SharedListener(0, listener, _EvenShares()))  # type: ignore[arg-type]
        client = enroll_kiosk(site.ledger, "K-LATE")
        kiosk = await KioskConnection.open_tcp(client, *listener.getsockname())
        site.connections.append(kiosk)
        answer = await kiosk.call("sign_in", fw="1.0.0", board="esp32s3")
        assert answer["t"] == "sign_in_reply"  # served once descriptors are free again
        assert listener.calls <= 0.3 / 0.05 + 3  # one try per back-off, not a spin
        warnings = [e for e in site.events() if e["event"] == "accept_failed"]
        assert len(warnings) == 1 and "Too many open files" in warnings[0]["error"]
    finally:  # the test's listener goes with the test; the gateway closes after it
        asyncio.get_running_loop().remove_reader(listener.fileno())
        site.running.server._shared = None
        listener.socket.close()


async def test_a_counter_too_high_to_keep_is_invalid_and_costs_no_other_kiosk(
        site: Site) -> None:
    # frames.cddl allows any uint; the ledgers keep a counter in 64 signed bits
    client = enroll_kiosk(site.ledger, "K-HIGH", MemoryCounter(2**64 - 5))
    high = await site.connect(client)
    other = await site.kiosk("K-02")
    card = card_of(site.residents["P001"])
    refused, answered = await asyncio.gather(
        high.call("person_info", card=card), other.call("person_info", card=card),
        return_exceptions=True)
    assert isinstance(refused, GatewayRefused) and refused.code == "invalid"
    assert "counter" in refused.reply["msg"]
    assert answered["psn_no"] == "P001"


async def test_text_with_a_nul_character_is_invalid_on_either_ledger(site: Site) -> None:
    # a CBOR text string may hold NUL; PostgreSQL text cannot, and "unavailable" would be wrong
    kiosk = await site.kiosk()
    await kiosk.call("person_info", card=demo_card("P001"))
    with pytest.raises(GatewayRefused) as refused:
        await kiosk.call("pre_settle", psn_no="P001", bill_id="B-130630-0001\x00")
    assert refused.value.code == "invalid"
    assert "pre_settle.bill_id" in refused.value.reply["msg"]
    pre = await kiosk.call("pre_settle", psn_no="P001", bill_id="B-130630-0001")
    assert pre["bill_id"] == "B-130630-0001"


async def test_a_client_that_floods_frames_is_held_back_and_others_are_served(
        site: Site) -> None:
    flooding = enroll_kiosk(site.ledger, "K-FLOOD")
    # 8,000 signed requests (25 MB) sent at once, and no answer read. Each waits its turn in
    # the ledger, so they would pile up in the gateway's memory if it kept reading.
    frames = b"".join(
        fastwire.encode_frame(flooding.request("sign_in", fw="x" * 3000, board="esp32s3")[1])
        for _ in range(8_000))
    _reader, writer = await site.raw()
    writer.write(frames)
    host, port = writer.get_extra_info("sockname")[:2]
    (flood,) = [c for c in site.running.server._connections if c.peer == f"{host}:{port}"]
    await asyncio.sleep(0.5)  # the gateway answers one a turn; it read all it could by now
    assert flood.deframer.waiting < 500  # about what one read brings, not the 8,000 sent
    assert writer.transport.get_write_buffer_size() > 5_000_000  # TCP holds the rest back
    steady = await site.kiosk("K-STEADY")
    settled = await settle_bill(steady, "P001", "B-130630-0001", "TXN-STEADY-02")
    assert settled["t"] == "settle_reply"
    writer.transport.abort()


async def test_a_kiosk_that_half_closes_still_gets_every_answer(site: Site) -> None:
    # Three settles sent at once, then the sending side shut: each commits, so each answer must
    # reach the kiosk (the connection used to close at the EOF, and two answers were lost).
    client = enroll_kiosk(site.ledger, "K-HALF")
    pricing = await site.kiosk("K-PRICE")
    requests = []
    for n, psn_no in enumerate(("P001", "P002", "P003")):
        bill_id = site.residents[psn_no]["bills"][0]["bill_id"]
        await pricing.call("person_info", card=demo_card(psn_no))
        pre = await pricing.call("pre_settle", psn_no=psn_no, bill_id=bill_id)
        # each resident's card, then their settle: six frames, all sent before any answer
        requests.append(client.request("person_info", card=demo_card(psn_no)))
        requests.append(client.request(
            "settle", psn_no=psn_no, bill_id=bill_id, txn_id=f"TXN-HALF-{n:04d}",
            confirmed_cash=pre["result"]["psn_cash_pay"]))
    reader, writer = await site.raw()
    writer.write(b"".join(fastwire.encode_frame(sealed) for _request, sealed in requests))
    writer.write_eof()
    received = await asyncio.wait_for(reader.read(), timeout=10)  # to the gateway's EOF

    deframer = framing.Deframer()
    deframer.receive_data(received)
    answers = []
    while (payload := deframer.next_frame()) is not None:
        answers.append(payload)
    assert [client.check_reply(request, payload)["t"] for (request, _), payload
            in zip(requests, answers, strict=True)] == ["person_info_reply", "settle_reply"] * 3
    assert all(site.ledger.get_settlement(f"TXN-HALF-{n:04d}") for n in range(3))
    writer.close()


async def test_serving_a_ledger_other_users_can_read_logs_a_warning(
        ledger: Ledger, ledger_url: str, tmp_path: Path) -> None:
    if not ledger_url.startswith("sqlite"):
        pytest.skip("a PostgreSQL server keeps its own files")
    path = Path(ledger_url.removeprefix("sqlite:///"))
    path.chmod(0o644)
    site = await _start_site(ledger, ledger_url, tmp_path)
    try:
        (warning,) = [e for e in site.events() if e["event"] == "ledger_exposed"]
        assert warning["level"] == "warning" and f"chmod 600 {path}" in warning["problem"]
    finally:
        await site.close()
