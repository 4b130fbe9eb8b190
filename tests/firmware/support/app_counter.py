# Runs under MicroPython (onestop.host.mpy.Worker, firmware/ on the path): app.counter on a file
# in a temporary directory, values handed back to the tests.
from app.counter import Counter, CounterError


def values(path, n, block):
    """n values from a counter that starts from whatever `path` holds (a reboot), then the
    highest value reserved on flash."""
    counter = Counter(path, block)
    return [counter.next() for _ in range(n)] + [counter.reserved]


def error(path):
    try:
        Counter(path)
    except CounterError as e:
        return str(e)
    return None
