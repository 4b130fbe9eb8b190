"""Ed25519 signatures (RFC 8032) in plain Python, for the kiosk board.

Runs unchanged on MicroPython and CPython; the gateway uses `cryptography` instead (host/keys.py)
and the two are cross-checked in the tests.

Written for a small heap: the board loads this as .mpy, and what it keeps live is the code, one
256-byte table and three big numbers; a key holds a few numbers more.

Signing computes [r]B with a signed comb (Hamburg, "Fast and compact elliptic-curve
cryptography", 2012): a scalar m is written as sum(s_i * 2**i) with every s_i = +1 or -1, and the
bits are read in 85 columns of 3 teeth. One column is one point of a table of 4 sums of
+-2**(85 * i) * B (the sign of the whole sum covers the other half), so [r]B is 85 doublings and
85 additions. The table (_TABLE, affine x and y of each entry) is a precomputed constant; the
tests rebuild it and compare.

Verifying checks [S]B - [k]A == R with one chain of 253 doublings: the bits of k add -A on the
way down, and over the last 85 doublings the comb adds the columns of S. A VerifyingKey keeps
only -A (three numbers), so making one is cheap and takes no table.

Points use extended twisted-Edwards coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z; added
points are in the affine "Niels" form (y + x, y - x, 2*d*x*y), which makes an addition 8
multiplies. Big constants are written so that the compiler does not fold them into more big
numbers held by the module (p + 18 is 2**255 - 1, for one).

Not constant-time: big-int arithmetic on either runtime takes time that depends on the values.
The signing path at least runs the same sequence of operations for every secret scalar.
"""

from .sha512 import SHA512

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


SEED_SIZE = const(32)
PUBLIC_KEY_SIZE = const(32)
SIGNATURE_SIZE = const(64)

_P = const(2**255 - 19)
_L = const(2**252 + 27742317777372353535851937790883648493)  # order of the base point
_D = const(37095705934669439343138083508754565189542113879843219016388785533085940283555)
_COLUMNS = const(85)  # of 3 teeth: 3 * 85 = 255 >= 254, the length of the odd m below


def _mul(s, k, a):
    """The encoding of [s]B + [k]A, with a = A in Niels form; k None means [s]B alone.

    s (0 <= s < L) is replaced by an odd representative m (s or s + L, < 2**254) and written
    with digits +-1: bit j of n = (m + 2**255 - 1) / 2 set means digit +1 at position j, clear
    means -1. Column j holds the bits j, 85 + j and 170 + j; a column whose top tooth is -1 is
    the negation of the entry with all its signs flipped.
    """
    p = _P
    from_bytes = int.from_bytes
    n = ((s + _L * (1 - (s & 1)) + p + 18) >> 1).to_bytes(32, "little")
    if k is not None:
        k = k.to_bytes(32, "little")
    X, Y, Z, T = 0, 1, 1, 0
    top = _COLUMNS - 1 if k is None else 252
    for i in range(top, -1, -1):
        if i != top:
            # dbl-2008-hwcd for a = -1, written out: this loop is where the time goes.
            A = X * X % p
            B = Y * Y % p
            H = A + B
            E = X + Y
            E = H - E * E % p
            G = A - B
            F = 2 * Z * Z % p + G
            X = E * F % p
            Y = G * H % p
            Z = F * G % p
            T = E * H % p
        for add in (0, 1):  # k's bit i: + A; then, over the last 85 doublings, column i of s
            if add == 0:
                if k is None or not (k[i >> 3] >> (i & 7)) & 1:
                    continue
                ypx, ymx, t2d = a
            else:
                if i >= _COLUMNS:
                    continue
                j = 170 + i
                negate = not n[j >> 3] >> (j & 7) & 1
                j = 85 + i
                j = (n[i >> 3] >> (i & 7) & 1) | (n[j >> 3] >> (j & 7) & 1) << 1
                j = 64 * (3 - j if negate else j)
                x = from_bytes(_TABLE[j:j + 32], "little")
                y = from_bytes(_TABLE[j + 32:j + 64], "little")
                if negate:  # -(x, y) = (-x, y)
                    x = p - x
                ypx = y + x
                ymx = y - x
                t2d = x * 2 * y % p * _D % p
            # Mixed addition with an affine Niels point (madd-2008-hwcd-3).
            A = (Y - X) * ymx % p
            B = (Y + X) * ypx % p
            C = T * t2d % p
            D = 2 * Z
            E = B - A
            F = D - C
            G = D + C
            H = B + A
            X = E * F % p
            Y = G * H % p
            Z = F * G % p
            T = E * H % p
    # y, with the low bit of x in bit 255
    Z = pow(Z, p - 2, p)
    return (Y * Z % p | (X * Z % p & 1) << 255).to_bytes(32, "little")


class SigningKey:
    """An Ed25519 private key from its 32-byte seed; signatures are deterministic."""

    def __init__(self, seed):
        if len(seed) != SEED_SIZE:
            raise ValueError("an Ed25519 seed is 32 bytes")
        h = SHA512(seed).digest()
        a = bytearray(h[:32])  # clamped, RFC 8032 section 5.1.5
        a[0] &= 248
        a[31] = (a[31] & 127) | 64
        # The base point has order L, so a and a mod L give the same point.
        self._scalar = int.from_bytes(a, "little") % _L
        self._prefix = h[32:]
        self.seed = bytes(seed)
        self.public_key = _mul(self._scalar, None, None)

    def sign(self, msg):
        """The 64-byte signature R || S of msg."""
        h = SHA512(self._prefix)
        h.update(msg)
        r = int.from_bytes(h.digest(), "little") % _L
        R = _mul(r, None, None)
        h = SHA512(R)
        h.update(self.public_key)
        h.update(msg)
        S = (r + int.from_bytes(h.digest(), "little") % _L * self._scalar) % _L
        return R + S.to_bytes(32, "little")


class VerifyingKey:
    """An Ed25519 public key. Its point is decoded here, once (about a third of a verify's
    work), and kept negated in Niels form: three numbers."""

    def __init__(self, public_key):
        if len(public_key) != PUBLIC_KEY_SIZE:
            raise ValueError("an Ed25519 public key is 32 bytes")
        self.public_key = bytes(public_key)
        # The point (x, y) encoded in 32 bytes, RFC 8032 section 5.1.3; None if the bytes
        # encode no curve point, so that nothing verifies against them.
        self._a = None
        p = _P
        y = int.from_bytes(public_key, "little")
        sign = y >> 255
        y &= p + 18  # 2**255 - 1
        if y >= p:
            return  # non-canonical encoding
        u = (y * y - 1) % p
        v = (_D * y * y + 1) % p
        # x = sqrt(u / v) = u v^3 (u v^7)^((p - 5) / 8)
        x = v * v % p * v % p  # v^3
        x = u * x % p * pow(u * x % p * x % p * v % p, (p - 5) // 8, p) % p
        if v * x % p * x % p != u:
            if v * x % p * x % p != p - u:
                return  # u / v is not a square: no point has this y
            x = x * pow(2, (p - 1) // 4, p) % p  # times sqrt(-1)
        if x == 0 and sign:
            return
        if x & 1 == sign:
            x = p - x  # -A, as verify adds [k](-A)
        self._a = ((y + x) % p, (y - x) % p, x * 2 * y % p * _D % p)

    def verify(self, msg, sig):
        """True only if sig is a valid signature of msg by this key (cofactorless check
        [S]B == R + [k]A, with S < L and R compared byte for byte as canonically encoded)."""
        if self._a is None or len(sig) != SIGNATURE_SIZE:
            return False
        R = bytes(sig[:32])
        S = int.from_bytes(sig[32:], "little")
        if S >= _L:
            return False  # non-canonical S would make signatures malleable
        h = SHA512(R)
        h.update(self.public_key)
        h.update(msg)
        return _mul(S, int.from_bytes(h.digest(), "little") % _L, self._a) == R


def generate(random_bytes):
    """A new SigningKey from random_bytes(n), which must return n cryptographically random bytes
    (os.urandom on the board)."""
    seed = random_bytes(SEED_SIZE)
    if len(seed) != SEED_SIZE:
        raise ValueError("random_bytes returned the wrong number of bytes")
    return SigningKey(seed)


# The comb table of the base point B: entry v (0..3) is the affine x and y (32 bytes each,
# little-endian) of 2**170 * B + sum over i < 2 of (+1 if bit i of v else -1) * 2**(85 * i) * B.
# A global, not a const(), so the tests can compare it with one they compute.
_TABLE = (
    b"\x86\x7c\x27\x23\x6d\x96\x76\x47\x4a\x49\x4c\x32\xd8\x7a\x94\x52"
    b"\xa2\x31\x15\x20\x53\x0b\x13\x01\x42\xbf\x29\x21\xc4\x67\x09\x1b"
    b"\x39\x98\x82\x88\xb3\x81\x76\x71\x76\x62\xb1\x07\xa3\x1f\xc2\x1d"
    b"\x4a\x0d\xd7\xa5\x79\x7f\x41\xc5\x52\x6f\x66\x17\x47\x35\x75\x2c"
    b"\x25\x3b\xdb\x50\x11\xa0\x16\xa6\x41\x54\x16\xac\x7e\xaa\x72\xbc"
    b"\x24\xcd\xe4\x43\x9c\x81\x68\x16\xe2\x70\x4e\x5b\x97\x42\x8c\x1d"
    b"\xac\x26\xf7\xc7\x34\xdb\xe7\xb4\x9b\xf2\x69\x0b\x51\x2c\x34\x16"
    b"\x2a\x44\xf1\xbc\x6c\xf5\xda\x26\xbf\x73\x04\xdd\x95\x34\x0e\x65"
    b"\xff\x79\x40\x44\x9c\x56\x36\x7b\x82\xc7\x4a\x08\x32\x93\xae\x73"
    b"\x25\x3a\xcf\xc1\x8b\x5b\x40\x6a\x68\x8c\x3d\x33\x36\xc4\xc6\x16"
    b"\xef\x0e\x5d\xdb\xbc\x75\x3d\x03\xf4\x05\x61\x22\xfa\xcd\x95\xe5"
    b"\xb8\x64\xce\x28\x9d\xef\x13\x0d\x35\x35\xd1\xda\x51\x3d\x08\x61"
    b"\x30\xe7\x28\x7d\xd0\x92\x7f\xc8\x8d\x18\x0b\x4e\x43\x06\x27\xff"
    b"\x05\xa1\xbb\x14\x93\x49\xb6\x1a\x44\x06\x57\xe1\x56\x5a\x82\x6d"
    b"\x8f\x59\xfd\xdc\xe1\x7a\x44\x7a\x76\x6d\xd0\xe2\xc8\x67\x34\x0a"
    b"\x75\xdc\x71\x85\x0f\xfc\x96\x38\x95\x55\x73\xa4\x3e\xb7\x0f\x5a"
)
