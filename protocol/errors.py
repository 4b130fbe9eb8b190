"""The one exception a peer's violation raises, with a stable machine-readable code.

Runs on MicroPython and CPython. Codes are short text so they can travel in an `error` frame.
"""


class ProtocolError(Exception):
    def __init__(self, code, msg=""):
        super().__init__(code, msg)
        self.code = code
        self.msg = msg

    def __str__(self):
        return self.code + (": " + self.msg if self.msg else "")
