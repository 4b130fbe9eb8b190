# Wall-clock time for request headers and receipts. A board boots without a real-time clock, so
# the gateway's clock is the reference: `sign_in_reply.now` and a `stale` error's `now` set the
# offset from the local clock.
import time

# Ports whose time.time() counts from 2000 (older ESP32 / RP2040 builds) are moved to 1970.
_EPOCH_SHIFT = 946684800 if time.gmtime(0)[0] == 2000 else 0
CHINA_UTC_OFFSET = 8 * 3600


class Clock:
    def __init__(self):
        self.offset = 0
        self.synced = False

    def now(self):
        return int(time.time()) + _EPOCH_SHIFT + self.offset  # a float on the unix port

    def set(self, now):
        self.offset = now - int(time.time()) - _EPOCH_SHIFT
        self.synced = True


def civil(seconds, utc_offset=CHINA_UTC_OFFSET):
    """(year, month, day, hour, minute) for Unix seconds, with integer math on every port
    (days-to-civil from H. Hinnant's calendar algorithms)."""
    seconds += utc_offset
    days = seconds // 86400
    rest = seconds % 86400
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day, rest // 3600, rest % 3600 // 60


def show(seconds):
    return "%04d-%02d-%02d %02d:%02d" % civil(seconds)
