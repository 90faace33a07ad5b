"""The filters that every listing shares (page, feed, JSON): parsed from a query string.

``?type=price_changed&model=openai/*&watch=models&since=7d&limit=50`` means the same on
``/``, ``/feed.atom`` and ``/api/events`` as the same options of ``history``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from watcher.clock import iso
from watcher.events import EVENT_TYPES, Event
from watcher.store import EventQuery
from watcher.yamldoc import parse_duration

MAX_LIMIT = 10_000
MAX_TEXT = 200  # a model glob or watch name longer than this is no filter a person typed
MAX_AGE_DAYS = 36_500  # since=: a century; more cannot be subtracted from now (year 1)


class FilterError(ValueError):
    """A query string that does not describe a filter; the message is for the user."""


SORTS = ("", "impact")


def by_impact(events: list[Event]) -> list[Event]:
    """``events`` (newest first) by the absolute monthly impact, then the 30-day spend,
    largest first; events without either keep their order after them."""
    def weight(event: Event) -> tuple[float, float]:
        impact, spend = event.get("monthly_impact_usd"), event.get("spend_30d_usd")
        return (-abs(impact) if isinstance(impact, (int, float)) else 0.0,
                -spend if isinstance(spend, (int, float)) else 0.0)
    return sorted(events, key=weight)


@dataclass(frozen=True)
class Filters:
    type: str = ""
    model: str = ""      # a glob on the model id, as in rules and ``history --model``
    watch: str = ""
    since: str = ""      # an age: 30m, 12h, 7d
    limit: int = 0       # 0: the listing's default
    sort: str = ""       # "impact": the largest monthly impact (then spend) first

    @classmethod
    def parse(cls, query: Mapping[str, str], *, default_limit: int) -> Filters:
        """The filters in ``query``; :class:`FilterError` for values that make no sense."""
        kind = query.get("type", "").strip()
        if kind and kind not in EVENT_TYPES:
            raise FilterError(f"type: unknown event type {kind!r}; one of "
                              f"{', '.join(sorted(EVENT_TYPES))}")
        model, watch = query.get("model", "").strip(), query.get("watch", "").strip()
        since = query.get("since", "").strip()
        for name, value in (("model", model), ("watch", watch), ("since", since)):
            if len(value) > MAX_TEXT:
                raise FilterError(f"{name}: longer than {MAX_TEXT} characters")
        if since:
            seconds = parse_duration(since)
            if seconds is None:
                raise FilterError(f"since: expected an age such as 30m, 12h or 7d, got {since!r}")
            if seconds > MAX_AGE_DAYS * 86400:
                raise FilterError(f"since: at most {MAX_AGE_DAYS}d, got {since!r}")
        raw_limit = query.get("limit", "").strip()
        limit = default_limit
        if raw_limit:
            # ASCII digits, and few: int() of thousands of digits raises, and "٣" is a digit.
            if (not (raw_limit.isascii() and raw_limit.isdigit()) or len(raw_limit) > 9
                    or not 0 < int(raw_limit) <= MAX_LIMIT):
                raise FilterError(f"limit: expected a whole number from 1 to {MAX_LIMIT}, "
                                  f"got {raw_limit[:20]!r}")
            limit = int(raw_limit)
        sort = query.get("sort", "").strip()
        if sort not in SORTS:
            raise FilterError(f"sort: expected impact (or nothing: newest first), got {sort[:20]!r}")
        return cls(type=kind, model=model, watch=watch, since=since, limit=limit, sort=sort)

    def event_query(self, now: datetime) -> EventQuery:
        since = None
        if self.since:
            seconds = parse_duration(self.since) or 0.0
            since = iso(now - timedelta(seconds=seconds))
        return EventQuery(watch=self.watch or None, model_glob=self.model or None,
                          type=self.type or None, since=since, limit=self.limit or None)

    def query_string(self, *, limit: bool = True) -> str:
        """The canonical query string (``type=...&model=...``), empty when nothing is set."""
        pairs = [(k, v) for k, v in (("type", self.type), ("model", self.model),
                                     ("watch", self.watch), ("since", self.since),
                                     ("sort", self.sort)) if v]
        if limit and self.limit:
            pairs.append(("limit", str(self.limit)))
        return urlencode(pairs)

    def describe(self) -> str:
        """``price_changed, model openai/*, watch models``: for titles."""
        bits = [self.type] if self.type else []
        bits += [f"model {self.model}"] if self.model else []
        bits += [f"watch {self.watch}"] if self.watch else []
        bits += [f"last {self.since}"] if self.since else []
        bits += ["by impact"] if self.sort else []
        return ", ".join(bits)
