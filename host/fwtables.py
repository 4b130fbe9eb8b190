"""Build the firmware's GBK lookup tables (flash files the board binary-searches with seeks).

MicroPython has no GBK codec and a full table cannot live in a 64 KB heap, so the firmware reads
two sorted fixed-width tables from flash (see firmware/drivers/gbk.py):

    gbk_u2g.bin  unicode -> GBK, records sorted by code point
    gbk_g2u.bin  GBK -> unicode, records sorted by GBK code

File layout (big-endian): 4-byte magic (b"GBU1" / b"GBD1"), uint32 record count, then
`count` records of uint16 key + uint16 value. Every two-byte GBK character is a BMP character,
so 16 bits suffice both ways. The tables come from Python's `gbk` codec (21,791 characters);
its two-byte mappings agree with GB18030's, so the bytes are valid GB18030 for the printer and
GB2312-compatible for the display. The output is deterministic: the same bytes on every build.

    python -m onestop.host.fwtables DEST_DIR
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

UNICODE_TO_GBK = "gbk_u2g.bin"
GBK_TO_UNICODE = "gbk_g2u.bin"
MAGIC_U2G = b"GBU1"
MAGIC_G2U = b"GBD1"
HEADER = struct.Struct(">4sI")
RECORD = struct.Struct(">HH")


def gbk_pairs() -> list[tuple[int, int]]:
    """Every (code point, GBK code) of the two-byte GBK set, sorted by code point."""
    pairs = []
    for lead in range(0x81, 0xFF):
        for trail in range(0x40, 0xFF):
            if trail == 0x7F:  # never a GBK trail byte
                continue
            raw = bytes((lead, trail))
            try:
                char = raw.decode("gbk")
            except UnicodeDecodeError:
                continue
            pairs.append((ord(char), (lead << 8) | trail))
    pairs.sort()
    return pairs


def _table(magic: bytes, records: list[tuple[int, int]]) -> bytes:
    out = bytearray(HEADER.pack(magic, len(records)))
    for key, value in records:
        out += RECORD.pack(key, value)
    return bytes(out)


def build_gbk_tables(dest_dir: str | Path) -> list[Path]:
    """Write both tables into `dest_dir` (created if missing); returns their paths."""
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    pairs = gbk_pairs()
    by_gbk = sorted((gbk, cp) for cp, gbk in pairs)
    written = []
    for name, magic, records in (
        (UNICODE_TO_GBK, MAGIC_U2G, pairs),
        (GBK_TO_UNICODE, MAGIC_G2U, by_gbk),
    ):
        path = dest / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(_table(magic, records))
        tmp.replace(path)  # a half-written table must never be picked up by a board deploy
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the firmware's GBK tables.")
    parser.add_argument("dest_dir", type=Path)
    args = parser.parse_args(argv)
    for path in build_gbk_tables(args.dest_dir):
        print(f"{path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
