"""Large text for a shared screen: a 3x5 pixel font drawn with half blocks, three terminal rows high.

A screen-shared terminal at 160x45 on a 1080p call makes ordinary text about 12 px high; these letters are
five half-cells (about 60 px), readable by everyone on the call. Only what the presenter layout needs:
A-Z, 0-9 and a little punctuation; anything else is drawn as '?'.
"""

from __future__ import annotations

_GLYPHS: dict[str, tuple[str, ...]] = {
    "A": ("###", "#.#", "###", "#.#", "#.#"),
    "B": ("##.", "#.#", "##.", "#.#", "##."),
    "C": ("###", "#..", "#..", "#..", "###"),
    "D": ("##.", "#.#", "#.#", "#.#", "##."),
    "E": ("###", "#..", "##.", "#..", "###"),
    "F": ("###", "#..", "##.", "#..", "#.."),
    "G": ("###", "#..", "#.#", "#.#", "###"),
    "H": ("#.#", "#.#", "###", "#.#", "#.#"),
    "I": ("###", ".#.", ".#.", ".#.", "###"),
    "J": ("..#", "..#", "..#", "#.#", "###"),
    "K": ("#.#", "#.#", "##.", "#.#", "#.#"),
    "L": ("#..", "#..", "#..", "#..", "###"),
    "M": ("#...#", "##.##", "#.#.#", "#...#", "#...#"),
    "N": ("#..#", "##.#", "#.##", "#..#", "#..#"),
    "O": ("###", "#.#", "#.#", "#.#", "###"),
    "P": ("###", "#.#", "###", "#..", "#.."),
    "Q": ("###", "#.#", "#.#", "###", "..#"),
    "R": ("##.", "#.#", "##.", "#.#", "#.#"),
    "S": ("###", "#..", "###", "..#", "###"),
    "T": ("###", ".#.", ".#.", ".#.", ".#."),
    "U": ("#.#", "#.#", "#.#", "#.#", "###"),
    "V": ("#.#", "#.#", "#.#", "#.#", ".#."),
    "W": ("#...#", "#...#", "#.#.#", "##.##", "#...#"),
    "X": ("#.#", "#.#", ".#.", "#.#", "#.#"),
    "Y": ("#.#", "#.#", ".#.", ".#.", ".#."),
    "Z": ("###", "..#", ".#.", "#..", "###"),
    "0": ("###", "#.#", "#.#", "#.#", "###"),
    "1": (".#.", "##.", ".#.", ".#.", "###"),
    "2": ("###", "..#", "###", "#..", "###"),
    "3": ("###", "..#", ".##", "..#", "###"),
    "4": ("#.#", "#.#", "###", "..#", "..#"),
    "5": ("###", "#..", "##.", "..#", "##."),  # not S
    "6": ("###", "#..", "###", "#.#", "###"),
    "7": ("###", "..#", "..#", "..#", "..#"),
    "8": ("###", "#.#", "###", "#.#", "###"),
    "9": ("###", "#.#", "###", "..#", "###"),
    " ": ("..", "..", "..", "..", ".."),
    ".": (".", ".", ".", ".", "#"),
    ":": (".", "#", ".", "#", "."),
    "/": ("..#", "..#", ".#.", "#..", "#.."),
    "-": ("...", "...", "###", "...", "..."),
    "%": ("#.#", "..#", ".#.", "#..", "#.#"),
    "?": ("###", "..#", ".##", "...", ".#."),
    "!": ("#", "#", "#", ".", "#"),
    "<": ("..#", ".#.", "#..", ".#.", "..#"),
    ">": ("#..", ".#.", "..#", ".#.", "#.."),
}
_ALIASES = {"\u2014": "-", "\u2013": "-", "_": "-", "\u2265": ">", "\u2264": "<", "\u00d7": "X"}
# (top pixel, bottom pixel) → the half-block cell that draws them
_CELL = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}
ROWS = 3  # terminal rows of one line of big text


def _glyph(char: str) -> tuple[str, ...]:
    char = _ALIASES.get(char, char).upper()
    return _GLYPHS.get(char, _GLYPHS["?"])


def width(text: str, scale: int = 1) -> int:
    """Columns `render(text, scale)` takes."""
    if not text:
        return 0
    return sum(len(_glyph(c)[0]) * scale + 1 for c in text) - 1


def render(text: str, scale: int = 1) -> list[str]:
    """ROWS lines drawing `text`; `scale` 2 doubles every pixel's width (wider, easier to read)."""
    pixels = ["", "", "", "", ""]
    for i, char in enumerate(text):
        glyph = _glyph(char)
        for row in range(5):
            gap = "." if i else ""
            pixels[row] += gap + "".join(p * scale for p in glyph[row])
    pixels.append("." * len(pixels[0]))  # the sixth half-row, blank, completes the third terminal row
    rows = zip(pixels[0::2], pixels[1::2], strict=True)
    return [
        "".join(_CELL[t == "#", b == "#"] for t, b in zip(top, bottom, strict=True)) for top, bottom in rows
    ]


def fit(text: str, room: int) -> int | None:
    """The largest scale (2, then 1) at which `text` fits in `room` columns; None when it does not fit."""
    for scale in (2, 1):
        if width(text, scale) <= room:
            return scale
    return None
