"""Host Ed25519 keys (libsodium, through PyNaCl) and their key files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from onestop.host import keys
from onestop.host.keys import KeyFileError, SigningKey, VerifyingKey, load_signing_key
from onestop.host.keys import save_signing_key as save
from onestop.protocol import ed25519

SEED = bytes(range(32))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """A umask that would let a careless writer create a world-readable file."""
    old = os.umask(0)
    yield
    os.umask(old)


# ---------------------------------------------------------------- keys
def test_signature_verifies_and_matches_the_board_implementation_byte_for_byte():
    key = SigningKey(SEED)
    board = ed25519.SigningKey(SEED)
    msg = b"settle KIOSK-01 txn 20260101-0001"
    sig = key.sign(msg)
    assert key.public_key == board.public_key
    assert sig == board.sign(msg)
    assert VerifyingKey(key.public_key).verify(msg, sig)
    assert ed25519.VerifyingKey(key.public_key).verify(msg, sig)


def test_verify_is_false_for_a_changed_message_signature_or_key():
    key = SigningKey(SEED)
    sig = key.sign(b"msg")
    verifier = VerifyingKey(key.public_key)
    assert not verifier.verify(b"msh", sig)
    assert not verifier.verify(b"msg", bytes([sig[0] ^ 1]) + sig[1:])
    assert not verifier.verify(b"msg", sig[:63])
    assert not verifier.verify(b"msg", sig + b"\x00")
    assert not VerifyingKey(SigningKey.generate().public_key).verify(b"msg", sig)


def test_bytes_that_are_no_curve_point_make_a_key_that_verifies_nothing():
    not_canonical = (2**255 - 19 + 1).to_bytes(32, "little")
    assert not VerifyingKey(not_canonical).verify(b"msg", SigningKey(SEED).sign(b"msg"))


def test_a_small_order_key_verifies_nothing_not_even_the_signature_any_message_would_pass():
    # The identity point as public key and as R, with S = 0: [S]B = R + [k]A holds for every
    # message, so a lax verifier accepts it. A kiosk enrolled with such a key could "sign"
    # anything; the host refuses it.
    identity = (1).to_bytes(32, "little")
    forged = identity + bytes(32)
    assert not VerifyingKey(identity).verify(b"settle anything", forged)
    assert not VerifyingKey(identity).verify(b"", forged)


def test_generated_keys_are_fresh_and_complete():
    a, b = SigningKey.generate(), SigningKey.generate()
    assert a.seed != b.seed
    assert len(a.seed) == 32 and len(a.public_key) == 32
    assert SigningKey(a.seed).public_key == a.public_key


def test_wrong_lengths_are_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        SigningKey(b"\x00" * 31)
    with pytest.raises(ValueError, match="32 bytes"):
        VerifyingKey(b"\x00" * 33)


def test_repr_never_shows_the_seed():
    key = SigningKey(SEED)
    assert SEED.hex() not in repr(key)
    assert key.public_key.hex() in repr(key)


# ---------------------------------------------------------------- key files
def test_saved_key_is_owner_only_and_loads_back(tmp_path, open_umask):
    path = tmp_path / "kiosk.key"
    save(path, SigningKey(SEED))
    assert mode_of(path) == 0o600
    assert path.read_text() == SEED.hex() + "\n"
    assert load_signing_key(path).public_key == SigningKey(SEED).public_key


def test_key_file_is_created_0600_from_the_start(tmp_path, monkeypatch, open_umask):
    """Not created wider and narrowed afterwards: every create asks the OS for 0600."""
    created = []
    real_open = os.open

    def spying_open(path, flags, mode=0o777, *args, **kwargs):
        if flags & os.O_CREAT:
            created.append(mode)
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(keys.os, "open", spying_open)
    save(tmp_path / "a.key", SigningKey(SEED))
    save(tmp_path / "a.key", SigningKey.generate(), overwrite=True)
    assert created == [0o600, 0o600]


def test_an_existing_key_is_not_overwritten_unless_asked(tmp_path, open_umask):
    path = tmp_path / "kiosk.key"
    save(path, SigningKey(SEED))
    with pytest.raises(FileExistsError):
        save(path, SigningKey.generate())
    assert load_signing_key(path).seed == SEED

    replacement = SigningKey.generate()
    save(path, replacement, overwrite=True)
    assert load_signing_key(path).seed == replacement.seed
    assert mode_of(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kiosk.key"]  # no temp file left


def test_saving_never_follows_a_planted_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    link = tmp_path / "kiosk.key"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        save(link, SigningKey(SEED))
    assert not target.exists()


def test_missing_key_file_is_a_clear_error(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist") as info:
        load_signing_key(tmp_path / "nope.key")
    assert str(tmp_path / "nope.key") in str(info.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_key_file_others_can_reach_is_refused(tmp_path, mode):
    path = tmp_path / "kiosk.key"
    save(path, SigningKey(SEED))
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="chmod 600") as info:
        load_signing_key(path)
    assert f"{mode:04o}" in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"", b"abcd\n", SEED.hex()[:-1].encode() + b"g", SEED.hex().encode() + b"00",
     b"\xff" * 64, (SEED.hex()[:32] + " " + SEED.hex()[32:]).encode()],
    ids=["empty", "short", "not-hex", "long", "binary", "space-inside"],
)
def test_malformed_key_file_is_refused_without_echoing_it(tmp_path, content):
    path = tmp_path / "kiosk.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(KeyFileError, match="malformed") as info:
        load_signing_key(path)
    if content:
        assert content.decode("latin-1").strip() not in str(info.value)


def test_surrounding_whitespace_in_a_key_file_is_fine(tmp_path):
    path = tmp_path / "kiosk.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"  " + SEED.hex().upper().encode() + b"\r\n")
    os.close(fd)
    assert load_signing_key(path).seed == SEED


def test_a_directory_is_not_a_key_file(tmp_path):
    (tmp_path / "keys").mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_signing_key(tmp_path / "keys")
