"""SHA-512 (FIPS 180-4) in plain Python, for boards whose hashlib lacks it (MicroPython).

Runs unchanged on MicroPython and CPython. Each 64-bit word is kept as two 32-bit halves (hi, lo)
so that every intermediate stays a small int on the 64-bit unix port (62-bit small ints) instead
of becoming a slow heap-allocated big int; a 64-bit rotation becomes two shift-or pairs.
"""

import struct

# Initial hash value and round constants as (hi, lo) halves, FIPS 180-4 sections 5.3.5 and 4.2.3.
_IV = (
    0x6a09e667, 0xf3bcc908, 0xbb67ae85, 0x84caa73b, 0x3c6ef372, 0xfe94f82b,
    0xa54ff53a, 0x5f1d36f1, 0x510e527f, 0xade682d1, 0x9b05688c, 0x2b3e6c1f,
    0x1f83d9ab, 0xfb41bd6b, 0x5be0cd19, 0x137e2179,
)
_K = (
    0x428a2f98, 0xd728ae22, 0x71374491, 0x23ef65cd, 0xb5c0fbcf, 0xec4d3b2f,
    0xe9b5dba5, 0x8189dbbc, 0x3956c25b, 0xf348b538, 0x59f111f1, 0xb605d019,
    0x923f82a4, 0xaf194f9b, 0xab1c5ed5, 0xda6d8118, 0xd807aa98, 0xa3030242,
    0x12835b01, 0x45706fbe, 0x243185be, 0x4ee4b28c, 0x550c7dc3, 0xd5ffb4e2,
    0x72be5d74, 0xf27b896f, 0x80deb1fe, 0x3b1696b1, 0x9bdc06a7, 0x25c71235,
    0xc19bf174, 0xcf692694, 0xe49b69c1, 0x9ef14ad2, 0xefbe4786, 0x384f25e3,
    0x0fc19dc6, 0x8b8cd5b5, 0x240ca1cc, 0x77ac9c65, 0x2de92c6f, 0x592b0275,
    0x4a7484aa, 0x6ea6e483, 0x5cb0a9dc, 0xbd41fbd4, 0x76f988da, 0x831153b5,
    0x983e5152, 0xee66dfab, 0xa831c66d, 0x2db43210, 0xb00327c8, 0x98fb213f,
    0xbf597fc7, 0xbeef0ee4, 0xc6e00bf3, 0x3da88fc2, 0xd5a79147, 0x930aa725,
    0x06ca6351, 0xe003826f, 0x14292967, 0x0a0e6e70, 0x27b70a85, 0x46d22ffc,
    0x2e1b2138, 0x5c26c926, 0x4d2c6dfc, 0x5ac42aed, 0x53380d13, 0x9d95b3df,
    0x650a7354, 0x8baf63de, 0x766a0abb, 0x3c77b2a8, 0x81c2c92e, 0x47edaee6,
    0x92722c85, 0x1482353b, 0xa2bfe8a1, 0x4cf10364, 0xa81a664b, 0xbc423001,
    0xc24b8b70, 0xd0f89791, 0xc76c51a3, 0x0654be30, 0xd192e819, 0xd6ef5218,
    0xd6990624, 0x5565a910, 0xf40e3585, 0x5771202a, 0x106aa070, 0x32bbd1b8,
    0x19a4c116, 0xb8d2d0c8, 0x1e376c08, 0x5141ab53, 0x2748774c, 0xdf8eeb99,
    0x34b0bcb5, 0xe19b48a8, 0x391c0cb3, 0xc5c95a63, 0x4ed8aa4a, 0xe3418acb,
    0x5b9cca4f, 0x7763e373, 0x682e6ff3, 0xd6b2b8a3, 0x748f82ee, 0x5defb2fc,
    0x78a5636f, 0x43172f60, 0x84c87814, 0xa1f0ab72, 0x8cc70208, 0x1a6439ec,
    0x90befffa, 0x23631e28, 0xa4506ceb, 0xde82bde9, 0xbef9a3f7, 0xb2c67915,
    0xc67178f2, 0xe372532b, 0xca273ece, 0xea26619c, 0xd186b8c7, 0x21c0c207,
    0xeada7dd6, 0xcde0eb1e, 0xf57d4f7f, 0xee6ed178, 0x06f067aa, 0x72176fba,
    0x0a637dc5, 0xa2c898a6, 0x113f9804, 0xbef90dae, 0x1b710b35, 0x131c471b,
    0x28db77f5, 0x23047d84, 0x32caab7b, 0x40c72493, 0x3c9ebe0a, 0x15c9bebc,
    0x431d67c4, 0x9c100d4c, 0x4cc5d4be, 0xcb3e42b6, 0x597f299c, 0xfc657e2a,
    0x5fcb6fab, 0x3ad6faec, 0x6c44198c, 0x4a475817,
)

_MASK = 0xFFFFFFFF
BLOCK_SIZE = 128
DIGEST_SIZE = 64


def _compress(state, block, offset):
    """Fold the 128-byte block at block[offset:] into state (16 halves)."""
    M = _MASK
    # The message schedule as a ring of its last 16 words, word j at w[2j % 32] (hi) and the
    # next slot (lo): a small list, as the board's heap is small and fragments.
    w = list(struct.unpack_from(">32I", block, offset))
    ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl = state
    K = _K
    for t in range(0, 160, 2):  # t = 2 * round
        i = t & 31
        if t >= 32:  # W[r] = sigma1(W[r-2]) + W[r-7] + sigma0(W[r-15]) + W[r-16], in slot i
            j = (t - 30) & 31
            xh = w[j]
            xl = w[j + 1]  # sigma0 = rotr 1 ^ rotr 8 ^ shr 7
            s0h = ((xh >> 1 | xl << 31) ^ (xh >> 8 | xl << 24) ^ (xh >> 7)) & M
            s0l = ((xl >> 1 | xh << 31) ^ (xl >> 8 | xh << 24) ^ (xl >> 7 | xh << 25)) & M
            j = (t - 4) & 31
            xh = w[j]
            xl = w[j + 1]  # sigma1 = rotr 19 ^ rotr 61 ^ shr 6
            s1h = ((xh >> 19 | xl << 13) ^ (xl >> 29 | xh << 3) ^ (xh >> 6)) & M
            s1l = ((xl >> 19 | xh << 13) ^ (xh >> 29 | xl << 3) ^ (xl >> 6 | xh << 26)) & M
            j = (t - 14) & 31
            lo = s1l + w[j + 1] + s0l + w[i + 1]
            w[i] = (s1h + w[j] + s0h + w[i] + (lo >> 32)) & M
            w[i + 1] = lo & M
        # t1 = h + Sigma1(e) + Ch(e, f, g) + K[t] + W[t]; Sigma1 = rotr 14 ^ rotr 18 ^ rotr 41
        lo = (hl + (((el >> 14 | eh << 18) ^ (el >> 18 | eh << 14) ^ (eh >> 9 | el << 23)) & M)
              + (gl ^ (el & (fl ^ gl))) + K[t + 1] + w[i + 1])
        t1h = (hh + (((eh >> 14 | el << 18) ^ (eh >> 18 | el << 14) ^ (el >> 9 | eh << 23)) & M)
               + (gh ^ (eh & (fh ^ gh))) + K[t] + w[i] + (lo >> 32))
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
    v = (ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl)
    for i in range(0, 16, 2):
        lo = state[i + 1] + v[i + 1]
        state[i + 1] = lo & M
        state[i] = (state[i] + v[i] + (lo >> 32)) & M


def _finish(state, tail, total_len):
    """Pad the final partial block (tail, < 128 bytes) and return the 64-byte digest."""
    block = bytearray(256 if len(tail) >= 112 else 128)
    block[: len(tail)] = tail
    block[len(tail)] = 0x80
    bits = total_len * 8
    end = len(block)
    block[end - 16 : end] = bits.to_bytes(16, "big")
    _compress(state, block, 0)
    if end == 256:
        _compress(state, block, 128)
    return struct.pack(">16I", *state)


def sha512(data):
    """The 64-byte SHA-512 digest of data (bytes, bytearray or memoryview)."""
    state = list(_IV)
    n = len(data)
    full = n - n % BLOCK_SIZE
    for offset in range(0, full, BLOCK_SIZE):
        _compress(state, data, offset)
    return _finish(state, data[full:], n)


class SHA512:
    """Incremental SHA-512: update(data) any number of times, then digest()."""

    digest_size = DIGEST_SIZE
    block_size = BLOCK_SIZE

    def __init__(self, data=None):
        self._state = list(_IV)
        self._pending = bytearray()
        self._length = 0
        if data is not None:
            self.update(data)

    def update(self, data):
        self._length += len(data)
        pending = self._pending
        if pending:
            need = BLOCK_SIZE - len(pending)
            pending.extend(data[:need])
            if len(pending) < BLOCK_SIZE:
                return
            _compress(self._state, pending, 0)
            self._pending = pending = bytearray()
            data = memoryview(data)[need:]
        n = len(data)
        full = n - n % BLOCK_SIZE
        for offset in range(0, full, BLOCK_SIZE):
            _compress(self._state, data, offset)
        if full < n:
            pending.extend(data[full:])

    def digest(self):
        """The digest of everything so far; more updates may follow."""
        return _finish(list(self._state), self._pending, self._length)
