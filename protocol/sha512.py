"""SHA-512 (FIPS 180-4) in plain Python, for boards whose hashlib lacks it (MicroPython).

Runs unchanged on MicroPython and CPython. Each 64-bit word is kept as two 32-bit halves (hi, lo)
so that every intermediate stays a small int on the 64-bit unix port (62-bit small ints) instead
of becoming a slow heap-allocated big int; a 64-bit rotation becomes two shift-or pairs.

The constants are byte strings, read a byte at a time: on the board a tuple of 160 ints would
take twice the heap.
"""

import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


# Round constants, FIPS 180-4 section 4.2.3: 80 words, big-endian, hi half then lo half.
_K = const(
    b"\x42\x8a\x2f\x98\xd7\x28\xae\x22\x71\x37\x44\x91\x23\xef\x65\xcd"
    b"\xb5\xc0\xfb\xcf\xec\x4d\x3b\x2f\xe9\xb5\xdb\xa5\x81\x89\xdb\xbc"
    b"\x39\x56\xc2\x5b\xf3\x48\xb5\x38\x59\xf1\x11\xf1\xb6\x05\xd0\x19"
    b"\x92\x3f\x82\xa4\xaf\x19\x4f\x9b\xab\x1c\x5e\xd5\xda\x6d\x81\x18"
    b"\xd8\x07\xaa\x98\xa3\x03\x02\x42\x12\x83\x5b\x01\x45\x70\x6f\xbe"
    b"\x24\x31\x85\xbe\x4e\xe4\xb2\x8c\x55\x0c\x7d\xc3\xd5\xff\xb4\xe2"
    b"\x72\xbe\x5d\x74\xf2\x7b\x89\x6f\x80\xde\xb1\xfe\x3b\x16\x96\xb1"
    b"\x9b\xdc\x06\xa7\x25\xc7\x12\x35\xc1\x9b\xf1\x74\xcf\x69\x26\x94"
    b"\xe4\x9b\x69\xc1\x9e\xf1\x4a\xd2\xef\xbe\x47\x86\x38\x4f\x25\xe3"
    b"\x0f\xc1\x9d\xc6\x8b\x8c\xd5\xb5\x24\x0c\xa1\xcc\x77\xac\x9c\x65"
    b"\x2d\xe9\x2c\x6f\x59\x2b\x02\x75\x4a\x74\x84\xaa\x6e\xa6\xe4\x83"
    b"\x5c\xb0\xa9\xdc\xbd\x41\xfb\xd4\x76\xf9\x88\xda\x83\x11\x53\xb5"
    b"\x98\x3e\x51\x52\xee\x66\xdf\xab\xa8\x31\xc6\x6d\x2d\xb4\x32\x10"
    b"\xb0\x03\x27\xc8\x98\xfb\x21\x3f\xbf\x59\x7f\xc7\xbe\xef\x0e\xe4"
    b"\xc6\xe0\x0b\xf3\x3d\xa8\x8f\xc2\xd5\xa7\x91\x47\x93\x0a\xa7\x25"
    b"\x06\xca\x63\x51\xe0\x03\x82\x6f\x14\x29\x29\x67\x0a\x0e\x6e\x70"
    b"\x27\xb7\x0a\x85\x46\xd2\x2f\xfc\x2e\x1b\x21\x38\x5c\x26\xc9\x26"
    b"\x4d\x2c\x6d\xfc\x5a\xc4\x2a\xed\x53\x38\x0d\x13\x9d\x95\xb3\xdf"
    b"\x65\x0a\x73\x54\x8b\xaf\x63\xde\x76\x6a\x0a\xbb\x3c\x77\xb2\xa8"
    b"\x81\xc2\xc9\x2e\x47\xed\xae\xe6\x92\x72\x2c\x85\x14\x82\x35\x3b"
    b"\xa2\xbf\xe8\xa1\x4c\xf1\x03\x64\xa8\x1a\x66\x4b\xbc\x42\x30\x01"
    b"\xc2\x4b\x8b\x70\xd0\xf8\x97\x91\xc7\x6c\x51\xa3\x06\x54\xbe\x30"
    b"\xd1\x92\xe8\x19\xd6\xef\x52\x18\xd6\x99\x06\x24\x55\x65\xa9\x10"
    b"\xf4\x0e\x35\x85\x57\x71\x20\x2a\x10\x6a\xa0\x70\x32\xbb\xd1\xb8"
    b"\x19\xa4\xc1\x16\xb8\xd2\xd0\xc8\x1e\x37\x6c\x08\x51\x41\xab\x53"
    b"\x27\x48\x77\x4c\xdf\x8e\xeb\x99\x34\xb0\xbc\xb5\xe1\x9b\x48\xa8"
    b"\x39\x1c\x0c\xb3\xc5\xc9\x5a\x63\x4e\xd8\xaa\x4a\xe3\x41\x8a\xcb"
    b"\x5b\x9c\xca\x4f\x77\x63\xe3\x73\x68\x2e\x6f\xf3\xd6\xb2\xb8\xa3"
    b"\x74\x8f\x82\xee\x5d\xef\xb2\xfc\x78\xa5\x63\x6f\x43\x17\x2f\x60"
    b"\x84\xc8\x78\x14\xa1\xf0\xab\x72\x8c\xc7\x02\x08\x1a\x64\x39\xec"
    b"\x90\xbe\xff\xfa\x23\x63\x1e\x28\xa4\x50\x6c\xeb\xde\x82\xbd\xe9"
    b"\xbe\xf9\xa3\xf7\xb2\xc6\x79\x15\xc6\x71\x78\xf2\xe3\x72\x53\x2b"
    b"\xca\x27\x3e\xce\xea\x26\x61\x9c\xd1\x86\xb8\xc7\x21\xc0\xc2\x07"
    b"\xea\xda\x7d\xd6\xcd\xe0\xeb\x1e\xf5\x7d\x4f\x7f\xee\x6e\xd1\x78"
    b"\x06\xf0\x67\xaa\x72\x17\x6f\xba\x0a\x63\x7d\xc5\xa2\xc8\x98\xa6"
    b"\x11\x3f\x98\x04\xbe\xf9\x0d\xae\x1b\x71\x0b\x35\x13\x1c\x47\x1b"
    b"\x28\xdb\x77\xf5\x23\x04\x7d\x84\x32\xca\xab\x7b\x40\xc7\x24\x93"
    b"\x3c\x9e\xbe\x0a\x15\xc9\xbe\xbc\x43\x1d\x67\xc4\x9c\x10\x0d\x4c"
    b"\x4c\xc5\xd4\xbe\xcb\x3e\x42\xb6\x59\x7f\x29\x9c\xfc\x65\x7e\x2a"
    b"\x5f\xcb\x6f\xab\x3a\xd6\xfa\xec\x6c\x44\x19\x8c\x4a\x47\x58\x17"
)
# Initial hash value, section 5.3.5.
_IV = const(
    b"\x6a\x09\xe6\x67\xf3\xbc\xc9\x08\xbb\x67\xae\x85\x84\xca\xa7\x3b"
    b"\x3c\x6e\xf3\x72\xfe\x94\xf8\x2b\xa5\x4f\xf5\x3a\x5f\x1d\x36\xf1"
    b"\x51\x0e\x52\x7f\xad\xe6\x82\xd1\x9b\x05\x68\x8c\x2b\x3e\x6c\x1f"
    b"\x1f\x83\xd9\xab\xfb\x41\xbd\x6b\x5b\xe0\xcd\x19\x13\x7e\x21\x79"
)
_MASK = const(0xFFFFFFFF)


def _compress(state, block, offset):
    """Fold the 128-byte block at block[offset:] into state (16 halves)."""
    M = _MASK
    K = _K
    # The message schedule as a ring of its last 16 words, hi and lo halves in two lists of 16:
    # small allocations, which a fragmented heap finds room for more easily than one of 32.
    wh = [0] * 16
    wl = [0] * 16
    for j in range(16):
        o = offset + 8 * j
        wh[j] = block[o] << 24 | block[o + 1] << 16 | block[o + 2] << 8 | block[o + 3]
        wl[j] = block[o + 4] << 24 | block[o + 5] << 16 | block[o + 6] << 8 | block[o + 7]
    ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl = state
    for r in range(80):
        i = r & 15
        if r >= 16:  # W[r] = sigma1(W[r-2]) + W[r-7] + sigma0(W[r-15]) + W[r-16], in slot i
            j = (r - 15) & 15
            xh = wh[j]
            xl = wl[j]  # sigma0 = rotr 1 ^ rotr 8 ^ shr 7
            s0h = ((xh >> 1 | xl << 31) ^ (xh >> 8 | xl << 24) ^ (xh >> 7)) & M
            s0l = ((xl >> 1 | xh << 31) ^ (xl >> 8 | xh << 24) ^ (xl >> 7 | xh << 25)) & M
            j = (r - 2) & 15
            xh = wh[j]
            xl = wl[j]  # sigma1 = rotr 19 ^ rotr 61 ^ shr 6
            s1h = ((xh >> 19 | xl << 13) ^ (xl >> 29 | xh << 3) ^ (xh >> 6)) & M
            s1l = ((xl >> 19 | xh << 13) ^ (xh >> 29 | xl << 3) ^ (xl >> 6 | xh << 26)) & M
            j = (r - 7) & 15
            lo = s1l + wl[j] + s0l + wl[i]
            wh[i] = (s1h + wh[j] + s0h + wh[i] + (lo >> 32)) & M
            wl[i] = lo & M
        k = 8 * r  # K[r] at K[k:k + 8]
        # t1 = h + Sigma1(e) + Ch(e, f, g) + K[r] + W[r]; Sigma1 = rotr 14 ^ rotr 18 ^ rotr 41
        lo = (hl + (((el >> 14 | eh << 18) ^ (el >> 18 | eh << 14) ^ (eh >> 9 | el << 23)) & M)
              + (gl ^ (el & (fl ^ gl))) + wl[i]
              + (K[k + 4] << 24 | K[k + 5] << 16 | K[k + 6] << 8 | K[k + 7]))
        t1h = (hh + (((eh >> 14 | el << 18) ^ (eh >> 18 | el << 14) ^ (el >> 9 | eh << 23)) & M)
               + (gh ^ (eh & (fh ^ gh))) + wh[i] + (lo >> 32)
               + (K[k] << 24 | K[k + 1] << 16 | K[k + 2] << 8 | K[k + 3]))
        t1l = lo & M
        # t2 = Sigma0(a) + Maj(a, b, c); Sigma0 = rotr 28 ^ rotr 34 ^ rotr 39. Its low carry is
        # taken when t1 and t2 are added, so t2's halves stay unmasked here.
        t2l = ((((al >> 28 | ah << 4) ^ (ah >> 2 | al << 30) ^ (ah >> 7 | al << 25)) & M)
               + ((al & bl) | (cl & (al | bl))))
        t2h = ((((ah >> 28 | al << 4) ^ (al >> 2 | ah << 30) ^ (al >> 7 | ah << 25)) & M)
               + ((ah & bh) | (ch & (ah | bh))))
        hh = gh
        hl = gl
        gh = fh
        gl = fl
        fh = eh
        fl = el
        lo = dl + t1l
        el = lo & M
        eh = (dh + t1h + (lo >> 32)) & M
        dh = ch
        dl = cl
        ch = bh
        cl = bl
        bh = ah
        bl = al
        lo = t1l + t2l
        al = lo & M
        ah = (t1h + t2h + (lo >> 32)) & M
    wh[0] = ah  # the working variables into the ring's halves, to add them to state in a loop
    wl[0] = al
    wh[1] = bh
    wl[1] = bl
    wh[2] = ch
    wl[2] = cl
    wh[3] = dh
    wl[3] = dl
    wh[4] = eh
    wl[4] = el
    wh[5] = fh
    wl[5] = fl
    wh[6] = gh
    wl[6] = gl
    wh[7] = hh
    wl[7] = hl
    for i in range(8):
        lo = state[2 * i + 1] + wl[i]
        state[2 * i + 1] = lo & M
        state[2 * i] = (state[2 * i] + wh[i] + (lo >> 32)) & M


def sha512(data):
    """The 64-byte SHA-512 digest of data (bytes, bytearray or memoryview)."""
    return SHA512(data).digest()


class SHA512:
    """Incremental SHA-512: update(data) any number of times, then digest()."""

    digest_size = 64
    block_size = 128

    def __init__(self, data=None):
        self._state = list(struct.unpack(">16I", _IV))
        self._pending = bytearray()  # under one block, waiting for more
        self._length = 0
        if data is not None:
            self.update(data)

    def update(self, data):
        self._length += len(data)
        pending = self._pending
        if pending:
            need = 128 - len(pending)
            pending.extend(data[:need])
            if len(pending) < 128:
                return
            _compress(self._state, pending, 0)
            self._pending = pending = bytearray()
            data = memoryview(data)[need:]
        n = len(data)
        full = n - n % 128
        for offset in range(0, full, 128):
            _compress(self._state, data, offset)
        if full < n:
            pending.extend(data[full:])

    def digest(self):
        """The digest of everything so far; more updates may follow."""
        state = list(self._state)
        tail = len(self._pending)
        block = bytearray(256 if tail >= 112 else 128)  # the padding and the bit length
        block[:tail] = self._pending
        block[tail] = 0x80
        end = len(block)
        block[end - 16:end] = (self._length * 8).to_bytes(16, "big")
        _compress(state, block, 0)
        if end == 256:
            _compress(state, block, 128)
        return struct.pack(">16I", *state)
