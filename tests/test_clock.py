"""One timestamp format and one days-left, as stored, shown and reminded."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from watcher.clock import days_left, iso, parse


@pytest.mark.parametrize(("moment", "text"), [
    (datetime(2026, 1, 4, 19, 13, 29, 999_999, tzinfo=UTC), "2026-01-04T19:13:29Z"),
    (datetime(2026, 1, 4, 20, 13, 29, tzinfo=timezone(timedelta(hours=1))), "2026-01-04T19:13:29Z"),
    (1_767_554_009.5, "2026-01-04T19:13:29Z"),
])
def test_iso_is_utc_to_the_second(moment: datetime | float, text: str) -> None:
    assert iso(moment) == text


def test_parse_reads_back_what_iso_writes() -> None:
    moment = datetime(2026, 1, 4, 19, 13, 29, tzinfo=UTC)
    assert parse(iso(moment)) == moment
    with pytest.raises(ValueError, match="does not match"):
        parse("2026-01-04 19:13:29")


@pytest.mark.parametrize(("expires", "left"), [
    ("2026-01-11", 7),
    ("2026-01-05T00:00:00Z", 1),       # a time counts from its date
    ("2026-01-04", 0),
    ("2026-01-01", -3),                # past
    ("soon", None), ("2026-13-01", None), (None, None), (20260111, None),
])
def test_days_left_counts_whole_days_to_a_date(expires: object, left: int | None) -> None:
    assert days_left(expires, date(2026, 1, 4)) == left
