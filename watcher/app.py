"""Wiring: one HTTP session, the store, and one polling task per watch.

``App.cycle`` is one poll of one watch::

    fetch -> parse -> [same models as the baseline? record the check, stop]
          -> diff -> events -> ONE transaction: snapshot + check + events

``run`` polls every watch at a fixed rate until ``stop`` is set.  Nothing here touches
signals: ``cli`` turns them into the ``stop`` event, so tests can drive ``run`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp

from watcher import fetch, log, snapshot
from watcher.config import Settings, Watch
from watcher.diff import diff
from watcher.errors import FetchError, SnapshotError, StateError
from watcher.events import Event, events_from_changes
from watcher.store import Store

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CycleResult:
    """What one poll of one watch found."""

    watch: str
    outcome: str  # baseline | unchanged | changed | failed
    events: list[Event] = field(default_factory=list)
    error: str | None = None
    models: int = 0


class App:
    """The daemon's state shared by every watch task."""

    def __init__(self, settings: Settings, store: Store, session: aiohttp.ClientSession, *,
                 clock: Clock = utcnow, retry: fetch.RetryPolicy | None = None) -> None:
        self.settings = settings
        self.store = store
        self.session = session
        self.clock = clock
        self.retry = retry or fetch.RetryPolicy()
        self._baselines: dict[str, snapshot.Snapshot | None] = {}
        self._failing: dict[str, str] = {}
        self.fatal: StateError | None = None
        self.log = log.get()

    def baseline(self, watch: str) -> snapshot.Snapshot | None:
        if watch not in self._baselines:
            self._baselines[watch] = self.store.latest_snapshot(watch)
        return self._baselines[watch]

    async def cycle(self, watch: Watch) -> CycleResult:
        """Poll ``watch`` once and record what changed."""
        started = self.clock()
        at = iso(started)
        baseline = self.baseline(watch.name)
        try:
            pages = await fetch.fetch(self.session, watch, policy=self.retry)
            current = snapshot.parse_pages(pages)
        except (FetchError, SnapshotError) as exc:
            self.store.record_check(watch.name, at, "failed", str(exc))
            self._note_failure(watch.name, str(exc))
            return CycleResult(watch.name, "failed", error=str(exc))
        self._note_success(watch.name)

        if baseline is None:
            self.store.commit_cycle(watch.name, at, current, "baseline", [])
            self._baselines[watch.name] = current
            self.log.info("cycle.baseline", watch=watch.name, models=len(current.models))
            return CycleResult(watch.name, "baseline", models=len(current.models))
        if current.same_content(baseline):
            self.store.record_check(watch.name, at, "unchanged")
            self.log.debug("cycle.unchanged", watch=watch.name, models=len(current.models))
            return CycleResult(watch.name, "unchanged", models=len(current.models))

        events = events_from_changes(diff(baseline, current), old=baseline, new=current,
                                     watch=watch.name, detected_at=at)
        self.store.commit_cycle(watch.name, at, current, "changed", events)
        self._baselines[watch.name] = current
        self.log.info("cycle.changed", watch=watch.name, events=len(events),
                      models=len(current.models))
        return CycleResult(watch.name, "changed", events, models=len(current.models))

    def _note_failure(self, watch: str, reason: str) -> None:
        if watch not in self._failing:
            self.log.warning("watch.failing", watch=watch, reason=reason)
        else:
            self.log.debug("watch.still_failing", watch=watch, reason=reason)
        self._failing[watch] = reason

    def _note_success(self, watch: str) -> None:
        if self._failing.pop(watch, None) is not None:
            self.log.info("watch.recovered", watch=watch)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every watch until ``stop`` is set."""
        tasks = [asyncio.create_task(self._poll(w, stop), name=f"watch:{w.name}")
                 for w in self.settings.watches]
        self.log.info("daemon.started", watches=len(tasks))
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.log.info("daemon.stopped")

    async def _poll(self, watch: Watch, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        # A little jitter spreads the first polls of many watches (and many daemons).
        next_tick = loop.time() + random.uniform(0, min(watch.interval * 0.05, 5.0))
        while not stop.is_set():
            await _sleep_until(stop, next_tick)
            if stop.is_set():
                return
            try:
                await self.cycle(watch)
            except StateError as exc:
                # Never poll on without a place to record what we see: stop the daemon.
                self.fatal = exc
                stop.set()
                return
            except Exception:
                self.log.exception("cycle.crashed", watch=watch.name)
            # Fixed rate: the next tick does not drift by how long the cycle took.
            next_tick += watch.interval
            now = loop.time()
            if next_tick < now:
                next_tick = now + random.uniform(0, min(watch.interval * 0.05, 5.0))


async def _sleep_until(stop: asyncio.Event, deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)


async def run_once(settings: Settings, store: Store, *,
                   retry: fetch.RetryPolicy | None = None) -> list[CycleResult]:
    """One cycle of every watch, concurrently."""
    async with fetch.new_session() as session:
        app = App(settings, store, session, retry=retry)
        return list(await asyncio.gather(*(app.cycle(w) for w in settings.watches)))
