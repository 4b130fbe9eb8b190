# Importable on both runtimes: the protocol's SHA-512 and Ed25519 behind plain functions, so a
# test passes only bytes, lists and tuples across the MicroPython boundary and gets the same
# answers back from CPython and from the MicroPython unix port.
from onestop.protocol import ed25519
from onestop.protocol.sha512 import SHA512, sha512


def sha512_digest(data):
    return sha512(data)


def sha512_prefixes(data, lengths):
    """The one-shot digest of data[:n] for each n (block-boundary sweeps in one call)."""
    return [sha512(data[:n]) for n in lengths]


def sha512_chunks(chunks):
    """Incremental digest of the chunks fed in order, with a digest() peeked after each one."""
    h = SHA512()
    peeks = []
    for chunk in chunks:
        h.update(chunk)
        peeks.append(h.digest())
    return h.digest(), peeks


def sha512_views(data):
    """One-shot and incremental digests of data given as bytes, bytearray and memoryview."""
    out = []
    for view in (data, bytearray(data), memoryview(data)):
        out.append(sha512(view))
        out.append(SHA512(view).digest())
    return out


def public_key(seed):
    return ed25519.SigningKey(seed).public_key


def sign(seed, msg):
    return ed25519.SigningKey(seed).sign(msg)


def sign_views(seed, msg):
    """Signatures of msg given as bytes, bytearray and memoryview."""
    key = ed25519.SigningKey(seed)
    return [key.sign(msg), key.sign(bytearray(msg)), key.sign(memoryview(msg))]


def verify(public, msg, sig):
    return ed25519.VerifyingKey(public).verify(msg, sig)


def verify_many(public, pairs):
    """One VerifyingKey (its cached point and table reused) over many (msg, sig) pairs."""
    key = ed25519.VerifyingKey(public)
    return [key.verify(msg, sig) for msg, sig in pairs]


def generate_with(random_bytes):
    """(seed, public key) of ed25519.generate fed the given bytes as its random source."""
    asked = []

    def source(n):
        asked.append(n)
        return random_bytes

    key = ed25519.generate(source)
    return key.seed, key.public_key, asked


# Textbook curve arithmetic, independent of protocol/ed25519.py, to rebuild its comb table.
P = 2**255 - 19
D = -121665 * pow(121666, P - 2, P) % P
BASE = (15112221349535400772501151409588531511454012693041857206046113283949847762202,
        46316835694926478169428394003475163141307993866256225615783033603165251855960)


def _affine_add(a, b):
    """a + b on -x^2 + y^2 = 1 + d x^2 y^2 (the Edwards addition law, one inversion each)."""
    t = D * a[0] * b[0] * a[1] * b[1] % P
    return ((a[0] * b[1] + a[1] * b[0]) * pow(1 + t, P - 2, P) % P,
            (a[1] * b[1] + a[0] * b[0]) * pow(1 - t, P - 2, P) % P)


def comb_table(teeth=3, columns=85, point=BASE):
    """Entry v: 2**((teeth-1)*columns) * Q + sum over i < teeth-1 of (+1 if bit i of v else -1)
    * 2**(i*columns) * Q, as affine x and y, 32 bytes little-endian each."""
    powers = [point]
    for _ in range(teeth - 1):
        q = powers[-1]
        for _ in range(columns):
            q = _affine_add(q, q)
        powers.append(q)
    out = bytearray()
    for v in range(1 << (teeth - 1)):
        q = powers[teeth - 1]
        for i in range(teeth - 1):
            x, y = powers[i]
            q = _affine_add(q, (x, y) if (v >> i) & 1 else ((P - x) % P, y))
        out.extend(q[0].to_bytes(32, "little"))
        out.extend(q[1].to_bytes(32, "little"))
    return bytes(out)


def base_table_is_the_computed_one():
    """The precomputed comb table of the base point equals one built from scratch here."""
    return comb_table() == ed25519._TABLE


def value_error(kind, arg):
    """The ValueError message a constructor raises for arg, or None ("seed" or "public")."""
    try:
        if kind == "seed":
            ed25519.SigningKey(arg)
        elif kind == "public":
            ed25519.VerifyingKey(arg)
        else:
            ed25519.generate(lambda n: arg)
    except ValueError as exc:
        return str(exc)
    return None
