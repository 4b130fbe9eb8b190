"""`kiosk bench settlement`: settlement-engine throughput, claims per second on one thread.

A seeded, realistic mix of claims (mostly chronic-disease outpatient visits and township or county
admissions, some off-site, a fifth from assisted residents, a few very large bills that cross the
caps) is settled in order, each against its person's accumulations for the year, as the gateway
does. Two figures: the engine alone (claims already validated), and validation plus engine.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections.abc import Callable
from typing import Any

from onestop.host.settlement import Claim, Policy, load_policy, settle

TARGET_CLAIMS_PER_SECOND = 20_000

# (value, weight) tables for the mix.
_MED_TYPES = (("outpatient_chronic", 55), ("inpatient", 45))
_LEVELS = ((1, 45), (2, 35), (3, 20))
_ASSISTANCE = (("none", 80), ("low_income", 6), ("dibao", 6), ("illness_poor", 5), ("tekun", 3))
_CLASSES = (("A", 60), ("B", 30), ("C", 10))
_HOME = "130630"
_ELSEWHERE = ("130602", "110102", "410102")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--claims", type=int, default=100_000, help="claims per run")
    parser.add_argument("--residents", type=int, default=5_000, help="distinct people")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is reported")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--policy", default="reference", metavar="NAME_OR_PATH")


def run(args: argparse.Namespace) -> int:
    if args.claims < 1 or args.residents < 1 or args.repeat < 1:
        print("kiosk bench settlement: --claims, --residents and --repeat must be at least 1")
        return 2
    policy = load_policy(args.policy)
    raw = realistic_claims(random.Random(args.seed), args.claims, args.residents)
    claims = [Claim.from_dict(entry) for entry in raw]

    def engine_only() -> None:
        _settle_all(policy, claims)

    def validate_and_settle() -> None:
        _settle_all(policy, [Claim.from_dict(entry) for entry in raw])

    print(
        f"settlement bench: policy {policy.name}, {args.claims:,} claims over "
        f"{args.residents:,} residents (seed {args.seed}), one thread, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    engine_rate = _best_rate(engine_only, args.claims, args.repeat)
    full_rate = _best_rate(validate_and_settle, args.claims, args.repeat)
    print(f"  engine (settle)       {engine_rate:>10,} claims/s")
    print(f"  validate + settle     {full_rate:>10,} claims/s")
    verdict = "met" if engine_rate >= TARGET_CLAIMS_PER_SECOND else "NOT met"
    print(f"  target >= {TARGET_CLAIMS_PER_SECOND:,} claims/s (engine): {verdict}")
    return 0


def realistic_claims(rng: random.Random, count: int, residents: int) -> list[dict[str, Any]]:
    people = [_resident(rng, number) for number in range(residents)]
    return [_claim(rng, rng.choice(people)) for _ in range(count)]


def _resident(rng: random.Random, number: int) -> dict[str, Any]:
    return {"psn_no": f"P{number:07d}", "assistance": _pick(rng, _ASSISTANCE)}


def _claim(rng: random.Random, person: dict[str, Any]) -> dict[str, Any]:
    med_type = _pick(rng, _MED_TYPES)
    offsite = rng.randrange(10) == 0
    month = rng.randint(1, 12)
    year = 2025 if rng.randrange(20) == 0 else 2026  # a few claims fall in the previous year
    return {
        "psn_no": person["psn_no"],
        "insu_admdvs": _HOME,
        "assistance": person["assistance"],
        "med_type": med_type,
        "hosp_lv": _pick(rng, _LEVELS),
        "mdtrtarea_admvs": rng.choice(_ELSEWHERE) if offsite else _HOME,
        "referral": offsite and rng.randrange(2) == 0,
        "setl_date": f"{year}-{month:02d}-{rng.randint(1, 28):02d}",
        "items": [_item(rng, med_type) for _ in range(rng.randint(2, 8))],
    }


def _item(rng: random.Random, med_type: str) -> dict[str, Any]:
    if med_type == "outpatient_chronic":
        amount = rng.randint(2_000, 80_000)  # 20 to 800 yuan
    elif rng.randrange(20) == 0:
        amount = rng.randint(1_000_000, 20_000_000)  # a costly operation or implant
    else:
        amount = rng.randint(20_000, 3_000_000)  # 200 to 30,000 yuan
    return {"amount": amount, "class": _pick(rng, _CLASSES), "name": "item"}


def _pick(rng: random.Random, table: tuple[tuple[Any, int], ...]) -> Any:
    values, weights = zip(*table, strict=True)
    return rng.choices(values, weights)[0]


def _settle_all(policy: Policy, claims: list[Claim]) -> None:
    accumulations: dict[tuple[str, int], dict[str, int]] = {}
    for claim in claims:
        key = (claim.psn_no, claim.year)
        accumulations[key] = settle(policy, claim, accumulations.get(key, {})).after


def _best_rate(work: Callable[[], None], count: int, repeat: int) -> int:
    best = None
    for _ in range(repeat):
        started = time.perf_counter_ns()
        work()
        elapsed = time.perf_counter_ns() - started
        best = elapsed if best is None else min(best, elapsed)
    assert best is not None
    return count * 1_000_000_000 // max(best, 1)
