# Importable on both runtimes: cbor.Tag cannot cross the runtime boundary, so tests write a tag
# as the tuple ("$tag", number, value) and these wrappers convert on the far side.
from onestop.protocol import cbor


def to_native(value):
    if isinstance(value, tuple) and len(value) == 3 and value[0] == "$tag":
        return cbor.Tag(value[1], to_native(value[2]))
    if isinstance(value, (list, tuple)):
        return [to_native(v) for v in value]
    if isinstance(value, dict):
        return {k: to_native(v) for k, v in value.items()}
    return value


def to_wire(value):
    if isinstance(value, cbor.Tag):
        return ("$tag", value.tag, to_wire(value.value))
    if isinstance(value, list):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value


def dumps(value):
    return cbor.dumps(to_native(value))


def loads(data):
    return to_wire(cbor.loads(data))


def load_item(data, offset):
    value, end = cbor.load_item(memoryview(data), offset)
    return (to_wire(value), end)


def roundtrip(data):
    """loads then dumps: a canonical input comes back byte for byte."""
    return cbor.dumps(cbor.loads(data))
