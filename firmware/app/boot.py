# Power-on: configuration, board, keys, journal and devices from the flash directory, then the
# kiosk's main loop. A kiosk that cannot start safely (no configuration, a damaged key or counter)
# says so on its screen and in its log, and takes no cards.
import asyncio
import binascii
import os
import sys

from app import config as C
from app import flash, screens
from app.counter import Counter, CounterError
from app.heap import Collecting, HeapLog
from app.journal import Journal
from app.keystore import KEY_FILE, KeystoreError
from app.log import date_lines_by, log
from boards.common import BoardError, load_board

GBK_TABLE = "gbk_u2g.bin"


class Faulted(Exception):
    """The kiosk cannot start, and its fault is logged and shown already."""


def table_dir(flash_dir):
    """Where the GBK tables are: the flash root on a board; on the unix port also the stage
    directory on the import path."""
    for root in [flash_dir] + sys.path:
        if flash.exists(flash.join(root, GBK_TABLE)):
            return root or "."
    raise BoardError("no GBK tables (%s) in the flash or on the import path" % GBK_TABLE)


def heap_log_wanted(cfg):
    getenv = getattr(os, "getenv", None)  # the unix port only
    return bool(cfg["heap_log"]) or (getenv is not None and getenv("ONESTOP_HEAP_LOG") == "1")


async def start(flash_dir, rounds=None):
    from app import keystore
    from app.clock import Clock
    from app.kiosk import Kiosk
    from app.link import GatewayLink, connector
    from app.txn import Transactions
    from drivers import gbk
    from drivers.cardreader import CardReader
    from drivers.display import Display
    from drivers.escpos import Printer
    from onestop.protocol import ed25519

    cfg = C.load(flash_dir)
    board = load_board(cfg, flash_dir)
    light = board.status_light()
    timeouts = cfg["timeouts_ms"]
    display = Display(*await board.open_uart("display"))
    try:
        gbk.set_table_dir(table_dir(flash_dir))
        key = keystore.load(flash.join(flash_dir, KEY_FILE))
        counter = Counter(flash.join(flash_dir, C.COUNTER_FILE))
        journal = Journal(flash.join(flash_dir, C.JOURNAL_FILE))
        gateway_kid, gateway_hex, serial, previous = C.trusted_gateway(flash_dir, cfg)
        if previous is not None:
            previous = (previous[0], binascii.unhexlify(previous[1]))
        gateway_key = Collecting(ed25519.VerifyingKey(binascii.unhexlify(gateway_hex)))
        authority = None
        if "authority_kid" in cfg:
            authority = (cfg["authority_kid"], Collecting(ed25519.VerifyingKey(
                binascii.unhexlify(cfg["authority_public_key"]))))
    except (BoardError, KeystoreError, CounterError, ValueError, OSError) as e:
        log("fault", error=str(e))
        light.show("fault")  # it blinks on at the REPL: the technician sees it from the door
        await display.show(*screens.out_of_service("fault"))
        raise Faulted() from None  # logged: main stops without a second, identical line
    card = CardReader(*await board.open_uart("card"))
    printer = Printer(*await board.open_uart("printer"))
    connect, over_tcp = connector(board, cfg["gateway"])
    clock = Clock()
    date_lines_by(clock)

    def keep_key(kid, public_key, serial, old):  # the link moved to a certified key: keep it
        C.save_gateway(flash_dir, cfg["authority_kid"], kid,
                       binascii.hexlify(public_key).decode(), serial,
                       old and [old[0], binascii.hexlify(old[1]).decode()])

    link = GatewayLink(cfg["kiosk_id"], key, counter, clock, gateway_kid, gateway_key,
                       connect, over_tcp, timeouts, log, authority, serial, keep_key, previous)
    txns = Transactions(journal, link, printer, link.open_settlement, cfg["kiosk_id"], counter,
                        log, cfg["hall"])
    heap = HeapLog(heap_log_wanted(cfg))
    kiosk = Kiosk(board.name, timeouts, display, card, printer, link, journal, txns, heap,
                  board.watchdog(timeouts["watchdog"]))
    kiosk.light = light
    heap.baseline = board.heap_baseline()
    log("ready", kiosk=cfg["kiosk_id"], board=board.name, heap_baseline=heap.baseline)
    await kiosk.serve(rounds)


def main(flash_dir=""):
    if flash.exists(flash.join(flash_dir, C.SERVICE_FILE)):
        log("service_mode", file=C.SERVICE_FILE)
        return
    try:
        asyncio.run(start(flash_dir))
    except Faulted:
        _stop(2)
    except (C.ConfigError, BoardError, KeystoreError, CounterError) as e:
        log("fault", error=str(e))
        _stop(2)
    except (OSError, ValueError, ImportError) as e:
        # a UART that is not there, a malformed address, a board module that does not exist:
        # one fault line a technician can read, not a traceback
        log("fault", error="%s: %s" % (type(e).__name__, e))
        _stop(2)


def _stop(status):
    """A kiosk that cannot start: the unix launcher reports the exit status; a board stays at
    its REPL for a technician (sys.exit in a board's main.py is a soft reboot, which would run
    main.py again and fail again, in a loop mpremote struggles to break into)."""
    if sys.platform not in ("esp32", "rp2"):  # the unix port (linux, darwin)
        sys.exit(status)
