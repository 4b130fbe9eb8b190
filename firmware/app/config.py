# The kiosk's configuration: config.json in the flash root, written by `kiosk fw provision`.
#
#   {"version": 1,
#    "board": "unix" | "esp32s3" | "rp2040",
#    "kiosk_id": "K0001",                             (1-24 of A-Z a-z 0-9 _ -)
#    "gateway": {"kind": "tcp", "host": "10.0.0.2", "port": 7700}
#             | {"kind": "serial", "path": "/dev/pts/7", "baud": 115200}   (unix: a pty path)
#             | {"kind": "serial", "uart": "gateway"}   (a board: a UART of its pin map)
#    "gateway_kid": "gw-1a2b3c4d",
#    "gateway_public_key": "<64 hex digits>",         (pinned: replies must be signed by it)
#    "gateway_serial": 0,                             (its cert's serial; 0: uncertified)
#    "authority_kid": "auth-1a2b3c4d",                (optional, with authority_public_key: the
#    "authority_public_key": "<64 hex digits>",        operator's offline key that certifies
#                                                      gateway keys; see GATEWAY_FILE)
#    "uarts": {"card": "/dev/pts/3@115200", "printer": "...", "display": "tcp:127.0.0.1:9003"},
#                                                     (unix only: pty path[@baud] or tcp:host:port)
#    "network": {"ssid": "...", "password": "..."},   (boards with Wi-Fi, optional)
#    "timeouts_ms": {"confirm": 90000, ...},          (optional overrides of TIMEOUTS below)
#    "hall": "城关镇便民服务中心",                     (optional: printed on each receipt)
#    "heap_log": false}                               (log heap figures per session step)
import json

from app import flash

# Files in the flash root (the key file is named in app.keystore).
CONFIG_FILE = "config.json"
COUNTER_FILE = "counter"
JOURNAL_FILE = "journal.bin"
# Present at the flash root: the board boots to its REPL, no kiosk and no watchdog (once started
# a watchdog cannot be stopped, and it would reset the board in the middle of `kiosk fw deploy`).
# The kiosk tools write it, reset the board, work, remove it and reset again.
SERVICE_FILE = "service"
# The gateway key the kiosk moved to since provisioning (app/link.py: a sign_in_reply's cert, of
# a higher serial, signed by the authority): {"authority", "kid", "key", "serial"}. It stands in
# for config.json's gateway key while its serial is higher and its authority the configured one
# (provisioning again with a newer key, or another authority, supersedes it).
GATEWAY_FILE = "gateway.json"
VERSION = 1
KIOSK_ID_MAX = 24  # leaves room in a 40-character txn id for "-" counter "-" suffix
ROLES = ("card", "printer", "display")

# Every wait has a limit (milliseconds), so a kiosk never hangs on a resident or a device.
TIMEOUTS = {
    # The pages that wait for a choice: long enough for a slow reader with poor eyes; the card
    # in the slot holds the kiosk for its holder anyway.
    "choose": 120000,  # the bills page
    "confirm": 120000,  # the confirm page: a resident who walks away cancels
    # ...and their last seconds are counted down on a strip over the titles, which a resident
    # still there touches for the page's whole time again (one who walked away is not waited
    # for twice). A page shorter than this has no countdown.
    "more_time": 30000,
    "message": 8000,  # an error or notice page before going back to the welcome page
    "take_card": 60000,  # the done page waits this long for the card to be taken
    # A resident told "please wait here" for paper is waited for while the card is in, up to
    # this long (a clerk may be far); then the receipt is printed later, for the clerk.
    "wait_paper": 900000,
    "poll": 250,  # how often a waiting page checks the card slot
    "printer_poll": 1000,  # how often the printer is asked whether paper is in, while waiting
    "doubt_poll": 5000,  # how often a settlement in doubt is asked about, while the card is in
    # A press this soon after a page appears is ignored: it was meant for the page before (a
    # double tap on a bill lands where the confirm page puts its Confirm button). An elderly
    # resident's second tap, when the first seemed to do nothing, comes a second or so later;
    # no one has read a page's amounts that soon.
    "touch_guard": 1500,
    "gateway_connect": 5000,
    "gateway_reply": 10000,  # per attempt
    "gateway_attempts": 3,
    # A TCP link quiet this long may have been closed by the gateway (its idle timeout):
    # found closed, it is connected again at once (see app/link.py).
    "gateway_idle": 5000,
    "backoff_first": 500,  # the first pause between attempts; doubles each time
    "backoff_max": 8000,
    "retry_open": 20000,  # idle: how often to retry unfinished transactions
    # How often the kiosk signs in, between visits: how the operator knows it is alive.
    "heartbeat": 600000,
    "watchdog": 8000,  # hardware watchdog period (an RP2040 allows at most 8388)
    "stall": 120000,  # no progress this long and the watchdog is left to reset the board
}


class ConfigError(Exception):
    pass


def _need(cfg, key, kind):
    value = cfg.get(key)
    if not isinstance(value, kind):
        raise ConfigError("config.json: %s is missing or not a %s" % (key, kind.__name__))
    return value


def check_kiosk_id(kiosk_id):
    ok = 0 < len(kiosk_id) <= KIOSK_ID_MAX
    for c in kiosk_id:
        if not (c.isalpha() and c < "\x80" or c.isdigit() or c in "_-"):
            ok = False
    if not ok:
        raise ConfigError("kiosk id %r: 1-%d of A-Z a-z 0-9 _ -" % (kiosk_id, KIOSK_ID_MAX))
    return kiosk_id


def check(cfg):
    """Validate a configuration dict and fill in defaults; returns it."""
    if cfg.get("version") != VERSION:
        raise ConfigError("config.json: version %r, expected %d" % (cfg.get("version"), VERSION))
    _need(cfg, "board", str)
    check_kiosk_id(_need(cfg, "kiosk_id", str))
    gateway = _need(cfg, "gateway", dict)
    kind = gateway.get("kind")
    if kind == "tcp":
        _need(gateway, "host", str)
        _need(gateway, "port", int)
    elif kind == "serial":
        if not isinstance(gateway.get("path"), str) and not isinstance(gateway.get("uart"), str):
            raise ConfigError("config.json: a serial gateway needs a path or a uart")
    else:
        raise ConfigError("config.json: gateway kind must be tcp or serial")
    _need(cfg, "gateway_kid", str)
    _need(cfg, "gateway_public_key", str)
    for name in ("gateway_public_key", "authority_public_key"):  # the authority's is optional
        key = cfg.get(name)
        if key is not None and (not isinstance(key, str) or len(key) != 64):
            raise ConfigError("config.json: %s must be 64 hex digits" % name)
    if ("authority_kid" in cfg) != ("authority_public_key" in cfg):
        raise ConfigError("config.json: authority_kid and authority_public_key go together")
    if "authority_kid" in cfg:
        _need(cfg, "authority_kid", str)
    serial = cfg.setdefault("gateway_serial", 0)
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        raise ConfigError("config.json: gateway_serial must be a whole number, 0 or more")
    timeouts = dict(TIMEOUTS)
    timeouts.update(cfg.get("timeouts_ms") or {})
    cfg["timeouts_ms"] = timeouts
    cfg.setdefault("uarts", {})
    cfg.setdefault("heap_log", False)
    cfg.setdefault("hall", "")
    if not isinstance(cfg["hall"], str):
        raise ConfigError("config.json: hall must be text")
    return cfg


def load(flash_dir):
    data = flash.read_bytes(flash.join(flash_dir, CONFIG_FILE))
    if data is None:
        raise ConfigError("no %s in %r: provision the kiosk first" % (CONFIG_FILE, flash_dir))
    try:
        cfg = json.loads(data)
    except ValueError:
        raise ConfigError("config.json is not valid JSON") from None
    if not isinstance(cfg, dict):
        raise ConfigError("config.json must hold an object")
    return check(cfg)


def save(flash_dir, cfg):
    check(dict(cfg))  # refuse to write a configuration the kiosk could not boot with
    flash.write_atomic(flash.join(flash_dir, CONFIG_FILE), json.dumps(cfg).encode())


def trusted_gateway(flash_dir, cfg):
    """(kid, public key hex, serial, previous) of the gateway key to trust: the one the kiosk
    moved to (GATEWAY_FILE), if any and still above config.json's, else config.json's.
    previous: [kid, public key hex] of the key trusted before it, or None."""
    kid, key, serial = cfg["gateway_kid"], cfg["gateway_public_key"], cfg["gateway_serial"]
    previous = None
    data = flash.read_bytes(flash.join(flash_dir, GATEWAY_FILE))
    if data is not None and "authority_kid" in cfg:
        try:
            moved = json.loads(data)
            if moved["authority"] == cfg["authority_kid"] and moved["serial"] > serial \
                    and len(moved["key"]) == 64:
                kid, key, serial = moved["kid"], moved["key"], moved["serial"]
                previous = moved.get("previous")
        except (ValueError, KeyError, TypeError):
            pass  # unreadable: config.json's key, and the cert is learnt again at sign-in
    return kid, key, serial, previous


def save_gateway(flash_dir, authority_kid, kid, key_hex, serial, previous=None):
    """Keep the gateway key the kiosk moved to (and the one before it: [kid, key hex]), all or
    nothing (a power cut leaves the old file or this one)."""
    flash.write_atomic(flash.join(flash_dir, GATEWAY_FILE), json.dumps(
        {"authority": authority_kid, "kid": kid, "key": key_hex, "serial": serial,
         "previous": previous}).encode())
