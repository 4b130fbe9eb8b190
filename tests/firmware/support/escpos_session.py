# Runs under MicroPython (onestop.host.mpy.Worker): drives drivers.escpos over a pseudo-terminal
# and hands results back to the pytest side.
import asyncio
import gc
import time

from drivers import escpos, gbk


def build(spec):
    """A Receipt from a list of [method, args...] steps, as the application would call them."""
    receipt = escpos.Receipt()
    for step in spec:
        getattr(receipt, step[0])(*step[1:])
    return receipt


def receipt_bytes(table_dir, spec):
    gbk.set_table_dir(table_dir)
    return b"".join(build(spec))


def chunk_sizes(table_dir, spec):
    gbk.set_table_dir(table_dir)
    return [len(chunk) for chunk in build(spec)]


def parse_replies(offline_reply, paper_reply):
    return escpos._status(offline_reply, paper_reply)


def _printer(path, timeout_ms, poll_ms):
    port = open(path, "r+b")
    printer = escpos.Printer(asyncio.StreamReader(port), asyncio.StreamWriter(port, {}),
                             timeout_ms=timeout_ms, poll_ms=poll_ms)
    return port, printer


def status(path, timeout_ms=300):
    port, printer = _printer(path, timeout_ms, 100)
    try:
        return asyncio.run(printer.status())
    finally:
        port.close()


async def _print(printer, spec):
    try:
        after = await printer.print_receipt(build(spec))
        return {"printed": True, "status": after, "bytes": printer.bytes_sent}
    except escpos.PrinterError as e:
        return {"printed": False, "reason": e.reason, "status": e.status,
                "bytes": printer.bytes_sent}


def print_receipt(path, table_dir, spec, timeout_ms=300, poll_ms=100):
    gbk.set_table_dir(table_dir)
    port, printer = _printer(path, timeout_ms, poll_ms)
    try:
        return asyncio.run(_print(printer, spec))
    finally:
        port.close()


# One printer kept across calls (the pytest side changes the line or the printer between them)
_kept = {}


def open_printer(path, print_timeout_ms=1500, unconfirmed_wait_ms=None):
    port, printer = _printer(path, 300, 100)
    printer.print_timeout_ms = print_timeout_ms
    if unconfirmed_wait_ms is not None:
        printer.unconfirmed_wait_ms = unconfirmed_wait_ms
    _kept["port"], _kept["printer"] = port, printer


def kept_status():
    return asyncio.run(_kept["printer"].status())


def kept_print(table_dir, spec):
    gbk.set_table_dir(table_dir)
    started = time.ticks_ms()
    result = asyncio.run(_print(_kept["printer"], spec))
    result["took_ms"] = time.ticks_diff(time.ticks_ms(), started)
    return result


def close_printer():
    _kept.pop("port").close()
    _kept.clear()


def print_receipt_measured(path, table_dir, spec):
    """Print one receipt; report heap: bytes allocated in all (GC off) and bytes kept after."""
    gbk.set_table_dir(table_dir)
    port, printer = _printer(path, 300, 100)
    try:
        gc.collect()
        baseline = gc.mem_alloc()
        gc.disable()  # nothing is freed, so the growth is every byte the print allocated
        result = asyncio.run(_print(printer, spec))
        result["heap_allocated"] = gc.mem_alloc() - baseline
        gc.enable()
        gc.collect()
        result["heap_retained"] = gc.mem_alloc() - baseline
        return result
    finally:
        gc.enable()
        port.close()


def qr_framing(table_dir, length):
    """The bytes around a QR code's `length`-byte payload (built here: only the framing crosses
    the JSON bridge, which a 64 KB heap cannot always fit a long payload through)."""
    gbk.set_table_dir(table_dir)
    receipt = escpos.Receipt()
    receipt.qr(b"R" * length)
    stream = b"".join(receipt)
    start = stream.index(b"R" * length)
    return stream[:start] + stream[start + length:]
