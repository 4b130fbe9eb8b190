"""ID numbers as people may see them: on screens, in printouts and in logs.

A social security number (18 characters) is shown as its first 6 (the region of issue) and last
4 characters with the middle starred: 130630********0048. The full number lives only in the
ledger, where it is needed to match a card to a person.
"""

from __future__ import annotations

KEEP_HEAD = 6
KEEP_TAIL = 4


def mask_id(number: str) -> str:
    """`number` with all but its first 6 and last 4 characters replaced by '*'.

    Anything 10 characters or shorter is starred whole: keeping 6 + 4 would show all of it.
    """
    if len(number) <= KEEP_HEAD + KEEP_TAIL:
        return "*" * len(number)
    hidden = len(number) - KEEP_HEAD - KEEP_TAIL
    return number[:KEEP_HEAD] + "*" * hidden + number[-KEEP_TAIL:]
