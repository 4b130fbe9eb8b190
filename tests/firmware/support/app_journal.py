# Runs under MicroPython (onestop.host.mpy.Worker, firmware/ on the path): drives app.journal and
# app.counter on files in a temporary directory and hands plain values back to the tests.
import gc
import os

from app import journal as J


def _remove(path):
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass


def _state(journal):
    return {"open": [(e["txn_id"], e["state"]) for e in journal.open_txns()],
            "entries": journal.open_txns(), "good_bytes": journal.good_bytes,
            "ignored_bytes": journal.ignored_bytes, "records": journal.records}


def write(path, records, compact_at=J.COMPACT_AT):
    """A fresh journal with `records` appended; returns the file size after each append."""
    _remove(path)
    journal = J.Journal(path, compact_at)
    sizes = []
    for record in records:
        journal.append(record)
        sizes.append(journal.good_bytes)
    return sizes


def load(path, compact_at=J.COMPACT_AT):
    return _state(J.Journal(path, compact_at))


def append_then_load(path, records):
    journal = J.Journal(path)
    for record in records:
        journal.append(record)
    return _state(J.Journal(path))


def _states(journal):
    return " ".join([e["state"] for e in journal.open_txns()])


def torn_tail_sweep(path, records, extra):
    """For every length the file could have been cut to by a power cut: what the journal sees
    on boot, and what it holds after one more append. One line of text per cut length
    (kept small: a sweep has about 900 of them):
        "records good_bytes ignored_bytes|open states|records ignored_bytes|open states"
    """
    write(path, records)
    with open(path, "rb") as f:
        full = f.read()
    cut_path = path + ".cut"
    results = []
    for cut in range(len(full) + 1):
        gc.collect()  # or each kept result lands beyond the last cut's garbage: fragmentation
        with open(cut_path, "wb") as f:
            f.write(full[:cut])
        seen = J.Journal(cut_path)
        boot = f"{seen.records} {seen.good_bytes} {seen.ignored_bytes}|{_states(seen)}"
        seen.append(extra)
        after = J.Journal(cut_path)
        results.append(f"{boot}|{after.records} {after.ignored_bytes}|{_states(after)}")
    _remove(cut_path)
    return results


def plan(path):
    from app import recovery
    return recovery.plan(J.Journal(path).open_txns())
