# Runs under MicroPython (onestop.host.mpy.Worker): drives drivers.display over a pseudo-terminal
# and hands results back to the pytest side.
import asyncio
import gc

from drivers import display, gbk


def text_command(table_dir, component, text):
    gbk.set_table_dir(table_dir)
    return display.text_command(component, text)


def page_command(page):
    return display.page_command(page)


def vis_command(component, shown):
    return display.vis_command(component, shown)


def parse(data):
    """Every event the parser finds in `data`, and how many frames were garbled."""
    parser = display.EventParser()
    events = []
    for byte in data:
        event = parser.feed(byte)
        if event is not None:
            events.append(event)
    return {"events": events, "garbled": parser.garbled}


def layout():
    return {"pages": list(display.PAGES), "texts": list(display.TEXTS),
            "ids": list(display.COMPONENT_IDS), "txt_maxl": list(display.TXT_MAXL),
            "buttons": list(display.BUTTONS)}


def _counters(screen):
    return {"errors": screen.errors, "last_error": screen.last_error, "restarts": screen.restarts}


def _run(path, table_dir, action, timeout_ms=500):
    gbk.set_table_dir(table_dir)
    port = open(path, "r+b")
    screen = display.Display(asyncio.StreamReader(port), asyncio.StreamWriter(port, {}),
                             timeout_ms=timeout_ms)
    try:
        result = asyncio.run(action(screen))
        result.update(_counters(screen))
        return result
    finally:
        port.close()


def show(path, table_dir, page, texts, timeout_ms=500):
    async def action(screen):
        return {"confirmed": await screen.show(page, texts)}
    return _run(path, table_dir, action, timeout_ms)


def show_then_touch(path, table_dir, page, texts, touch_timeout_ms):
    async def action(screen):
        confirmed = await screen.show(page, texts)
        return {"confirmed": confirmed, "touch": await screen.next_touch(touch_timeout_ms)}
    return _run(path, table_dir, action)


def show_two_then_touch(path, table_dir, first, second, touch_timeout_ms):
    """Show `first`, then `second` (pages with their texts), then wait for a touch."""
    async def action(screen):
        await screen.show(first[0], first[1])
        confirmed = await screen.show(second[0], second[1])
        return {"confirmed": confirmed, "touch": await screen.next_touch(touch_timeout_ms)}
    return _run(path, table_dir, action)


def command_then_listen(path, table_dir, text, listen_ms):
    async def action(screen):
        await screen.command(text)
        return {"touch": await screen.next_touch(listen_ms)}
    return _run(path, table_dir, action)


def show_measured(path, table_dir, page, texts):
    """One screen update; heap bytes allocated meanwhile (GC off) and kept after."""
    gbk.set_table_dir(table_dir)
    port = open(path, "r+b")
    screen = display.Display(asyncio.StreamReader(port), asyncio.StreamWriter(port, {}))
    try:
        asyncio.run(screen.show("welcome", {}))  # warm: table files open, first allocations
        gc.collect()
        baseline = gc.mem_alloc()
        gc.disable()
        confirmed = asyncio.run(screen.show(page, texts))
        allocated = gc.mem_alloc() - baseline
        gc.enable()
        gc.collect()
        return {"confirmed": confirmed, "heap_allocated": allocated,
                "heap_retained": gc.mem_alloc() - baseline}
    finally:
        gc.enable()
        port.close()


def show_update_then_touch(path, table_dir, page, texts, updates, touch_timeout_ms):
    """Show `page`, then each of `updates` (texts for Display.update) in turn, then wait for a
    touch."""
    async def action(screen):
        confirmed = await screen.show(page, texts)
        for update in updates:
            await screen.update(update)
        return {"confirmed": confirmed, "touch": await screen.next_touch(touch_timeout_ms)}
    return _run(path, table_dir, action)
