# Files on the board's flash: paths under one root, whole-file reads and all-or-nothing writes.
#
# What the filesystems guarantee (MicroPython has no fsync; file.flush() is the sync point):
# - LittleFS (the default on ESP32-S3 and RP2040 builds): flush()/close() commit a file and
#   rename() atomically replaces its target, so a power cut leaves the old or the new file.
# - FAT: rename() cannot replace an existing file; write_atomic removes the target first, and
#   read_bytes finishes such an interrupted replace from the complete temporary file.
# - unix port (simulation): POSIX rename is atomic; a killed process loses nothing that was
#   flushed. Only a crash of the host machine itself could lose the last write.
import os

TMP_SUFFIX = ".tmp"
# Free below this and the kiosk goes out of service before a visit rather than fail mid-visit:
# a visit writes the counter and journal records, and compacting the journal rewrites it whole
# beside itself (several of LittleFS's 4 KB blocks in all).
MIN_FREE_BYTES = 16 * 1024


def join(root, name):
    if not root:
        return name
    if root[-1] == "/":
        return root + name
    return root + "/" + name


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


def free_bytes(path):
    """Bytes free for writing on the filesystem holding file `path`; None if it cannot say."""
    cut = path.rfind("/")
    folder = "." if cut < 0 else (path[:cut] or "/")
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st[1] * st[4]  # fragment size x blocks available


def write_atomic(path, data):
    """Replace the contents of `path` with `data`, all or nothing. `data`: bytes, or a list of
    bytes written one after another (so the whole never has to be one block of heap)."""
    tmp = path + TMP_SUFFIX
    with open(tmp, "wb") as f:
        if isinstance(data, list):
            for piece in data:
                f.write(piece)
        else:
            f.write(data)
        f.flush()
    try:
        os.rename(tmp, path)
    except OSError:
        # FAT refuses to rename onto an existing file: the temporary file is complete, so
        # removing the target first is safe (read_bytes finishes the job after a power cut).
        os.remove(path)
        os.rename(tmp, path)


def finish_replace(path):
    """Finish a write_atomic a power cut interrupted between remove and rename (FAT): the
    temporary file is complete by then. Call before opening `path` in any other way."""
    if not exists(path) and exists(path + TMP_SUFFIX):
        os.rename(path + TMP_SUFFIX, path)


def read_bytes(path):
    """The contents of `path`, or None if it does not exist."""
    finish_replace(path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
