"""Counts in words for the lines people read: "1 row", "2 rows", "no rows"."""

from __future__ import annotations

from collections.abc import Mapping


def count(n: int, noun: str) -> str:
    """``n`` of ``noun`` as a sentence says it: "no rows", "1 row", "2 rows" (nouns that
    take an -s: row, task, deferred row)."""
    if n == 0:
        return f"no {noun}s"
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def by_status(counts: Mapping[str, int]) -> str:
    """ "updated 9, invalid_nik 1" (statuses as the report names them), or "nothing"."""
    return ", ".join(f"{status} {n:,}" for status, n in counts.items() if n) or "nothing"
