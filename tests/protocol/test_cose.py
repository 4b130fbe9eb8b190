"""COSE_Sign1 / EdDSA: what the board signs the gateway verifies, and the other way round."""

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onestop.protocol import cose
from onestop.protocol.errors import ProtocolError

KIOSK_SEED = bytes(range(32))
OTHER_SEED = bytes(range(1, 33))
PAYLOAD = cbor2.dumps({"t": "settle", "confirmed_cash": 193750}, canonical=True)


def public(seed):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_signed_on_micropython_verifies_with_cryptography(micropython_worker, runtime):
    assert micropython_worker.call("sig_keys", "impl") == "protocol.ed25519"
    data = micropython_worker.call("sig_keys", "sign1", PAYLOAD, "HALL-0101", KIOSK_SEED)
    assert runtime.call("sig_keys", "verify1", data, public(KIOSK_SEED)) == PAYLOAD


def test_signed_with_cryptography_verifies_on_micropython(micropython_worker):
    from sig_keys import impl, sign1

    assert impl() == "host.keys"
    data = sign1(PAYLOAD, "gw-2026-01", KIOSK_SEED)
    assert micropython_worker.call("sig_keys", "verify1", data, public(KIOSK_SEED)) == PAYLOAD


def test_both_runtimes_produce_the_same_bytes(micropython_worker):
    from sig_keys import sign1

    assert micropython_worker.call("sig_keys", "sign1", PAYLOAD, "HALL-0101", KIOSK_SEED) == \
        sign1(PAYLOAD, "HALL-0101", KIOSK_SEED)


def test_a_decoded_sign1_keeps_the_bytes_as_received(runtime):
    data = runtime.call("sig_keys", "sign1", PAYLOAD, "网关-01", KIOSK_SEED)
    kid, protected, payload, signature, tbs = runtime.call("proto_calls", "decode1", data)
    assert kid == "网关-01"
    assert protected == bytes.fromhex("a10127")
    assert payload == PAYLOAD
    assert len(signature) == 64
    assert tbs == cbor2.dumps(["Signature1", protected, b"", PAYLOAD])
    Ed25519PrivateKey.from_private_bytes(KIOSK_SEED).public_key().verify(signature, tbs)


def test_another_key_does_not_verify(runtime):
    data = runtime.call("sig_keys", "sign1", PAYLOAD, "HALL-0101", OTHER_SEED)
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "verify1", data, public(KIOSK_SEED))
    assert info.value.code == "bad_signature"


def test_a_changed_payload_does_not_verify(runtime):
    outer = cbor2.loads(runtime.call("sig_keys", "sign1", PAYLOAD, "HALL-0101", KIOSK_SEED))
    parts = list(outer.value)
    parts[2] = PAYLOAD.replace(b"\x1a\x00\x02\xf4\xd6", b"\x1a\x00\x00\x00\x01")  # cash 1 fen
    assert parts[2] != PAYLOAD
    forged = cbor2.dumps(cbor2.CBORTag(18, parts), canonical=True)
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "verify1", forged, public(KIOSK_SEED))
    assert info.value.code == "bad_signature"


@pytest.mark.parametrize("kid", ["", "k" * 65, "键" * 22])
def test_unusable_kids_are_refused_when_signing(runtime, kid):
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "sign1", PAYLOAD, kid, KIOSK_SEED)
    assert info.value.code == "cose_bad_kid"


def test_a_signer_returning_a_short_signature_is_refused():
    class Broken:
        def sign(self, msg):
            return b"\x00" * 63

    with pytest.raises(ProtocolError) as info:
        cose.sign1(PAYLOAD, "HALL-0101", Broken())
    assert info.value.code == "cose_malformed"


def test_a_verifier_is_given_the_sig_structure_and_signature():
    seen = []

    class Recording:
        def sign(self, msg):
            seen.append(msg)
            return b"\x01" * 64

        def verify(self, msg, sig):
            seen.append((msg, sig))
            return True

    signer = Recording()
    sign1 = cose.decode1(cose.sign1(b"p", "k", signer))
    assert cose.verify1(sign1, signer) == b"p"
    assert seen == [sign1.to_be_signed(), (sign1.to_be_signed(), b"\x01" * 64)]
