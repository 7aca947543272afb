"""Numbers in text as the verifier reads them: ``$`` and thousands commas dropped, exact fractions."""

from __future__ import annotations

import re
from fractions import Fraction

# a number: optional minus sign (ASCII or U+2212) directly before it, optional $, digits with optional
# thousands commas, optional decimals; not starting inside another number
NUMBER = re.compile(r"(?<![\d.])([-\u2212]?)\$?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)")
STRICT = re.compile(r"(?:####|=|answer is)\s*[-\u2212]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s*\.?\s*$",
                    re.IGNORECASE)


def number(match: re.Match) -> Fraction:
    return Fraction(match.group(2).replace(",", "")) * (-1 if match.group(1) else 1)


def parse_number(text: str) -> Fraction | None:
    """The first number in ``text`` (``"$1,234.50."`` -> 1234.5, ``"-7"`` -> -7), or None."""
    m = NUMBER.search(text)
    return number(m) if m else None
