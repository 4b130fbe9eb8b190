"""Ed25519 keys on the host, backed by libsodium (PyNaCl).

The interface is the board's (onestop.protocol.ed25519): `SigningKey(seed).sign(msg)`,
`.public_key`; `VerifyingKey(public_key).verify(msg, sig) -> bool`; so protocol code that is
handed a signer or a verifier runs the same on either side.

libsodium rather than OpenSSL (`cryptography`): the gateway verifies one signature per request
and signs one or two per reply, the largest share of its CPU, and libsodium does both about
twice as fast (verify 60 us against 118 us here; `kiosk bench protocol` prints both). Its
verification is also the strict one: besides S < L (which OpenSSL checks too) it refuses
small-order public keys and R points, so no signature verifies under a degenerate key.

A signing key is stored on disk as its 32-byte seed in hex, in a file only its owner may read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nacl.bindings import (
    crypto_core_ed25519_is_valid_point,
    crypto_sign,
    crypto_sign_open,
    crypto_sign_seed_keypair,
)
from nacl.exceptions import BadSignatureError

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
KEY_FILE_MODE = 0o600


class SigningKey:
    """An Ed25519 private key from its 32-byte seed; signatures are deterministic."""

    __slots__ = ("_secret", "seed", "public_key")

    def __init__(self, seed: bytes) -> None:
        seed = bytes(seed)
        if len(seed) != SEED_SIZE:
            raise ValueError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
        self.public_key, self._secret = crypto_sign_seed_keypair(seed)  # secret: seed || pk
        self.seed = seed

    @classmethod
    def generate(cls) -> SigningKey:
        """A new key from the operating system's random source."""
        return cls(os.urandom(SEED_SIZE))

    def sign(self, msg: bytes) -> bytes:
        """The 64-byte signature R || S of msg."""
        return crypto_sign(bytes(msg), self._secret)[:SIGNATURE_SIZE]  # libsodium: sig || msg

    def __repr__(self) -> str:  # never show the seed
        return f"SigningKey(public_key={self.public_key.hex()})"


class VerifyingKey:
    """An Ed25519 public key. Any 32 bytes are accepted here; bytes that are not a curve point
    (or a point of small order) simply verify nothing."""

    __slots__ = ("public_key",)

    def __init__(self, public_key: bytes) -> None:
        public_key = bytes(public_key)
        if len(public_key) != PUBLIC_KEY_SIZE:
            raise ValueError(
                f"an Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}"
            )
        self.public_key = public_key

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """True only if sig is a valid signature of msg by this key."""
        if len(sig) != SIGNATURE_SIZE:
            return False
        try:
            crypto_sign_open(bytes(sig) + bytes(msg), self.public_key)
        except BadSignatureError:
            return False
        return True

    def __repr__(self) -> str:
        return f"VerifyingKey({self.public_key.hex()})"


def usable_public_key(public_key: bytes) -> bool:
    """Whether 32 bytes are a public key something can be verified under: the canonical
    encoding of a curve point of large order (what `SigningKey` makes)."""
    return len(public_key) == PUBLIC_KEY_SIZE and bool(
        crypto_core_ed25519_is_valid_point(bytes(public_key)))


class KeyFileError(Exception):
    """A signing-key file that is missing, unsafe or not a key; the message says which."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"signing key file {os.fspath(path)}: {problem}")
        self.path = Path(path)
        self.problem = problem


def save_signing_key(
    path: str | os.PathLike[str], key: SigningKey, *, overwrite: bool = False
) -> None:
    """Write key's seed (hex) to path, readable by its owner only.

    The file is created with mode 0600 from the start, never wider. An existing file is kept
    (FileExistsError) unless overwrite is set; then the new key is written beside it and renamed
    over it, so a crash leaves either the old key or the new one.
    """
    path = Path(path)
    data = (key.seed.hex() + "\n").encode("ascii")
    if not overwrite:
        _write_new(path, data)
    else:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            _write_new(tmp, data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _sync_directory(path.parent)


def _write_new(path: Path, data: bytes) -> None:
    # O_EXCL: never reuse (or follow a symlink to) an existing file whose mode could be wider.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    """The SigningKey stored at path by save_signing_key.

    Raises KeyFileError if the file is missing, is not a regular file, can be read or written by
    anyone but its owner, or does not hold exactly 64 hex digits.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyFileError(path, "does not exist") from None
    except PermissionError:
        raise KeyFileError(path, "cannot be read by this user") from None
    try:
        info = os.fstat(fd)  # the file actually opened, not whatever the path names later
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(path, "is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                path,
                f"is accessible to group or others (mode {mode:04o}); "
                f"a signing key must be private: chmod 600 {os.fspath(path)}",
            )
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    text = raw.strip()
    try:
        seed = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        seed = b""
    if len(text) != 2 * SEED_SIZE or len(seed) != SEED_SIZE:
        # The content is secret: describe it, never echo it.
        raise KeyFileError(path, f"malformed: expected {2 * SEED_SIZE} hex digits (a 32-byte seed)")
    return SigningKey(seed)
