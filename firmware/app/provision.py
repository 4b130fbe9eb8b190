# Provisioning, run ON the kiosk (over mpremote on a board, under the unix port for simulation)
# so that the private key is made by the device's own random source and never leaves its flash.
#
#   import app.provision; app.provision.run(FLASH_DIR, SETTINGS[, COUNTER_ABOVE])
#
# SETTINGS is the configuration of app/config.py. The key is made once: provisioning again (a new
# gateway address, say) keeps it, because the gateway trusts that key. The counter file is made
# if missing and never moved back; COUNTER_ABOVE (the kiosk's last counter at the gateway)
# raises it, or replaces a damaged one. Prints one JSON line: {"kiosk_id", "public_key", "new_key"},
# or {"error"} when it refuses, and then nothing on the flash has changed.
import json
import os

from app import config, counter, flash, keystore
from boards.common import board_module


def _existing_key(key_path):
    """The key already on the flash, or None; a damaged one refuses provisioning."""
    if not flash.exists(key_path):
        return None
    try:
        return keystore.load(key_path)
    except keystore.KeystoreError as e:
        # a new key is a new identity: the gateway must enrol it before the kiosk can settle
        raise keystore.KeystoreError(
            "%s; remove it to make a new key, then enrol the kiosk's new public key at the "
            "gateway" % e) from None


def _same_kiosk(flash_dir, kiosk_id):
    """A flash whose key is kept keeps its kiosk id: the gateway enrolled the key under it, and
    the journal's open settlements carry it. (A configuration that cannot be read names none.)"""
    try:
        had = config.load(flash_dir)["kiosk_id"]
    except config.ConfigError:
        return
    if had != kiosk_id:
        raise config.ConfigError(
            "this flash is kiosk %s (its key is enrolled under that id): provision it with "
            "--kiosk-id %s, or remove kiosk.key to make it a new kiosk (a new key, enrolled "
            "anew; settle what its journal holds first)" % (had, had))


def _counter_high(counter_path, counter_above):
    try:
        return counter.provisioned(counter_path, counter_above)
    except counter.CounterError as e:
        # values must never be reused: only the gateway knows how far this kiosk got
        raise counter.CounterError(
            "%s; provision again with --counter-above N, N the kiosk's last counter at the "
            "gateway (kiosk keys list --db LEDGER)" % e) from None


def run(flash_dir, settings, counter_above=None):
    # everything is checked before anything is written: a refusal leaves the flash as it was
    try:
        config.check(dict(settings))
        key_path = flash.join(flash_dir, keystore.KEY_FILE)
        key = _existing_key(key_path)
        if key is not None:
            _same_kiosk(flash_dir, settings["kiosk_id"])
        counter_path = flash.join(flash_dir, config.COUNTER_FILE)
        high = _counter_high(counter_path, counter_above)
    except (config.ConfigError, keystore.KeystoreError, counter.CounterError) as e:
        print(json.dumps({"error": str(e)}))
        return
    new_key = key is None
    if new_key:
        board_module(settings["board"]).prepare_random()  # an ESP32's radio on, say
        key = keystore.generate(key_path, os.urandom)
    config.save(flash_dir, settings)
    counter.initialise(counter_path, high)
    print(json.dumps({"kiosk_id": settings["kiosk_id"], "public_key": keystore.public_hex(key),
                      "new_key": new_key}))
