# Importable on both runtimes: Ed25519 signing for tests, keys made from 32-byte seeds so that
# only seeds and bytes cross the runtime boundary. CPython signs with `cryptography` (through
# onestop.host.keys), MicroPython with the pure-Python protocol/ed25519.py, so a test that
# signs on one runtime and verifies on the other crosses implementations.
try:
    from onestop.host.keys import SigningKey, VerifyingKey

    IMPL = "host.keys"
except ImportError:  # MicroPython: onestop.host is not on its path
    from onestop.protocol.ed25519 import SigningKey, VerifyingKey

    IMPL = "protocol.ed25519"

from onestop.protocol import cose, messages
from onestop.protocol.errors import ProtocolError


def impl():
    return IMPL


def public_key(seed):
    return SigningKey(seed).public_key


def sign1(payload, kid, seed):
    return cose.sign1(payload, kid, SigningKey(seed))


def verify1(data, pub):
    """The payload of a COSE_Sign1 checked against public key `pub`."""
    return cose.verify1(cose.decode1(data), VerifyingKey(pub))


def seal(msg, kid, seed):
    return messages.seal(msg, kid, SigningKey(seed))


def open(data, pubs):
    """messages.open with a key table {kid: public key}."""
    def key_for(kid):
        if kid not in pubs:
            raise ProtocolError("unknown_kiosk", "no key for " + kid)
        return VerifyingKey(pubs[kid])

    return messages.open(data, key_for)


def seal_settlement(record, kid, seed):
    return messages.seal_settlement(record, kid, SigningKey(seed))


def open_settlement(data, pub):
    return messages.open_settlement(data, VerifyingKey(pub))


def seal_cert(record, kid, seed):
    return messages.seal_cert(record, kid, SigningKey(seed))


def open_cert(data, authority_kid, pub):
    return messages.open_cert(data, authority_kid, VerifyingKey(pub))
