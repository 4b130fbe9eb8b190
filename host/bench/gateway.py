"""`kiosk bench gateway`: settlements/s and settle latency with N simulated kiosks over loopback.

The gateway runs as its own process (`kiosk gateway serve`, as an operator starts it), so the
gateway and the kiosks use both cores. The kiosks (VisitingKiosk: each one its TCP link's
callbacks) run in --kiosk-processes processes (forked, started together), each kiosk with its
own enrolled key and counter, sending full signed frames and checking every answer:
person_info -> pre_settle -> settle -> receipt_printed, one resident after another. The
first --warmup seconds are not measured (the kiosks' lockstep start); their settlements are
checked like the others. Afterwards the ledger is checked: every settlement
a kiosk got an acknowledgement for is there exactly once, and no bill was settled twice.

The *floor* is measured in the same run: settle exchanges per second one core manages when it
only seals, opens and computes (kiosk seal, gateway open + settle + sign, kiosk open), no I/O.
It is measured before and after the run and the mean is used: a shared machine's speed drifts
by tens of percent within a minute, and one measurement on one side of the run would tilt the
ratio.
A settlement in the run is a whole visit — four signed exchanges and six durable writes (a
counter per request, the settlement, the receipt) — so "requests answered/s" is printed too,
to compare like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, cast

# Targets of the issue (2 cores, loopback, SQLite synchronous=FULL, 200 kiosks).
TARGET_RATE = 500.0  # settlements/s
TARGET_P99_MS = 150.0
TARGET_FLOOR_SHARE = 0.40
BENCH_REGION = "130630"
FLOOR_SECONDS = 2.0
BILLS_PER_SECOND_AT_LEAST = 1500  # bills seeded per second of run, at the least
KIOSK_MAX_RATE = 100  # visits per second one kiosk could make alone (loopback round trips)
DEFAULT_GATEWAY_WORKERS = 2
DEFAULT_KIOSK_PROCESSES = 2  # processes playing the kiosks (see run_fleets)
WARMUP_SECONDS = 1.0  # the kiosks' lockstep start, not measured (see run_fleets)
FLOOR_DRIFT_NOTED = 0.10  # floors before and after further apart than this: the table says so


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kiosks", type=int, default=200, metavar="N",
                        help="simulated kiosks (default 200)")
    parser.add_argument("--seconds", type=float, default=10.0, metavar="S",
                        help="measured run time (default 10)")
    parser.add_argument("--db", metavar="URL",
                        help="ledger URL (default: a new SQLite file in a temporary folder; a "
                             "postgresql:// URL gets a fresh schema, dropped afterwards; a "
                             "?schema= or SQLite file given must be empty, and is kept)")
    parser.add_argument("--workers", type=int, default=DEFAULT_GATEWAY_WORKERS, metavar="N",
                        help="gateway processes (kiosk gateway serve --workers; default "
                             f"{DEFAULT_GATEWAY_WORKERS}: one per core of a 2-core machine)")
    parser.add_argument("--warmup", type=float, default=WARMUP_SECONDS, metavar="S",
                        help="seconds the kiosks run before measuring starts (default "
                        f"{WARMUP_SECONDS:g}; their settlements are checked in the ledger too)")
    parser.add_argument("--kiosk-processes", type=int, default=DEFAULT_KIOSK_PROCESSES,
                        metavar="N", help="processes driving the simulated kiosks (default "
                        f"{DEFAULT_KIOSK_PROCESSES})")
    parser.add_argument("--floor-seconds", type=float, default=FLOOR_SECONDS, metavar="S",
                        help=f"how long to measure the floor (default {FLOOR_SECONDS:g})")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")


# ---------------------------------------------------------------- the gateway process


class GatewayProcess:
    """`kiosk gateway serve` in a child process, on a free loopback port.

    Its JSON-line log goes to `log_path`; the port comes from its `listening` event. Also used by
    the crash and two-gateway tests, which `kill()` it (SIGKILL) and start it again.
    """

    def __init__(self, db: str, key_path: Path, log_path: Path, *,
                 workers: int | None = None, idle_timeout_s: float | None = None,
                 preexec_fn: Callable[[], None] | None = None,
                 stop_with_parent: bool = False, extra: tuple[str, ...] = ()) -> None:
        self.db = db
        self.extra = extra  # more serve options (--policy ..., --timezone ...)
        self.stop_with_parent = stop_with_parent  # it stops if this process dies (kill -9)
        self.key_path = key_path
        self.log_path = log_path
        self.workers = workers
        self.idle_timeout_s = idle_timeout_s
        self.preexec_fn = preexec_fn
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "onestop.host.cli", "gateway", "serve",
                   "--db", self.db, "--key", str(self.key_path), "--listen", "127.0.0.1:0",
                   "--log-level", "info"]  # info: the `listening` event carries the port
        if self.workers is not None:
            command += ["--workers", str(self.workers)]
        if self.idle_timeout_s is not None:
            command += ["--idle-timeout", str(self.idle_timeout_s)]
        if self.stop_with_parent:
            command.append("--stop-with-parent")
        return command + list(self.extra)

    def start(self, timeout_s: float = 30.0) -> int:
        """Start and wait until it listens; returns the port. RuntimeError if it does not."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=self.preexec_fn,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            port = self._listening_port(offset)
            if port:
                self.port = port
                return port
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_path.read_bytes()[offset:][-2000:].decode(errors="replace")
        self.kill()
        raise RuntimeError(f"the gateway did not start listening:\n{tail}")

    def _listening_port(self, offset: int) -> int:
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            for line in log:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "listening" and event.get("transport") == "tcp":
                    return int(event["port"])
        return 0

    @property
    def running(self) -> bool:
        """Started and not exited (a gateway that died on its own is not running)."""
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        """CPU time the gateway (its workers included) has used so far (user + system), from
        /proc."""
        if self.process is None:
            return 0.0
        return process_tree_cpu(self.process.pid)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the gateway's machine."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait()

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode or 0)


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (Linux /proc/stat: all but idle and
    iowait)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    ticks = [int(value) for value in fields]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    return busy / os.sysconf("SC_CLK_TCK")


def _processes() -> Iterator[tuple[int, str, int, float]]:
    """(pid, name, parent pid, user + system CPU seconds) of each live process (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat_line = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        head, _, tail = stat_line.rpartition(")")  # the name is in parentheses, and may hold any
        fields = tail.split()
        yield (int(entry), head.partition("(")[2], int(fields[1]),
               (int(fields[11]) + int(fields[12])) / tick)


def named_processes_cpu(name: str) -> float:
    """User + system CPU seconds of the live processes called `name`."""
    return sum(cpu for _pid, called, _parent, cpu in _processes() if called == name)


def process_tree_cpu(root: int) -> float:
    """User + system CPU seconds of `root` and its live descendants."""
    stats = {pid: (parent, cpu) for pid, _name, parent, cpu in _processes()}
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return total


# ---------------------------------------------------------------- the population


@dataclass
class BenchResident:
    psn_no: str
    card: dict[str, str]
    bill_ids: list[str]


def ssn_with_check_digit(first17: str) -> str:
    """A social security number with its GB 11643 check character."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(digit) * weight for digit, weight in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


def bills_per_kiosk(kiosks: int, workers: int, floor: float, seconds: float) -> int:
    """Bills to seed for each kiosk so that none runs out before the end: a kiosk without bills
    stops, and fewer kiosks load the gateway less. A gateway worker seals and opens more per
    visit than one floor exchange, so `workers` x `floor` visits/s is more than it can settle;
    a kiosk alone makes at most KIOSK_MAX_RATE."""
    per_second = max(BILLS_PER_SECOND_AT_LEAST, workers * floor)
    return int(min(per_second / kiosks, KIOSK_MAX_RATE) * seconds) + 2


def generate_residents(ledger: Any, kiosk_index: int, residents: int, bills_each: int,
                       bill_date: str, rng: random.Random) -> list[BenchResident]:
    """Residents (and their pending outpatient bills) for one kiosk, stored in the ledger."""
    from onestop.host.gateway.ledger.base import Bill, Person

    made = []
    for number in range(residents):
        serial = kiosk_index * 1000 + number
        psn_no = f"BK{kiosk_index:04d}R{number:03d}"
        ssn = ssn_with_check_digit(f"{BENCH_REGION}1960{serial % 12 + 1:02d}{serial % 28 + 1:02d}"
                                   f"{serial % 1000:03d}")
        card_no = f"BN{serial:07d}"
        person = Person(psn_no=psn_no, name=f"测试居民{serial}", ssn=ssn, card_no=card_no,
                        insu_admdvs=BENCH_REGION,
                        assistance=rng.choice(("none", "none", "none", "low_income", "dibao")))
        ledger.upsert_person(person)
        bill_ids = []
        for bill_number in range(bills_each):
            bill_id = f"BB-{psn_no}-{bill_number:04d}"
            ledger.upsert_bill(Bill(
                bill_id=bill_id, psn_no=psn_no, fixmedins_name="基准乡卫生院",
                mdtrtarea_admvs=BENCH_REGION, med_type="outpatient_chronic", hosp_lv=1,
                referral=False, date=bill_date,
                items=(
                    {"name": "甲类药品", "class": "A", "amount": rng.randrange(5_000, 60_000)},
                    {"name": "乙类药品", "class": "B", "amount": rng.randrange(1_000, 30_000)},
                    {"name": "自费药品", "class": "C", "amount": rng.randrange(0, 5_000)},
                ),
            ))
            bill_ids.append(bill_id)
        card = {"ssn": ssn, "card_no": card_no, "card_id": f"{BENCH_REGION}D{serial:09d}",
                "name": person.name, "issue": "2020-01-01", "expiry": "2035-01-01"}
        made.append(BenchResident(psn_no, card, bill_ids))
    return made


# ---------------------------------------------------------------- the kiosks


# Refusals after which a settle may still have committed (the database failed mid-commit):
# the kiosk keeps such a txn in doubt and resolves it with settlement_query.
OUTCOME_UNKNOWN = frozenset({"unavailable", "internal"})


@dataclass(frozen=True)
class PendingSettle:
    """A kiosk journal's `pending(txn_id)` entry: what it asked, to resolve it later."""

    kiosk_id: str
    psn_no: str
    bill_id: str
    confirmed_cash: int


@dataclass
class Tally:
    acknowledged: dict[str, str] = field(default_factory=dict)  # txn_id -> setl_id
    in_doubt: dict[str, PendingSettle] = field(default_factory=dict)  # sent, no answer yet
    latencies: list[float] = field(default_factory=list)  # measured settle round trips, s
    errors: Counter[str] = field(default_factory=Counter)
    exchanges: int = 0  # measured requests answered (every step of every visit)
    measured: int = 0  # settlements acknowledged whose settle was sent after the warm-up
    ran_out_of_bills: int = 0

    def add(self, other: Tally) -> None:
        """Take in another process's tally (the kiosks are spread over processes)."""
        self.acknowledged.update(other.acknowledged)
        self.in_doubt.update(other.in_doubt)
        self.latencies.extend(other.latencies)
        self.errors.update(other.errors)
        self.exchanges += other.exchanges
        self.measured += other.measured
        self.ran_out_of_bills += other.ran_out_of_bills


class VisitingKiosk(asyncio.Protocol):
    """One simulated kiosk on its TCP link, serving residents one bill after another: the full
    signed flow per bill (person_info -> pre_settle -> settle -> receipt_printed), every reply
    and settlement verified by `KioskClient`, one request outstanding at a time, as a board.

    It runs as the link's own callbacks, not as a coroutine: a fleet process plays a hundred
    kiosks and shares the cores with the gateway it measures, and a task, a future and a
    timeout per request cost it 5-10 % of its CPU. A request unanswered for `timeout_s` ends
    the kiosk's run (one timer per kiosk, re-armed only when it fires). Every acknowledged
    settlement is recorded in `tally` for the ledger check; requests sent before
    `measure_from` (loop time: the warm-up) are not measured.
    """

    def __init__(self, client: Any, tally: Tally, timeout_s: float = 10.0) -> None:
        from onestop.host.gateway import fastwire
        from onestop.host.gateway.kiosk_client import GatewayRefused, new_txn_id
        from onestop.protocol import framing
        from onestop.protocol.errors import ProtocolError

        self._encode_frame = fastwire.encode_frame
        self._new_txn_id = new_txn_id
        self._refusal, self._protocol_error = GatewayRefused, ProtocolError
        self.client = client
        self.tally = tally
        self.timeout_s = timeout_s
        self._loop = asyncio.get_running_loop()
        self._deframer = framing.Deframer(framing.MAX_FRAME)
        self._transport: asyncio.Transport | None = None
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._request: dict[str, Any] | None = None  # the one awaiting its answer
        self._then: Callable[[dict[str, Any]], None] = _ignore
        self._sent_at = 0.0
        self._measured = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._ended: asyncio.Future[None] | None = None  # resolved when the run (or sign-in) ends
        self._visiting = False  # sign-in done, serving residents
        self._bills: Iterator[tuple[BenchResident, str]] = iter(())
        self._deadline = 0.0
        self._measure_from = 0.0
        self._stop: asyncio.Event | None = None
        self._resident: BenchResident | None = None
        self._bill_id = ""
        self._txn_id: str | None = None
        self._started = 0.0

    @classmethod
    async def open_tcp(cls, client: Any, tally: Tally, host: str, port: int) -> VisitingKiosk:
        _transport, kiosk = await asyncio.get_running_loop().create_connection(
            lambda: cls(client, tally), host, port)
        return kiosk

    # ---- what the fleet calls
    async def sign_in(self) -> None:
        signed_in: asyncio.Future[None] = self._loop.create_future()
        self._ended = signed_in
        self._ask("sign_in", lambda _reply: self._finish(), fw="bench", board="cpython")
        await signed_in

    async def visits(self, residents: list[BenchResident], deadline: float,
                     stop: asyncio.Event | None = None, measure_from: float = 0.0) -> None:
        """Serve `residents` until the deadline (loop time) or `stop`; returns when the kiosk
        has finished the visit it was in, ran out of bills, or gave up on its link."""
        self._bills = ((resident, bill_id) for resident in residents
                       for bill_id in resident.bill_ids)
        self._deadline, self._stop, self._measure_from = deadline, stop, measure_from
        self._ended = self._loop.create_future()
        self._visiting = True
        self._next_visit()
        await self._ended

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            await self._closed

    # ---- the visit, one answer at a time
    def _next_visit(self) -> None:
        if self._loop.time() >= self._deadline or (self._stop is not None
                                                   and self._stop.is_set()):
            self._finish()
            return
        try:
            self._resident, self._bill_id = next(self._bills)
        except StopIteration:
            self.tally.ran_out_of_bills += 1
            self._finish()
            return
        self._txn_id = None
        self._ask("person_info", self._person_known, card=self._resident.card)

    def _person_known(self, _reply: dict[str, Any]) -> None:
        assert self._resident is not None
        self._ask("pre_settle", self._priced, psn_no=self._resident.psn_no,
                  bill_id=self._bill_id)

    def _priced(self, reply: dict[str, Any]) -> None:
        assert self._resident is not None
        self._txn_id = self._new_txn_id()
        cash = reply["result"]["psn_cash_pay"]
        self.tally.in_doubt[self._txn_id] = PendingSettle(
            self.client.kiosk_id, self._resident.psn_no, self._bill_id, cash)
        self._started = time.perf_counter()
        self._ask("settle", self._settled, psn_no=self._resident.psn_no, bill_id=self._bill_id,
                  txn_id=self._txn_id, confirmed_cash=cash)

    def _settled(self, reply: dict[str, Any]) -> None:
        txn_id = self._txn_id
        assert txn_id is not None
        if self._measured:
            self.tally.latencies.append(time.perf_counter() - self._started)
        record = self.client.open_settlement(reply["settlement"])
        del self.tally.in_doubt[txn_id]
        self.tally.acknowledged[txn_id] = record["setl_id"]
        self.tally.measured += self._measured
        self._ask("receipt_printed", lambda _reply: self._next_visit(), txn_id=txn_id,
                  setl_id=record["setl_id"])

    def _refused(self, exc: Any) -> None:
        """An `error` answer during the visits: counted; a refused settle wrote nothing (unless
        its outcome is unknown: then it stays in doubt for the ledger check); next bill."""
        if not self._visiting:
            self._finish(exc)  # sign-in refused: the fleet reports it
            return
        self.tally.errors[exc.code] += 1
        txn_id = self._txn_id
        if (txn_id is not None and txn_id not in self.tally.acknowledged
                and exc.code not in OUTCOME_UNKNOWN):
            self.tally.in_doubt.pop(txn_id, None)
        self._next_visit()

    # ---- requests and answers
    def _ask(self, t: str, then: Callable[[dict[str, Any]], None], **body: Any) -> None:
        request, sealed = self.client.request(t, **body)
        self._request, self._then = request, then
        self._sent_at = self._loop.time()
        self._measured = self._sent_at >= self._measure_from
        if self._transport is None or self._transport.is_closing():
            self._give_up(ConnectionResetError, "the connection is closed")  # as it is asked
            return
        self._transport.write(self._encode_frame(sealed))
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(self._sent_at + self.timeout_s, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        if self._request is None:
            return
        due = self._sent_at + self.timeout_s
        if self._loop.time() < due:
            self._watchdog = self._loop.call_at(due, self._watch)
            return
        self._give_up(TimeoutError, f"no answer to {self._request['t']} in {self.timeout_s:g} s")

    def _answer(self, payload: bytes) -> None:
        request = self._request
        if request is None:
            return  # nothing asked (a late answer after giving up)
        try:
            reply = self.client.check_reply(request, payload)
        except self._refusal as exc:
            self._request = None
            self._refused(exc)
            return
        except self._protocol_error as exc:
            if exc.code == "invalid":
                return  # an answer to some other request: not ours, skip it
            self._finish(exc)
            return
        self._request = None
        self.tally.exchanges += self._measured and self._visiting  # sign-in is not measured
        self._then(reply)

    def _give_up(self, error: type[Exception], why: str) -> None:
        """The link failed or went quiet. In the visits: counted, in-doubt txns stay in the
        tally (the ledger check settles them) and this kiosk's run ends; at sign-in: raised."""
        if self._request is None:
            return
        self._request = None
        if self._visiting:
            self.tally.errors[error.__name__] += 1
        if self._transport is not None:
            self._transport.close()
        self._finish(None if self._visiting else error(why))

    def _finish(self, exc: BaseException | None = None) -> None:
        self._request = None
        if self._ended is not None and not self._ended.done():
            if exc is None:
                self._ended.set_result(None)
            else:
                self._ended.set_exception(exc)

    # ---- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._deframer.receive_data(data)
        while True:
            payload = self._deframer.next_frame()
            if payload is None:
                return
            try:
                self._answer(payload)
            except Exception as exc:  # a fault of this kiosk's checks: the fleet reports it
                self._finish(exc)
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._give_up(ConnectionError, "the gateway closed the connection")
        if not self._closed.done():
            self._closed.set_result(None)


def _ignore(_reply: dict[str, Any]) -> None:
    pass


# ---------------------------------------------------------------- the floor


def measure_floor(seconds: float = FLOOR_SECONDS, codec: str = "host") -> float:
    """Settle exchanges per second on one core: seal, frame, open, compute, sign, open.

    codec "host": the code the gateway and the bench's kiosks run (onestop.host.gateway.
    fastwire: the protocol's bytes and verdicts, in C where it can be) — the floor the run is
    measured against. "board": the protocol modules as the board runs them (pure Python),
    printed for comparison only.
    """
    from onestop.host.gateway import fastwire
    from onestop.host.gateway.ledger.base import Bill, Person
    from onestop.host.keys import SigningKey
    from onestop.host.settlement import Claim, empty_accumulations, load_policy, settle
    from onestop.protocol import framing, messages

    if codec == "host":
        seal, open_, encode = fastwire.seal, fastwire.open, fastwire.encode_frame
        seal_settlement, open_settlement = fastwire.seal_settlement, fastwire.open_settlement
    else:
        seal, open_, encode = messages.seal, messages.open, framing.encode
        seal_settlement, open_settlement = messages.seal_settlement, messages.open_settlement
    kiosk_key, gateway_key = SigningKey.generate(), SigningKey.generate()
    kiosk_verifier = _verifier(kiosk_key)
    gateway_verifier = _verifier(gateway_key)
    policy = load_policy("reference")
    today = date.today().isoformat()
    person = Person("BK0000R000", "测试", ssn_with_check_digit("13063019600101000"),
                    "BN0000000", BENCH_REGION, "none")
    bill = Bill("BB-FLOOR", person.psn_no, "基准乡卫生院", BENCH_REGION, "outpatient_chronic", 1,
                False, today, ({"name": "甲类", "class": "A", "amount": 42_000},
                               {"name": "乙类", "class": "B", "amount": 12_000}))
    exchanges = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        now = int(time.time())
        request = messages.request("settle", "K-FLOOR", exchanges + 1, os.urandom(8), now,
                                   psn_no=person.psn_no, bill_id=bill.bill_id,
                                   txn_id="T" + os.urandom(12).hex(), confirmed_cash=0)
        wire = encode(seal(request, "K-FLOOR", kiosk_key))
        # the gateway's side
        deframer = framing.Deframer()
        deframer.receive_data(wire)
        _kid, received = open_(deframer.next_frame(), lambda _kid: kiosk_verifier)
        outcome = settle(policy, Claim.from_bill(person, bill, today), empty_accumulations())
        record = {"setl_id": "S00000000FLOOR", "txn_id": received["txn_id"],
                  "kiosk": received["kiosk"], "psn_no": person.psn_no, "bill_id": bill.bill_id,
                  "setl_time": now, "result": dict(outcome.breakdown)}
        signed = seal_settlement(record, "gateway", gateway_key)
        reply = messages.reply(received, "settle_reply", now, txn_id=received["txn_id"],
                               settlement=signed)
        back = encode(seal(reply, "gateway", gateway_key))
        # the kiosk's side
        deframer = framing.Deframer()
        deframer.receive_data(back)
        _kid, answer = open_(deframer.next_frame(), lambda _kid: gateway_verifier)
        open_settlement(answer["settlement"], gateway_verifier)
        exchanges += 1
    return exchanges / (time.perf_counter() - started)


def _verifier(key: Any) -> Any:
    from onestop.host.keys import VerifyingKey

    return VerifyingKey(key.public_key)


# ---------------------------------------------------------------- the run


@dataclass
class Figures:
    kiosks: int
    seconds: float  # measured: from the end of the warm-up to the last kiosk's last answer
    warmup: float
    checked: int  # acknowledged settlements checked in the ledger (warm-up included)
    ledger: str
    settlements: int
    rate: float
    exchange_rate: float  # answered requests per second, all four steps of a visit
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    lost: int
    duplicated: int
    in_doubt_settled: int
    in_doubt_not_found: int
    floor: float  # the mean of the two floor measurements, before and after the run
    floor_board: float  # the same exchange with the board's pure-Python codec, for comparison
    workers: int  # gateway processes
    kiosk_processes: int  # processes driving the simulated kiosks
    ran_out_of_bills: int
    gateway_cpu: float  # cores busy on average during the run
    kiosks_cpu: float
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the machine's, at the end of the run
    others_cpu: float = 0.0  # cores busy with everything else on the machine (PostgreSQL too)
    postgres_cpu: float = 0.0  # of which PostgreSQL's processes (this bench's and any other's)
    floor_runs: tuple[float, float] = (0.0, 0.0)  # the floor measured before and after the run

    @property
    def floor_share(self) -> float:
        return self.rate / self.floor if self.floor else 0.0

    @property
    def cost_in_floor(self) -> float:
        """CPU one settlement took (gateway and kiosks), in floor exchanges of one core."""
        return (self.gateway_cpu + self.kiosks_cpu) * self.floor / self.rate if self.rate else 0.0


def run(args: argparse.Namespace) -> int:
    if args.kiosks < 1 or args.seconds <= 0 or args.kiosk_processes < 1 or args.warmup < 0:
        print("kiosk bench gateway: --kiosks and --kiosk-processes must be at least 1, "
              "--seconds above 0 and --warmup not below 0", file=sys.stderr)
        return 2
    from onestop.host.signals import exit_on_stop_signals

    exit_on_stop_signals()  # a bench stopped by `kill` stops its gateway and kiosks too
    with tempfile.TemporaryDirectory(prefix="onestop-bench-") as folder:
        try:
            figures = _bench(args, Path(folder))
        except BenchError as exc:
            print(f"kiosk bench gateway: {exc}", file=sys.stderr)
            return 1
    print(format_table(figures))
    if args.json:
        print(json.dumps({**figures.__dict__, "floor_share": round(figures.floor_share, 3),
                          "cost_in_floor": round(figures.cost_in_floor, 2)}))
    return 1 if figures.lost or figures.duplicated else 0


class BenchError(Exception):
    pass


@contextlib.contextmanager
def bench_ledger(db: str) -> Iterator[tuple[Any, str]]:
    """The ledger to bench on, initialised. A PostgreSQL URL without ?schema= gets a fresh
    schema of its own, dropped afterwards, so a bench never mixes with other data."""
    from onestop.host.gateway.config import LedgerUrlError, describe, parse_ledger_url
    from onestop.host.gateway.ledger import LedgerError, open_ledger

    try:
        location = parse_ledger_url(db)
    except LedgerUrlError as exc:
        raise BenchError(str(exc)) from None
    schema = None
    url = db
    if location.backend == "postgresql" and location.schema is None:
        schema = f"onestop_bench_{os.getpid()}_{secrets.token_hex(4)}"
        url = f"{db}{'&' if '?' in db else '?'}schema={schema}"
    ledger = open_ledger(url)
    made = False
    try:
        ledger.init()  # one transaction: if it fails, there is no schema to drop
        made = True
        # Its own gateway key and kiosks, thousands of settlements: never in a real ledger.
        held = ledger.list_keys()
    except LedgerError as exc:
        ledger.close()
        if made and schema is not None:
            _drop_schema(location.dsn or "", schema)
        raise BenchError(f"cannot set up a ledger at {describe(db)}: {exc}") from None
    if held:
        ledger.close()
        kids = ", ".join(key.kid for key in held[:3]) + (", ..." if len(held) > 3 else "")
        raise BenchError(f"the ledger at {describe(db)} is in use (it holds the keys {kids}): "
                         "the bench needs an empty one (a postgresql:// URL without ?schema= "
                         "gets a fresh schema; for SQLite, name a new file)")
    try:
        yield ledger, url
    finally:
        ledger.close()
        if schema is not None:
            _drop_schema(location.dsn or "", schema)


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except psycopg.Error as exc:  # say so, without hiding the bench's own outcome
        print(f"kiosk bench gateway: could not drop the bench's schema {schema}: {exc}",
              file=sys.stderr)


def provision_gateway(ledger: Any, key_path: Path, kid: str = "gateway-bench") -> None:
    """A gateway key for this ledger: the private half in `key_path`, the public in the ledger."""
    from onestop.host.gateway.ledger.base import KeyRecord
    from onestop.host.keys import SigningKey, save_signing_key

    key = SigningKey.generate()
    save_signing_key(key_path, key)
    ledger.add_key(KeyRecord(kid=kid, role="gateway", public_key=key.public_key,
                             status="active"))


def _bench(args: argparse.Namespace, folder: Path) -> Figures:
    from onestop.host.gateway.config import describe
    from onestop.host.gateway.kiosk_client import enroll_kiosk

    db = args.db or f"sqlite:///{folder / 'ledger.sqlite'}"
    with bench_ledger(db) as (ledger, url):
        key_path = folder / "gateway.key"
        provision_gateway(ledger, key_path)
        rng = random.Random(20261123)
        floor = measure_floor(args.floor_seconds)
        floor_board = measure_floor(args.floor_seconds / 2, codec="board")
        bills_each = bills_per_kiosk(args.kiosks, args.workers, floor,
                                     args.seconds + args.warmup)
        clients, populations = [], []
        today = date.today().isoformat()
        for index in range(args.kiosks):
            clients.append(enroll_kiosk(ledger, f"BENCH-{index:04d}"))
            # one transaction (one disk flush) per kiosk's bills, not one per bill
            populations.append(ledger.atomically(
                lambda index=index: generate_residents(ledger, index, 1, bills_each, today, rng)))
        gateway = GatewayProcess(url, key_path, folder / "gateway.log", workers=args.workers)
        try:
            port = gateway.start()
            fleets = [Fleet(clients[i::args.kiosk_processes], populations[i::args.kiosk_processes])
                      for i in range(min(args.kiosk_processes, args.kiosks))]
            run = run_fleets(fleets, port, args.seconds, gateway, warmup=args.warmup)
        finally:
            if gateway.stop() != 0:
                tail = (folder / "gateway.log").read_text(errors="replace")[-3000:]
                raise BenchError(f"the gateway exited badly; the end of its log:\n{tail}")
        tally, elapsed = run.tally, run.elapsed
        floor_after = measure_floor(args.floor_seconds)
        check = check_ledger(ledger, tally)
    return Figures(
        kiosks=args.kiosks, seconds=round(elapsed, 2), warmup=args.warmup,
        checked=len(tally.acknowledged), ledger=describe(db),
        settlements=tally.measured, rate=tally.measured / elapsed,
        exchange_rate=round(tally.exchanges / elapsed, 1),
        p50_ms=percentile(tally.latencies, 0.50) * 1000,
        p99_ms=percentile(tally.latencies, 0.99) * 1000,
        errors=dict(tally.errors), lost=check.lost, duplicated=check.duplicated,
        in_doubt_settled=check.in_doubt_settled, in_doubt_not_found=check.in_doubt_not_found,
        floor=(floor + floor_after) / 2, floor_runs=(round(floor, 1), round(floor_after, 1)),
        floor_board=floor_board, workers=args.workers, kiosk_processes=len(fleets),
        ran_out_of_bills=tally.ran_out_of_bills,
        gateway_cpu=round(run.gateway_cpu, 2), kiosks_cpu=round(run.kiosks_cpu, 2),
        load=os.getloadavg(),
        others_cpu=round(max(0.0, run.machine_cpu - run.gateway_cpu - run.kiosks_cpu), 2),
        postgres_cpu=round(max(0.0, run.postgres_cpu), 2),
    )


# ---------------------------------------------------------------- the kiosk fleet processes


@dataclass
class Fleet:
    """The kiosks one load process drives."""

    clients: list[Any]
    populations: list[list[BenchResident]]


@dataclass
class FleetRun:
    tally: Tally
    elapsed: float  # seconds from the end of the warm-up until the last kiosk's last answer
    gateway_cpu: float  # cores busy on average during the run
    kiosks_cpu: float
    machine_cpu: float
    postgres_cpu: float


def run_fleets(fleets: list[Fleet], port: int, seconds: float,
               gateway: GatewayProcess, warmup: float = 0.0) -> FleetRun:
    """Drive each fleet from its own process (forked: it inherits the kiosks' keys), all from
    one start instant for `warmup` + `seconds`, measured after the warm-up; their tallies
    merged.

    The warm-up exists because the kiosks all begin in the same instant: their first requests
    arrive as one burst and they answer in lockstep for a moment, which a hall of real kiosks
    never does (in a 10 s run, half the slowest 1 % of settles were in the first 0.3 s).

    Real kiosks are separate boards; one Python process playing all of them would put every
    kiosk's signing and checking in one queue, and the latency measured would be mostly that
    queue's. Processes spread the kiosks over the cores as the gateway's workers are spread."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    children = []
    for fleet in fleets:
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_fleet_main,
                                  args=(child_end, fleet, port, seconds, warmup), daemon=True)
        process.start()
        child_end.close()
        children.append((process, parent_end))
    try:
        for process, pipe in children:
            _expect(pipe, process, "ready")
        start_at = time.monotonic() + 0.05
        for _process, pipe in children:
            pipe.send(start_at)
        measure_at = start_at + warmup
        time.sleep(max(0.0, measure_at - time.monotonic()))
        cpu_gateway, cpu_machine = gateway.cpu_seconds(), machine_busy_seconds()
        cpu_postgres = named_processes_cpu("postgres")
        reports = [_expect(pipe, process, "done") for process, pipe in children]
        elapsed = max(report["finished_at"] for report in reports) - measure_at
        gateway_cpu = (gateway.cpu_seconds() - cpu_gateway) / elapsed
        machine_cpu = (machine_busy_seconds() - cpu_machine) / elapsed
        postgres_cpu = (named_processes_cpu("postgres") - cpu_postgres) / elapsed
    finally:
        for process, _pipe in children:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    tally = Tally()
    for report in reports:
        tally.add(report["tally"])
    kiosks_cpu = sum(report["cpu"] for report in reports) / elapsed
    return FleetRun(tally, elapsed, gateway_cpu, kiosks_cpu, machine_cpu, postgres_cpu)


def _expect(pipe: Any, process: Any, what: str) -> Any:
    """The next message of a fleet process: `what`, or BenchError with its reason."""
    while not pipe.poll(1.0):
        if not process.is_alive():
            raise BenchError(f"a kiosk fleet process died (exit {process.exitcode})")
    try:
        kind, body = pipe.recv()
    except EOFError:  # it ended without a word (killed, or its report could not be sent)
        process.join(timeout=5)
        raise BenchError(f"a kiosk fleet process died (exit {process.exitcode})") from None
    if kind != what:
        raise BenchError(f"a kiosk fleet process failed: {body}")
    return body


def _fleet_main(pipe: Any, fleet: Fleet, port: int, seconds: float, warmup: float) -> None:
    from onestop.host.gateway import eventloop

    try:
        report = eventloop.run(_drive_fleet(pipe, fleet, port, seconds, warmup))
    except BaseException as exc:  # the parent reports it; a traceback here helps nobody
        pipe.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    pipe.send(("done", report))


async def _drive_fleet(pipe: Any, fleet: Fleet, port: int, seconds: float,
                       warmup: float) -> dict[str, Any]:
    from onestop.host.gateway import eventloop

    eventloop.tune_gc_for_serving()
    tally = Tally()
    kiosks = [await VisitingKiosk.open_tcp(client, tally, "127.0.0.1", port)
              for client in fleet.clients]
    for kiosk in kiosks:
        await kiosk.sign_in()
    pipe.send(("ready", None))
    start_at = pipe.recv()  # time.monotonic() of the start, the same in every process
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    measure_from = loop.time() + warmup - (time.monotonic() - start_at)
    deadline = measure_from + seconds
    cpu_at_start: list[float] = []
    loop.call_at(measure_from, lambda: cpu_at_start.append(time.process_time()))
    await asyncio.gather(*(
        kiosk.visits(residents, deadline, measure_from=measure_from)
        for kiosk, residents in zip(kiosks, fleet.populations, strict=True)))
    finished_at = time.monotonic()
    cpu = time.process_time() - (cpu_at_start[0] if cpu_at_start else time.process_time())
    for kiosk in kiosks:
        await kiosk.close()
    return {"tally": tally, "cpu": cpu, "finished_at": finished_at}


@dataclass
class LedgerCheck:
    lost: int  # acknowledged, but not in the ledger as acknowledged
    duplicated: int  # bills settled more than once, or settlements nobody asked for
    in_doubt_settled: int
    in_doubt_not_found: int


def check_ledger(ledger: Any, tally: Tally) -> LedgerCheck:
    """Every acknowledged settlement present exactly once; no bill settled twice."""
    lost = 0
    for txn_id, setl_id in tally.acknowledged.items():
        stored = ledger.get_settlement(txn_id)
        if stored is None or stored.setl_id != setl_id or stored.status != "settled":
            lost += 1
    in_doubt_settled = sum(1 for txn_id in tally.in_doubt if ledger.get_settlement(txn_id))
    known = set(tally.acknowledged) | set(tally.in_doubt)
    stored_all = [settlement for day in _days_of_run() for settlement in
                  ledger.settlements_on(day)]
    per_bill = Counter(s.bill_id for s in stored_all if s.status == "settled")
    duplicated = sum(count - 1 for count in per_bill.values() if count > 1)
    duplicated += sum(1 for s in stored_all if s.txn_id not in known)
    return LedgerCheck(lost, duplicated, in_doubt_settled,
                       len(tally.in_doubt) - in_doubt_settled)


def _days_of_run() -> list[str]:
    """Settlement days the run can have touched (it may cross midnight): China's, where
    settlements are booked, not this host's (from 16:00 UTC China is a day ahead, and the
    check found no settlement to count twice)."""
    from onestop.host.gateway.bills import settlement_today

    today = settlement_today()
    return sorted({date.fromordinal(today.toordinal() - 1).isoformat(), today.isoformat()})


def format_table(figures: Figures) -> str:
    def row(name: str, value: str, target: str = "", ok: bool | None = None) -> str:
        mark = "" if ok is None else ("  ok" if ok else "  MISSED")
        return f"  {name:<28}{value:>12}   {target:<12}{mark}"

    errors = sum(figures.errors.values())
    lines = [
        f"kiosk bench gateway: {figures.kiosks} kiosks, {figures.seconds:g} s measured after a "
        f"{figures.warmup:g} s warm-up, {figures.ledger}, "
        f"{figures.workers} gateway worker{'s' if figures.workers != 1 else ''}, "
        f"kiosks in {figures.kiosk_processes} "
        f"process{'es' if figures.kiosk_processes != 1 else ''}, "
        f"load average {figures.load[0]:.2f} {figures.load[1]:.2f} {figures.load[2]:.2f}",
        row("figure", "value", "target"),
        row("settlements/s", f"{figures.rate:.1f}", f">= {TARGET_RATE:g}",
            figures.rate >= TARGET_RATE),
        row("requests answered/s", f"{figures.exchange_rate:.1f}"),
        row("settle p50 (ms)", f"{figures.p50_ms:.1f}"),
        row("settle p99 (ms)", f"{figures.p99_ms:.1f}", f"<= {TARGET_P99_MS:g}",
            figures.p99_ms <= TARGET_P99_MS),
        row("settlements acknowledged", str(figures.settlements)),
        row("  checked in the ledger", str(figures.checked), "(warm-up too)"),
        row("errors", str(errors)),
        row("lost", str(figures.lost), "0", figures.lost == 0),
        row("duplicated", str(figures.duplicated), "0", figures.duplicated == 0),
        row("floor (settles/s, 1 core)", f"{figures.floor:.1f}",
            f"(before {figures.floor_runs[0]:.0f}, after {figures.floor_runs[1]:.0f})"),
        row("  same, board's codec", f"{figures.floor_board:.1f}", "(not a target)"),
        row("throughput / floor", f"{figures.floor_share:.1%}",
            f">= {TARGET_FLOOR_SHARE:.0%}", figures.floor_share >= TARGET_FLOOR_SHARE),
        row("gateway CPU (cores)", f"{figures.gateway_cpu:.2f}"),
        row("kiosks CPU (cores)", f"{figures.kiosks_cpu:.2f}"),
        row("everything else (cores)", f"{figures.others_cpu:.2f}", f"of {os.cpu_count()}"),
        row("  of which PostgreSQL", f"{figures.postgres_cpu:.2f}"),
        row("gateway CPU per settlement", f"{_per(figures.gateway_cpu, figures.rate):.2f} ms"),
        row("kiosks CPU per settlement", f"{_per(figures.kiosks_cpu, figures.rate):.2f} ms"),
        # Why the share is what it is: a settlement's CPU (gateway and kiosks), counted in floor
        # exchanges. With every core busy the share reaches the target only if it is at most
        # cores / target: a miss above that is the visit's cost, below it cores left idle.
        row("  both, in floor exchanges", f"{figures.cost_in_floor:.2f}",
            f"(<= {(os.cpu_count() or 1) / TARGET_FLOOR_SHARE:.2f} for "
            f"{TARGET_FLOOR_SHARE:.0%} with all {os.cpu_count()} cores busy)"),
    ]
    if figures.errors:
        lines.append("  errors by code: " + ", ".join(
            f"{code} {count}" for code, count in sorted(figures.errors.items())))
    if figures.in_doubt_settled or figures.in_doubt_not_found:
        lines.append(f"  unanswered settles, found in the ledger afterwards: "
                     f"{figures.in_doubt_settled} settled, {figures.in_doubt_not_found} not")
    drift = floor_drift(figures.floor_runs)
    if drift > FLOOR_DRIFT_NOTED:
        lines.append(f"  note: the floor before and after the run differ by {drift:.0%}: this "
                     "machine's speed changed meanwhile, so the share is that uncertain; run "
                     "again")
    if figures.ran_out_of_bills:
        lines.append(f"  note: {figures.ran_out_of_bills} kiosks ran out of bills before the "
                     "end; the rate is a lower bound")
    return "\n".join(lines)


def floor_drift(runs: tuple[float, float]) -> float:
    """How far apart the floor measured before and after the run are, as a share of their
    mean (0 when either is missing)."""
    before, after = runs
    return abs(before - after) * 2 / (before + after) if before > 0 and after > 0 else 0.0


def _per(cores: float, rate: float) -> float:
    """Milliseconds of CPU per settlement, from cores busy and settlements per second."""
    return 1000 * cores / rate if rate else 0.0


def percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

