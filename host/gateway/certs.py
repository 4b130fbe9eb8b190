"""Gateway key certificates: the operator's offline authority key vouches for a gateway key.

    kiosk gateway authority-init --out FILE
    kiosk gateway certify --authority FILE --key GATEWAY_KEY [--serial N] [--db URL]

A cert is a COSE_Sign1 by the authority (kid `auth-` + 8 hex digits of its public key) whose
payload is a frames.cddl gateway_cert: the gateway key's kid, its public key and a serial that
grows by one at each rotation. It is kept beside the gateway's key file (GATEWAY_KEY + ".cert",
public: no secret in it); `kiosk gateway serve` sends it in each sign_in_reply, and a kiosk
provisioned with the authority's public key (`kiosk fw provision --authority-public-key`)
moves to the cert's key when its serial is above the one it trusts (app/link.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from onestop.protocol import messages
from onestop.protocol.errors import ProtocolError

CERT_SUFFIX = ".cert"


class CertError(Exception):
    """A cert file that cannot be used; the message says why."""


@dataclass(frozen=True)
class Cert:
    data: bytes  # the COSE_Sign1 bytes, as sent
    authority: str  # the authority's kid
    kid: str  # the gateway key's kid
    key: bytes  # its public key
    serial: int


def authority_kid(public_key: bytes) -> str:
    return "auth-" + public_key.hex()[:8]


def cert_path(key_path: Path) -> Path:
    """Where the cert of the gateway key at `key_path` is kept."""
    return key_path.with_name(key_path.name + CERT_SUFFIX)


def parse(data: bytes, where: str = "cert") -> Cert:
    """A cert's contents, its record checked (not its signature: the gateway has no need of the
    authority's public key)."""
    try:
        sign1, record = messages.read_cert(data)
    except ProtocolError as exc:
        raise CertError(f"{where} is not a gateway key certificate ({exc})") from None
    return Cert(bytes(data), sign1.kid, record["kid"], bytes(record["key"]), record["serial"])


def load(path: Path) -> Cert | None:
    """The cert at `path`, or None if there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CertError(f"cannot read {path}: {exc.strerror}") from None
    return parse(data, str(path))


def write(path: Path, data: bytes) -> None:
    """Replace the cert at `path`, all or nothing (mode 0644: it holds no secret)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
