# The kiosk's state as a technician asks for it (`kiosk fw status`), run ON the kiosk like
# provisioning (app/provision.py), so that the firmware's own code reads its own files. Nothing on
# the flash is written. Prints one JSON line:
#   {"kiosk_id", "board", "hall", "gateway" (its address), "public_key" | "key_error",
#    "gateway_kid", "gateway_public_key", "gateway_serial", "authority_kid",
#    "counter" | "counter_error", "open" [{txn_id, state, bill_id, cash, date, print_began}],
#    "journal_ignored" (torn bytes at its end), "flash_free", "flash_needs" (bytes)}
# or {"error"} when there is no configuration to read.
import json

from app import config, counter, flash, keystore
from app.journal import Journal


def run(flash_dir):
    try:
        cfg = config.load(flash_dir)
    except config.ConfigError as e:
        print(json.dumps({"error": str(e)}))
        return
    kid, key, serial, _previous = config.trusted_gateway(flash_dir, cfg)
    out = {"kiosk_id": cfg["kiosk_id"], "board": cfg["board"], "hall": cfg.get("hall"),
           "gateway": cfg["gateway"], "gateway_kid": kid, "gateway_public_key": key,
           "gateway_serial": serial, "authority_kid": cfg.get("authority_kid")}
    try:
        out["public_key"] = keystore.public_hex(keystore.load(
            flash.join(flash_dir, keystore.KEY_FILE)))
    except keystore.KeystoreError as e:
        out["key_error"] = str(e)
    try:  # the high water on flash (opening a Counter only reads it)
        out["counter"] = counter.Counter(flash.join(flash_dir, config.COUNTER_FILE)).reserved
    except counter.CounterError as e:
        out["counter_error"] = str(e)
    journal = Journal(flash.join(flash_dir, config.JOURNAL_FILE))
    out["open"] = [{"txn_id": e["txn_id"], "state": e["state"], "bill_id": e["bill_id"],
                    "cash": e["cash"], "date": e["date"], "print_began": e["print_began"]}
                   for e in journal.open_txns()]
    out["journal_ignored"] = journal.ignored_bytes
    out["flash_free"] = flash.free_bytes(journal.path)  # None: the filesystem cannot say
    out["flash_needs"] = flash.MIN_FREE_BYTES
    print(json.dumps(out))
