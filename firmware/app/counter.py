# The kiosk's request counter: every request carries the next value and the gateway refuses any
# value it has seen (its replay guard), so a value must never be handed out twice, even across
# power cuts.
#
# Write-ahead in blocks: the file holds the highest value that may already have been used
# ("high water"). Before handing out a value above it, the counter reserves a whole block by
# writing the block's last value (atomic replace, see app.flash). After a reboot it resumes above
# the stored high water, skipping whatever was left of the block: values are lost, never reused.
from app import flash

DEFAULT_BLOCK = 32  # one flash write per 32 requests (about 5 sessions)


class CounterError(Exception):
    pass


def _parse(data):
    # A complete file is decimal digits and a newline; a torn write lacks the newline.
    if not data or data[-1:] != b"\n" or not data[:-1].isdigit():
        raise CounterError("counter file is damaged: %r" % data[:24])
    return int(data[:-1])


class Counter:
    def __init__(self, path, block=DEFAULT_BLOCK):
        self.path = path
        self.block = block
        data = flash.read_bytes(path)
        high = 0 if data is None else _parse(data)
        self._next = high + 1
        self._reserved = high  # nothing reserved by this boot yet

    @property
    def reserved(self):
        """The highest value reserved on flash."""
        return self._reserved

    def next(self):
        value = self._next
        if value > self._reserved:
            high = value + self.block - 1
            flash.write_atomic(self.path, b"%d\n" % high)
            self._reserved = high
        self._next = value + 1
        return value


def provisioned(path, above=None):
    """The high water provisioning must write, or None to keep the file: never go back.
    `above` (the kiosk's last counter at the gateway, from the technician) raises it, and
    replaces a damaged file; without it a damaged file raises CounterError."""
    data = flash.read_bytes(path)
    if data is None:
        return above or 0
    try:
        high = _parse(data)
    except CounterError:
        if above is None:
            raise
        return above
    return above if above is not None and above > high else None


def initialise(path, high):
    """Write provisioned()'s high water, if any."""
    if high is not None:
        flash.write_atomic(path, b"%d\n" % high)
