"""One poll of one watch as a plan: read the state once, decide purely, then apply.

``App.cycle`` is::

    baseline (before the fetch) -> fetch -> read_state -> plan -> App.apply

:func:`read_state` is the only place a cycle reads the store (the baseline is App's cache
of :meth:`Store.latest_snapshot`); :func:`plan` is pure: from that state, this poll's
result (or error), the rules and the time, it works out everything the cycle decides
(outcome, snapshot to store, check row, events, alerts, reminders, account gaps, operator
notices, log lines) and returns it as a :class:`CyclePlan`.  ``once --dry-run`` plans
and does not apply; the bench times :func:`plan`, the same function the daemon runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from watcher import impact, log, providers
from watcher.clock import iso
from watcher.config import Watch
from watcher.diff import diff
from watcher.errors import AuthError, FetchError, SnapshotError, StateError
from watcher.events import Event, account_view, change_key, events_from_changes, expiring_soon
from watcher.guard import suspicion
from watcher.rules.match import route
from watcher.rules.model import Rule
from watcher.snapshot import Snapshot
from watcher.store import Alert, Store

Outcome = Literal["baseline", "unchanged", "changed", "failed", "held", "crashed"]
Reminder = tuple[str, str, int]  # (model, expiration_date, days)
SAME_CHANGE_MIN_WINDOW = 86400.0


@dataclass(frozen=True)
class Rules:
    """What :func:`plan` needs of the settings."""

    rules: tuple[Rule, ...]
    expiring_soon_days: tuple[int, ...]
    same_change_window: float = SAME_CHANGE_MIN_WINDOW


@dataclass(frozen=True)
class CycleState:
    """Everything a cycle needs from the store, read once (:func:`read_state`)."""

    baseline: Snapshot | None
    sent: frozenset[Reminder] = frozenset()     # reminders already recorded
    known_gaps: frozenset[str] | None = None    # the account's gaps at its last check
    suspicion: str | None = None                # why the guard does not trust this response
    held_streak: int = 0                        # times this suspect list was held before
    usage: impact.Summary | None = None         # the account's usage (issue 15), if any


@dataclass(frozen=True)
class Poll:
    """This poll's result: the parsed list (and the paired public ids), or its error."""

    current: Snapshot | None = None
    error: FetchError | SnapshotError | None = None
    before: frozenset[str] | None = None  # the paired public list, just before
    after: frozenset[str] | None = None   # ... and just after
    stats: tuple[providers.Stats, ...] = ()  # an endpoints watch: the figures for the pages
    watched: frozenset[str] = frozenset()    # ... and the models it read (or tried to)

    @property
    def listed(self) -> frozenset[str] | None:
        """The public ids both fetches had (None: not an account watch)."""
        return None if self.before is None or self.after is None else self.before & self.after


@dataclass(frozen=True)
class Notice:
    """An operator notice to raise (``problem``) or clear (``resolved``)."""

    action: Literal["problem", "resolved"]
    kind: str  # auth | held | crashed
    text: str


@dataclass(frozen=True)
class LogLine:
    """A log record the plan asks for; ``early`` ones are logged before the store write."""

    level: Literal["debug", "info", "warning", "error"]
    event: str
    fields: Mapping[str, Any]
    early: bool = False


@dataclass
class CycleResult:
    """What one poll of one watch found."""

    watch: str
    outcome: Outcome
    events: list[Event] = field(default_factory=list)
    error: str | None = None
    models: int = 0
    alerts: list[Alert] = field(default_factory=list)


@dataclass(frozen=True)
class CyclePlan:
    """Everything one cycle decided; ``App.apply`` performs it."""

    watch: str
    outcome: Outcome
    at: str                                # the check's time
    now: float                             # the same, as a timestamp (outbox times)
    write: Literal["check", "commit"]      # record_check, or commit_cycle
    snapshot: Snapshot | None = None       # the snapshot to store (None: none)
    new_baseline: Snapshot | None = None   # the baseline from now on (None: unchanged)
    error: str | None = None               # the check's error column
    digest: str | None = None              # the check's digest (a held response)
    events: list[Event] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    reminders: list[Reminder] = field(default_factory=list)
    gaps: frozenset[str] | None = None     # the account gaps to write (None: leave them)
    notices: tuple[Notice, ...] = ()
    logs: tuple[LogLine, ...] = ()
    same_change_window: float = 0.0
    models: int = 0
    fetch_failed: bool = False             # the fetch (or parse) failed: App's failing note
    stats: tuple[providers.Stats, ...] = ()  # endpoints: written on every successful poll
    watched: frozenset[str] = frozenset()

    def result(self) -> CycleResult:
        return CycleResult(self.watch, self.outcome, self.events, error=self.error,
                           models=self.models, alerts=self.alerts)


def read_state(store: Store, watch: Watch, baseline: Snapshot | None, current: Snapshot | None,
               *, paired: bool,
               usage: Callable[[], impact.Summary | None] | None = None) -> CycleState:
    """What the cycle of ``watch`` needs from ``store``, given the ``baseline`` read
    before the fetch and the list ``current`` it returned (None: the fetch failed).

    Reads only what the plan will use, as the cycle always did: the held streak only
    when the guard suspects the response, nothing more for a response still held.
    """
    if current is None:
        return CycleState(baseline)
    # An endpoints watch has no guard: a model it fails to read keeps its providers
    # (watcher.providers.settle), and its selection shrinking is no truncated response.
    reason = (None if watch.kind == "endpoints"
              else suspicion(baseline, current, watch.max_removed_pct))
    streak = 0
    if reason is not None:
        # The count lives in the database: it survives restarts and `once` runs.
        streak = store.held_streak(watch.name, current.digest)
        if streak + 1 < watch.confirm_polls:
            return CycleState(baseline, suspicion=reason, held_streak=streak)
    known_gaps = store.account_gaps(watch.name) if paired else None
    if baseline is None:
        return CycleState(baseline, known_gaps=known_gaps, suspicion=reason, held_streak=streak)
    sent = frozenset(store.sent_reminders(watch.name))
    return CycleState(baseline, sent=sent, known_gaps=known_gaps, suspicion=reason,
                      held_streak=streak, usage=usage() if usage is not None else None)


def plan(state: CycleState, poll: Poll, *, watch: Watch, rules: Rules,
         now: datetime) -> CyclePlan:
    """Everything one cycle of ``watch`` decides.  Pure: no I/O, no store, no logging.

    A bug in the pure core (diff, events, rules) on this response gives a ``crashed``
    plan that makes the new list the baseline; a StateError still propagates.  An
    endpoints watch's figures (:class:`watcher.providers.Stats`) are written with every
    poll whose list is taken (not a failed or held one).
    """
    planned = _plan(state, poll, watch=watch, rules=rules, now=now)
    if poll.stats and planned.outcome not in ("failed", "held"):
        return replace(planned, stats=poll.stats, watched=poll.watched)
    return planned


def _plan(state: CycleState, poll: Poll, *, watch: Watch, rules: Rules,
          now: datetime) -> CyclePlan:
    at, stamp, name = iso(now), now.timestamp(), watch.name
    current = poll.current
    if current is None:
        error = str(poll.error)
        notices: tuple[Notice, ...] = ()
        if isinstance(poll.error, AuthError):
            notices = (Notice("problem", "auth",
                              f"{error}. No change is detected until this is fixed."),)
        return CyclePlan(name, "failed", at, stamp, "check", error=error, notices=notices,
                         fetch_failed=True)
    models = len(current.models)
    resolved = [Notice("resolved", "auth", "the API key and account work again")]
    logs: list[LogLine] = []
    reason = state.suspicion
    if reason is not None:
        seen = state.held_streak + 1
        if seen < watch.confirm_polls:
            return CyclePlan(
                name, "held", at, stamp, "check", error=reason, digest=current.digest,
                models=models,
                notices=(*resolved, Notice(
                    "problem", "held",
                    f"held a suspect response: {reason}. It becomes the baseline only if "
                    f"the same list is seen {watch.confirm_polls} times in a row.")),
                logs=(LogLine("warning", "guard.held", {
                    "watch": name, "reason": reason, "seen": seen,
                    "confirm_polls": watch.confirm_polls}),))
        logs.append(LogLine("warning", "guard.confirmed",
                            {"watch": name, "reason": reason, "seen": seen}, early=True))
    resolved.append(Notice("resolved", "held", "the model list is trusted again"))

    listed = poll.listed
    gaps = None if listed is None else listed - current.models.keys()
    baseline = state.baseline
    if baseline is None:
        logs.append(LogLine("info", "cycle.baseline", {"watch": name, "models": models}))
        return CyclePlan(name, "baseline", at, stamp, "commit", snapshot=current,
                         new_baseline=current, gaps=gaps, models=models,
                         notices=tuple(resolved), logs=tuple(logs))

    changed = not current.same_content(baseline)
    try:
        if not changed:
            events: list[Event] = []
        elif watch.kind == "endpoints":
            events = providers.events(baseline, current, watch=name, detected_at=at)
        else:
            events = events_from_changes(diff(baseline, current), old=baseline, new=current,
                                         watch=name, detected_at=at)
        if listed is not None:
            events = account_view(events, listed, state.known_gaps or frozenset())
        reminders = expiring_soon(current, watch=name, today=now.date(),
                                  days=rules.expiring_soon_days, sent=state.sent,
                                  detected_at=at)
        events += [event for event, _ in reminders]
        # Usage impact (issue 15): one pure step between the events and the rules.
        # (The tiered models only when there is usage to weigh: it walks the whole list.)
        tiered = (impact.tiered_models(current.models) if state.usage is not None and events
                  else frozenset())
        events = impact.annotate(events, state.usage, tiered=tiered)
        alerts = alerts_for(watch, events, rules.rules)
    except StateError:
        raise
    except Exception as exc:  # any bug in the pure core: see _crashed
        return _crashed(name, at, stamp, current, exc, gaps=gaps, notices=resolved, logs=logs)
    resolved.append(Notice("resolved", "crashed", "changes are detected again"))
    outcome: Outcome = "changed" if changed else "unchanged"
    new_gaps = gaps if gaps != state.known_gaps else None  # written only when they moved
    if not events and not changed:
        logs.append(LogLine("debug", "cycle.unchanged", {"watch": name, "models": models}))
        return CyclePlan(name, outcome, at, stamp, "check", gaps=new_gaps, models=models,
                         notices=tuple(resolved), logs=tuple(logs))
    logs.append(LogLine("info", "cycle.changed" if changed else "cycle.reminders", {
        "watch": name, "events": len(events), "alerts": len(alerts), "models": models}))
    return CyclePlan(name, outcome, at, stamp, "commit", snapshot=current if changed else None,
                     new_baseline=current, events=events, alerts=alerts,
                     reminders=[key for _, key in reminders], gaps=new_gaps,
                     same_change_window=rules.same_change_window, models=models,
                     notices=tuple(resolved), logs=tuple(logs))


def _crashed(name: str, at: str, stamp: float, current: Snapshot, exc: Exception, *,
             gaps: frozenset[str] | None, notices: Sequence[Notice],
             logs: Sequence[LogLine]) -> CyclePlan:
    """The pure core raised on this response: a bug, or input it cannot handle.

    Failing the same way on every poll would stop change detection for good, so the
    new list becomes the baseline (its changes are lost, and the operator is told so)
    and the next poll diffs from there.
    """
    reason = log.redactor.text(f"{type(exc).__name__}: {exc}")
    crashed = LogLine("error", "cycle.crashed", {
        "watch": name, "reason": reason,
        "note": "the new list becomes the baseline; this step's changes are not reported",
        "exc_info": exc}, early=True)
    problem = Notice("problem", "crashed",
                     f"could not work out the changes of a response ({reason}). It became the "
                     "baseline: the changes between the previous list and this one are not "
                     "reported. Please report this as a bug.")
    return CyclePlan(name, "crashed", at, stamp, "commit", snapshot=current,
                     new_baseline=current, error=reason, gaps=gaps, models=len(current.models),
                     notices=(*notices, problem), logs=(*logs, crashed))


def record(store: Store, planned: CyclePlan) -> None:
    """Write what ``planned`` decided: one check row, or the cycle's one transaction.

    An endpoints watch's figures go first, in their own transaction: they are only what
    the pages show, so a failure after them loses nothing, while one after the cycle's
    commit would leave the baseline in memory behind the stored one (its events again).
    """
    if planned.stats or planned.watched:
        store.record_provider_stats(planned.watch, planned.at, planned.watched, planned.stats)
    if planned.write == "check":
        store.record_check(planned.watch, planned.at, planned.outcome, planned.error,
                           digest=planned.digest, gaps=planned.gaps)
    else:
        store.commit_cycle(planned.watch, planned.at, planned.snapshot, planned.outcome,
                           planned.events, planned.alerts, now=planned.now,
                           reminders=planned.reminders, error=planned.error, gaps=planned.gaps,
                           same_change_window=planned.same_change_window)


def alerts_for(watch: Watch, events: list[Event], rules: Sequence[Rule]) -> list[Alert]:
    """One alert per (event, target) that the rules select."""
    scope = host_of(watch)
    return [
        Alert(event=event, rule=rule.name, target=target, settle=rule.settle,
              group=rule.name if (rule.title or rule.body) else "", scope=scope,
              change_key=change_key(scope, event), title=rule.title, body=rule.body)
        for event in events
        for rule, target in route(rules, event)
    ]


def same_change_window(watch: Watch, watches: Sequence[Watch]) -> float:
    """How long a change seen through one watch waits for the same change through the
    other watches of its host: 3 of their longest intervals, and at least a day, so a
    watch that failed for a while still recognises what the others already sent."""
    scope = host_of(watch)
    longest = max(w.interval for w in watches if host_of(w) == scope)
    return max(SAME_CHANGE_MIN_WINDOW, 3 * longest)


def host_of(watch: Watch) -> str:
    """The API a watch reads (scheme, host and port): watches of one host see one catalogue."""
    parts = urlsplit(watch.url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}".lower()
