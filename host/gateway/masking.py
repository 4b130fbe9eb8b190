"""ID numbers as people may see them: on screens, in printouts and in logs.

A social security number (18 characters) is shown as its first 6 (the region of issue) and last
4 characters with the middle starred: 130630********0048. The full number lives only in the
ledger, where it is needed to match a card to a person.
"""

from __future__ import annotations

import re

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


# An 18-character ID number inside free text (17 digits and a digit or X), not part of a longer
# run of digits.
_ID_IN_TEXT = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")


def mask_ids_in_text(text: str) -> str:
    """`text` with every ID number in it masked (a library's message may quote a row)."""
    return _ID_IN_TEXT.sub(lambda found: mask_id(found.group()), text)
