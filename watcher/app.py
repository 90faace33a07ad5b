"""Wiring: one HTTP session, the store, and one polling task per watch.

``App.cycle`` is one poll of one watch::

    baseline -> fetch -> parse -> cycle.read_state -> cycle.plan (pure: guard, diff, events,
          expiring_soon reminders, rules -> alerts) -> App.apply: one check row, or ONE
          transaction (snapshot + check + events + one outbox row per (alert, target)),
          the operator notices, the logs, and a wake of the deliverer (see notify.deliver)

``run`` polls every watch at a fixed rate until ``stop`` is set, while this instance leads
(:mod:`watcher.leadership`: always with SQLite); a standby polls and sends nothing, and
serves the pages.  Nothing here touches signals: ``cli`` turns them into the ``stop``
event, so tests can drive ``run`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TextIO

import aiohttp

from watcher import fetch, log, preflight, snapshot
from watcher.backoff import poll_jitter
from watcher.clock import utcnow
from watcher.config import RetryPolicy, Settings, Watch, public_watch
from watcher.config import load as load_config
from watcher.cycle import (
    CyclePlan,
    CycleResult,
    LogLine,
    Poll,
    Rules,
    plan,
    read_state,
    record,
    same_change_window,
)
from watcher.endpoints_feed import EndpointsFeed
from watcher.errors import ConfigError, FetchError, SnapshotError, StateError, StateInUseError
from watcher.leadership import LOCK_KEY, AdvisoryLock, Leadership, Sole
from watcher.metrics import Metrics
from watcher.notify.deliver import Deliverer, OperatorNotices, Sender, build_senders
from watcher.status import Status
from watcher.store import Pruned, Store
from watcher.usage_feed import UsageFeed

Clock = Callable[[], datetime]
# A task run alongside the polls (the sd_notify supervisor, ...): given ``stop``, it ends
# when ``stop`` is set, or is cancelled when the daemon stops.
Extra = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
PRUNE_FIRST_AFTER = 600.0   # seconds after the start
PRUNE_EVERY = 86400.0


class App:
    """The daemon's state shared by every watch task."""

    def __init__(self, settings: Settings, store: Store, session: aiohttp.ClientSession, *,
                 clock: Clock = utcnow, monotonic: Callable[[], float] | None = None,
                 retry: RetryPolicy | None = None, senders: Mapping[str, Sender] | None = None,
                 console: TextIO | None = None, leadership: Leadership | None = None) -> None:
        self.settings = settings
        self.store = store
        self.session = session
        self.clock = clock
        self.retry = retry  # None: each watch's own policy
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="notify")
        self._console = console
        self._polls: dict[str, asyncio.Task[None]] = {}
        if senders is None:
            senders = build_senders(settings, self._executor, console=console)
        self.metrics = Metrics()
        wall = lambda: self.clock().timestamp()  # noqa: E731 - shared by the two below
        if monotonic is None:
            # Waits run on the monotonic clock; a test that sets its own wall clock drives
            # the waits with it too, unless it gives a monotonic clock of its own.
            monotonic = time.monotonic if clock is utcnow else wall
        self.operator = OperatorNotices(settings, senders, clock=wall, monotonic=monotonic,
                                        memory=store)
        self.deliverer = Deliverer(settings, store, senders, clock=wall, monotonic=monotonic,
                                   metrics=self.metrics, operator=self.operator)
        self._baselines: dict[str, snapshot.Snapshot | None] = {}
        self._failing: dict[str, str] = {}
        self._unrecorded: set[str] = set()  # watches whose last cycle could not be recorded
        self.log = log.get()
        self.status = Status()  # what each poll loop is doing: watchdog, /healthz, STATUS=
        self.status.configure(settings.watches, pairs(settings))
        self._delivery: asyncio.Task[None] | None = None
        self.leadership: Leadership = leadership or Sole()
        self._leading: list[asyncio.Task[None]] = []  # delivery, pruning, usage: a leader's
        # The usage of the last 30 days (issue 15): fetched daily by its own task.
        self.usage = UsageFeed(lambda: self.settings, store, session, operator=self.operator,
                               clock=self.clock, retry=retry)
        # The provider endpoints of kind: endpoints watches (issue 15): paced per watch.
        self.endpoints = EndpointsFeed(lambda: self.settings, store, session,
                                       baseline=self.baseline, retry=retry)

    def baseline(self, watch: str) -> snapshot.Snapshot | None:
        if watch not in self._baselines:
            self._baselines[watch] = self.store.latest_snapshot(watch)
        return self._baselines[watch]

    async def cycle(self, watch: Watch, *, dry_run: bool = False) -> CycleResult:
        """Poll ``watch`` once, record what changed and queue the alerts: read the state,
        fetch, plan (:func:`watcher.cycle.plan`), apply.

        With ``dry_run`` the plan is not applied: nothing is written or sent, and the
        result says what would have happened.
        """
        started = self.clock()
        baseline = self.baseline(watch.name)  # before the fetch, as the cache holds it
        public = public_watch(self.settings, watch)
        try:
            if watch.kind == "endpoints":  # the providers of some models (watcher.providers)
                poll = await self.endpoints.poll(watch, baseline)
            else:
                poll = await self._poll_models(watch, public)
        except (FetchError, SnapshotError) as exc:
            poll = Poll(error=exc)
        state = read_state(self.store, watch, baseline, poll.current,
                           paired=public is not None, usage=self.usage.summary)
        rules = Rules(self.settings.rules, self.settings.expiring_soon_days,
                      same_change_window(watch, self.settings.watches))
        planned = plan(state, poll, watch=watch, rules=rules, now=started)
        if dry_run:
            self._log(planned.logs)  # what it decided; nothing is written or sent
        else:
            self.apply(planned)
        if planned.fetch_failed:
            self._note_failure(watch.name, planned.error or "")
        else:
            self._note_success(watch.name)
        return planned.result()

    def apply(self, planned: CyclePlan) -> None:
        """Perform what :func:`watcher.cycle.plan` decided: the store write (one check
        row, or one transaction), the baseline, the operator notices, the logs, and a
        poke of the deliverer."""
        name = planned.watch
        for notice in planned.notices:
            if notice.action == "resolved":
                self.operator.resolved(name, notice.kind, notice.text)
        self._log(line for line in planned.logs if line.early)
        record(self.store, planned)
        if planned.new_baseline is not None:
            self._baselines[name] = planned.new_baseline
        self._log(line for line in planned.logs if not line.early)
        for notice in planned.notices:
            if notice.action == "problem":
                self.operator.problem(name, notice.kind, notice.text)
        if planned.alerts:
            self.deliverer.poke()

    async def guarded_cycle(self, watch: Watch, *, dry_run: bool = False) -> CycleResult:
        """:meth:`cycle`, with a bug in it reported as a ``crashed`` result, not raised:
        one watch must not take the others down.  StateError still stops everything."""
        try:
            return await self.cycle(watch, dry_run=dry_run)
        except StateError:
            raise
        except Exception as exc:
            self.log.exception("cycle.crashed", watch=watch.name)
            return CycleResult(watch.name, "crashed",
                               error=log.redactor.text(f"{type(exc).__name__}: {exc}"))

    def _log(self, lines: Iterable[LogLine]) -> None:
        for line in lines:
            getattr(self.log, line.level)(line.event, **line.fields)

    async def _poll_models(self, watch: Watch, public: Watch | None) -> Poll:
        """The list of a models watch, with the paired public ids of an account watch.

        An account list is told apart with the public list fetched just before and just
        after it, in this cycle: a model counts as listed by OpenRouter only if both have
        it, so the catalogue moving between two requests can make neither a removal look
        like the account's loss nor a new model like one it got back.
        """
        before = await self._fetch_public(public)
        current = snapshot.parse_pages(await self._fetch(watch))
        after = await self._fetch_public(public)
        return Poll(current, before=before, after=after)

    async def _fetch_public(self, public: Watch | None) -> frozenset[str] | None:
        """The ids of the public list an account watch pairs with (None: no pair)."""
        if public is None:
            return None
        try:
            pages = await fetch.fetch(self.session, public, policy=self.retry)
            return frozenset(snapshot.parse_pages(pages).models)
        except (FetchError, SnapshotError) as exc:
            # Not this watch's own trouble (its key may be fine): say whose list failed.
            raise SnapshotError(f"the public list of watch {public.name!r}, needed to tell "
                                f"the account's changes apart, failed: {exc}") from None

    async def _fetch(self, watch: Watch) -> list[bytes]:
        started = time.monotonic()
        try:
            return await fetch.fetch(self.session, watch, policy=self.retry)
        finally:
            self.metrics.fetch_duration(watch.name, time.monotonic() - started)

    def _observe(self, watch: Watch, result: CycleResult) -> None:
        """Tell the status and the metrics how a cycle of ``watch`` ended."""
        ok = result.outcome not in ("failed", "crashed")
        self.status.cycle_finished(watch.name, result.outcome, models=result.models or None,
                                   error=log.redactor.text(result.error or "") or None)
        self.metrics.cycle(watch.name, result.outcome, at=self.clock().timestamp() if ok else None,
                           models=result.models or None,
                           event_types=[e["type"] for e in result.events],
                           alerts=[(a.rule, a.target) for a in result.alerts])

    @property
    def role(self) -> str:
        """``leader`` (polls and delivers) or ``standby`` (waits its turn)."""
        return "leader" if self.leadership.leading else "standby"

    def stuck(self) -> list[str]:
        """Why the daemon is not making progress (empty while it is): the watchdog asks."""
        if not self.leadership.leading:
            return []  # standing by is its progress
        return self.status.stuck() + self._delivery_problems()

    def problems(self) -> list[str]:
        """Why the daemon is not healthy (empty when it is): ``/healthz`` asks.  A standby
        is healthy: it is there to take over, and a restart would not make it lead."""
        if not self.leadership.leading:
            return []
        return self.status.unhealthy() + self._delivery_problems()

    def _delivery_problems(self) -> list[str]:
        if self._delivery is not None and self._delivery.done():
            return ["the delivery loop has stopped"]
        return []

    def pending(self) -> dict[str, int]:
        """Alerts not yet sent, per target, from the outbox."""
        return {target: int(entry["pending"]) for target, entry in self.store.outbox_status().items()}

    def status_line(self) -> str:
        """``3 watches, last change 12 min ago, 0 pending``; ``standby: ...``."""
        if not self.leadership.leading:
            return "standby: another instance polls and delivers"
        try:
            pending: int | None = sum(self.pending().values())
        except StateError:  # an unreadable outbox must not silence the status line
            pending = None
        return self.status.summary(pending=pending)

    def _state_unwritable(self, watch: Watch, exc: StateError) -> None:
        reason = log.redactor.text(str(exc))
        self._observe(watch, CycleResult(watch.name, "failed", error=reason))
        if watch.name not in self._unrecorded:
            self.log.error("state.unwritable", watch=watch.name, reason=reason,
                           note="polls go on; nothing is recorded or sent until it can be")
        self._unrecorded.add(watch.name)
        self.operator.problem(watch.name, "state", f"cannot record what this watch sees: "
                              f"{reason}. Its changes are found again once the state can be "
                              "written.")

    def _state_writable(self, watch: Watch) -> None:
        if watch.name in self._unrecorded:
            self._unrecorded.discard(watch.name)
            self.log.info("state.writable", watch=watch.name)
            self.operator.resolved(watch.name, "state", "the state can be written again")

    def _note_failure(self, watch: str, reason: str) -> None:
        if watch not in self._failing:
            self.log.warning("watch.failing", watch=watch, reason=reason)
        else:
            self.log.debug("watch.still_failing", watch=watch, reason=reason)
        self._failing[watch] = reason

    def _note_success(self, watch: str) -> None:
        if self._failing.pop(watch, None) is not None:
            self.log.info("watch.recovered", watch=watch)

    async def run(self, stop: asyncio.Event, reload: asyncio.Event | None = None,
                  extras: Sequence[Extra] = ()) -> None:
        """Poll every watch until ``stop`` is set, while this instance leads; reload the
        config whenever ``reload`` is.

        ``extras`` start once the first polls are scheduled (or this instance stands by),
        and stop with the daemon.
        """
        reload, changed = reload or asyncio.Event(), asyncio.Event()
        await self.leadership.start()
        if self.leadership.leading:
            self._lead(stop)
        electing = asyncio.create_task(self.leadership.run(stop, changed), name="leadership")
        helpers = [asyncio.create_task(extra(stop), name=f"extra:{i}")
                   for i, extra in enumerate(extras)]
        self.metrics.leader(leading=self.leadership.leading)
        self.log.info("daemon.started", watches=len(self.settings.watches),
                      targets=len(self.settings.targets), role=self.role)
        try:
            while not stop.is_set():
                await _first_of(stop, reload, changed)
                if changed.is_set() and not stop.is_set():
                    changed.clear()
                    await self._follow(stop)
                if reload.is_set() and not stop.is_set():
                    reload.clear()
                    await self.reload(stop)
        finally:
            await self._stand_by()
            electing.cancel()
            await asyncio.gather(electing, return_exceptions=True)
            await self.leadership.close()
            for helper in helpers:
                helper.cancel()
            for outcome in await asyncio.gather(*helpers, return_exceptions=True):
                if isinstance(outcome, Exception):
                    self.log.error("daemon.extra_failed",
                                   reason=f"{type(outcome).__name__}: {outcome}")
            self.close()
            self.log.info("daemon.stopped")

    def _lead(self, stop: asyncio.Event) -> None:
        """Start polling and delivering.  What another leader wrote meanwhile is read
        again: the baselines in memory may be stale."""
        self._baselines.clear()
        self.store.forget_cached()
        self.store.fence(self.leadership.session, LOCK_KEY)
        for watch in self.settings.watches:
            self._start_poll(watch, stop)
        self._delivery = asyncio.create_task(self.deliverer.run(stop), name="deliver")
        self._leading = [self._delivery,
                         asyncio.create_task(self._prune_daily(stop), name="prune"),
                         asyncio.create_task(self.usage.run(stop), name="usage")]

    async def _stand_by(self) -> None:
        """Stop polling and delivering; sends in flight get their grace (their rows are
        claimed: no other instance sends them meanwhile)."""
        polls = list(self._polls.values())
        self._polls.clear()
        for task in polls:
            task.cancel()
        await asyncio.gather(*polls, return_exceptions=True)
        finished = await self._finish_sends() if self._leading else False
        for task in self._leading:
            task.cancel()
        await asyncio.gather(*self._leading, return_exceptions=True)
        if finished and not self.store.sole_writer:  # none in flight: no claim is in use
            self.deliverer.release_claims()
        self.store.fence(None)  # a standby writes only what is its own (operator notices)
        self._leading = []

    async def _follow(self, stop: asyncio.Event) -> None:
        """Lead or stand by, as :attr:`leadership` now says; tell the operator when
        database trouble took the leadership away, and when the database answers again."""
        self.metrics.leader(leading=self.leadership.leading)
        if self.leadership.leading and not self._leading:
            self.log.info("daemon.leading", watches=len(self.settings.watches))
            self._lead(stop)
        elif not self.leadership.leading and self._leading:
            await self._stand_by()
            self.log.warning("daemon.standing_by", note="polling and delivery stopped; they "
                             "resume when this instance leads again")
            if self.leadership.lost is not None:
                self.operator.problem(
                    "state database", "leadership", "this instance stopped polling and "
                    f"delivering: {self.leadership.lost}. It reconnects by itself; another "
                    "instance may take over meanwhile.")
        if self.leadership.reachable:
            self.operator.resolved("state database", "leadership",
                                   f"the state database answers again; this instance is "
                                   f"the {self.role}")

    async def prune(self) -> Pruned:
        """Apply the retention settings, a small transaction at a time, letting the polls
        and the deliverer run between batches; after each, a worker thread checkpoints the
        write-ahead log, so that no batch's commit has to (Store.checkpoint)."""
        pruned = Pruned()
        for pruned in self.store.prune(self.settings.retention, self.clock().timestamp()):  # noqa: B007
            await asyncio.to_thread(self.store.checkpoint)
        if pruned.total() or pruned.versions_packed:
            self.log.info("state.pruned", unchanged_checks=pruned.unchanged_checks,
                          messages=pruned.messages, dead_letters=pruned.dead_letters,
                          events=pruned.events, usage=pruned.usage,
                          versions_packed=pruned.versions_packed)
        return pruned

    async def _prune_daily(self, stop: asyncio.Event) -> None:
        """Prune a few minutes after the start (not in the way of the first polls), then
        once a day; a failed prune is logged and tried again the next day."""
        loop = asyncio.get_running_loop()
        next_run = loop.time() + PRUNE_FIRST_AFTER
        while not stop.is_set():
            await _sleep_until(stop, next_run)
            if stop.is_set():
                return
            try:
                await self.prune()
            except StateError as exc:
                self.log.error("state.prune_failed", reason=str(exc))  # noqa: TRY400
            next_run = loop.time() + PRUNE_EVERY

    def _start_poll(self, watch: Watch, stop: asyncio.Event) -> None:
        self.status.restarted(watch.name)
        self._polls[watch.name] = asyncio.create_task(self._poll(watch, stop),
                                                      name=f"watch:{watch.name}")

    async def reload(self, stop: asyncio.Event) -> bool:
        """Load the config file again and apply it only if it loads cleanly.

        Reading and compiling the files (and test-rendering the templates) happens in a
        worker thread: the polls and the deliverer go on meanwhile.
        """
        try:
            settings = await asyncio.to_thread(load_config, self.settings.path)
            found = preflight.verify(settings, self.store)
        except ConfigError as exc:
            self.log.error("config.reload_failed", reason=log.redactor.text(str(exc)),  # noqa: TRY400
                           note="the running config and rules stay in force")
            return False
        log.redactor.update(settings.secrets | self.settings.secrets)
        for warning in found:
            self.log.warning("config.warning", message=warning)
        old = {w.name: w for w in self.settings.watches}
        self.settings = settings
        self.status.configure(settings.watches, pairs(settings))
        for name in old.keys() - {w.name for w in settings.watches}:
            self.metrics.forget_watch(name)
        senders = build_senders(settings, self._executor, console=self._console)
        for part in (self.deliverer, self.operator):
            part.configure(settings, senders)
        for name, task in list(self._polls.items()):
            if name not in {w.name for w in settings.watches}:
                task.cancel()
                del self._polls[name]
        for watch in settings.watches:
            if old.get(watch.name) != watch and self.leadership.leading:
                if watch.name in self._polls:
                    self._polls.pop(watch.name).cancel()
                self._start_poll(watch, stop)
        self.usage.wake()
        self.log.info("config.reloaded", watches=len(settings.watches), rules=len(settings.rules),
                      targets=len(settings.targets))
        return True

    async def _finish_sends(self) -> bool:
        """Give in-flight sends a bounded grace; what is left stays pending for next time.
        Whether every send finished."""
        grace = self.settings.delivery.stop_grace
        try:
            await asyncio.wait_for(
                asyncio.gather(self.deliverer.wait_inflight(), self.operator.wait()), timeout=grace)
        except TimeoutError:
            self.log.warning("notify.grace_expired", grace_seconds=grace,
                             note="unsent messages stay pending and go out after restart")
            return False
        return True

    async def send_due(self) -> None:
        """Send what is due now, and the operator notices, and wait for them (``once``, the
        demo: the daemon's delivery loop does this by itself)."""
        await self.deliverer.drain()
        await self.operator.wait()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _poll(self, watch: Watch, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        # A little jitter spreads the first polls of many watches (and many daemons).
        next_tick = loop.time() + poll_jitter(watch.interval)
        while not stop.is_set():
            self.status.waiting(watch.name, next_tick)
            await _sleep_until(stop, next_tick)
            if stop.is_set():
                return
            self.status.cycle_started(watch.name)
            try:
                self._observe(watch, await self.guarded_cycle(watch))
                self._state_writable(watch)
            except StateError as exc:
                # Nothing this cycle found is recorded, and the baseline in memory did not
                # move: the next poll finds the same changes again, and records them once the
                # state can be written (a full disk that got room again).
                self._state_unwritable(watch, exc)
            # Fixed rate: the next tick does not drift by how long the cycle took.
            next_tick += watch.interval
            now = loop.time()
            if next_tick < now:
                next_tick = now + poll_jitter(watch.interval)


def pairs(settings: Settings) -> dict[str, Watch]:
    """Each account watch with the public watch it fetches in the same cycle."""
    return {w.name: p for w in settings.watches if (p := public_watch(settings, w)) is not None}


def unavailable_to_account(app: App) -> dict[str, list[str]]:
    """Per account watch: the ids OpenRouter listed that the account's list did not have,
    at the account watch's last check (both lists fetched in that same cycle)."""
    return {watch.name: sorted(gaps) for watch in app.settings.watches
            if public_watch(app.settings, watch) is not None
            and (gaps := app.store.account_gaps(watch.name)) is not None}


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _sleep_until(stop: asyncio.Event, deadline: float) -> None:
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)


async def run_once(settings: Settings, store: Store, *, retry: RetryPolicy | None = None,
                   dry_run: bool = False, console: TextIO | None = None) -> list[CycleResult]:
    """One cycle of every watch, concurrently, then send what is due.

    On a PostgreSQL state it leads for that time (the advisory lock), or refuses to run
    beside the instance that does, as it refuses a SQLite state a daemon holds."""
    lock = None if dry_run or store.database is None else AdvisoryLock(store.database)
    if lock is not None:
        await lock.start()
        if not lock.leading:
            await lock.close()
            if not lock.reachable:
                raise StateError(f"{store.where}: cannot take the leader's lock: the "
                                 "database does not answer")
            raise StateInUseError(f"{store.where} is led by another openrouter-watcher (a "
                                  "running daemon?): `once` would poll and send beside it; "
                                  "`once --dry-run`, `status`, `history` and `show` work "
                                  "beside it")
        store.fence(lock.session, LOCK_KEY)
    try:
        return await _run_once(settings, store, retry=retry, dry_run=dry_run, console=console)
    finally:
        if lock is not None:
            store.fence(None)
            await lock.close()


async def _run_once(settings: Settings, store: Store, *, retry: RetryPolicy | None,
                    dry_run: bool, console: TextIO | None) -> list[CycleResult]:
    async with fetch.new_session() as session:
        app = App(settings, store, session, retry=retry, console=console)
        try:
            if not dry_run:  # one bounded request, and only when a day is missing
                await app.usage.refresh_if_due()
            results = list(await asyncio.gather(*(app.guarded_cycle(w, dry_run=dry_run)
                                                  for w in settings.watches)))
            if not dry_run:
                await app.send_due()
                store.pack_versions()  # what the daemon's daily housekeeping would compress
        finally:
            app.close()
        return results
