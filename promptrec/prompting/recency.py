"""Relative-time markers for a history ("2 days ago"), measured from the newest event in that history.

The reference is the history's own newest timestamp, not the clock, so the same history always renders
the same prompt (offline evaluation stays reproducible and never sees the target's time).
"""

from __future__ import annotations

from collections.abc import Sequence

from promptrec.models import Interaction

_UNITS = ((365 * 86400, "year"), (30 * 86400, "month"), (7 * 86400, "week"), (86400, "day"), (3600, "hour"))


def relative_time(seconds: float) -> str:
    """A coarse English age: "most recent" (under an hour), "3 hours ago", "2 days ago", "1 year ago"."""
    for size, unit in _UNITS:
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "most recent"


def history_ages(history: Sequence[Interaction]) -> list[str | None]:
    """Each event's age relative to the newest timestamped event; None where a timestamp is missing."""
    stamps = [event.timestamp for event in history if event.timestamp is not None]
    if not stamps:
        return [None] * len(history)
    newest = max(stamps)
    return [None if event.timestamp is None else relative_time(newest - event.timestamp) for event in history]
