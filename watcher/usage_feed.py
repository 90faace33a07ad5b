"""The usage of the last 30 days for the cycle: fetched daily, read once per UTC day.

:mod:`watcher.usage` knows the activity endpoint, its rows and the schedule; this is the
daemon's side of it.  :meth:`UsageFeed.run` fetches at start when a day is missing, then
~30 minutes after each UTC midnight; :meth:`UsageFeed.summary` is what the cycle hands to
:func:`watcher.impact.annotate`.  Usage never stops or delays an alert: a refused key is
an operator notice, any other failure a log line and a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING

from watcher import impact, log, usage
from watcher.backoff import backoff
from watcher.errors import AuthError, FetchError, SnapshotError, StateError, WatcherError

if TYPE_CHECKING:
    import aiohttp

    from watcher.config import RetryPolicy, Settings
    from watcher.notify.deliver import OperatorNotices
    from watcher.store import Store

RETRY = 300.0             # a failed fetch is tried again after 5 min, doubling ...
RETRY_MAX = 6 * 3600.0    # ... up to 6 h (and never later than the next day's fetch)
IDLE = 600.0              # woken at least this often: the clock may have been stepped


class UsageFeed:
    """Fetches the activity into the store and keeps its 30-day summary for the cycle."""

    def __init__(self, settings: Callable[[], Settings], store: Store,
                 session: aiohttp.ClientSession, *, operator: OperatorNotices,
                 clock: Callable[[], datetime], retry: RetryPolicy | None = None) -> None:
        self._settings = settings  # read each time: a reload that adds or drops usage applies
        self._store = store
        self._session = session
        self._operator = operator
        self._clock = clock
        self._retry = retry
        self._cached: tuple[str, impact.Summary | None] | None = None  # (UTC day, summary)
        self._wake = asyncio.Event()  # a reload: try a refused key again now
        self._log = log.get()

    def summary(self) -> impact.Summary | None:
        """The stored usage of the last 30 days, read once per UTC day (and after a fetch);
        None without a ``usage:`` section or before the first fetch.  An unreadable usage
        table is logged and gives None: usage never stops an alert."""
        if self._settings().usage is None:
            return None
        today = self._clock().date().isoformat()
        if self._cached is None or self._cached[0] != today:
            try:
                through = self._store.usage_through()
                rows = self._store.usage_rows(since=usage.window_start(through)) if through else []
            except StateError as exc:
                self._log.error("usage.unreadable", reason=str(exc))
                return None
            self._cached = (today, usage.summarise(rows, through) if through else None)
        return self._cached[1]

    def wake(self) -> None:
        """The config was reloaded: a refused key may work now."""
        self._wake.set()

    async def refresh(self) -> str:
        """Fetch the activity and store its new days: ``ok``, ``refused`` (the key: an
        operator notice, tried again the next day) or ``failed`` (logged, retried sooner)."""
        source = self._settings().usage
        if source is None:
            return "ok"
        try:
            rows = await usage.fetch(self._session, source, policy=self._retry)
        except AuthError as exc:
            self._operator.problem(
                usage.NOTICE_SUBJECT, "auth",
                f"{exc}. GET /api/v1/activity needs a provisioning (management) key "
                "(openrouter.ai/settings/provisioning-keys), not an inference API key. Alerts "
                "go out without the usage impact until then.")
            return "refused"
        except (FetchError, SnapshotError) as exc:
            self._log.warning("usage.fetch_failed", reason=log.redactor.text(str(exc)))
            return "failed"
        self._operator.resolved(usage.NOTICE_SUBJECT, "auth", "the activity can be read again")
        through = usage.last_complete_day(self._clock()).isoformat()
        try:
            stored = self._store.store_usage(rows, through)
        except StateError as exc:
            self._log.error("usage.unwritable", reason=str(exc))
            return "failed"
        self._cached = None
        self._log.info("usage.fetched", rows=len(rows), stored=stored, through=through)
        return "ok"

    async def refresh_if_due(self) -> None:
        """Fetch the activity when the stored usage lacks a day it has (at start, ``once``)."""
        if self._settings().usage is None:
            return
        try:
            through = self._store.usage_through()
        except StateError as exc:
            self._log.error("usage.unreadable", reason=str(exc))
            return
        if usage.due(self._clock(), through):
            await self.refresh()

    async def run(self, stop: asyncio.Event) -> None:
        """At start if a day is missing, then ~30 min after each UTC midnight; a failure is
        tried again with a growing delay, never later than the next day's fetch."""
        failures = 0
        refused_on: date | None = None  # the day whose fetch the key was refused for
        while not stop.is_set():
            outcome = "ok"
            day = usage.last_complete_day(self._clock())
            if self._wake.is_set():  # reloaded: a new (or newly allowed) key, try now
                self._wake.clear()
                refused_on = None
            if self._settings().usage is not None and refused_on != day:
                try:
                    through = self._store.usage_through()
                except WatcherError:
                    through = None
                if usage.due(self._clock(), through):
                    outcome = await self.refresh()
            refused_on = day if outcome == "refused" else None if outcome == "ok" else refused_on
            failures = failures + 1 if outcome == "failed" else 0
            now = self._clock()
            wait = (usage.next_fetch(now) - now).total_seconds()
            if failures:
                wait = min(wait, backoff(RETRY, RETRY_MAX, failures - 1))
            await self._sleep(stop, max(1.0, min(wait, IDLE)))

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        """Until ``seconds`` have passed, ``stop`` is set or :meth:`wake` is called."""
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
