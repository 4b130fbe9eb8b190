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


def base_table_is_the_computed_one():
    """The precomputed comb table of the base point equals one built from scratch here."""
    return ed25519._comb_table(ed25519.BASE_X, ed25519.BASE_Y) == ed25519._BASE_TABLE


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
