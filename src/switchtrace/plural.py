"""Counts in messages: ``count(1, "loop")`` is "1 loop", ``count(2, "loop")``
"2 loops". Every message that puts a number before a noun goes through it."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, the noun in the plural (``plural``, else noun + "s")
    unless ``n`` is 1."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
