# The kiosk's own Ed25519 key: made on the device at provisioning, kept on its flash, and never
# leaving it (only the public half is printed, for `kiosk gateway enroll`).
# The file holds the 32-byte seed and nothing else.
import binascii

from app import flash
from onestop.protocol import ed25519

KEY_FILE = "kiosk.key"


class KeystoreError(Exception):
    pass


def load(path):
    seed = flash.read_bytes(path)
    if seed is None:
        raise KeystoreError("no kiosk key at %s: provision the kiosk first" % path)
    if len(seed) != ed25519.SEED_SIZE:
        raise KeystoreError("kiosk key file %s is damaged (%d bytes)" % (path, len(seed)))
    return ed25519.SigningKey(seed)


def generate(path, random_bytes):
    """A new key, written to `path`; refuses to replace an existing one (the gateway trusts it)."""
    if flash.exists(path):
        raise KeystoreError("a kiosk key already exists at %s" % path)
    key = ed25519.generate(random_bytes)
    flash.write_atomic(path, key.seed)
    return key


def public_hex(key):
    return binascii.hexlify(key.public_key).decode()
