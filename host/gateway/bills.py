"""Bills waiting for settlement, from the clinics' systems, and the residents they belong to.

`kiosk gateway import-bills FILE.json` reads either a JSON array of bills or an object
``{"persons": [...], "bills": [...]}``. A bill: bill_id, psn_no, fixmedins_name,
mdtrtarea_admvs, med_type, hosp_lv, referral, date, items [{name, class, amount}] (money in
integer fen). A person: psn_no, name, ssn, card_no, insu_admdvs, assistance, optional insutype.
The whole file is validated before anything is written (an error names the entry and field),
and importing is idempotent: a second import changes nothing, a settled bill is never re-opened,
and a file that would change a settled bill is refused whole.

`kiosk gateway seed-demo` loads host/sim/demo_residents.json — the residents the card
simulator's deck holds, their bills, and starting accumulations where a resident has them.
`demo_bills_again` makes a bills file that gives them their bills again, as new ones (the
simulated hall's way to go on after each resident has been served: `kiosk tui`'s `b`).
"""

from __future__ import annotations

import datetime
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from onestop.host.settlement.accumulations import (
    ASSISTANCE_BURDEN,
    HIFMI_PAID,
    MAF_PAID,
    SERIOUS_BURDEN,
)
from onestop.host.settlement.vocabulary import (
    ASSISTANCE_CATEGORIES,
    CATALOGUE_CLASSES,
    HOSPITAL_LEVELS,
    MAX_BILL_FEN,
    MED_TYPES,
    SETTLED_INSURANCE_TYPES,
)

from .config import SETTLEMENT_TIMEZONE
from .ledger.base import Bill, Ledger, Person
from .ledger.chain import canonical_json
from .ledger.rows import bill_content
from .masking import mask_id

DEMO_RESIDENTS = ("onestop.host.sim", "demo_residents.json")

BILL_FIELDS = ("bill_id", "psn_no", "fixmedins_name", "mdtrtarea_admvs", "med_type", "hosp_lv",
               "referral", "date", "items")  # fmt: skip
ITEM_FIELDS = ("name", "class", "amount")
PERSON_FIELDS = ("psn_no", "name", "ssn", "card_no", "insu_admdvs", "assistance")
PERSON_OPTIONAL = ("insutype",)

PSN_NO = re.compile(r"[A-Za-z0-9]{1,30}")  # frames.cddl psn_no_text
BILL_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ADMDVS = re.compile(r"[0-9]{6}")
SSN = re.compile(r"[0-9]{17}[0-9X]")
CARD_NO = re.compile(r"[A-Z0-9]{9}")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# The demo file names a resident's starting burdens as the settlement engine does; the map
# says so explicitly, so a rename in the engine breaks here loudly rather than seeding nothing.
DEMO_ACCUMULATION_KEYS = {
    "serious_burden": SERIOUS_BURDEN,  # compliant burden so far (serious-illness basis)
    "assistance_burden": ASSISTANCE_BURDEN,  # burden left after serious illness (assistance)
    # what the funds already paid on those burdens (a seed must be a year the engine could
    # have reached: a burden with nothing paid on it leaves the caps more room than it has)
    "hifmi_paid": HIFMI_PAID,
    "maf_paid": MAF_PAID,
}


class BillFileError(ValueError):
    """A bills file that cannot be imported; the message names the entry and field."""


@dataclass(frozen=True)
class Seed:
    psn_no: str
    year: int
    amounts: dict[str, int]


@dataclass
class ImportSummary:
    persons: Counter[str] = field(default_factory=Counter)  # added / updated / unchanged
    bills: Counter[str] = field(default_factory=Counter)
    seeded: list[Seed] = field(default_factory=list)
    changed_persons: list[Person] = field(default_factory=list)  # added or updated


# ---------------------------------------------------------------------------- validation
def _fail(where: str, problem: str) -> BillFileError:
    return BillFileError(f"{where}: {problem}")


# Controls, format characters (U+200B, U+202E right-to-left override), line and paragraph
# separators, private-use, surrogates and unassigned code points: each garbles or hides text on
# the kiosk's screen and the printed receipt, and PostgreSQL refuses NUL.
UNSHOWABLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})
# The national platform's field sizes: a person's name 50 characters, a clinic's 200.
MAX_TEXT = 200
MAX_PERSON_NAME = 50


def _text(entry: Mapping[str, Any], name: str, where: str, pattern: re.Pattern[str] | None = None,
          what: str = "", longest: int = MAX_TEXT) -> str:  # fmt: skip
    value = entry[name]
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"{where}.{name}", "must be non-empty text")
    if pattern is not None:  # the pattern bounds the length too, so its message says the limit
        if not pattern.fullmatch(value):
            raise _fail(f"{where}.{name}", f"must be {what}")
        return value
    if len(value) > longest:  # it travels in one signed frame, and on a receipt
        raise _fail(f"{where}.{name}", f"is {len(value)} characters; at most {longest}")
    for char in value:
        if unicodedata.category(char) in UNSHOWABLE:
            raise _fail(f"{where}.{name}", f"must not contain control characters "
                                           f"(has U+{ord(char):04X})")
    return value


def _fields(entry: Any, required: tuple[str, ...], optional: tuple[str, ...], where: str) -> None:
    if not isinstance(entry, Mapping):
        raise _fail(where, "must be an object")
    for name in required:
        if name not in entry:
            raise _fail(f"{where}.{name}", "missing")
    unknown = sorted(set(entry) - set(required) - set(optional))
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", "unknown field")


def _date(entry: Mapping[str, Any], name: str, where: str) -> str:
    value = _text(entry, name, where, DATE, "a date YYYY-MM-DD")
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise _fail(f"{where}.{name}", "is not a real date") from None
    # A bill is for treatment already given: a later date is a clinic system's slip (a year
    # typed wrong), and would be settled into that year's accumulations. Today is China's (as
    # the gateways book settlements, whatever this host's zone), and a day of slack for a
    # clinic's clock.
    today = datetime.datetime.now(ZoneInfo(SETTLEMENT_TIMEZONE)).date()
    latest = today + datetime.timedelta(days=1)
    if day > latest:
        raise _fail(f"{where}.{name}", f"is after {latest.isoformat()}: a bill's date is the "
                    "day of the treatment, which cannot be in the future")
    return value


def birth_date(ssn: str) -> str | None:
    """The birth date an ID number holds (GB 11643: digits 7-14), as YYYY-MM-DD; None if
    those digits are no day."""
    try:
        return datetime.date(int(ssn[6:10]), int(ssn[10:12]), int(ssn[12:14])).isoformat()
    except ValueError:
        return None


def ssn_check_digit_ok(ssn: str) -> bool:
    """GB 11643: the 18th character is the ISO 7064 MOD 11-2 check of the first 17 digits."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(digit) * weight for digit, weight in zip(ssn[:17], weights, strict=True))
    return "10X98765432"[total % 11] == ssn[17]


def parse_person(entry: Any, where: str) -> Person:
    _fields(entry, PERSON_FIELDS, PERSON_OPTIONAL, where)
    ssn = _text(entry, "ssn", where, SSN, "18 characters: 17 digits then a digit or X")
    if not ssn_check_digit_ok(ssn):
        raise _fail(f"{where}.ssn", "check digit is wrong (GB 11643); the number is mistyped")
    assistance = entry["assistance"]
    if assistance not in ASSISTANCE_CATEGORIES:
        raise _fail(f"{where}.assistance", "must be one of " + ", ".join(ASSISTANCE_CATEGORIES))
    insutype = entry.get("insutype", 390)
    if type(insutype) is not int or insutype not in SETTLED_INSURANCE_TYPES:
        raise _fail(f"{where}.insutype", "must be 390 (residents' insurance): the policies "
                    "settle nothing else (employees, 310, are settled at the counter)")
    return Person(
        psn_no=_text(entry, "psn_no", where, PSN_NO, "1-30 letters or digits"),
        name=_text(entry, "name", where, longest=MAX_PERSON_NAME),
        ssn=ssn,
        card_no=_text(entry, "card_no", where, CARD_NO, "9 capital letters or digits"),
        insu_admdvs=_text(entry, "insu_admdvs", where, ADMDVS, "a 6-digit region code"),
        assistance=assistance,
        insutype=insutype,
    )


def _parse_item(item: Any, where: str) -> dict[str, Any]:
    _fields(item, ITEM_FIELDS, (), where)
    if item["class"] not in CATALOGUE_CLASSES:
        raise _fail(f"{where}.class", "must be " + ", ".join(CATALOGUE_CLASSES))
    amount = item["amount"]
    if type(amount) is not int or amount <= 0:
        raise _fail(f"{where}.amount", "must be a positive integer of fen")
    if amount > MAX_BILL_FEN:
        raise _fail(f"{where}.amount", f"is over {MAX_BILL_FEN} fen, the most a bill may be")
    return {"name": _text(item, "name", where), "class": item["class"], "amount": amount}


def parse_bill(entry: Any, where: str) -> Bill:
    _fields(entry, BILL_FIELDS, (), where)
    if entry["med_type"] not in MED_TYPES:
        raise _fail(f"{where}.med_type", "must be one of " + ", ".join(MED_TYPES))
    hosp_lv = entry["hosp_lv"]
    if type(hosp_lv) is not int or hosp_lv not in HOSPITAL_LEVELS:
        raise _fail(f"{where}.hosp_lv", "must be 1, 2 or 3")
    if not isinstance(entry["referral"], bool):
        raise _fail(f"{where}.referral", "must be true or false")
    items = entry["items"]
    if not isinstance(items, list) or not items:
        raise _fail(f"{where}.items", "must list at least one item")
    parsed = tuple(_parse_item(item, f"{where}.items[{i}]") for i, item in enumerate(items))
    if sum(item["amount"] for item in parsed) > MAX_BILL_FEN:
        raise _fail(f"{where}.items", f"total over {MAX_BILL_FEN} fen, the most a bill may be")
    return Bill(
        bill_id=_text(entry, "bill_id", where, BILL_ID, "1-64 letters, digits, '.', '_' or '-'"),
        psn_no=_text(entry, "psn_no", where, PSN_NO, "1-30 letters or digits"),
        fixmedins_name=_text(entry, "fixmedins_name", where),
        mdtrtarea_admvs=_text(entry, "mdtrtarea_admvs", where, ADMDVS, "a 6-digit region code"),
        med_type=entry["med_type"],
        hosp_lv=hosp_lv,
        referral=entry["referral"],
        date=_date(entry, "date", where),
        items=parsed,
    )


def parse_document(document: Any) -> tuple[list[Person], list[Bill]]:
    """The persons and bills of a bills file's JSON; BillFileError names the first problem."""
    if isinstance(document, list):
        persons_json: Any = []
        bills_json: Any = document
    elif isinstance(document, Mapping):
        unknown = sorted(set(document) - {"persons", "bills"})
        if unknown:
            raise _fail(unknown[0], "unknown field (expected persons and bills)")
        persons_json = document.get("persons", [])
        bills_json = document.get("bills", [])
    else:
        raise BillFileError("a bills file is a JSON array of bills or {persons, bills}")
    if not isinstance(persons_json, list) or not isinstance(bills_json, list):
        raise BillFileError("persons and bills must be arrays")
    persons = [parse_person(p, f"persons[{i}]") for i, p in enumerate(persons_json)]
    bills = [parse_bill(b, f"bills[{i}]") for i, b in enumerate(bills_json)]
    _no_duplicates([p.psn_no for p in persons], "persons", "psn_no")
    _no_duplicates([b.bill_id for b in bills], "bills", "bill_id")
    return persons, bills


def _no_duplicates(ids: list[str], where: str, name: str) -> None:
    first: dict[str, int] = {}
    for index, value in enumerate(ids):
        if value in first:
            raise _fail(f"{where}[{index}].{name}", f"{value} repeats {where}[{first[value]}]")
        first[value] = index


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's keys; a repeated key is refused, not silently resolved to its last value."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise BillFileError(f"the key {key[:64]!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def read_bills_file(path: Path) -> tuple[list[Person], list[Bill]]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # clinics' Windows tools write a BOM
    except OSError as exc:
        raise BillFileError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise BillFileError(f"{path} is not UTF-8 text") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys)
    except BillFileError as exc:
        raise BillFileError(f"{path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BillFileError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    except RecursionError:
        raise BillFileError(f"{path}: nested too deeply to be a bills file") from None
    except ValueError:  # int() refuses more digits than sys.get_int_max_str_digits()
        raise BillFileError(f"{path}: not a JSON file the gateway can read: a number too long "
                            "(thousands of digits)") from None
    return parse_document(document)


# ---------------------------------------------------------------------------- import
def check_against_ledger(ledger: Ledger, persons: list[Person], bills: list[Bill]) -> None:
    """Refuse the file before writing anything if a person's ID number is another person's,
    a bill names an unknown person, or a bill would change one that is already settled."""
    first: dict[str, Person] = {}
    for index, person in enumerate(persons):
        where = f"persons[{index}] ({person.psn_no})"
        other = first.setdefault(person.ssn, person)
        if other is person:
            other = ledger.person_with_ssn(person.ssn) or person
        if other.psn_no != person.psn_no:
            # one resident, one psn_no: a second would split the year's accumulations and caps
            raise _fail(where, f"ID number {mask_id(person.ssn)} is already person "
                               f"{other.psn_no}'s")
    in_file = {p.psn_no: p for p in persons}
    for index, bill in enumerate(bills):
        where = f"bills[{index}] ({bill.bill_id})"
        person = in_file.get(bill.psn_no) or ledger.get_person(bill.psn_no)
        if person is None:
            raise _fail(where, f"person {bill.psn_no} is neither in the file nor in the ledger")
        born = birth_date(person.ssn)
        if born is not None and bill.date < born:
            # a year typed wrong (1900 for 2026): the kiosk listed it first, oldest first
            raise _fail(where, f"is dated {bill.date}, before {bill.psn_no} was born ({born}, "
                               "from the ID number): a bill's date is the day of the treatment")
        stored = ledger.get_bill(bill.bill_id)
        if stored is not None and stored.status != "pending":
            if canonical_json(bill_content(stored)) != canonical_json(bill_content(bill)):
                raise _fail(where, "is already settled; a settled bill cannot change")


def import_records(
    ledger: Ledger, persons: list[Person], bills: list[Bill], seeds: Sequence[Seed] = ()
) -> ImportSummary:
    """Validated records into the ledger: persons, then their bills, then starting values; in
    one transaction, so a file is imported whole or not at all."""
    return ledger.atomically(lambda: _import(ledger, persons, bills, seeds))


def _import(ledger: Ledger, persons: list[Person], bills: list[Bill],
            seeds: Sequence[Seed]) -> ImportSummary:
    check_against_ledger(ledger, persons, bills)
    summary = ImportSummary()
    for person in persons:
        outcome = ledger.upsert_person(person)
        summary.persons[outcome] += 1
        if outcome != "unchanged":
            summary.changed_persons.append(person)
    for bill in bills:
        summary.bills[ledger.upsert_bill(bill)] += 1
    for seed in seeds:
        if ledger.seed_accumulations(seed.psn_no, seed.year, seed.amounts):
            summary.seeded.append(seed)
    return summary


def import_bills_file(ledger: Ledger, path: Path) -> ImportSummary:
    persons, bills = read_bills_file(path)
    return import_records(ledger, persons, bills)


# ---------------------------------------------------------------------------- demo seed
def demo_document() -> dict[str, Any]:
    package, name = DEMO_RESIDENTS
    return json.loads(resources.files(package).joinpath(name).read_text(encoding="utf-8"))


def parse_demo(document: Mapping[str, Any]) -> tuple[list[Person], list[Bill], list[Seed]]:
    """The demo residents file: each resident with its bills and optional accumulations."""
    residents = document.get("residents")
    if not isinstance(residents, list):
        raise BillFileError("the demo file has no residents array")
    persons, bills, seeds = [], [], []
    for index, resident in enumerate(residents):
        where = f"residents[{index}]"
        if not isinstance(resident, Mapping):
            raise _fail(where, "must be an object")
        persons.append(parse_person({k: resident[k] for k in PERSON_FIELDS if k in resident},
                                    where))  # fmt: skip
        for b, entry in enumerate(resident.get("bills", [])):
            bill = parse_bill(entry, f"{where}.bills[{b}]")
            if bill.psn_no != persons[-1].psn_no:
                raise _fail(f"{where}.bills[{b}].psn_no", "is not the resident's psn_no")
            bills.append(bill)
        if "accumulations" in resident:
            seeds.append(_demo_seed(resident["psn_no"], resident["accumulations"], where))
    _no_duplicates([b.bill_id for b in bills], "bills", "bill_id")
    return persons, bills, seeds


def _demo_seed(psn_no: str, entry: Any, where: str) -> Seed:
    where = f"{where}.accumulations"
    _fields(entry, ("year",), tuple(DEMO_ACCUMULATION_KEYS), where)
    amounts = {}
    for name, key in DEMO_ACCUMULATION_KEYS.items():
        if name in entry:
            if type(entry[name]) is not int or entry[name] < 0:
                raise _fail(f"{where}.{name}", "must be a non-negative integer of fen")
            amounts[key] = entry[name]
    if type(entry["year"]) is not int:
        raise _fail(f"{where}.year", "must be a year")
    return Seed(psn_no=psn_no, year=entry["year"], amounts=amounts)


def seed_demo(ledger: Ledger) -> ImportSummary:
    persons, bills, seeds = parse_demo(demo_document())
    return import_records(ledger, persons, bills, seeds)


def settlement_today() -> datetime.date:
    """Today where settlements are booked (China), whatever this host's zone."""
    return datetime.datetime.now(ZoneInfo(SETTLEMENT_TIMEZONE)).date()


def demo_bills_again(day: datetime.date, round_tag: str) -> dict[str, Any]:
    """A bills file (`import-bills`' format) with every demo resident's bills once more as new
    bills: each bill_id followed by `-round_tag`, dated `day`, the rest as in the demo file."""
    bills = []
    for resident in demo_document()["residents"]:
        for entry in resident.get("bills", []):
            bills.append({**entry, "bill_id": f"{entry['bill_id']}-{round_tag}",
                          "date": day.isoformat()})
    return {"bills": bills}
