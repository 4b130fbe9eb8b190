"""A claim: one bill of one resident, as the engine settles it. Validated when it is made.

`Claim.from_dict` reads the JSON shape (`kiosk policy calc`); `Claim.from_bill` reads the
gateway's ledger records. Both raise `ClaimError(field, message)` for the first bad field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, NamedTuple, Protocol

from .vocabulary import (
    ASSISTANCE_CATEGORIES,
    CATALOGUE_CLASSES,
    HOSPITAL_LEVELS,
    MAX_BILL_FEN,
    MED_TYPES,
)

CLAIM_FIELDS: tuple[str, ...] = (
    "psn_no",
    "insu_admdvs",
    "assistance",
    "med_type",
    "hosp_lv",
    "mdtrtarea_admvs",
    "referral",
    "setl_date",
    "items",
)
_ITEM_FIELDS = ("amount", "class")
_ITEM_OPTIONAL = ("name",)  # bills carry the item's name for the receipt; the engine ignores it

_ADMDVS = re.compile(r"[0-9]{6}\Z")  # 6-digit administrative division code
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


class ClaimError(ValueError):
    """Bad claim input; `field` names it (e.g. ``items[2].amount``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Item(NamedTuple):
    catalogue_class: str  # "A" | "B" | "C"
    amount: int  # fen


class PersonLike(Protocol):
    @property
    def psn_no(self) -> str: ...
    @property
    def insu_admdvs(self) -> str: ...
    @property
    def assistance(self) -> str: ...


class BillLike(Protocol):
    @property
    def psn_no(self) -> str: ...
    @property
    def mdtrtarea_admvs(self) -> str: ...
    @property
    def med_type(self) -> str: ...
    @property
    def hosp_lv(self) -> int: ...
    @property
    def referral(self) -> bool: ...
    @property
    def items(self) -> Sequence[Mapping[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class Claim:
    psn_no: str
    insu_admdvs: str  # where the resident is insured
    assistance: str  # one of ASSISTANCE_CATEGORIES
    med_type: str  # one of MED_TYPES
    hosp_lv: int  # one of HOSPITAL_LEVELS
    mdtrtarea_admvs: str  # where the treatment was
    referral: bool  # 转诊备案 on file for off-site treatment
    setl_date: str  # YYYY-MM-DD; its calendar year is the accumulation year
    items: tuple[Item, ...]

    def __post_init__(self) -> None:
        _check_text(self.psn_no, "psn_no")
        _check_admdvs(self.insu_admdvs, "insu_admdvs")
        _check_choice(self.assistance, "assistance", ASSISTANCE_CATEGORIES)
        _check_choice(self.med_type, "med_type", MED_TYPES)
        if type(self.hosp_lv) is not int or self.hosp_lv not in HOSPITAL_LEVELS:
            raise ClaimError("hosp_lv", "must be one of 1, 2, 3")
        _check_admdvs(self.mdtrtarea_admvs, "mdtrtarea_admvs")
        if not isinstance(self.referral, bool):
            raise ClaimError("referral", "must be true or false")
        _check_date(self.setl_date, "setl_date")
        if not isinstance(self.items, tuple):
            raise ClaimError("items", "must be a tuple of Item")
        if not self.items:
            raise ClaimError("items", "must list at least one item")
        for index, item in enumerate(self.items):
            _check_item(item, index)
        if sum(item.amount for item in self.items) > MAX_BILL_FEN:  # as import-bills refuses
            raise ClaimError("items", f"total over {MAX_BILL_FEN} fen, the most a bill may be")

    @property
    def year(self) -> int:
        """The calendar year whose accumulations this claim reads and adds to."""
        return int(self.setl_date[:4])

    @classmethod
    def from_dict(cls, data: Any) -> Claim:
        if not isinstance(data, Mapping):
            raise ClaimError("claim", "must be an object")
        for key in data:
            if key not in CLAIM_FIELDS:
                raise ClaimError(str(key), "unknown field")
        for key in CLAIM_FIELDS:
            if key not in data:
                raise ClaimError(key, "missing")
        values = {key: data[key] for key in CLAIM_FIELDS}
        values["items"] = _items_from_json(data["items"])
        return cls(**values)

    @classmethod
    def from_bill(cls, person: PersonLike, bill: BillLike, setl_date: str) -> Claim:
        """The claim for settling `bill` of `person` on `setl_date` (YYYY-MM-DD)."""
        if bill.psn_no != person.psn_no:
            raise ClaimError("psn_no", "the bill belongs to another person")
        return cls.from_dict(
            {
                "psn_no": person.psn_no,
                "insu_admdvs": person.insu_admdvs,
                "assistance": person.assistance,
                "med_type": bill.med_type,
                "hosp_lv": bill.hosp_lv,
                "mdtrtarea_admvs": bill.mdtrtarea_admvs,
                "referral": bill.referral,
                "setl_date": setl_date,
                "items": list(bill.items),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape `from_dict` reads (item names are not kept)."""
        values: dict[str, Any] = {key: getattr(self, key) for key in CLAIM_FIELDS}
        values["items"] = [
            {"amount": item.amount, "class": item.catalogue_class} for item in self.items
        ]
        return values


def _items_from_json(value: Any) -> tuple[Item, ...]:
    if not isinstance(value, list | tuple):
        raise ClaimError("items", "must be an array of items")
    items: list[Item] = []
    for index, entry in enumerate(value):
        where = f"items[{index}]"
        if not isinstance(entry, Mapping):
            raise ClaimError(where, "must be an object")
        for key in entry:
            if key not in _ITEM_FIELDS and key not in _ITEM_OPTIONAL:
                raise ClaimError(f"{where}.{key}", "unknown field")
        for key in _ITEM_FIELDS:
            if key not in entry:
                raise ClaimError(f"{where}.{key}", "missing")
        if "name" in entry and not isinstance(entry["name"], str):
            raise ClaimError(f"{where}.name", "must be a string")
        items.append(Item(entry["class"], entry["amount"]))
    return tuple(items)


def _check_item(item: Any, index: int) -> None:
    if not isinstance(item, Item):
        raise ClaimError(f"items[{index}]", "must be an Item")
    if not isinstance(item.catalogue_class, str) or item.catalogue_class not in CATALOGUE_CLASSES:
        raise ClaimError(f"items[{index}].class", "must be one of A, B, C")
    if type(item.amount) is not int or item.amount < 0:
        raise ClaimError(f"items[{index}].amount", "must be a non-negative integer of fen")


def _check_text(value: Any, field: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ClaimError(field, "must be a non-empty string")
    try:
        value.encode("utf-8")  # JSON may carry a lone surrogate (\ud800): no text can hold it
    except UnicodeEncodeError:
        raise ClaimError(field, "must be text (it holds a lone UTF-16 surrogate)") from None


def _check_admdvs(value: Any, field: str) -> None:
    if not isinstance(value, str) or not _ADMDVS.match(value):
        raise ClaimError(field, "must be a 6-digit administrative division code")


def _check_choice(value: Any, field: str, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ClaimError(field, f"must be one of {', '.join(choices)}")


def _check_date(value: Any, field: str) -> None:
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ClaimError(field, "must be a date YYYY-MM-DD")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ClaimError(field, f"{value} is not a calendar date") from None
