# The append-only journal on flash: what the kiosk promised a resident, written down before it
# acts, so that after a power cut at any moment it can finish the job without doing it twice.
#
# File format, one record after another:
#     length (2 bytes, big-endian) | CBOR(record) | CRC-32 of length+CBOR (4 bytes, big-endian)
# A record whose bytes end early or whose CRC does not match ends the journal: it is a write torn
# by a power cut (or damage), everything from it on is ignored, and it is cut off (by an atomic
# rewrite of the good records) before the next append.
#
# A transaction (txn) moves through the records
#     pending -> settled [-> printing] -> printed -> done          (or pending -> aborted)
# pending:  the resident confirmed; written before `settle` is sent.
#           {kind, txn_id, psn_no, bill_id, cash, name, ssn_masked, clinic, date}
# settled:  the gateway-signed settlement, verified. {kind, txn_id, settlement}
# printing: its receipt's first bytes are about to go to the printer, and may have gone (the
#           entry stays settled, with print_began): a receipt printed after this says it is a
#           reprint. Written once the printer has taken the print (a refusal writes none).
#           {kind, txn_id}
# printed:  the receipt came out of the printer. {kind, txn_id}
# done:     the gateway knows the receipt was printed. {kind, txn_id}
# aborted:  the settle never happened (refused, or unknown to the gateway). {kind, txn_id, reason}
# Only open txns (not done or aborted) are kept in memory; compaction rewrites the file with just
# their records once it has grown past `compact_at` bytes.
import binascii
import struct

from app import flash
from onestop.protocol import cbor
from onestop.protocol.errors import ProtocolError

HEAD = 2
CRC = 4
MAX_RECORD = 2048  # a settled record (COSE settlement) is well under 1 KB
COMPACT_AT = 4096

PENDING = "pending"
SETTLED = "settled"
PRINTING = "printing"
PRINTED = "printed"
DONE = "done"
ABORTED = "aborted"

# What each record kind may follow.
_AFTER = {SETTLED: (PENDING,), PRINTING: (SETTLED,), PRINTED: (SETTLED,), DONE: (PRINTED,),
          ABORTED: (PENDING,)}
_PENDING_FIELDS = ("psn_no", "bill_id", "cash", "name", "ssn_masked", "clinic", "date")


class JournalError(Exception):
    pass


def encode_record(record):
    """The record as its three pieces, length, CBOR and CRC, written one after another: a
    settled record is most of a kilobyte, and never copied into one buffer with the others."""
    body = cbor.dumps(record)
    if len(body) > MAX_RECORD:
        raise JournalError("record of %d bytes" % len(body))
    head = struct.pack(">H", len(body))
    return [head, body, struct.pack(">I", binascii.crc32(body, binascii.crc32(head))
                                    & 0xFFFFFFFF)]


def _size(pieces):
    return len(pieces[0]) + len(pieces[1]) + len(pieces[2])


def _read_record(f):
    """(record, size) for the next good record, or (None, 0) at the end or a bad one."""
    head = f.read(HEAD)
    if len(head) < HEAD:
        return None, 0
    n = struct.unpack(">H", head)[0]
    if n == 0 or n > MAX_RECORD:
        return None, 0
    body = f.read(n)
    tail = f.read(CRC)
    if len(body) < n or len(tail) < CRC:
        return None, 0
    if binascii.crc32(body, binascii.crc32(head)) & 0xFFFFFFFF != struct.unpack(">I", tail)[0]:
        return None, 0
    try:
        record = cbor.loads(body)
    except ProtocolError:
        return None, 0
    if not isinstance(record, dict) or "kind" not in record or "txn_id" not in record:
        return None, 0
    return record, HEAD + n + CRC


class Journal:
    def __init__(self, path, compact_at=COMPACT_AT):
        self.path = path
        self.compact_at = compact_at
        self._txns = {}  # txn_id -> entry dict, open txns only
        self._order = []  # open txn ids, oldest first
        self.good_bytes = 0  # length of the good records
        self.ignored_bytes = 0  # torn or damaged bytes after them, cut off at the next append
        self.records = 0
        self._load()

    # ------------------------------------------------------------ reading
    def _load(self):
        flash.finish_replace(self.path)  # a compaction cut off on FAT left only the .tmp
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        with f:
            while True:
                record, n = _read_record(f)
                if record is None:
                    break
                self._apply(record)
                self.good_bytes += n
                self.records += 1
        self.ignored_bytes = flash.size(self.path) - self.good_bytes

    def _apply(self, record):
        kind = record["kind"]
        txn_id = record["txn_id"]
        entry = self._txns.get(txn_id)
        if kind == PENDING:
            if entry is None:
                entry = {"txn_id": txn_id, "state": PENDING, "settlement": None,
                         "print_began": False}
                for name in _PENDING_FIELDS:
                    entry[name] = record.get(name)
                self._txns[txn_id] = entry
                self._order.append(txn_id)
            return
        if entry is None or entry["state"] not in _AFTER.get(kind, ()):
            return  # out of order (a txn already closed): nothing left to act on
        if kind == SETTLED:
            entry["settlement"] = record["settlement"]
        if kind == PRINTING:
            entry["print_began"] = True
        elif kind == DONE or kind == ABORTED:
            del self._txns[txn_id]
            self._order.remove(txn_id)
        else:
            entry["state"] = kind

    # ------------------------------------------------------------ questions
    def open_txns(self):
        """Entries of the txns not yet done or aborted, oldest first."""
        return [self._txns[t] for t in self._order]

    def get(self, txn_id):
        return self._txns.get(txn_id)

    def has(self, state):
        for t in self._order:
            if self._txns[t]["state"] == state:
                return True
        return False

    # ------------------------------------------------------------ writing
    def append(self, record):
        pieces = encode_record(record)
        if self.ignored_bytes:
            self._rewrite()  # cut off a torn tail first, or the new record would follow it
        with open(self.path, "ab") as f:
            for piece in pieces:
                f.write(piece)
            f.flush()
        self.good_bytes += _size(pieces)
        self.records += 1
        self._apply(record)
        if self.good_bytes > self.compact_at and (record["kind"] == DONE
                                                  or record["kind"] == ABORTED):
            self._rewrite()

    def pending(self, txn_id, psn_no, bill_id, cash, name, ssn_masked, clinic, date):
        self.append({"kind": PENDING, "txn_id": txn_id, "psn_no": psn_no, "bill_id": bill_id,
                     "cash": cash, "name": name, "ssn_masked": ssn_masked, "clinic": clinic,
                     "date": date})
        return self._txns[txn_id]

    def settled(self, txn_id, settlement):
        self.append({"kind": SETTLED, "txn_id": txn_id, "settlement": settlement})

    def printing(self, txn_id):
        self.append({"kind": PRINTING, "txn_id": txn_id})

    def printed(self, txn_id):
        self.append({"kind": PRINTED, "txn_id": txn_id})

    def done(self, txn_id):
        self.append({"kind": DONE, "txn_id": txn_id})

    def aborted(self, txn_id, reason):
        self.append({"kind": ABORTED, "txn_id": txn_id, "reason": reason})

    def _rewrite(self):
        """Compaction: replace the file (atomically) by the records of the open txns, written
        piece by piece (one buffer of them all would be kilobytes with a few txns open)."""
        out = []
        for txn_id in self._order:
            entry = self._txns[txn_id]
            record = {"kind": PENDING, "txn_id": txn_id}
            for name in _PENDING_FIELDS:
                record[name] = entry[name]
            out.extend(encode_record(record))
            if entry["state"] != PENDING:
                out.extend(encode_record({"kind": SETTLED, "txn_id": txn_id,
                                          "settlement": entry["settlement"]}))
            if entry["state"] == SETTLED and entry["print_began"]:
                out.extend(encode_record({"kind": PRINTING, "txn_id": txn_id}))
            if entry["state"] == PRINTED:
                out.extend(encode_record({"kind": PRINTED, "txn_id": txn_id}))
        flash.write_atomic(self.path, out)
        size = 0
        for piece in out:
            size += len(piece)
        self.good_bytes = size
        self.ignored_bytes = 0
        self.records = len(out) // 3
