"""Numeric final answers (GSM8K and the arithmetic task): parse "1,000.00", "$18", "-3", "25%"."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Optional

_NUMBER_RE = re.compile(r"-?\$?\s*(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


def parse_number(text: str) -> Optional[Decimal]:
    """The single number written in `text` ("$1,000.00." -> 1000), or None if it is not one number."""
    cleaned = text.strip().rstrip(".").strip()
    cleaned = re.sub(r"^\$|(?<=-)\$", "", cleaned).replace("$", "")
    cleaned = cleaned.rstrip("%").strip()
    for suffix in (" dollars", " dollar", " cents"):
        if cleaned.lower().endswith(suffix):
            cleaned = cleaned[: -len(suffix)].strip()
    if not re.fullmatch(r"-?\s*(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?", cleaned) or not re.search(r"\d", cleaned):
        return None
    try:
        return Decimal(cleaned.replace(",", "").replace(" ", ""))
    except InvalidOperation:
        return None


def first_number(text: str) -> Optional[Decimal]:
    """The first number in free text ("18 dollars per day" -> 18), or None."""
    match = _NUMBER_RE.search(text)
    return parse_number(match.group()) if match else None


def last_number(text: str) -> Optional[Decimal]:
    matches = _NUMBER_RE.findall(text)
    return parse_number(matches[-1]) if matches else None


def format_number(value: Decimal) -> str:
    """Canonical text for a number: no trailing zeros, no exponent ("1000.00" -> "1000")."""
    normalized = value.normalize()
    if normalized == normalized.to_integral_value():
        return str(normalized.quantize(Decimal(1)))
    return format(normalized, "f")
