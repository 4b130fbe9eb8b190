# Provisioning, run ON the kiosk (over mpremote on a board, under the unix port for simulation)
# so that the private key is made by the device's own random source and never leaves its flash.
#
#   import app.provision; app.provision.run(FLASH_DIR, SETTINGS)
#
# SETTINGS is the configuration of app/config.py. The key is made once: provisioning again (a new
# gateway address, say) keeps it, because the gateway trusts that key. The counter file is made
# if missing and never moved back. Prints one JSON line: {"kiosk_id", "public_key", "new_key"}.
import json
import os

from app import config, counter, flash, keystore


def run(flash_dir, settings):
    config.save(flash_dir, settings)
    key_path = flash.join(flash_dir, keystore.KEY_FILE)
    new_key = not flash.exists(key_path)
    if new_key:
        key = keystore.generate(key_path, os.urandom)
    else:
        key = keystore.load(key_path)
    counter.initialise(flash.join(flash_dir, config.COUNTER_FILE))
    print(json.dumps({"kiosk_id": settings["kiosk_id"], "public_key": keystore.public_hex(key),
                      "new_key": new_key}))
