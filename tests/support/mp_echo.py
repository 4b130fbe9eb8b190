# Importable on both runtimes: lets the harness test prove values and errors cross intact.
from onestop.protocol.errors import ProtocolError


def echo(value):
    return value


def fail(code):
    raise ProtocolError(code, "raised on purpose")
