"""What a well-formed request may still carry that a ledger cannot keep or look up.

frames.cddl allows a NUL character in free text (a bill_id, a setl_id); PostgreSQL text cannot
hold one, so a lookup by such a value fails as a statement instead of finding nothing, and the
kiosk would be told the ledger is unavailable. Refusing it as `invalid` before the ledger gives
the same answer on both backends, and the right one.
"""

from __future__ import annotations

from typing import Any

from onestop.protocol.errors import ProtocolError


def check_text(request: dict[str, Any]) -> None:
    """Raise `invalid` if any text in the request holds a NUL character."""
    where = _nul_in(request)
    if where is not None:
        raise ProtocolError("invalid", f"{request['t']}{where}: text must not contain NUL")


def _nul_in(value: Any) -> str | None:
    """Where the first text holding NUL is within `value` ("" for `value` itself), or None.
    (Every request passes here: the path is only spelled out once something is found.)"""
    if type(value) is str:
        return "" if "\x00" in value else None
    if type(value) is dict:
        for key, item in value.items():
            found = _nul_in(item)
            if found is not None:
                return f".{key}{found}"
    elif type(value) is list:
        for index, item in enumerate(value):
            found = _nul_in(item)
            if found is not None:
                return f"[{index}]{found}"
    return None
