"""What each poll loop is doing right now: the watchdog, ``/healthz`` and ``STATUS=`` read it.

:class:`App` reports every step of every poll loop here (asleep until a tick, a cycle
started, a cycle finished); nothing here does I/O.  Deadlines use the monotonic clock,
the times people read use the wall clock; both are injectable, so tests give them values.

Two questions, two answers:

* :meth:`Status.stuck` is for the watchdog: is some poll loop not making progress?  A loop
  asleep must wake on time; a loop in a cycle must finish within the longest time its own
  config allows (:func:`cycle_budget`).  Nothing else counts: a watch that keeps failing
  still makes progress, and restarting the daemon would not fix the upstream.
* :meth:`Status.unhealthy` is for ``/healthz``: did every watch have a successful cycle
  within 3 of its intervals (counted from the daemon's start for a watch never checked)?
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from watcher.backoff import poll_jitter_max
from watcher.config import Watch

LATE = 5.0            # how late a sleeping loop may wake before it counts as stuck
SLACK = 10.0          # parsing, diffing and one SQLite transaction on a slow machine
HEALTHY_INTERVALS = 3
SUCCESS = frozenset({"baseline", "unchanged", "changed", "held"})


def cycle_budget(watch: Watch, paired: Watch | None = None) -> float:
    """The longest a cycle of ``watch`` can take while every timeout works: each attempt
    times out, and every wait between attempts is as long as the retry policy allows.
    An account watch fetches its ``paired`` public list in the same cycle, before and after
    its own.

    This bounds one page; OpenRouter's model lists come in one.
    """
    retry = watch.retry
    waits = (retry.attempts - 1) * max(retry.max_backoff, retry.max_retry_after)
    own = retry.attempts * watch.timeout + waits + SLACK
    return own if paired is None else own + 2 * (cycle_budget(paired) - SLACK)


@dataclass
class WatchProgress:
    """One poll loop, as last reported."""

    interval: float
    budget: float
    started_at: float                      # monotonic: when the loop was (re)configured
    moved_at: float = 0.0                  # monotonic: the loop's last report of any kind
    busy_since: float | None = None        # monotonic: start of the running cycle
    waiting_until: float | None = None     # monotonic: the next tick, while asleep
    last_success: float | None = None      # monotonic
    last_success_at: float | None = None   # wall clock
    last_change_at: float | None = None    # wall clock
    last_outcome: str | None = None
    last_error: str | None = None
    models: int | None = None


class Status:
    """The progress of every poll loop of one daemon."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.monotonic = monotonic
        self.wall = wall
        self.watches: dict[str, WatchProgress] = {}

    def configure(self, watches: Iterable[Watch], pairs: Mapping[str, Watch] | None = None) -> None:
        """Track exactly ``watches``; what was learnt about a kept watch stays.

        ``pairs`` maps an account watch to the public watch it fetches in the same cycle.
        """
        now = self.monotonic()
        current: dict[str, WatchProgress] = {}
        for watch in watches:
            budget = cycle_budget(watch, (pairs or {}).get(watch.name))
            entry = self.watches.get(watch.name)
            if entry is None:
                entry = WatchProgress(interval=watch.interval, budget=budget, started_at=now)
            entry.interval, entry.budget = watch.interval, budget
            current[watch.name] = entry
        self.watches = current

    def restarted(self, name: str) -> None:
        """The loop of ``name`` was started anew (start or reload): it has not ticked yet."""
        entry = self.watches.get(name)
        if entry is not None:
            entry.started_at = entry.moved_at = self.monotonic()
            entry.busy_since = entry.waiting_until = None

    def waiting(self, name: str, until: float) -> None:
        entry = self.watches.get(name)
        if entry is not None:
            entry.busy_since, entry.waiting_until = None, until
            entry.moved_at = self.monotonic()

    def cycle_started(self, name: str) -> None:
        entry = self.watches.get(name)
        if entry is not None:
            entry.busy_since = entry.moved_at = self.monotonic()
            entry.waiting_until = None

    def cycle_finished(self, name: str, outcome: str, *, models: int | None = None,
                       error: str | None = None) -> None:
        entry = self.watches.get(name)
        if entry is None:
            return
        entry.busy_since, entry.moved_at = None, self.monotonic()
        entry.last_outcome, entry.last_error = outcome, error
        if outcome in SUCCESS:
            entry.last_success, entry.last_success_at = self.monotonic(), self.wall()
            entry.models = models
        if outcome == "changed":
            entry.last_change_at = self.wall()

    def stuck(self) -> list[str]:
        """Why some poll loop is not making progress; empty while every one is."""
        now = self.monotonic()
        reasons: list[str] = []
        for name, entry in self.watches.items():
            if entry.busy_since is not None:
                running = now - entry.busy_since
                if running > entry.budget:
                    reasons.append(f"watch {name}: a cycle has been running for {running:.0f}s, "
                                   f"longer than its timeouts allow ({entry.budget:.0f}s)")
            elif entry.waiting_until is not None:
                late = now - entry.waiting_until
                if late > LATE:
                    reasons.append(f"watch {name}: the poll loop is {late:.0f}s late")
            elif now - entry.moved_at > LATE + poll_jitter_max(entry.interval):
                reasons.append(f"watch {name}: the poll loop has not moved for "
                               f"{now - entry.moved_at:.0f}s")
        return reasons

    def unhealthy(self) -> list[str]:
        """Why the daemon is not healthy: a watch without a successful cycle within 3
        intervals, or a stuck loop.  Empty when healthy."""
        now = self.monotonic()
        reasons: list[str] = []
        for name, entry in self.watches.items():
            since = entry.last_success if entry.last_success is not None else entry.started_at
            age = now - since
            if age > HEALTHY_INTERVALS * entry.interval:
                head = (f"last successful cycle {age:.0f}s ago" if entry.last_success is not None
                        else f"no successful cycle since the start {age:.0f}s ago")
                detail = f"; last error: {entry.last_error}" if entry.last_error else ""
                reasons.append(f"watch {name}: {head}, more than {HEALTHY_INTERVALS} intervals "
                               f"of {entry.interval:g}s{detail}")
        return reasons + self.stuck()

    def summary(self, *, pending: int | None) -> str:
        """One line for ``STATUS=``: ``3 watches, last change 12 min ago, 0 pending``."""
        count = len(self.watches)
        parts = [f"{count} watch{'es' if count != 1 else ''}"]
        changes = [e.last_change_at for e in self.watches.values() if e.last_change_at]
        parts.append(f"last change {_ago(self.wall() - max(changes))}" if changes
                     else "no change yet")
        failing = sorted(n for n, e in self.watches.items() if e.last_outcome == "failed")
        if failing:
            parts.append(f"failing: {', '.join(failing)}")
        if pending is not None:
            parts.append(f"{pending} pending")
        return ", ".join(parts)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Each watch's state for ``/healthz``, as JSON-ready values."""
        return {name: {"last_outcome": e.last_outcome, "last_success_at": e.last_success_at,
                       "last_change_at": e.last_change_at, "models": e.models,
                       "interval_seconds": e.interval}
                for name, e in self.watches.items()}


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} d ago"
