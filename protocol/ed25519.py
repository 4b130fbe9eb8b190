"""Ed25519 signatures (RFC 8032) in plain Python, for the kiosk board.

Runs unchanged on MicroPython and CPython; the gateway uses `cryptography` instead (host/keys.py)
and the two are cross-checked in the tests.

Speed comes from a signed comb (Hamburg, "Fast and compact elliptic-curve cryptography", 2012):
a scalar m is written as sum(s_i * 2**i) with every s_i = +1 or -1, and the bits are read in
COLUMNS columns of TEETH bits each. One column is one point of a table of 2**(TEETH - 1) sums of
+-2**(i * COLUMNS) * point (the sign of the whole sum covers the other half), so a scalar
multiplication is COLUMNS doublings and COLUMNS additions. The base point's table (1.5 KB) is a
precomputed constant. A VerifyingKey builds the same table for its negated public point when it
is made and keeps it, so verifying [S]B - [k]A walks both tables with one shared chain of COLUMNS
doublings.

Points use extended twisted-Edwards coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z; table
entries are affine "Niels" triples (y + x, y - x, 2*d*x*y), which make an addition 7 multiplies.

Not constant-time: big-int arithmetic on either runtime takes time that depends on the values.
The signing path at least runs the same sequence of operations for every secret scalar.
"""

from .sha512 import SHA512, sha512

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # order of the base point
D = 37095705934669439343138083508754565189542113879843219016388785533085940283555  # -121665/121666
D2 = 2 * D % P
SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
BASE_X = 15112221349535400772501151409588531511454012693041857206046113283949847762202
BASE_Y = 46316835694926478169428394003475163141307993866256225615783033603165251855960

TEETH = 5
COLUMNS = 51  # TEETH * COLUMNS = 255 >= 254, the length of the odd representative below
_ENTRIES = 1 << (TEETH - 1)
_LOW_TEETH = _ENTRIES - 1  # the index bits taken by all teeth but the top one
_ALL_ONES = (1 << (TEETH * COLUMNS)) - 1
_COLUMN_MASK = (1 << COLUMNS) - 1
_ENTRY_SIZE = 96  # y + x, y - x, 2dxy
_NEGATE = 0x80  # flag in a comb digit: use the entry negated
_Y_MASK = (1 << 255) - 1

SEED_SIZE = 32
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64


# ---------------------------------------------------------------- points
def _double(X, Y, Z):
    """2 * (X, Y, Z) as extended (X, Y, Z, T); dbl-2008-hwcd for a = -1 (T of the input unused)."""
    p = P
    A = X * X % p
    B = Y * Y % p
    H = A + B
    S = X + Y
    E = H - S * S % p
    G = A - B
    F = 2 * Z * Z % p + G
    return E * F % p, G * H % p, F * G % p, E * H % p


def _add(X1, Y1, Z1, T1, X2, Y2, Z2, T2):
    """(X1, Y1, Z1, T1) + (X2, Y2, Z2, T2), add-2008-hwcd-3; complete for a = -1."""
    p = P
    A = (Y1 - X1) * (Y2 - X2) % p
    B = (Y1 + X1) * (Y2 + X2) % p
    C = T1 * D2 * T2 % p
    Dz = 2 * Z1 * Z2 % p
    E = B - A
    F = Dz - C
    G = Dz + C
    H = B + A
    return E * F % p, G * H % p, F * G % p, E * H % p


def _square_n(x, n, p):
    for _ in range(n):
        x = x * x % p
    return x


def _pow_2_250_minus_1(z):
    """(z**(2**250 - 1), z**11) mod p by the addition chain of ref10's fe_invert: 250
    squarings and 11 multiplies, much less work than the generic pow() does."""
    p = P
    z2 = z * z % p
    z9 = _square_n(z2, 2, p) * z % p
    z11 = z9 * z2 % p
    z5 = z11 * z11 % p * z9 % p  # z**(2**5 - 1)
    z10 = _square_n(z5, 5, p) * z5 % p
    z20 = _square_n(z10, 10, p) * z10 % p
    z40 = _square_n(z20, 20, p) * z20 % p
    z50 = _square_n(z40, 10, p) * z10 % p
    z100 = _square_n(z50, 50, p) * z50 % p
    z200 = _square_n(z100, 100, p) * z100 % p
    return _square_n(z200, 50, p) * z50 % p, z11


def _invert(z):
    """1/z mod p, as z**(p - 2) = z**(2**255 - 21)."""
    z250, z11 = _pow_2_250_minus_1(z)
    return _square_n(z250, 5, P) * z11 % P


def _encode(X, Y, Z):
    """The 32-byte encoding of a projective point: y, with the low bit of x in bit 255."""
    zinv = _invert(Z)
    x = X * zinv % P
    y = Y * zinv % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _decode(data):
    """The affine point (x, y) encoded in 32 bytes, or None if they encode no curve point."""
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= _Y_MASK
    if y >= P:
        return None  # non-canonical encoding
    p = P
    yy = y * y % p
    u = (yy - 1) % p
    v = (D * yy + 1) % p
    # x = sqrt(u / v) = u v^3 (u v^7)^((p - 5) / 8), RFC 8032 section 5.1.3
    v3 = v * v % p * v % p
    uv7 = u * v3 % p * v3 % p * v % p
    root = _square_n(_pow_2_250_minus_1(uv7)[0], 2, p) * uv7 % p  # (p - 5) / 8 = 2**252 - 3
    x = u * v3 % p * root % p
    vxx = v * x % p * x % p
    if vxx != u:
        if vxx != p - u:
            return None  # u / v is not a square: no point has this y
        x = x * SQRT_M1 % p
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = p - x
    return x, y


# ---------------------------------------------------------------- signed comb
def _comb_table(x, y):
    """The comb table of the point Q = (x, y): 2**(TEETH-1) entries of three 32-byte
    little-endian numbers each, the affine Niels form of

    entry v = 2**((TEETH-1)*COLUMNS) * Q + sum over i < TEETH-1 of (+1 if bit i of v else -1)
    * 2**(i*COLUMNS) * Q.

    Built with little heap held at once (a verifier builds one on the board): entries are
    visited in Gray-code order, each one tooth flip (+-2 * tooth) from the last, and parked as
    projective X, Y, Z bytes in the table itself until one shared inversion makes them affine.
    """
    p = P
    teeth = []
    X, Y, Z, T = x, y, 1, x * y % p
    for i in range(TEETH):
        teeth.append((X, Y, Z, T))
        if i < TEETH - 1:
            for _ in range(COLUMNS):
                X, Y, Z, T = _double(X, Y, Z)
    twice = [_add(t[0], t[1], t[2], t[3], t[0], t[1], t[2], t[3]) for t in teeth]
    X, Y, Z, T = teeth[TEETH - 1]  # entry 0: every lower tooth at -1
    for i in range(TEETH - 1):
        tx, ty, tz, tt = teeth[i]
        X, Y, Z, T = _add(X, Y, Z, T, -tx, ty, tz, -tt)
    teeth = None
    table = bytearray(_ENTRY_SIZE * _ENTRIES)
    view = memoryview(table)
    for k in range(_ENTRIES):
        v = k ^ (k >> 1)
        if k:
            bit = 0
            while not (k >> bit) & 1:  # Gray codes k-1 and k differ in k's lowest set bit
                bit += 1
            tx, ty, tz, tt = twice[bit]
            if not (v >> bit) & 1:  # that tooth goes back from +1 to -1
                tx = -tx
                tt = -tt
            X, Y, Z, T = _add(X, Y, Z, T, tx, ty, tz, tt)
        o = _ENTRY_SIZE * v
        view[o : o + 32] = X.to_bytes(32, "little")
        view[o + 32 : o + 64] = Y.to_bytes(32, "little")
        view[o + 64 : o + 96] = Z.to_bytes(32, "little")
    twice = None
    # One inversion for all Z (Montgomery's trick): prefix products Z_0 ... Z_{i-1} as bytes.
    prefix = bytearray(32 * _ENTRIES)
    acc = 1
    for i in range(_ENTRIES):
        prefix[32 * i : 32 * i + 32] = acc.to_bytes(32, "little")
        o = _ENTRY_SIZE * i + 64
        acc = acc * int.from_bytes(view[o : o + 32], "little") % p
    inv = _invert(acc)
    for i in range(_ENTRIES - 1, -1, -1):
        o = _ENTRY_SIZE * i
        X = int.from_bytes(view[o : o + 32], "little")
        Y = int.from_bytes(view[o + 32 : o + 64], "little")
        Z = int.from_bytes(view[o + 64 : o + 96], "little")
        zinv = inv * int.from_bytes(prefix[32 * i : 32 * i + 32], "little") % p
        inv = inv * Z % p
        ex = X * zinv % p
        ey = Y * zinv % p
        view[o : o + 32] = ((ey + ex) % p).to_bytes(32, "little")
        view[o + 32 : o + 64] = ((ey - ex) % p).to_bytes(32, "little")
        view[o + 64 : o + 96] = (D2 * ex % p * ey % p).to_bytes(32, "little")
    return table


def _comb_digits(m):
    """One table index per column (highest column last) for scalar m, 0 <= m < L.

    m is replaced by an odd representative (m or m + L, < 2**254) and written with digits +-1:
    bit j of k = (m + 2**n - 1) / 2 set means digit +1 at position j, clear means -1. A column
    whose top tooth is -1 is the negation of the entry with all its signs flipped; such indexes
    carry the _NEGATE flag.
    """
    m += L * (1 - (m & 1))
    k = (m + _ALL_ONES) >> 1
    teeth = [(k >> (i * COLUMNS)) & _COLUMN_MASK for i in range(TEETH)]
    top = teeth[TEETH - 1]
    digits = bytearray(COLUMNS)
    for j in range(COLUMNS):
        idx = 0
        for i in range(TEETH - 2, -1, -1):
            idx = idx << 1 | (teeth[i] >> j) & 1
        if not (top >> j) & 1:
            idx = (idx ^ _LOW_TEETH) | _NEGATE
        digits[j] = idx
    return digits


def _comb_mul(table, m):
    """m * Q as projective (X, Y, Z), where table = _comb_table(Q)."""
    return _comb_mul2(table, m, None, 0)


def _comb_mul2(table1, m1, table2, m2):
    """m1 * Q1 + m2 * Q2 as projective (X, Y, Z), sharing one chain of doublings; table2 None
    means m1 * Q1 alone."""
    p = P
    from_bytes = int.from_bytes
    tables = (memoryview(table1),) if table2 is None else (memoryview(table1), memoryview(table2))
    digits = (_comb_digits(m1),) if table2 is None else (_comb_digits(m1), _comb_digits(m2))
    X, Y, Z, T = 0, 1, 1, 0
    for j in range(COLUMNS - 1, -1, -1):
        if j != COLUMNS - 1:
            # dbl-2008-hwcd for a = -1, written out: this loop is where the time goes.
            A = X * X % p
            B = Y * Y % p
            H = A + B
            S = X + Y
            E = H - S * S % p
            G = A - B
            F = 2 * Z * Z % p + G
            X = E * F % p
            Y = G * H % p
            Z = F * G % p
            T = E * H % p
        last = len(tables) - 1
        for n in range(last + 1):
            idx = digits[n][j]
            table = tables[n]
            o = _ENTRY_SIZE * (idx & _LOW_TEETH)
            if idx & _NEGATE:  # -(x, y) = (-x, y): swap y+x with y-x, negate 2dxy
                ypx = from_bytes(table[o + 32 : o + 64], "little")
                ymx = from_bytes(table[o : o + 32], "little")
                t2d = p - from_bytes(table[o + 64 : o + 96], "little")
            else:
                ypx = from_bytes(table[o : o + 32], "little")
                ymx = from_bytes(table[o + 32 : o + 64], "little")
                t2d = from_bytes(table[o + 64 : o + 96], "little")
            # Mixed addition with an affine Niels entry (madd-2008-hwcd-3).
            A = (Y - X) * ymx % p
            B = (Y + X) * ypx % p
            C = T * t2d % p
            Dz = 2 * Z
            E = B - A
            F = Dz - C
            G = Dz + C
            H = B + A
            X = E * F % p
            Y = G * H % p
            Z = F * G % p
            if n != last:  # the next doubling does not read T
                T = E * H % p
    return X, Y, Z


# ---------------------------------------------------------------- keys
def _hash_int(*parts):
    h = SHA512()
    for part in parts:
        h.update(part)
    return int.from_bytes(h.digest(), "little")


class SigningKey:
    """An Ed25519 private key from its 32-byte seed; signatures are deterministic."""

    def __init__(self, seed):
        if len(seed) != SEED_SIZE:
            raise ValueError("an Ed25519 seed is 32 bytes")
        h = sha512(seed)
        a = int.from_bytes(h[:32], "little")
        a = (a & ((1 << 254) - 8)) | (1 << 254)  # clamp, RFC 8032 section 5.1.5
        self._scalar = a % L  # the base point has order L, so a and a mod L give the same point
        self._prefix = h[32:]
        self.seed = bytes(seed)
        self.public_key = _encode(*_comb_mul(_BASE_TABLE, self._scalar))

    def sign(self, msg):
        """The 64-byte signature R || S of msg."""
        r = _hash_int(self._prefix, msg) % L
        R = _encode(*_comb_mul(_BASE_TABLE, r))
        k = _hash_int(R, self.public_key, msg) % L
        S = (r + k * self._scalar) % L
        return R + S.to_bytes(32, "little")


class VerifyingKey:
    """An Ed25519 public key. Its point is decoded and its comb table built here, once (about
    one and a half verifies' worth of work; 1.5 KB kept), so every verify costs the same; a
    board makes its gateway key at boot, while the heap is still unfragmented."""

    def __init__(self, public_key):
        if len(public_key) != PUBLIC_KEY_SIZE:
            raise ValueError("an Ed25519 public key is 32 bytes")
        self.public_key = bytes(public_key)
        point = _decode(self.public_key)
        # None: the bytes are not a curve point, so nothing verifies against them.
        self._table = None if point is None else _comb_table(-point[0] % P, point[1])

    def verify(self, msg, sig):
        """True only if sig is a valid signature of msg by this key (cofactorless check
        [S]B == R + [k]A, with S < L and R compared byte for byte as canonically encoded)."""
        if self._table is None or len(sig) != SIGNATURE_SIZE:
            return False
        R = bytes(sig[:32])
        S = int.from_bytes(sig[32:], "little")
        if S >= L:
            return False  # non-canonical S would make signatures malleable
        k = _hash_int(R, self.public_key, msg) % L
        return _encode(*_comb_mul2(_BASE_TABLE, S, self._table, k)) == R


def generate(random_bytes):
    """A new SigningKey from random_bytes(n), which must return n cryptographically random bytes
    (os.urandom on the board)."""
    seed = random_bytes(SEED_SIZE)
    if len(seed) != SEED_SIZE:
        raise ValueError("random_bytes returned the wrong number of bytes")
    return SigningKey(seed)


# _comb_table(BASE_X, BASE_Y), precomputed: a literal stays in flash when the module is frozen
# into the firmware, and nothing is built at boot. The tests rebuild it and compare.
_BASE_TABLE = (
    b"\x68\xe9\x27\x0c\xb9\x61\xba\x8e\x66\x08\xc2\x62\x25\x83\x6b\xde"
    b"\x75\x15\x16\xcc\x16\xf0\x9e\xee\xde\xcf\xad\x5d\x34\x08\xaf\x53"
    b"\xa5\x67\x87\x94\x61\x92\xdb\x16\x8a\xa6\x69\x34\x4d\xe3\x33\x61"
    b"\x1b\xc1\x40\xee\xcd\x8d\xc8\x1d\xe7\xcf\x1a\x99\x48\xe4\x2d\x42"
    b"\x93\xcc\xe5\x96\xfd\xa3\x78\x1b\xcc\x68\x4a\x7a\x65\xb8\xc2\x16"
    b"\xf6\x98\xcc\xff\x90\x53\x68\x3b\xe8\x6b\x1c\x3f\x8f\xc8\x76\x2e"
    b"\x68\x9a\xec\xc7\x11\x24\xe9\x75\xc3\xb1\x93\x7c\xb4\x32\x31\xd8"
    b"\xd8\x68\xec\x40\x29\x6c\x02\x2d\x1f\x2d\x5b\x2a\x4f\x5b\x32\x33"
    b"\xb9\x1b\xe4\x83\x62\xac\x23\x01\x1f\x01\x0b\x79\x69\x75\x59\x6c"
    b"\x01\x4f\xe9\xf1\x7c\x34\x76\x96\xc7\x9d\x1e\x65\x7c\xdc\xa0\x7b"
    b"\x3f\x53\x03\x0a\x75\xbb\x5c\xf3\x30\x77\x73\x63\xb6\x8f\xb7\xef"
    b"\x98\xe3\xc0\x59\xfe\x05\xf7\xb5\x99\xde\xcd\x8a\xad\x5d\xdf\x16"
    b"\xf8\xa9\x70\xb2\x28\xed\x1c\x17\x90\x04\xb9\x2d\x74\x4b\xcd\x64"
    b"\xed\xda\xf8\xb0\x1a\x76\xa7\xa3\x33\x2e\x50\x32\x71\x99\x39\x0f"
    b"\x46\xba\x2c\x02\x09\x2d\xa5\x4a\x99\x9a\x6c\x77\x61\x4c\x01\x43"
    b"\x96\xe1\xe9\xb3\xf0\x8b\xcd\xe5\xba\xd6\x38\x45\x9c\x8f\x6f\x3b"
    b"\x4d\x97\xd2\x16\x78\x96\xdf\xf8\x6e\x2a\xfc\xb1\x59\xbb\x03\x6c"
    b"\x11\xd7\x7d\x5f\x2a\xea\x85\xf4\x97\x85\xf3\x9d\xf7\xba\x09\x0f"
    b"\x89\x2d\x75\xee\x87\x77\x10\x52\x45\x29\xfd\x49\xed\x4b\x70\x9c"
    b"\x62\xb7\xff\x03\x38\x54\x8c\xb2\x46\x39\xa1\xbd\x04\x89\xcf\x57"
    b"\xd1\x72\x19\x27\xc1\x2e\xd3\xba\xf6\x58\x90\xf4\x1a\xf4\x46\x74"
    b"\x43\xef\x1b\x04\xa9\xf8\xc7\x04\x78\x64\x85\xbc\xf2\x31\x9c\x1e"
    b"\x44\xa4\x07\x55\x58\xee\xa0\x90\x1a\x8e\x48\x45\x55\x4c\x63\x46"
    b"\x1a\x38\x98\x11\xb2\xc0\x7b\x07\x69\x89\x12\x17\x19\xc4\x75\x29"
    b"\x17\xf3\x2b\x83\xeb\x3e\x5e\x26\x37\x1a\x69\x2d\xc1\x0b\x65\x81"
    b"\x1d\xd1\x99\xf6\x63\xc3\xa8\xd0\x23\x85\x48\x1f\x81\xb0\x6e\x09"
    b"\x3c\x4b\x7f\x61\x8c\x57\x19\x51\xdb\x84\x04\x4d\x6e\xbe\x9b\x02"
    b"\x18\x65\x22\xc1\x61\x0c\x77\xe0\x27\x48\x72\x5d\xc1\x16\x71\x4d"
    b"\xce\x07\x9b\x65\x3e\xca\xe0\x65\xa3\x0d\x6d\x54\x79\x93\xf8\xa8"
    b"\x75\xf8\xa8\x8e\x53\x11\x31\x6c\x02\xb8\x90\xd7\xcc\x5b\x6a\x3f"
    b"\x4f\x17\x01\xb8\xd7\x04\xc3\xd1\xe3\x37\x15\x09\xf0\xbf\x4b\x59"
    b"\x59\x31\x3b\xf7\x56\xd9\x93\x4d\x5c\x15\xf3\x0c\xf0\x76\x81\x3a"
    b"\x90\xf8\x7f\x4b\xec\x4d\xd8\x67\x10\xa9\xeb\xb4\xa7\x5a\xb7\xdc"
    b"\xcb\xdc\x40\xa5\x0c\x14\x9a\x28\x70\x59\x90\x15\x12\x0c\x51\x7b"
    b"\x57\x90\xac\x73\xd1\x71\xe1\x36\x16\x71\xa0\xb5\x44\x12\x37\x65"
    b"\x4e\x64\x7c\x7a\x09\xc4\x90\x18\x8d\xca\x9a\x2e\x31\x1e\x46\x56"
    b"\x0f\x0e\xa2\x21\xcb\xf7\x38\xae\x3d\x6b\x86\xea\x10\x14\x8e\xd7"
    b"\xe5\x72\x60\xc1\xce\x47\x25\x08\x64\x8b\x32\x56\xde\xb4\xb7\x75"
    b"\xed\x3f\x92\xe5\x37\x0d\x35\x7b\x43\x84\xd7\xeb\x9c\x1a\xf8\x1a"
    b"\x0b\x84\x91\x45\xa7\xc6\xfd\xf2\xe4\x03\x41\xaa\x9d\x7f\xa0\x79"
    b"\xaf\x85\x53\x6f\x6c\xb2\x1d\xda\x1b\xba\xa2\x33\xee\x0e\x64\x4a"
    b"\xea\x6f\x74\x83\x4e\xe6\xb7\x1d\x77\x3d\xc9\x7d\x88\xcb\xb8\x21"
    b"\x9c\xd7\xcb\xf3\x9b\xd5\x0f\x43\x1b\x01\xab\x65\x29\x81\x70\xf8"
    b"\x0b\x6c\x6d\x2b\x9b\xd4\x72\x1b\xe0\x71\x4a\x27\x68\x0e\xea\x6e"
    b"\xb0\x5f\xa9\xf3\xd9\x5f\x3d\xd1\x67\x5f\xe9\xbf\x73\xca\x59\x38"
    b"\xfd\xea\x1b\x0c\x35\x9a\xc6\x56\x69\xd8\x2a\xaa\xee\xf0\xf6\x04"
    b"\xda\x58\xfd\x34\xd3\xf2\x5f\x3c\xc2\x00\xab\x33\x07\xf1\x4e\xfd"
    b"\x96\xb2\x2b\xdf\xfe\x2a\x73\x8d\x22\x77\x4b\xbd\x52\xa2\x08\x19"
    b"\x8c\x1f\xbc\xf7\x02\x52\xa1\x61\xb5\x1d\x21\xbc\x1a\xff\x4b\x3b"
    b"\x23\xbe\xf4\xc6\xff\x25\xdf\xfb\x2e\xbc\x34\x1c\x2b\xe0\x35\x20"
    b"\x73\x4c\x0e\x70\xd4\xf3\xe2\x8a\x39\xb5\x65\x75\x0e\x1f\x68\xb8"
    b"\x2b\xc6\xd2\x24\x17\xb9\x0f\x5a\x70\x16\x44\xfa\x0a\x8e\xb5\x57"
    b"\xef\x6b\xfa\x61\x65\x15\x1d\xe4\x1c\x74\xf7\x4c\xf4\x0f\x3b\x53"
    b"\xf2\x77\xa8\xa4\x2d\xa3\x8f\xc1\x51\x8e\xe0\xfe\xe3\x77\xd8\x58"
    b"\x4c\xd6\xef\xb1\x4b\xc1\x73\xfe\x0b\xe1\xf9\x5a\x62\x6f\xbd\xf3"
    b"\xc4\x7e\xc2\x15\x08\xa7\xc7\x92\x14\x36\xd9\x36\x7e\x43\x7f\x2d"
    b"\x8b\xac\xab\xcd\x2e\x82\xe3\x65\xdf\xfc\x28\x9e\xbc\x95\x25\x69"
    b"\xa6\xf4\x70\x8d\xb6\x61\xb8\x39\x3a\x74\x15\xd5\xef\xf1\x37\x1d"
    b"\x2b\x14\xc4\x62\x5f\x01\x0d\x26\x69\xdf\x77\x80\xbe\x12\x82\x32"
    b"\x24\xba\x49\xa0\x93\xf1\xe7\x82\x30\x6e\xec\x4c\x58\x2d\x2b\x45"
    b"\x5d\xa0\x98\xb1\x35\xfe\x02\x52\x64\x34\xc1\x3b\xf8\x3e\xd0\xb5"
    b"\xc3\x8b\x32\xb7\x10\x9f\x02\x67\xbb\xf3\x68\x75\x6f\x44\x5c\x26"
    b"\x20\xf4\xcf\xe0\xfb\x5b\x79\x8f\x3a\xc2\xf6\xc3\x56\xc6\xb8\x2b"
    b"\x6e\x41\xa3\x46\xe0\xcb\x2b\xf7\xf1\xbf\xf9\x1c\xb8\xd7\xa0\x47"
    b"\x32\x5d\xde\x8f\x52\x1c\x7c\x27\xcd\x55\x4a\x58\xce\x1b\xd2\xde"
    b"\xde\x57\x23\x81\xa2\x7d\x6a\x84\xd2\xf5\xf8\x8b\x7f\x40\x27\x77"
    b"\xe0\x3c\x59\x64\xf3\x9b\xf7\x01\x04\x5b\x80\x91\x69\x33\xbc\x18"
    b"\x9c\x0b\xa6\xf9\x2a\x9f\x06\xab\x47\x40\x6c\xab\x6d\x3b\xd9\x36"
    b"\xfb\x69\xae\x22\x24\xef\x64\xcd\xb4\x85\xe8\x15\x83\x87\x26\x76"
    b"\xf1\x08\x25\x63\x09\x66\x2d\xb6\xfd\xd3\xb6\xeb\x63\xa4\x55\x45"
    b"\xa3\xa2\x05\x2f\x87\x2d\xe9\xb9\xe4\x15\x87\x90\x14\xf4\xde\x54"
    b"\x18\x1d\xdc\x9e\xb0\xc5\xa9\x03\x66\xec\xfd\x95\xcb\x06\xeb\x61"
    b"\xf8\x0b\xe9\xf9\x2d\xfd\x22\xd1\x63\x84\xf8\xe4\xac\x41\x23\xcd"
    b"\x4c\xbf\xbe\x8b\xb1\x1c\x75\xa5\xf1\x86\x71\xab\xe1\xce\xf9\x59"
    b"\x53\x6d\x04\xd8\x39\xe3\x4f\x2a\x37\xa4\xaf\xef\x7a\x3c\x0b\x63"
    b"\x50\x54\x4f\x6b\x6b\x23\xf7\x51\x9a\x56\xe8\x38\x9d\xce\xe6\x16"
    b"\xa8\xe3\xf9\x04\x00\xcb\xfb\xe3\x60\xb1\xeb\xe4\x48\xff\x30\x8a"
    b"\xb4\xce\x65\x7f\xd4\x4c\x42\x96\xd9\xba\x10\x48\x20\x5b\xc7\x09"
    b"\x8e\x21\x67\x7d\x66\x84\xa6\x60\x18\x20\xcc\xb9\x48\x98\x9d\x72"
    b"\xc9\x4c\x6d\x7e\x84\xbb\x47\xd9\x6b\xa0\xf6\x73\xca\xe9\x9e\x47"
    b"\xa6\xb1\x98\x86\x9c\x43\x8d\xb5\x51\xda\x5e\xe1\x51\xb6\x06\x57"
    b"\x7a\xe7\xa8\x2f\xd8\x2c\xa3\x0a\x63\x24\x1e\x9f\xd3\xd6\xdc\x07"
    b"\xd2\xf2\xcc\xa1\xa5\xc3\x02\x23\xc7\xf8\x49\xc0\x5c\x93\x23\x14"
    b"\xc2\xb9\x6c\xa3\x7a\xfc\xa0\x7f\x49\x72\x86\x2d\xa2\xab\x33\x4d"
    b"\x06\xbe\x83\x8b\x82\x3e\x15\x4d\x85\xc7\x31\x43\x1b\x53\x90\x16"
    b"\x48\x22\x01\xad\xd5\x1d\x1f\xf2\x97\xf3\xb4\xde\x05\x08\x37\x3f"
    b"\x7c\x3e\x94\x54\x7e\xad\xd1\xff\x6c\x57\x10\x0e\x6a\xca\x4c\x65"
    b"\x8d\x80\xc9\x4b\xdc\xad\x50\x63\x43\x69\x6d\xaa\x02\x2b\xfb\x24"
    b"\x9f\x5a\xf0\x4a\x47\x72\xab\x18\xf2\x8c\x70\x0f\xf1\x59\xc0\x90"
    b"\x50\x6c\x91\xf5\x02\x16\x8a\x57\xfd\xcd\xeb\x50\x1e\x3c\x7d\x4a"
    b"\xf4\xc7\x5e\x04\x7b\x56\xfd\x10\xb7\xcb\xb7\x47\xc5\x6c\xb7\xd6"
    b"\x68\xed\xb5\x66\x8b\xf5\x13\x40\xd6\xf1\x04\x73\xb3\x29\x38\x5e"
    b"\xa6\xd0\xe2\x70\x50\x7e\xbe\x9f\xff\xff\xf7\x73\xf0\xe0\x0d\x13"
    b"\xd0\x02\xe8\x71\xb8\xfe\x57\x91\x6b\x04\x17\x3d\xcd\x7d\xbb\x4c"
    b"\xe1\xf7\x7e\xc6\xef\xc2\xdd\x1c\xd8\x1c\x41\xc4\x79\xd5\x02\xfe"
    b"\x49\xd8\x8f\x65\xf0\x81\xea\x7d\xdc\xd8\xba\xb5\x58\xfe\x6d\x2a"
)
