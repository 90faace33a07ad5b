"""Wall-clock time as this package writes it: UTC, to the second, ``2026-01-04T19:13:29Z``.

Stored check and event times use this form, so they sort as text and compare with
``>=`` in SQL.  Waits use the monotonic clock instead (``loop.time()``, ``time.monotonic``).
"""

from __future__ import annotations

from datetime import UTC, datetime

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | float) -> str:
    """``moment`` (a datetime, or seconds since the epoch) as stored and shown."""
    when = datetime.fromtimestamp(moment, UTC) if isinstance(moment, (int, float)) else moment
    return when.astimezone(UTC).strftime(ISO_FORMAT)
