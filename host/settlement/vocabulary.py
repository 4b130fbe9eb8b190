"""The fixed words of the settlement domain: what a claim or a policy may name.

A region changes numbers in its policy file, never these: they are the national platform's
categories, and the accumulation keys the ledger stores.
"""

from __future__ import annotations

# Medical-assistance (医疗救助) categories of a resident; "none" receives no assistance.
ASSISTANCE_CATEGORIES: tuple[str, ...] = ("none", "tekun", "dibao", "low_income", "illness_poor")
ASSISTED_CATEGORIES: tuple[str, ...] = ASSISTANCE_CATEGORIES[1:]

# Kinds of treatment the basic insurance pays for, each with its own deductibles and annual cap.
MED_TYPES: tuple[str, ...] = ("inpatient", "outpatient_chronic")

# Hospital levels: 1 township health centre, 2 county hospital, 3 city / province hospital.
HOSPITAL_LEVELS: tuple[int, ...] = (1, 2, 3)

# Catalogue classes: A (甲类) fully in scope, B (乙类) partly paid first by the resident,
# C (丙类) fully own-pay.
CATALOGUE_CLASSES: tuple[str, ...] = ("A", "B", "C")

# Insurance types (险种) the policies settle: residents' basic medical insurance (城乡居民, 390).
# Employees' insurance (310) has a personal account and rules of its own that no policy here
# describes: such a person is settled at the counter, never as a resident.
SETTLED_INSURANCE_TYPES: tuple[int, ...] = (390,)

# A bill's total at most 100 million yuan: far above any real bill, and low enough that a
# year's or a day's sums stay exact in the ledgers' 64-bit integers and in a frame's uint.
MAX_BILL_FEN = 10_000_000_000
