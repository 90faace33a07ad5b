"""Wall-clock time as this package writes it: UTC, to the second, ``2026-01-04T19:13:29Z``.

Stored check and event times use this form, so they sort as text and compare with
``>=`` in SQL.  Waits use the monotonic clock instead (``loop.time()``, ``time.monotonic``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | float) -> str:
    """``moment`` (a datetime, or seconds since the epoch) as stored and shown."""
    when = datetime.fromtimestamp(moment, UTC) if isinstance(moment, (int, float)) else moment
    return when.astimezone(UTC).strftime(ISO_FORMAT)


def parse(text: str) -> datetime:
    """A time written by :func:`iso` back as an aware datetime; ValueError if it is not one.

    ``fromisoformat`` once the shape is checked: strptime took ~15 us a time, which a model
    page with thousands of prices paid for each."""
    try:
        if len(text) == 20 and text[10] == "T" and text[-1] == "Z":
            return datetime.fromisoformat(text)
    except ValueError:
        pass
    raise ValueError(f"time data {text[:40]!r} does not match format {ISO_FORMAT!r}")


def days_left(expires: object, today: date) -> int | None:
    """Whole days from ``today`` to the date ``expires`` begins with (an ISO date, or a time
    such as a model's ``expiration_date``); None when it is not one.  Negative once past."""
    if not isinstance(expires, str):
        return None
    try:
        return (date.fromisoformat(expires[:10]) - today).days
    except ValueError:
        return None
