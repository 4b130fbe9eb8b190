"""`kiosk gateway ...` (the operator's commands for the ledger) and `kiosk keys list`.

    kiosk gateway init --db URL [--key PATH] [--gateway-id ID]
    kiosk gateway enroll --db URL --kiosk-id ID --public-key HEX
    kiosk gateway revoke --db URL --kiosk-id ID
    kiosk gateway authority-init --out FILE
    kiosk gateway certify --authority FILE --key GATEWAY_KEY --serial N [--db URL]
    kiosk gateway import-bills --db URL FILE.json
    kiosk gateway seed-demo --db URL
    kiosk gateway audit --db URL [--json]
    kiosk gateway reconcile --db URL --date YYYY-MM-DD [--json]
    kiosk gateway verify-receipt --db URL [TEXT | -] [--json]
    kiosk gateway lookup --db URL (--id-number N [--days N] | --txn-id T | --setl-id S |
                                   --kiosk ID [--date YYYY-MM-DD]) [--operator NAME] [--json]
    kiosk gateway lookups --db URL [--days N] [--id-number N | --psn-no P] [--json]
    kiosk gateway backup --db URL --to FILE
    kiosk keys list --db PATH_OR_URL [--json]

`kiosk gateway serve` is added by serve_cli.py. Exit status: 0 done, 1 refused or failed (the
message says why), 2 bad usage. ID numbers are only ever printed masked.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import re
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from onestop.host.settlement.vocabulary import (
    ASSISTANCE_CATEGORIES,
    CATALOGUE_CLASSES,
    HOSPITAL_LEVELS,
    MED_TYPES,
    SETTLED_INSURANCE_TYPES,
)

from .config import SETTLEMENT_TIMEZONE

if TYPE_CHECKING:
    from .ledger.base import Ledger, SignIn

KIOSK_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")  # frames.cddl kiosk_id_text
PUBLIC_KEY_HEX = re.compile(r"[0-9a-fA-F]{64}")
DB_HELP = "ledger: sqlite:///PATH, a file path, or postgresql://...[?schema=NAME]"


class CommandError(Exception):
    """A refusal to report as one line on stderr, with exit status 1."""


def register(sub: argparse._SubParsersAction) -> None:
    gateway = sub.add_parser("gateway", help="the gateway: ledger, keys, bills, audit, serve")
    commands = gateway.add_subparsers(dest="gateway_command", metavar="COMMAND")
    _add_init(commands)
    _add_upgrade(commands)
    _add_enroll(commands)
    _add_revoke(commands)
    _add_authority_init(commands)
    _add_certify(commands)
    _add_import_bills(commands)
    _add_seed_demo(commands)
    _add_audit(commands)
    _add_reconcile(commands)
    _add_verify_receipt(commands)
    _add_lookup(commands)
    _add_backup(commands)
    _add_serve(commands)
    gateway.set_defaults(func=lambda _args: (gateway.print_help(), 2)[1])

    keys = sub.add_parser("keys", help="the keys the gateway trusts")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND")
    listing = key_commands.add_parser("list", help="list gateway and kiosk public keys")
    listing.add_argument("--db", required=True, metavar="PATH_OR_URL", help=DB_HELP)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_guarded("keys list", keys_list))
    keys.set_defaults(func=lambda _args: (keys.print_help(), 2)[1])


def _add_serve(commands: argparse._SubParsersAction) -> None:
    try:
        serve_cli = importlib.import_module("onestop.host.gateway.serve_cli")
    except ModuleNotFoundError as exc:
        if exc.name != "onestop.host.gateway.serve_cli":
            raise
        return  # not part of this build
    serve_cli.register_serve(commands)


def _add_backup(commands: argparse._SubParsersAction) -> None:
    from .backup_cli import register_backup  # it imports this module's helpers

    register_backup(commands)


def _db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, metavar="URL", help=DB_HELP)


def _guarded(name: str, command: Callable[[argparse.Namespace], int]):
    """Run a command, turning the errors an operator can act on into one line and status 1."""

    def run(args: argparse.Namespace) -> int:
        from onestop.host.keys import KeyFileError

        from .bills import BillFileError
        from .config import LedgerUrlError
        from .ledger.base import BillUnavailable, LedgerError

        try:
            return command(args)
        except (CommandError, LedgerError, LedgerUrlError, BillFileError, KeyFileError,
                BillUnavailable) as exc:  # BillUnavailable: settled meanwhile at a kiosk
            print(f"kiosk {name}: {exc}", file=sys.stderr)
            return 1
        except ValueError as exc:  # the ledger refusing a record, with its reason
            print(f"kiosk {name}: {exc}", file=sys.stderr)
            return 1

    return run


def _open(url: str, create: bool = False) -> closing[Ledger]:
    """The ledger at `url`, closed when the `with` block ends."""
    from .ledger import open_ledger

    ledger = open_ledger(url, create=create)
    if not create:  # `init` checks for itself
        try:
            ledger.check_schema()  # code older than its ledger must not use it
        except BaseException:
            ledger.close()
            raise
    return closing(ledger)


# ---------------------------------------------------------------------------- upgrade
def _add_upgrade(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "upgrade",
        help="bring a ledger made by an earlier Onestop up to date (no keys are touched)",
        description="Add the tables and indexes this version's ledger schema has and an "
        "earlier one's lacks (nothing stored changes; no key "
        "is made or enrolled). Run it once after upgrading, "
        "with every gateway on the ledger stopped: one still running the earlier version "
        "would not keep what the new one needs.",
    )
    _db(parser)
    parser.set_defaults(func=_guarded("gateway upgrade", gateway_upgrade))


def gateway_upgrade(args: argparse.Namespace) -> int:
    from .config import where
    from .ledger import open_ledger

    with closing(open_ledger(args.db, create=False)) as ledger:
        before = ledger.upgrade()
    if before is None:
        print(f"ledger {where(args.db)} is up to date")
    else:
        print(f"ledger {where(args.db)} brought from schema version {before} up to date")
    return 0


# ---------------------------------------------------------------------------- init
def _add_init(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "init",
        help="create the ledger and the gateway's signing key",
        description="Create the ledger (idempotent) and the gateway's Ed25519 key: a new key "
        "file (mode 0600) whose public key is recorded in the ledger. An existing key file is "
        "never overwritten.",
    )
    _db(parser)
    parser.add_argument(
        "--key", type=Path, metavar="PATH",
        help="the gateway's key file (default: gateway.key beside an SQLite ledger; required "
        "for PostgreSQL)",
    )  # fmt: skip
    parser.add_argument(
        "--gateway-id", metavar="ID", help="the gateway's key id (default gw- + 8 hex digits)"
    )
    parser.set_defaults(func=_guarded("gateway init", gateway_init))


def gateway_init(args: argparse.Namespace) -> int:
    from onestop.host.keys import SigningKey, load_signing_key, save_signing_key

    from .config import default_key_path, parse_ledger_url, where
    from .ledger.base import KeyRecord

    if args.gateway_id is not None and not KIOSK_ID.fullmatch(args.gateway_id):
        raise CommandError("--gateway-id must be 1-32 letters, digits, '_' or '-'")
    location = parse_ledger_url(args.db)
    key_path = args.key or default_key_path(args.db)
    if key_path is None:
        raise CommandError("a PostgreSQL ledger needs --key PATH for the gateway's key file")
    # the key first: a key that cannot be read or made must not leave a ledger without one
    existing = key_path.exists()
    key = load_signing_key(key_path) if existing else SigningKey.generate()
    path = location.path
    if path is not None and not path.is_absolute() and not path.parent.exists() \
            and Path("/", path.parent).is_dir():
        # sqlite:///tmp/x means tmp/x here: new folders and a second gateway identity there,
        # beside a real /tmp, are a slip of one slash
        raise CommandError(
            f"sqlite:///{path} is {path} in the working directory, which has no folder "
            f"{path.parent}: for the file /{path} write sqlite:////{path} (or make the folder "
            "here first)")
    for folder in {key_path.parent, *([location.path.parent] if location.path else [])}:
        try:
            # new folders its owner's only whatever the umask: they hold the key and ledger
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"cannot make the folder {folder}: {exc.strerror}") from None
    with _open(args.db, create=True) as ledger:
        ledger.init()
        # run again without the --gateway-id it was first given, the key keeps its id
        enrolled = ledger.key_with_public_key(key.public_key)
        kid = args.gateway_id or (enrolled.kid if enrolled is not None and
                                  enrolled.role == "gateway" else
                                  "gw-" + key.public_key.hex()[:8])
        known = ledger.get_key(kid)
        if known is not None and known.public_key != key.public_key:
            raise CommandError(f"the ledger already has a different key with id {kid}")
        if known is not None and known.status == "revoked":  # init must not reinstate it
            raise CommandError(f"gateway key {kid} ({key_path}) was revoked: make a new one "
                               "with --key NEW_PATH")
        if not existing:
            try:
                save_signing_key(key_path, key)
            except FileExistsError:
                # absent when this run began: made meanwhile, most likely by a second init run
                # at the same moment, which records its own key in the ledger
                raise CommandError(
                    f"another process made the key file {key_path} while this init ran (a "
                    "second `kiosk gateway init` at the same moment?); it is kept as it is and "
                    "this run recorded no key: if that was intended, nothing needs doing; to "
                    "check, run this command again: it keeps that key file and prints the "
                    "gateway key the ledger has") from None
            except OSError as exc:
                raise CommandError(f"cannot write the key file {key_path}: {exc.strerror}"
                                   ) from None
        others = [k.kid for k in ledger.list_keys()
                  if k.role == "gateway" and k.status == "active" and k.kid != kid]
        ledger.add_key(KeyRecord(kid=kid, role="gateway", public_key=key.public_key,
                                 status="active"))  # fmt: skip
        exposed = ledger.exposure()
    print(f"ledger ready: {where(args.db)}")
    if exposed is not None:
        print(f"warning: {exposed}")
    if existing:
        print(f"gateway key {kid}: kept the existing key file {key_path} (never overwritten)")
    else:
        print(f"gateway key {kid}: created {key_path} (mode 0600)")
    print(f"gateway public key: {key.public_key.hex()}")
    if others:
        # A second gateway key is a key rotation under way, or a slip: kiosks trust one key.
        print(f"note: gateway key {', '.join(others)} is active in this ledger too; each kiosk "
              "trusts one gateway key (kiosk fw provision --gateway-public-key): kiosks "
              f"provisioned with {', '.join(others)} refuse replies signed with {kid}, unless "
              "they were provisioned with the authority key (--authority-public-key) and it "
              f"certifies {kid}. To rotate: `kiosk gateway certify --authority FILE --key "
              f"{key_path} --serial N` (N one above the last cert's), serve with {key_path}, "
              "then revoke the old key (README: rotating the gateway key); otherwise serve "
              f"with the old key's file and `kiosk gateway revoke --gateway-id {kid}`",
              file=sys.stderr)
    return 0


MAX_CERT_SERIAL = 2**63 - 1  # a ledger's INTEGER; the frames hold up to 2**64 - 1
# Serials count rotations and kiosks refuse any lower one for good, so a jump this far above
# the last known cert's is taken for a slip of the keyboard.
MAX_SERIAL_STEP = 1_000


# ---------------------------------------------------------------------------- enroll, revoke
def _add_enroll(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("enroll", help="trust a kiosk's public key")
    _db(parser)
    parser.add_argument("--kiosk-id", required=True, metavar="ID")
    parser.add_argument("--public-key", required=True, metavar="HEX",
                        help="the kiosk's Ed25519 public key, 64 hex digits")  # fmt: skip
    parser.set_defaults(func=_guarded("gateway enroll", gateway_enroll))


def _kiosk_id(value: str) -> str:
    if not KIOSK_ID.fullmatch(value):
        raise CommandError(f"kiosk id {value!r}: 1-32 letters, digits, '_' or '-'")
    return value


def gateway_enroll(args: argparse.Namespace) -> int:
    from onestop.host.keys import usable_public_key

    from .ledger.base import KeyRecord

    kiosk_id = _kiosk_id(args.kiosk_id)
    if not PUBLIC_KEY_HEX.fullmatch(args.public_key):
        raise CommandError("--public-key must be 64 hex digits (a 32-byte Ed25519 public key)")
    public_key = bytes.fromhex(args.public_key)
    if not usable_public_key(public_key):
        raise CommandError("--public-key is not a usable Ed25519 public key (not a point of the "
                           "curve, or one of small order); copy it again from `kiosk fw "
                           "provision`")
    with _open(args.db) as ledger:
        known = ledger.get_key(kiosk_id)
        if known is not None and known.status == "revoked" and known.role != "kiosk":
            raise CommandError(f"{kiosk_id} is already enrolled, as a {known.role} key "
                               "(revoked): give the kiosk an id of its own")
        if known is not None and known.status == "revoked":
            raise CommandError(
                f"{kiosk_id} was revoked; a revoked kiosk is not reinstated — enrol the board "
                "under a new kiosk id"
            )
        if known is not None and known.public_key == public_key and known.role == "kiosk":
            print(f"{kiosk_id} is already enrolled with this key")
            return 0
        ledger.add_key(KeyRecord(kid=kiosk_id, role="kiosk", public_key=public_key,
                                 status="active"))  # fmt: skip
    print(f"enrolled kiosk {kiosk_id} (public key {public_key.hex()})")
    return 0


def _add_revoke(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "revoke", help="stop trusting a kiosk, or a gateway key that leaked (it stays listed)")
    _db(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--kiosk-id", metavar="ID")
    which.add_argument("--gateway-id", metavar="KID",
                       help="a gateway key (kiosk keys list): gateways stop serving with it")
    parser.set_defaults(func=_guarded("gateway revoke", gateway_revoke))


def gateway_revoke(args: argparse.Namespace) -> int:
    if args.gateway_id is not None:
        return _revoke_gateway_key(args)
    kiosk_id = _kiosk_id(args.kiosk_id)
    with _open(args.db) as ledger:
        known = ledger.get_key(kiosk_id)
        if known is not None and known.role == "gateway":
            raise CommandError(f"{kiosk_id} is a gateway key, not a kiosk's: revoke it with "
                               f"--gateway-id {kiosk_id}")
        if known is None:
            raise CommandError(f"no kiosk {kiosk_id} is enrolled")
        if known.status == "revoked":
            print(f"kiosk {kiosk_id} was already revoked")
            return 0
        ledger.set_key_status(kiosk_id, "revoked")
    print(f"revoked kiosk {kiosk_id}: its frames are refused from now on")
    return 0


def _revoke_gateway_key(args: argparse.Namespace) -> int:
    """A leaked gateway key: no gateway serves with it again, and a receipt it signs from now
    on is not valid (verify-receipt, audit); what it signed before stays genuine."""
    kid = args.gateway_id
    with _open(args.db) as ledger:
        known = ledger.get_key(kid)
        if known is None or known.role != "gateway":
            raise CommandError(f"no gateway key {kid} in this ledger (kiosk keys list)")
        if known.status == "revoked":
            print(f"gateway key {kid} was already revoked")
            return 0
        ledger.set_key_status(kid, "revoked")
    print(f"revoked gateway key {kid}: gateways serving with it sign no more settlements, stop "
          "within 10 s and refuse to start with it again; start them with a new key (`kiosk "
          "gateway init --key NEW_PATH`), certified by the authority (`kiosk gateway certify`) "
          "for kiosks provisioned with it, or else provision the kiosks with the new key's "
          "--gateway-public-key")
    return 0


# ---------------------------------------------------------------------------- authority, certify
def _add_authority_init(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "authority-init",
        help="make the offline authority key that certifies gateway keys (key rotation)",
        description="Make the operator's authority key (Ed25519, a new file of mode 0600, never "
        "overwritten). Keep it offline: it certifies each new gateway key (`kiosk gateway "
        "certify`), and kiosks provisioned with its public key (`kiosk fw provision "
        "--authority-public-key HEX --authority-kid KID`) move to a certified gateway key at "
        "their next sign-in. Whoever holds it can move every such kiosk to a key of theirs.",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="FILE",
                        help="the new authority key file")
    parser.set_defaults(func=_guarded("gateway authority-init", gateway_authority_init))


def gateway_authority_init(args: argparse.Namespace) -> int:
    from onestop.host.keys import SigningKey, save_signing_key

    from .certs import authority_kid

    if args.out.exists():
        raise CommandError(f"{args.out} exists: an authority key is never overwritten (the "
                           "kiosks are provisioned with its public key)")
    key = SigningKey.generate()
    try:
        save_signing_key(args.out, key)
    except OSError as exc:
        raise CommandError(f"cannot write the key file {args.out}: {exc.strerror}") from None
    kid = authority_kid(key.public_key)
    print(f"authority key {kid}: created {args.out} (mode 0600); keep it offline")
    print(f"authority public key: {key.public_key.hex()}")
    print(f"provision kiosks with: --authority-kid {kid} --authority-public-key "
          f"{key.public_key.hex()}")
    return 0


def _add_certify(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "certify",
        help="certify a gateway key with the authority key (writes GATEWAY_KEY.cert)",
        description="Sign a certificate for the gateway key in --key with the authority key: "
        "its kid, public key and --serial, written beside the key file (KEY.cert). `kiosk "
        "gateway serve` sends it at each sign-in; a kiosk trusting a lower serial moves to this "
        "key. Each rotation's new key takes the serial after the last one's.",
    )
    parser.add_argument("--authority", required=True, type=Path, metavar="FILE",
                        help="the authority key file (kiosk gateway authority-init)")
    parser.add_argument("--key", required=True, type=Path, metavar="GATEWAY_KEY",
                        help="the gateway's key file (kiosk gateway init --key)")
    parser.add_argument("--serial", required=True, type=int, metavar="N",
                        help="1 for the first certified key, one more at each rotation")
    parser.add_argument("--db", metavar="URL",
                        help="the ledger (recommended): the key's kid is taken from it, and "
                        "it records the cert, refusing a key it does not hold as an active "
                        "gateway key, a serial not above every other key's, and another "
                        "authority than the newest cert's")
    parser.add_argument("--new-authority", action="store_true",
                        help="with --db: the newest cert's authority key was lost, and every "
                        "kiosk was provisioned with this one (kiosk fw provision "
                        "--authority-public-key)")
    parser.add_argument("--gateway-id", metavar="KID",
                        help="the gateway key's kid, without --db (default gw- + 8 hex digits "
                        "of its public key, as `kiosk gateway init` names it)")
    parser.set_defaults(func=_guarded("gateway certify", gateway_certify))


def gateway_certify(args: argparse.Namespace) -> int:
    from onestop.host.keys import load_signing_key
    from onestop.protocol import messages

    from . import certs

    if args.serial < 1:
        raise CommandError("--serial must be 1 or more (a kiosk's uncertified key counts as 0)")
    if args.serial > MAX_CERT_SERIAL:  # what the frames and the ledger hold
        raise CommandError(f"--serial {args.serial} is over {MAX_CERT_SERIAL:,}")
    authority = load_signing_key(args.authority)
    gateway = load_signing_key(args.key)
    if authority.public_key == gateway.public_key:
        raise CommandError("--authority and --key are the same key")
    kid = args.gateway_id or "gw-" + gateway.public_key.hex()[:8]
    if args.new_authority and args.db is None:
        raise CommandError("--new-authority goes with --db: the ledger records the change")
    if args.db is not None:
        with _open(args.db) as ledger:
            record = ledger.key_with_public_key(gateway.public_key)
            highest = max((c.serial for c in ledger.gateway_certs().values()), default=None)
        if record is None or record.role != "gateway":
            raise CommandError(f"{args.key} is not a gateway key of this ledger: `kiosk gateway "
                               f"init --db {args.db} --key {args.key}` records it")
        if record.status != "active":
            raise CommandError(f"gateway key {record.kid} ({args.key}) was revoked")
        if args.gateway_id is not None and args.gateway_id != record.kid:
            raise CommandError(f"{args.key} is gateway key {record.kid} in this ledger, "
                               f"not {args.gateway_id}")
        kid = record.kid
    else:
        highest = None
    if not KIOSK_ID.fullmatch(kid):
        raise CommandError("--gateway-id must be 1-32 letters, digits, '_' or '-'")
    path = certs.cert_path(args.key)
    try:
        existing = certs.load(path)
    except certs.CertError:
        existing = None  # replaced below
    if existing is not None and existing.serial > args.serial:
        raise CommandError(f"{path} already certifies this key with serial {existing.serial}: "
                           "a lower one would be refused by every kiosk that has seen it")
    last = max(s for s in (highest, existing and existing.serial, 0) if s is not None)
    if last and args.serial > last + MAX_SERIAL_STEP:
        # a slip of the keyboard: kiosks never go back to a lower serial, so every later
        # rotation would have to go above it
        raise CommandError(f"--serial {args.serial} is more than {MAX_SERIAL_STEP:,} above the "
                           f"last cert's ({last}): give {last + 1}")
    authority_kid = certs.authority_kid(authority.public_key)
    data = messages.seal_cert({"kid": kid, "key": gateway.public_key, "serial": args.serial},
                              authority_kid, authority)
    if args.db is not None:  # recorded first: a cert file is never one the ledger refused
        from .ledger import CertRecord
        with _open(args.db) as ledger:
            try:
                ledger.record_cert(CertRecord(kid, args.serial, authority_kid,
                                              authority.public_key),
                                   replace_authority=args.new_authority)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
    try:
        certs.write(path, data)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None
    print(f"certified gateway key {kid} with serial {args.serial} by authority "
          f"{authority_kid}: wrote {path}")
    if args.db is None:
        print("note: without --db the ledger does not know of this cert: the next rotation's "
              "serial is not checked against it, nor is the cert checked when `serve` starts",
              file=sys.stderr)
    print("restart `kiosk gateway serve` with this key; each kiosk provisioned with the "
          "authority moves to it at its next sign-in (10 minutes at most while it is on)")
    return 0


# ---------------------------------------------------------------------------- keys list
def key_json(record: Any, signed_in: SignIn | None = None, cert: Any = None,
             last_counter: int = 0) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "kid": record.kid,
        "role": record.role,
        "alg": record.alg,
        "public_key": record.public_key.hex(),
        "status": record.status,
    }
    if record.role == "kiosk":
        # the counter of its last frame (0: none yet), what `kiosk fw provision
        # --counter-above` needs once its counter file is lost; its last sign_in: Unix seconds,
        # and what it ran; or nulls
        shown.update(last_counter=last_counter, signed_in_at=signed_in and signed_in.at,
                     fw=signed_in and signed_in.fw, board=signed_in and signed_in.board)
    else:  # its cert as the ledger recorded it (kiosk gateway certify --db), or nulls
        shown.update(cert_serial=cert and cert.serial, certified_by=cert and cert.authority)
    return shown


def keys_list(args: argparse.Namespace) -> int:
    with _open(args.db) as ledger:
        records = ledger.list_keys()
        counters = ledger.last_counters()
        sign_ins = ledger.sign_ins()
        certs = ledger.gateway_certs()
    if args.json:
        print(json.dumps([key_json(r, sign_ins.get(r.kid), certs.get(r.kid),
                                   counters.get(r.kid, 0)) for r in records], indent=2))
        return 0
    if not records:
        print("no keys: run `kiosk gateway init` and `kiosk gateway enroll`")
        return 0
    width = max(len(r.kid) for r in records)
    now = int(datetime.datetime.now().timestamp())
    for record in records:
        # a kiosk's last counter: what `kiosk fw provision --counter-above` needs after its
        # counter file was lost; its last sign-in: whether it is alive
        last = ""
        if record.role == "kiosk":
            last = (f"  last counter {counters.get(record.kid, 0)}  "
                    f"{_signed_in(sign_ins.get(record.kid), now)}")
        elif record.kid in certs:
            cert = certs[record.kid]
            last = f"  cert serial {cert.serial} by {cert.authority}"
        print(f"{record.kid:<{width}}  {record.role:<7}  {record.alg}  "
              f"{record.public_key.hex()}  {record.status}{last}")  # fmt: skip
    return 0


def _signed_in(signed_in: SignIn | None, now: int) -> str:
    """A kiosk's last sign-in for a person: on the settlement day's clock, and how long ago (a
    kiosk signs in at boot and every few minutes after, idle or busy: one not heard of for
    longer is off, cut from the network, or stuck)."""
    if signed_in is None:
        return "never signed in"
    at = datetime.datetime.fromtimestamp(signed_in.at, ZoneInfo(SETTLEMENT_TIMEZONE))
    return (f"signed in {at:%Y-%m-%d %H:%M} {at:%z}, {_ago(now - signed_in.at)} "
            f"({signed_in.fw} on {signed_in.board})")


def _ago(seconds: int) -> str:
    if seconds >= 86400:
        days = seconds // 86400
        return f"{days} day{'s' if days > 1 else ''} ago"
    if seconds >= 3600:
        return f"{seconds // 3600} h ago"
    if seconds >= 60:
        return f"{seconds // 60} min ago"
    return "just now"


# ---------------------------------------------------------------------------- bills
IMPORT_FORMAT = f"""\
a bill (money in integer fen; 1 yuan = 100 fen):
  {{"bill_id": "B-130602-0101", "psn_no": "P101", "fixmedins_name": "保定市第一中心医院",
   "mdtrtarea_admvs": "130602", "med_type": "inpatient", "hosp_lv": 2, "referral": false,
   "date": "2026-11-20",
   "items": [{{"name": "床位费", "class": "A", "amount": 120000}}]}}
  med_type: {", ".join(MED_TYPES)}; hosp_lv: {", ".join(map(str, HOSPITAL_LEVELS))};
  class: {", ".join(CATALOGUE_CLASSES)} (the catalogue: A in scope, B in scope after its
  share paid first, C paid in full by the resident); mdtrtarea_admvs: the 6-digit region
  code where treated; referral: referred there (off-site treatment).
a person (once per resident; matched by card at the kiosk):
  {{"psn_no": "P101", "name": "张三", "ssn": "110101199003070011", "card_no": "HB0000101",
   "insu_admdvs": "130630", "assistance": "none"}}
  assistance: {", ".join(ASSISTANCE_CATEGORIES)}; insu_admdvs: the region code where
  insured; optional "insutype" ({", ".join(map(str, SETTLED_INSURANCE_TYPES))}).
"""

def _add_import_bills(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "import-bills",
        help="import bills (and residents) from the clinics' JSON",
        description='Import a JSON array of bills, or {"persons": [...], "bills": [...]}. '
        "Validated whole before anything is written; importing again changes nothing.",
        epilog=IMPORT_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _db(parser)
    parser.add_argument("file", type=Path, metavar="FILE.json")
    parser.set_defaults(func=_guarded("gateway import-bills", gateway_import_bills))


def _add_seed_demo(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("seed-demo", help="load the demo residents and their bills")
    _db(parser)
    parser.set_defaults(func=_guarded("gateway seed-demo", gateway_seed_demo))


def gateway_import_bills(args: argparse.Namespace) -> int:
    from .bills import import_bills_file

    with _open(args.db) as ledger:
        summary = import_bills_file(ledger, args.file)
    _print_summary(summary)
    return 0


def gateway_seed_demo(args: argparse.Namespace) -> int:
    from .bills import seed_demo

    with _open(args.db) as ledger:
        summary = seed_demo(ledger)
    _print_summary(summary)
    return 0


def _print_summary(summary: Any) -> None:
    from .masking import mask_id

    for person in summary.changed_persons:
        print(f"person {person.psn_no}  {person.name}  ID {mask_id(person.ssn)}  "
              f"card {person.card_no}  {person.assistance}")  # fmt: skip
    for seed in summary.seeded:
        amounts = ", ".join(f"{key} {value}" for key, value in sorted(seed.amounts.items()))
        print(f"accumulations {seed.psn_no} {seed.year}: {amounts} (fen)")
    print("persons: " + _counts(summary.persons) + "; bills: " + _counts(summary.bills))


def _counts(counter: Any) -> str:
    return ", ".join(f"{counter.get(k, 0)} {k}" for k in ("added", "updated", "unchanged"))


# ---------------------------------------------------------------------------- audit
def _add_audit(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "audit",
        help="verify the audit chain and the money invariants",
        description="Exit 0 if the ledger matches its hash-chained audit log and every "
        "settlement adds up; otherwise print each problem and exit 1.",
    )
    _db(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_guarded("gateway audit", gateway_audit))


def gateway_audit(args: argparse.Namespace) -> int:
    from .audit import audit

    with _open(args.db) as ledger:
        report = audit(ledger)
    if args.json:
        print(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
        return 0 if report.ok else 1
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    verdict = "audit OK" if report.ok else f"audit FAILED: {len(report.problems)} problem(s)"
    if not report.read:
        print(f"{verdict}: the ledger could not be read, so nothing else was checked")
        return 1
    print(f"{verdict}: {report.events} events, head {report.head_hash}; "
          f"{report.settlements} settlements ({report.cancelled} cancelled); "
          f"accumulations of {report.person_years} person-years checked")  # fmt: skip
    return 0 if report.ok else 1


# ---------------------------------------------------------------------------- reconcile
def _add_reconcile(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "reconcile", help="a day's counts and totals per kiosk and per fund (3201)"
    )
    _db(parser)
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", type=_date)
    parser.add_argument("--json", action="store_true", help="print JSON (money in fen)")
    parser.set_defaults(func=_guarded("gateway reconcile", gateway_reconcile))


def _date(text: str) -> str:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD")
    try:
        datetime.date.fromisoformat(text)
    except ValueError as exc:  # the shape is right: the day is not in the calendar
        raise argparse.ArgumentTypeError(f"{text!r}: no such day ({exc})") from None
    return text


def gateway_reconcile(args: argparse.Namespace) -> int:
    from .reconcile import day_report, format_report, report_json

    with _open(args.db) as ledger:
        report = day_report(ledger, args.date)
    if args.json:
        print(json.dumps(report_json(report), indent=2, ensure_ascii=False))
    else:
        print(format_report(report))
    return 0


# ---------------------------------------------------------------------------- verify-receipt
def _add_verify_receipt(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "verify-receipt",
        help="check a printed receipt's QR code against the ledger",
        description="Verify the text of a receipt's QR code (扫码核验结算凭证): the gateway's "
        "signature, its key, and the settlement in the ledger. Prints the settlement for the "
        "counter between two lines GENUINE or NOT VALID: <why>. Exit 0 only if genuine, in the "
        "ledger as signed, and not cancelled; 1 if not valid; 2 if the check could not be made "
        "(the ledger cannot be reached).",
    )
    _db(parser)
    parser.add_argument(
        "text", nargs="?", default="-", metavar="TEXT",
        help="the QR code's text (base64url); - or none: read it from standard input, as a "
        "barcode scanner types it",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print JSON (money in fen)")
    parser.set_defaults(func=_guarded("gateway verify-receipt", gateway_verify_receipt))


def _receipt_text(arg: str) -> str:
    if arg != "-":
        return arg
    from .receipt_check import MAX_TEXT_CHARS

    # at most one character past the limit: /dev/zero or a wrong file is refused, not read whole
    if sys.stdin.isatty():  # a scanner types one line and Enter: do not wait for end of file
        print("scan the receipt's QR code (or paste its text), then Enter:", file=sys.stderr)
        return sys.stdin.readline(MAX_TEXT_CHARS + 1)
    return sys.stdin.read(MAX_TEXT_CHARS + 1)


def gateway_verify_receipt(args: argparse.Namespace) -> int:
    from .config import LedgerUrlError
    from .ledger.base import LedgerError
    from .receipt_check import (
        NOT_VALID,
        ReceiptTextError,
        check,
        check_json,
        decode_text,
        format_check,
        settlement_of,
    )

    try:
        # what is no receipt at all is told before the ledger is even opened
        data = decode_text(_receipt_text(args.text))
        settlement_of(data)
    except ReceiptTextError as exc:
        if args.json:
            print(json.dumps({"genuine": False, "verdict": f"{NOT_VALID}{exc}",
                              "reasons": [str(exc)]}, ensure_ascii=False))
        else:
            print(f"{NOT_VALID}{exc}")  # one line: the answer, not a failure of the command
        return 1
    try:
        with _open(args.db) as ledger:
            result = check(ledger, data)
    except (LedgerError, LedgerUrlError) as exc:
        # 2, not 1: the receipt was not judged (a ledger down is no forgery), ask again later
        print(f"kiosk gateway verify-receipt: the check could not be made: {exc}",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(check_json(result), indent=2, ensure_ascii=False))
    else:
        print(format_check(result))
    return 0 if result.genuine else 1


# ---------------------------------------------------------------------------- lookup
LOOKUP_DAYS = 30


def gateway_lookups(args: argparse.Namespace) -> int:
    from .access import format_lookups, recent
    from .bills import settlement_today

    with _open(args.db) as ledger:
        psn_no = args.psn_no
        if args.id_number is not None:  # the number on the card the resident shows
            person = ledger.person_with_ssn(args.id_number)
            if person is None:
                from .masking import mask_id

                raise CommandError(f"no resident with ID number {mask_id(args.id_number)} "
                                   "in this ledger")
            psn_no = person.psn_no
        records = recent(ledger, args.days, settlement_today(), psn_no)
    if args.json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        print(format_lookups(records, args.days))
    return 0


def _add_lookup(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "lookup",
        help="a resident's settlements and bills waiting, for the hall's counter",
        description="For the counter, when a kiosk sent a resident there: find them by the ID "
        "number on their ID card (their settlements of the last --days days, newest first, "
        "and their bills waiting), or one settlement by the transaction or settlement number "
        "on a receipt or in a kiosk's log. Says of each settlement whether it was settled or "
        "cancelled and whether its receipt printed, and what each fund and the resident pay. "
        "Exit 0 if found, 1 if not; ID numbers are printed masked. Each lookup, a miss too, "
        "is recorded in the ledger's audit chain first (who asked what, whose settlements "
        "were shown: `kiosk gateway lookups`); one that cannot be recorded shows nothing.",
    )
    _db(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--id-number", metavar="N", type=_id_number,
                       help="the resident's 18-character ID number")
    which.add_argument("--txn-id", metavar="T", type=_txn_id,
                       help="a kiosk transaction number (交易号 on the receipt)")
    which.add_argument("--setl-id", metavar="S", type=_setl_id,
                       help="a settlement number (结算号)")
    which.add_argument("--kiosk", metavar="ID", type=_kiosk_id_argument,
                       help="every settlement of a kiosk on --date, each with its resident "
                       "(when reconcile says the kiosk's account differs)")
    parser.add_argument("--days", type=_days, default=LOOKUP_DAYS, metavar="N",
                        help=f"with --id-number: settlements of the last N days, today "
                        f"included (default {LOOKUP_DAYS})")
    parser.add_argument("--date", type=_date, metavar="YYYY-MM-DD",
                        help="with --kiosk: the settlement day (default today, China time)")
    parser.add_argument("--operator", metavar="NAME",
                        help="who is looking, as recorded (default: the login name; clerks "
                        "sharing one login each give their own; the account, user@host, is "
                        "recorded beside it)")
    parser.add_argument("--json", action="store_true", help="print JSON (money in fen)")
    parser.set_defaults(func=_guarded("gateway lookup", gateway_lookup))
    lookups = commands.add_parser(
        "lookups",
        help="who looked up whose settlements (kiosk gateway lookup), newest first",
        description="The recorded lookups of the last --days days, newest first: when, who, "
        "what was asked (ID numbers masked) and whose settlements were shown. --id-number "
        "or --psn-no: only those that showed that resident's (for a resident who asks who "
        "looked at their data).")
    _db(lookups)
    lookups.add_argument("--days", type=_days, default=LOOKUP_DAYS, metavar="N",
                         help=f"the last N days, today included (default {LOOKUP_DAYS})")
    whose = lookups.add_mutually_exclusive_group()
    whose.add_argument("--id-number", metavar="N", type=_id_number,
                       help="only lookups that showed this resident's settlements (the ID "
                       "number on their ID card)")
    whose.add_argument("--psn-no", metavar="P", help="the same, by the resident's personal "
                       "number (as lookup shows it)")
    lookups.add_argument("--json", action="store_true", help="print JSON")
    lookups.set_defaults(func=_guarded("gateway lookups", gateway_lookups))


def _id_number(text: str) -> str:
    from .bills import SSN, ssn_check_digit_ok

    number = text.strip().upper()  # an x typed for X
    if not SSN.fullmatch(number):
        raise argparse.ArgumentTypeError("an ID number is 18 characters: 17 digits, then a "
                                         "digit or X")
    if not ssn_check_digit_ok(number):
        raise argparse.ArgumentTypeError("its check digit is wrong (GB 11643): the number "
                                         "is mistyped")
    return number


# An ID number where a receipt's number was asked for: refused before the lookup is recorded
# (the audit chain keeps what was asked for good, and ID numbers appear only masked)
SETL_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _receipt_number(text: str, fits: Callable[[str], bool], what: str) -> str:
    from .bills import SSN

    number = text.strip()
    if SSN.fullmatch(number.upper()):  # its shape; the check digit need not be right
        raise argparse.ArgumentTypeError("that is an ID number: find a resident by it with "
                                         "--id-number (nothing was looked up)")
    if not fits(number):
        raise argparse.ArgumentTypeError(f"a {what} letters, digits, '_' or '-', as printed "
                                         "on the receipt")
    return number


def _txn_id(text: str) -> str:
    from . import fastwire

    return _receipt_number(text, fastwire.CHECKS.txn_id, "transaction number is 8 to 40")


def _setl_id(text: str) -> str:
    return _receipt_number(text, lambda n: bool(SETL_ID.fullmatch(n)),
                           "settlement number is 1 to 40")


def _kiosk_id_argument(value: str) -> str:
    try:
        return _kiosk_id(value)
    except CommandError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 3660:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of days from 1 to 3660")
    return int(text)


def gateway_lookup(args: argparse.Namespace) -> int:
    from .access import operator_name
    from .access import record as record_lookup
    from .bills import settlement_today
    from .lookup import by_id_number, by_number, format_found, found_json
    from .masking import mask_id

    if args.kiosk is None and args.date is not None or \
            args.id_number is None and args.days != LOOKUP_DAYS:
        print("kiosk gateway lookup: --date goes with --kiosk, --days with --id-number",
              file=sys.stderr)
        return 2
    operator = operator_name(args.operator)
    if args.kiosk is not None:
        return _lookup_kiosk_day(args, operator)
    with _open(args.db) as ledger:
        if args.id_number is not None:
            since = settlement_today() - datetime.timedelta(days=args.days - 1)
            found = by_id_number(ledger, args.id_number, since)
            asked = f"ID number {mask_id(args.id_number)}"
        else:
            found = by_number(ledger, txn_id=args.txn_id, setl_id=args.setl_id)
            asked = (f"transaction {args.txn_id}" if args.txn_id is not None
                     else f"settlement {args.setl_id}")
        missing = f"no {'resident with ' if args.id_number else ''}{asked} in this ledger"
        record_lookup(ledger, operator, asked, *(([], 0) if found is None else
                                                 (found.residents(), len(found.settlements))))
    if found is None:
        print(f"kiosk gateway lookup: {missing}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found_json(found), indent=2, ensure_ascii=False))
    else:
        print(format_found(found))
    return 0


def _lookup_kiosk_day(args: argparse.Namespace, operator: str) -> int:
    from .access import record as record_lookup
    from .bills import settlement_today
    from .lookup import format_kiosk_day, kiosk_day, kiosk_day_json

    day = args.date or settlement_today().isoformat()
    with _open(args.db) as ledger:
        found = kiosk_day(ledger, args.kiosk, day)
        record_lookup(ledger, operator, f"kiosk {args.kiosk} on {day}",
                       [s.psn_no for s, _, _ in found.settlements], len(found.settlements))
        if not found.settlements and ledger.get_key(args.kiosk) is None:  # a mistyped id
            print(f"kiosk gateway lookup: no kiosk {args.kiosk} was ever enrolled in this "
                  "ledger", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(kiosk_day_json(found), indent=2, ensure_ascii=False))
    else:
        print(format_kiosk_day(found))
    return 0

