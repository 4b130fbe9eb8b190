"""Where the gateway's durable state lives: the ledger URL and the gateway's key file.

Ledger URLs:
- ``sqlite:///PATH`` — the embedded ledger in one file. PATH is taken as written after the third
  slash, so ``sqlite:///ledger.sqlite`` is relative to the working directory and
  ``sqlite:////var/lib/onestop/ledger.sqlite`` is absolute. A bare filesystem path (no ``://``)
  means the same as ``sqlite:///`` + that path.
- ``postgresql://USER@HOST:PORT/DB`` (or ``postgres://``) — a ledger shared by many gateways.
  Add ``?schema=NAME`` to keep the ledger's tables in schema NAME (created by ``init``); the
  plain libpq form ``?options=-csearch_path%3DNAME`` works too, but the schema must then exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

# Settlement days are China's (UTC+8), as the kiosks' clocks show them (firmware/app/clock.py)
# and the national platform reconciles them: a gateway host running on UTC must not book the
# hours 00:00-08:00 to the day (or, on 1 January, the year) before.
SETTLEMENT_TIMEZONE = "Asia/Shanghai"

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
GATEWAY_KEY_FILE = "gateway.key"
SECRET_PARAMETERS = frozenset({"password", "sslpassword"})  # libpq URI parameters


class LedgerUrlError(ValueError):
    """The ledger URL cannot be understood."""


@dataclass(frozen=True)
class LedgerLocation:
    backend: str  # "sqlite" | "postgresql"
    path: Path | None = None  # sqlite: the database file
    dsn: str | None = None  # postgresql: the libpq connection URL, without our `schema` option
    schema: str | None = None  # postgresql: the schema holding the ledger's tables


def parse_ledger_url(url: str) -> LedgerLocation:
    """Where `url` points; raises LedgerUrlError with the reason."""
    if not url:
        raise LedgerUrlError("no ledger given: pass --db sqlite:///PATH or postgresql://...")
    bad_sqlite = LedgerUrlError(
        f"bad SQLite ledger URL {url!r}: write sqlite:///PATH (a file; the ledger must be "
        "durable, so there is no in-memory form)"
    )
    if "://" not in url:
        if url.lower().startswith("sqlite:"):  # sqlite:/x or sqlite:x: a URL mistyped
            raise bad_sqlite
        path = url
    elif url.split("://", 1)[0].lower() == "sqlite":
        if not url.startswith(SQLITE_PREFIX):
            raise bad_sqlite
        path = url[len(SQLITE_PREFIX) :]
    else:
        scheme = url.split("://", 1)[0].lower()
        if scheme in POSTGRES_SCHEMES:
            return _postgres_location(url)
        raise LedgerUrlError(
            f"unknown ledger URL scheme {scheme!r}: use sqlite:/// or postgresql://")
    # SQLite's own forms (":memory:", "file:..." URIs) would not be the file they look like
    if not path or path.startswith((":memory:", "file:")) or "?" in path:
        raise bad_sqlite
    return LedgerLocation(backend="sqlite", path=Path(path))


def _postgres_location(url: str) -> LedgerLocation:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for name, value in query if name == "schema"]
    rest = [(name, value) for name, value in query if name != "schema"]
    if len(schemas) > 1:
        raise LedgerUrlError("give the ledger's schema once (?schema=NAME)")
    schema = schemas[0] if schemas else None
    if schema is not None:
        if not SCHEMA_NAME.fullmatch(schema):
            raise LedgerUrlError(
                f"bad schema name {schema!r}: 1 to 63 lower-case letters, digits and _, not "
                "starting with a digit"
            )
        if any(name == "options" for name, _ in rest):
            raise LedgerUrlError("give either ?schema=NAME or ?options=..., not both")
    # %20, not +, for spaces (libpq does not read + as one: "-c a=1 -c b=2" in ?options=)
    dsn = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
    return LedgerLocation(backend="postgresql", dsn=dsn, schema=schema)


def describe(url: str) -> str:
    """The URL fit for messages and logs: any password replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unreadable ledger URL>"
    # libpq also takes the password as a query parameter (and a key's passphrase)
    query = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any(name in SECRET_PARAMETERS for name, _ in query)
    if parts.password is None and not secret_query:
        return url  # as given (urlunsplit would drop sqlite:///'s empty host)
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(":" + parts.password + "@", ":***@", 1))
    if secret_query:
        masked = [(name, "***" if name in SECRET_PARAMETERS else value) for name, value in query]
        parts = parts._replace(query=urlencode(masked, safe="*", quote_via=quote))
    return urlunsplit(parts)


def where(url: str) -> str:
    """`describe(url)`, and for SQLite the file it names: ``sqlite:///tmp/x`` is the relative
    path tmp/x, which the operator who meant /tmp/x must see at once."""
    try:
        location = parse_ledger_url(url)
    except LedgerUrlError:
        return describe(url)
    if location.path is None:
        return describe(url)
    return f"{describe(url)} (the file {location.path.resolve()})"


def relative_hint(path: Path) -> str:
    """For a relative SQLite path that is missing: the absolute one it may have been meant as
    (sqlite:///tmp/x is tmp/x here; /tmp/x needs four slashes)."""
    if path.is_absolute() or not Path("/", path).exists():
        return ""
    return (f" (sqlite:///{path} is relative to the working directory: for the file "
            f"/{path} write sqlite:////{path})")


def default_key_path(url: str) -> Path | None:
    """The gateway's key file for a ledger: ``gateway.key`` beside an SQLite database file.

    None for PostgreSQL: a shared ledger has no natural place for a gateway's private key, so it
    must be given explicitly (--key).
    """
    location = parse_ledger_url(url)
    if location.backend != "sqlite" or location.path is None:
        return None
    return location.path.parent / GATEWAY_KEY_FILE
