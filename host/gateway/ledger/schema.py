"""The ledger's tables, one DDL for both backends (``{blob}`` is BLOB or BYTEA).

Money is BIGINT fen. JSON columns hold canonical JSON text (chain.canonical_json) so the audit
can compare them with its events character for character. Hashes are hex text.
"""

from __future__ import annotations

import re

SCHEMA_VERSION = "6"
# Versions `init` (and `upgrade`) bring up to SCHEMA_VERSION by creating the tables and indexes
# they lack and dropping an index no longer used (nothing stored changes). 1 had no
# card_reads; 1 and 2 had no index of audit_log's key revocations; 1 to 3 no sign_ins; 1 to 4
# no index of its lookups; 1 to 5 indexed bills by (psn_no, status), not by psn_no alone.
UPGRADABLE_VERSIONS = ("1", "2", "3", "4", "5")

TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS ledger_meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS keys (
        kid TEXT PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('gateway', 'kiosk')),
        alg TEXT NOT NULL,
        public_key {blob} NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'revoked'))
    )""",
    """CREATE TABLE IF NOT EXISTS counters (
        kiosk_id TEXT PRIMARY KEY,
        ctr BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS persons (
        psn_no TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        ssn TEXT NOT NULL,
        card_no TEXT NOT NULL,
        insu_admdvs TEXT NOT NULL,
        assistance TEXT NOT NULL,
        insutype INTEGER NOT NULL
    )""",
    "CREATE UNIQUE INDEX IF NOT EXISTS persons_by_card ON persons (ssn, card_no)",
    # The card each kiosk read last (person_info): a kiosk asks for that resident's bills and
    # settles them, no one else's, so a kiosk's key alone (a stolen board's) cannot read or
    # settle residents by psn_no. Not money, not audited: replaced at every card.
    """CREATE TABLE IF NOT EXISTS card_reads (
        kiosk_id TEXT PRIMARY KEY,
        psn_no TEXT NOT NULL REFERENCES persons (psn_no),
        read_at BIGINT NOT NULL
    )""",
    # Each kiosk's last sign_in (at boot, and every few minutes after, kiosk or idle): what
    # tells the operator a kiosk is alive (`kiosk keys list`). Not money, not audited.
    """CREATE TABLE IF NOT EXISTS sign_ins (
        kiosk_id TEXT PRIMARY KEY,
        signed_in_at BIGINT NOT NULL,
        fw TEXT NOT NULL,
        board TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS bills (
        bill_id TEXT PRIMARY KEY,
        psn_no TEXT NOT NULL REFERENCES persons (psn_no),
        fixmedins_name TEXT NOT NULL,
        mdtrtarea_admvs TEXT NOT NULL,
        med_type TEXT NOT NULL,
        hosp_lv INTEGER NOT NULL,
        referral INTEGER NOT NULL,
        bill_date TEXT NOT NULL,
        items TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('pending', 'settled'))
    )""",
    # A person's bills (pending_bills reads the pending ones among them): by psn_no alone, so
    # settling a bill, which changes only its status, changes no index entry. Indexed with the
    # status too (up to version 5), every settlement moved its bill's entry: one more page
    # written per settlement, under load a quarter of the pages each commit wrote.
    "DROP INDEX IF EXISTS bills_by_person",
    "CREATE INDEX IF NOT EXISTS bills_of_person ON bills (psn_no)",
    """CREATE TABLE IF NOT EXISTS accumulations (
        psn_no TEXT NOT NULL REFERENCES persons (psn_no),
        year INTEGER NOT NULL,
        amounts TEXT NOT NULL,
        PRIMARY KEY (psn_no, year)
    )""",
    """CREATE TABLE IF NOT EXISTS settlements (
        txn_id TEXT PRIMARY KEY,
        setl_id TEXT NOT NULL UNIQUE,
        kiosk_id TEXT NOT NULL,
        psn_no TEXT NOT NULL REFERENCES persons (psn_no),
        bill_id TEXT NOT NULL REFERENCES bills (bill_id),
        setl_time BIGINT NOT NULL,
        setl_date TEXT NOT NULL,
        acc_year INTEGER NOT NULL,
        result TEXT NOT NULL,
        delta TEXT NOT NULL,
        signed {blob} NOT NULL,
        request_digest {blob} NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('settled', 'cancelled')),
        receipt_printed INTEGER NOT NULL
    )""",
    # A day's settlements: reconcile (a kiosk's totals are summed by the database from the
    # day's rows: 24 ms for a day of 120,000), the latest day at start-up. Not by day and kiosk:
    # that index is written at a page per kiosk in each commit, where this one appends, and
    # cost the busiest gateway 2-3 % of its settlements for 23 ms off a once-a-day reconcile.
    "CREATE INDEX IF NOT EXISTS settlements_by_date ON settlements (setl_date)",
    # A cancel looks up the person's other settlements of the year, and the order they were
    # made in (their `settled` events): see SqlLedger.cancel.
    "CREATE INDEX IF NOT EXISTS settlements_by_person ON settlements (psn_no, acc_year)",
    """CREATE TABLE IF NOT EXISTS audit_log (
        seq BIGINT PRIMARY KEY,
        kind TEXT NOT NULL,
        txn_id TEXT,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS settled_events ON audit_log (txn_id) WHERE kind = 'settled'",
    # The key revocations, for verify-receipt (whether a revoked key signed before or after):
    # a handful of rows. Partial, so another event's insert only tests its kind, and adds no
    # index entry (an index on kind would add one to every settlement's event).
    "CREATE INDEX IF NOT EXISTS key_revocations ON audit_log (seq) WHERE kind = 'key_revoked'",
    # The counter's lookups of residents (`kiosk gateway lookups`): a few a day, the same way.
    "CREATE INDEX IF NOT EXISTS lookups ON audit_log (seq) WHERE kind = 'looked_up'",
    # The chain's head in one row: appending locks it, so events are numbered and linked one
    # at a time even when several gateways write to one PostgreSQL ledger.
    """CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )""",
)


# The ledger's tables by name: a ledger of this version missing one of them is damaged.
TABLE_NAMES: tuple[str, ...] = tuple(
    re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", ddl).group(1)  # type: ignore[union-attr]
    for ddl in TABLES if ddl.startswith("CREATE TABLE"))


def statements(blob_type: str) -> list[str]:
    """The DDL for a backend whose binary column type is `blob_type`."""
    return [table.replace("{blob}", blob_type) for table in TABLES]
