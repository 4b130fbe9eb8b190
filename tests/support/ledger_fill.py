"""A large ledger made quickly through the Ledger API, as the gateway fills one: residents, their
bills, settlements signed by a gateway key, printed receipts and a few same-day cancellations.

For the audit's memory test (tests/host/gateway/test_audit_memory.py) and for measuring the
audit by hand:

    python tests/support/ledger_fill.py sqlite:////tmp/big.sqlite --settlements 120000
    /usr/bin/time -v kiosk gateway audit --db sqlite:////tmp/big.sqlite

Each settlement writes three audit events (its bill imported, settled, receipt printed); every
`cancel_every`-th is cancelled again (one more event). Many settlements per transaction: a
ledger of 100k settlements fills in a minute or two, not the hours a kiosk fleet would take.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from typing import Any

SETL_TIME = 1_795_400_000  # 2026-11-23 08:53 UTC
SETL_DAY = "2026-11-23"
KIOSK = "kiosk-fill"
GATEWAY_KID = "gw-fill"
GATEWAY_SEED = bytes(range(32))


def fill(ledger: Any, settlements: int, *, persons: int = 500, cancel_every: int = 50,
         batch: int = 500, start: int = 0) -> None:
    """Add `settlements` settlements (numbered from `start`) to an initialised `ledger`, spread
    over `persons` residents (made if absent), in transactions of `batch` settlements."""
    from onestop.host.gateway.ledger import Bill, KeyRecord, Person, Settlement
    from onestop.host.keys import SigningKey
    from onestop.host.settlement import delta_of
    from onestop.protocol import messages

    key = SigningKey(GATEWAY_SEED)
    if ledger.get_key(GATEWAY_KID) is None:
        ledger.add_key(KeyRecord(GATEWAY_KID, "gateway", key.public_key, "active"))
    people = [f"FP{n:06d}" for n in range(persons)]

    def add_people() -> None:
        for n, psn_no in enumerate(people):
            ledger.upsert_person(Person(
                psn_no=psn_no, name=f"测试居民{n}", ssn=f"130630195001{n:05d}X",
                card_no=f"FC{n:07d}", insu_admdvs="130630", assistance="none"))

    ledger.atomically(add_people)

    def build_for(txn_id: str) -> Any:
        def build(_accumulations: dict[str, int], bill: Bill) -> Settlement:
            medfee = bill.medfee_sumamt
            hifp, hifmi, maf = medfee * 60 // 100, medfee * 10 // 100, medfee * 5 // 100
            funds = hifp + hifmi + maf
            result = {"medfee_sumamt": medfee, "fulamt_ownpay_amt": 0, "preselfpay_amt": 0,
                      "inscp_scp_amt": medfee, "act_pay_dedc": 0, "hifp_pay": hifp,
                      "hifmi_pay": hifmi, "maf_pay": maf, "fund_pay_sumamt": funds,
                      "psn_cash_pay": medfee - funds}
            settlement = Settlement(
                txn_id=txn_id, setl_id="S" + txn_id, kiosk_id=KIOSK, psn_no=bill.psn_no,
                bill_id=bill.bill_id, setl_time=SETL_TIME, setl_date=SETL_DAY, result=result,
                signed=b"", request_digest=txn_id.encode(),
                delta=delta_of(result, bill.med_type),
                policy={"name": "fill", "digest": "0" * 16})
            return replace(settlement, signed=messages.seal_settlement(
                settlement.record(), GATEWAY_KID, key))
        return build

    def settle_one(n: int) -> None:
        psn_no = people[n % persons]
        bill_id, txn_id = f"FB{n:09d}", f"FT-{n:09d}-fill"
        ledger.upsert_bill(Bill(
            bill_id=bill_id, psn_no=psn_no, fixmedins_name="涞源县医院",
            mdtrtarea_admvs="130630", med_type="outpatient_chronic", hosp_lv=1,
            referral=False, date="2026-11-20",
            items=({"name": "甲类药品", "class": "A", "amount": 10_000 + n % 5_000},
                   {"name": "乙类药品", "class": "B", "amount": 2_000 + n % 700})))
        ledger.settle(txn_id, txn_id.encode(), KIOSK, psn_no, bill_id, build_for(txn_id))
        if not cancelled(n):
            ledger.mark_receipt_printed(txn_id)

    def cancelled(n: int) -> bool:
        return bool(cancel_every) and n % cancel_every == cancel_every - 1

    pending: list[int] = []

    def flush() -> None:
        if pending:
            ledger.atomically(lambda: [settle_one(n) for n in pending])
            pending.clear()

    for n in range(start, start + settlements):
        pending.append(n)
        if cancelled(n):
            # in a transaction of its own, once its settlement's event is in the chain (a
            # cancel looks there for the resident's later settlements), as a kiosk's would be
            flush()
            ledger.cancel(f"FT-{n:09d}-fill", KIOSK, SETL_DAY)
        elif len(pending) >= batch:
            flush()
    flush()


def main(argv: list[str] | None = None) -> int:
    from onestop.host.gateway.ledger import open_ledger

    parser = argparse.ArgumentParser(
        description="Fill a ledger with signed settlements quickly (for measuring the audit).")
    parser.add_argument("db", help="ledger URL (made if absent)")
    parser.add_argument("--settlements", type=int, default=10_000)
    parser.add_argument("--persons", type=int, default=5_000)
    parser.add_argument("--cancel-every", type=int, default=50)
    parser.add_argument("--start", type=int, default=0, help="number of the first settlement")
    args = parser.parse_args(argv)
    with open_ledger(args.db) as ledger:
        ledger.init()
        fill(ledger, args.settlements, persons=args.persons, cancel_every=args.cancel_every,
             start=args.start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
