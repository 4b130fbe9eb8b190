"""Render a simulated printer's `Receipt` as the PNG a resident would take home.

The image is the 384-dot print head of 58 mm paper at 1 dot per pixel. Characters sit in the
printer's cells (12x24 dots for ASCII, 24x24 for Chinese, scaled by the GS ! multipliers and
stretched dot-for-dot like the head does); bold is double-struck; QR codes are real symbols
(segno) at the module size, error correction and alignment the stream asked for.

Chinese needs a CJK font: WenQuanYi Micro Hei Mono from the PyPI package
`paperang-p2-fonts-cjk`, else a system WenQuanYi/Noto CJK font. Without one the text is drawn
with Pillow's default font, Chinese comes out as boxes, and a warning is logged.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import TypeAlias

import segno
from onestop.host.sim.printer import FONT_A_DOTS, HEAD_DOTS, LINE_DOTS, Line, QrCode, Receipt
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger("onestop.sim.receipt_render")

GLYPH_PX = 24
MARGIN_DOTS = 16
_SYSTEM_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)
_MONO_FACE = 1  # wqy-microhei.ttc: face 0 is proportional, face 1 "Micro Hei Mono"

Font: TypeAlias = ImageFont.FreeTypeFont | ImageFont.ImageFont


def find_cjk_font() -> Path | None:
    try:
        from importlib.resources import files

        packaged = Path(str(files("paperang_p2_fonts_cjk") / "fonts" / "wqy-microhei.ttc"))
        if packaged.exists():
            return packaged
    except ModuleNotFoundError:
        pass
    for candidate in _SYSTEM_FONTS:
        if Path(candidate).exists():
            return Path(candidate)
    return None


@lru_cache(maxsize=1)
def receipt_font() -> Font:
    path = find_cjk_font()
    if path is None:
        log.warning("no CJK font found (pip install paperang-p2-fonts-cjk): "
                    "Chinese renders as boxes")
        return ImageFont.load_default(size=GLYPH_PX)
    face = _MONO_FACE if path.name == "wqy-microhei.ttc" else 0
    return ImageFont.truetype(str(path), GLYPH_PX, index=face)


def missing_glyphs(text: str, font: Font | None = None) -> set[str]:
    """Characters of `text` the font would draw as its 'missing' box."""
    font = font or receipt_font()

    def ink(char: str) -> bytes:
        image = Image.new("L", (2 * GLYPH_PX, 2 * GLYPH_PX), 0)
        ImageDraw.Draw(image).text((0, 0), char, font=font, fill=255)
        return image.tobytes()

    missing_box = ink("\U0010fffd")  # a private-use code point no font draws
    return {ch for ch in set(text) if not ch.isspace() and ink(ch) == missing_box}


@lru_cache(maxsize=4096)
def _glyph(char: str, width: int, height: int, bold: bool) -> Image.Image:
    cell_w = (FONT_A_DOTS if ord(char) < 0x80 else 2 * FONT_A_DOTS)
    cell = Image.new("L", (cell_w, GLYPH_PX), 255)
    draw = ImageDraw.Draw(cell)
    font = receipt_font()
    # centre the advance box in the cell, keeping the baseline: '.' and ',' stay on it
    ascent, descent = (font.getmetrics() if isinstance(font, ImageFont.FreeTypeFont)
                       else (GLYPH_PX, 0))
    x = (cell_w - round(font.getlength(char))) // 2
    y = (GLYPH_PX - (ascent + descent)) // 2
    for dx in (0, 1) if bold else (0,):
        draw.text((x + dx, y), char, font=font, fill=0)
    if (width, height) != (1, 1):
        cell = cell.resize((cell_w * width, GLYPH_PX * height), Image.Resampling.NEAREST)
    return cell.point([0] * 128 + [255] * 128)  # thermal dots are on or off


def _x_for(align: str, dots: int) -> int:
    if align == "center":
        return (HEAD_DOTS - dots) // 2
    if align == "right":
        return HEAD_DOTS - dots
    return 0


def _line_image(line: Line) -> Image.Image:
    height = LINE_DOTS * line.height
    image = Image.new("L", (HEAD_DOTS, height), 255)
    x = _x_for(line.align, line.dots)
    for span in line.spans:
        for char in span.text:
            glyph = _glyph(char, span.width, span.height, span.bold)
            image.paste(glyph, (x, height - glyph.height - (LINE_DOTS - GLYPH_PX)))
            x += glyph.width
    return image


def _qr_image(qr: QrCode) -> Image.Image:
    symbol = segno.make_qr(qr.data, error=qr.ecc.lower(), boost_error=False)
    size = qr.module * len(symbol.matrix)
    image = Image.new("L", (HEAD_DOTS, size + LINE_DOTS - GLYPH_PX), 255)
    x0 = _x_for(qr.align, size)
    for row, bits in enumerate(symbol.matrix):
        for col, dark in enumerate(bits):
            if dark:
                image.paste(0, (x0 + col * qr.module, row * qr.module,
                                x0 + (col + 1) * qr.module, (row + 1) * qr.module))
    return image


def render_image(receipt: Receipt) -> Image.Image:
    parts = [_qr_image(item) if isinstance(item, QrCode) else _line_image(item)
             for item in receipt.items]
    height = MARGIN_DOTS + sum(part.height for part in parts) + MARGIN_DOTS
    image = Image.new("L", (HEAD_DOTS, height), 255)
    y = MARGIN_DOTS
    for part in parts:
        image.paste(part, (0, y))
        y += part.height
    if receipt.cut:
        draw = ImageDraw.Draw(image)
        for x in range(0, HEAD_DOTS, 12):  # where the cutter went through
            draw.line((x, height - 2, x + 6, height - 2), fill=128)
    return image


def render_png(receipt: Receipt, path: str | Path) -> Path:
    path = Path(path)
    render_image(receipt).save(path, format="PNG")
    return path
