"""`kiosk policy calc` and `kiosk policy show`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .policy import Policy

EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction) -> None:
    policy = sub.add_parser("policy", help="settlement policies: calculate claims, show a policy")
    commands = policy.add_subparsers(dest="policy_command", metavar="COMMAND")

    calc = commands.add_parser(
        "calc",
        help="settle a JSON array of claims in order and print each one's breakdown",
        description=(
            "Settle the claims in order, accumulating per person per calendar year, and print a "
            "JSON array: psn_no and the breakdown in fen for each claim. On bad input nothing is "
            "printed to stdout; one line on stderr names the claim (counted from 0) and the "
            "field, and the exit status is 2. With several --policy, each claim is settled "
            "under its insured region's (insu_admdvs) with the catalogue of its treatment "
            "region's (mdtrtarea_admvs), as the gateway does."
        ),
    )
    calc.add_argument(
        "--policy", required=True, action="append", metavar="NAME_OR_PATH",
        help="shipped name or .toml path; repeatable, one per enrolment region's policy",
    )
    calc.add_argument("claims", metavar="CLAIMS.json", help="JSON array of claims ('-': stdin)")
    calc.set_defaults(func=_calc)

    show = commands.add_parser("show", help="print a policy's parameters as a readable table")
    show.add_argument("policy", metavar="NAME_OR_PATH", help="shipped name or .toml path")
    show.set_defaults(func=_show)

    policy.set_defaults(func=lambda _args: (policy.print_help(), EXIT_BAD_INPUT)[1])


def _calc(args: argparse.Namespace) -> int:
    from . import ClaimError, PolicyError, load_policy_set
    from .batch import settle_in_order
    from .claim import Claim

    def refuse(message: str) -> int:
        print(f"kiosk policy calc: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT

    try:
        policies = load_policy_set(args.policy)
    except PolicyError as exc:
        return refuse(str(exc))
    source = "stdin" if args.claims == "-" else args.claims
    try:
        text = sys.stdin.read() if args.claims == "-" else _read_text(args.claims)
    except (OSError, UnicodeDecodeError) as exc:
        return refuse(f"{source}: cannot read: {exc}")
    try:
        document = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants
        )
    except json.JSONDecodeError as exc:
        return refuse(
            f"{source}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        )
    except ValueError as exc:
        return refuse(f"{source}: malformed JSON: {exc}")
    except RecursionError:
        return refuse(f"{source}: malformed JSON: nested too deeply")
    if not isinstance(document, list):
        return refuse(f"{source}: must be a JSON array of claims")

    claims: list[Claim] = []
    chosen: list[Policy] = []
    for index, entry in enumerate(document):
        try:
            claims.append(Claim.from_dict(entry))
        except ClaimError as exc:
            return refuse(f"{source}: claim {index}: {exc.field}: {exc.message}")
        # its enrolment region's policy, with the catalogue of the region treated in
        policy = policies.for_claim(claims[-1].insu_admdvs, claims[-1].mdtrtarea_admvs)
        if policy is None:
            return refuse(f"{source}: claim {index}: insu_admdvs: no policy given covers "
                          f"region {claims[-1].insu_admdvs}")
        chosen.append(policy)
    results = settle_in_order(chosen, claims)
    sys.stdout.write(json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    return 0


def _show(args: argparse.Namespace) -> int:
    from . import PolicyError, load_policy
    from .show import render_policy

    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(f"kiosk policy show: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    sys.stdout.write(render_policy(policy))
    return 0


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")  # which one wins would be a guess
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number")
