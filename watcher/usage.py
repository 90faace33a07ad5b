"""The account's usage, from OpenRouter's ``GET /api/v1/activity``.

The endpoint answers, for each of the last 30 completed UTC days and each model endpoint
used, one row: ``date``, ``model``, ``model_permaslug``, ``endpoint_id``,
``provider_name``, ``usage`` (USD), ``byok_usage_inference``, ``requests``,
``prompt_tokens``, ``completion_tokens``, ``reasoning_tokens``.  It needs a provisioning
(management) key: an inference key gets 403 "Only management keys can fetch activity".

=====================================  ==============================================
what happens                           what follows
=====================================  ==============================================
200, rows parsed                       the days in the answer not stored yet are
                                       stored (a day is final once stored); the
                                       next fetch is the next day's, ~30 min after
                                       the UTC day boundary
401, 402, 403                          one operator notice (durable, repeated at most
                                       every ``operator.repeat_interval``): a
                                       provisioning key is needed; tried again the
                                       next day
5xx, 429, timeouts, a bad body         logged; retried by fetch's own backoff, then
                                       again with a growing delay (capped at the next
                                       day's fetch)
=====================================  ==============================================

Nothing here is in the way of an alert: the cycle reads whatever usage is stored (none:
the events carry no impact fields), and the fetch runs in its own task.

:func:`parse` and :func:`next_fetch` are pure; :func:`fetch` is the I/O edge (through
:mod:`watcher.fetch`: its timeouts, body cap, retries and error translation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from watcher.config import RetryPolicy, Usage, Watch
from watcher.errors import SnapshotError
from watcher.impact import ModelUsage, Summary

if TYPE_CHECKING:  # the readers (`show`, the pages) summarise without loading aiohttp
    import aiohttp

    from watcher.store import Store

WINDOW_DAYS = 30
FETCH_AFTER = timedelta(minutes=30)   # after the UTC day boundary: the day is complete
MAX_ROWS = 200_000                    # 30 days x endpoints; a hostile answer stays bounded
MAX_TEXT = 200                        # characters of a model id, endpoint or provider name
NOTICE_SUBJECT = "usage (activity)"   # not a watch name (those have no spaces)


@dataclass(frozen=True)
class Row:
    """One (day, model endpoint) row of the activity."""

    date: str
    model: str
    model_permaslug: str | None
    endpoint_id: str
    provider_name: str | None
    usage: float
    byok_usage_inference: float
    requests: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int


ROW_FIELDS = tuple(f.name for f in fields(Row))


def is_day(text: str) -> bool:
    """``YYYY-MM-DD``, a real date."""
    return len(text) == 10 and _day(text) is not None


def window_start(through: str) -> str:
    """The first day of the WINDOW_DAYS that end on day ``through``."""
    end = date.fromisoformat(through)
    return (end - timedelta(days=WINDOW_DAYS - 1)).isoformat()


def parse(body: bytes) -> list[Row]:
    """The rows of an activity response; SnapshotError when it is not one.

    A row with a missing or odd value is skipped (one bad row costs only itself); numbers
    must be finite and not negative.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"the activity response is not JSON: {exc}") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise SnapshotError('the activity response has no "data" list')
    if len(data) > MAX_ROWS:
        raise SnapshotError(f"the activity response has {len(data)} rows (at most {MAX_ROWS})")
    return [row for item in data if (row := _row(item)) is not None]


def _row(item: Any) -> Row | None:
    if not isinstance(item, dict):
        return None
    day, model, endpoint = item.get("date"), _text(item.get("model")), _text(item.get("endpoint_id"))
    if not isinstance(day, str) or _day(day) is None or model is None or endpoint is None:
        return None
    money = [_amount(item.get(k)) for k in ("usage", "byok_usage_inference")]
    counts = [_count(item.get(k)) for k in ("requests", "prompt_tokens", "completion_tokens",
                                            "reasoning_tokens")]
    if any(v is None for v in (*money, *counts)):
        return None
    usage, byok = (float(v or 0) for v in money)
    requests, prompt, completion, reasoning = (int(v or 0) for v in counts)
    return Row(date=day[:10], model=model, model_permaslug=_text(item.get("model_permaslug")),
               endpoint_id=endpoint, provider_name=_text(item.get("provider_name")),
               usage=usage, byok_usage_inference=byok, requests=requests, prompt_tokens=prompt,
               completion_tokens=completion, reasoning_tokens=reasoning)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= MAX_TEXT else None


def _amount(value: Any) -> float | None:
    """A USD amount: a finite number >= 0 (absent: 0)."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and 0 <= number < 1e12 else None


def _count(value: Any) -> int | None:
    """A count: an integer >= 0 (absent: 0)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 10 ** 15:
        return None
    return value


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def last_complete_day(now: datetime) -> date:
    """The newest day the activity can have: yesterday (UTC) once ``FETCH_AFTER`` has passed
    since midnight, the day before otherwise."""
    return (now.astimezone(UTC) - FETCH_AFTER).date() - timedelta(days=1)


def due(now: datetime, fetched_through: str | None) -> bool:
    """Whether the stored usage lacks a day the activity now has."""
    if fetched_through is None or (stored := _day(fetched_through)) is None:
        return True
    return stored < last_complete_day(now)


def next_fetch(now: datetime) -> datetime:
    """When the next day becomes complete: ``FETCH_AFTER`` past the next UTC midnight."""
    now = now.astimezone(UTC)
    today = datetime.combine((now - FETCH_AFTER).date(), time(), tzinfo=UTC)
    return today + timedelta(days=1) + FETCH_AFTER


def source_watch(usage: Usage) -> Watch:
    """The activity endpoint as a :class:`Watch`, so that :mod:`watcher.fetch` reads it with
    its timeouts, cap, retries and key handling (a re-read ``api_key_file`` too)."""
    return Watch(name="usage", url=usage.url, interval=86400.0, api_key=usage.api_key,
                 api_key_file=usage.api_key_file, timeout=usage.timeout, max_pages=1)


async def fetch(session: aiohttp.ClientSession, usage: Usage, *,
                policy: RetryPolicy | None = None) -> list[Row]:
    """Every row the activity has now (FetchError, AuthError or SnapshotError if not)."""
    from watcher import fetch as http  # noqa: PLC0415 - see the TYPE_CHECKING import

    (body,) = await http.fetch(session, source_watch(usage), policy=policy)
    return parse(body)


def summarise(rows: list[Row] | list[tuple[Any, ...]], last_day: str | None = None) -> Summary | None:
    """The :class:`Summary` of ``rows`` (Rows, or tuples in Row's field order) over the
    WINDOW_DAYS ending at ``last_day`` (default: the newest row's day); None without rows
    or a last day."""
    items = [r if isinstance(r, Row) else Row(*r) for r in rows]
    last = last_day or max((r.date for r in items), default=None)
    if last is None or (end := _day(last)) is None:
        return None
    first = (end - timedelta(days=WINDOW_DAYS - 1)).isoformat()
    totals: dict[str, list[float]] = {}
    for row in items:
        if not first <= row.date <= last:
            continue
        for key in {row.model, row.model_permaslug} - {None}:
            t = totals.setdefault(str(key), [0.0, 0, 0, 0, 0])
            t[0] += row.usage
            t[1] += row.requests
            t[2] += row.prompt_tokens
            t[3] += row.completion_tokens
            t[4] += row.reasoning_tokens
    return Summary(first_day=first, last_day=last, models={
        model: ModelUsage(spend_usd=t[0], requests=int(t[1]), prompt_tokens=int(t[2]),
                          completion_tokens=int(t[3]), reasoning_tokens=int(t[4]))
        for model, t in totals.items()})


def usage_30d(store: Store, model: str) -> dict[str, Any] | None:
    """``model``'s usage over the 30 days up to the newest fetched day, as ``show MODEL
    --format json`` and ``/api/models/{id}`` give it (``usage_30d``); None before the first
    fetch."""
    through = store.usage_through()
    if through is None:
        return None
    first = window_start(through)
    summary = summarise(store.usage_rows(since=first, model=model), through)
    used = summary.of(model) if summary else ModelUsage()
    return {"first_day": first, "last_day": through, "spend_usd": round(used.spend_usd, 2),
            "requests": used.requests, "prompt_tokens": used.prompt_tokens,
            "completion_tokens": used.completion_tokens,
            "reasoning_tokens": used.reasoning_tokens}


def usage_days(store: Store, model: str) -> list[tuple[str, float, int]]:
    """``model``'s (day, USD, requests) over the 30 days up to the newest fetched day, a
    day without use as 0: the model page's bar chart."""
    through = store.usage_through()
    if through is None:
        return []
    first = date.fromisoformat(window_start(through))
    per_day: dict[str, list[float]] = {}
    for row in store.usage_rows(since=first.isoformat(), model=model):
        entry = per_day.setdefault(row[0], [0.0, 0])
        entry[0] += float(row[5] or 0)
        entry[1] += int(row[7] or 0)
    days = [(first + timedelta(days=n)).isoformat() for n in range(WINDOW_DAYS)]
    return [(d, round(per_day.get(d, [0.0, 0])[0], 6), int(per_day.get(d, [0.0, 0])[1]))
            for d in days if d <= through]
