"""Prometheus metrics of one daemon, in a registry of its own (so tests can run several).

Every metric is named ``openrouter_watcher_*``.  Poll cycles are recorded by :class:`App`;
the outbox is recorded by the delivery code through the ``notification_*`` methods; the
pending and dead-letter gauges are refreshed from the state database, and the failing
gauge from the deliverer, at each scrape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from watcher import __version__

PREFIX = "openrouter_watcher"
# A poll is one GET of a ~640 KB list: tens of ms on loopback, seconds when the API is slow,
# up to the timeouts (30 s each by default) when it is failing.
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The daemon's metrics; one instance per :class:`~watcher.app.App`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Gauge(f"{PREFIX}_build_info", "The running version (always 1).", ["version"],
              registry=r).labels(__version__).set(1)
        self._cycles = Counter(f"{PREFIX}_cycles", "Poll cycles by watch and outcome "
                               "(baseline, unchanged, changed, held, failed, crashed).",
                               ["watch", "outcome"], registry=r)
        self._fetch = Histogram(f"{PREFIX}_fetch_duration_seconds",
                                "Time to fetch (with retries) and parse a watch's model list.",
                                ["watch"], buckets=FETCH_BUCKETS, registry=r)
        self._events = Counter(f"{PREFIX}_events", "Change events detected, by watch and type.",
                               ["watch", "type"], registry=r)
        self._alerts = Counter(f"{PREFIX}_alerts", "Alerts queued for a target by a rule.",
                               ["rule", "target"], registry=r)
        self._last_success = Gauge(f"{PREFIX}_last_success_timestamp_seconds",
                                   "Unix time of the watch's last successful cycle.", ["watch"],
                                   registry=r)
        self._models = Gauge(f"{PREFIX}_models", "Models in the watch's last good response.",
                             ["watch"], registry=r)
        self._sent = Counter(f"{PREFIX}_notifications_sent",
                             "Notifications a target accepted (one per message).", ["target"],
                             registry=r)
        self._failed = Counter(f"{PREFIX}_notifications_failed",
                               "Failed send attempts (each is retried until too old).",
                               ["target"], registry=r)
        self._dead = Counter(f"{PREFIX}_notifications_dead_lettered",
                             "Alerts given up on (too old, or the target was removed).",
                             ["target"], registry=r)
        self._pending = Gauge(f"{PREFIX}_notifications_pending",
                              "Alerts in the outbox not yet sent (settling or retrying).",
                              ["target"], registry=r)
        self._dead_waiting = Gauge(f"{PREFIX}_notifications_dead",
                                   "Dead letters in the outbox, waiting for `resend`.",
                                   ["target"], registry=r)
        self._target_failing = Gauge(f"{PREFIX}_target_failing",
                                     "1 while the target's last send failed.", ["target"],
                                     registry=r)
        self._target_stopped = Gauge(f"{PREFIX}_target_stopped",
                                     "1 while nothing is sent to the target because the state "
                                     "database cannot record its messages.", ["target"],
                                     registry=r)
        self._leader = Gauge(f"{PREFIX}_leader", "1 while this instance polls and delivers; "
                             "0 while it stands by (another instance leads).", registry=r)

    def leader(self, *, leading: bool) -> None:
        self._leader.set(1 if leading else 0)

    # Poll cycles -------------------------------------------------------------------

    def cycle(self, watch: str, outcome: str, *, at: float | None = None,
              models: int | None = None, event_types: Iterable[str] = (),
              alerts: Iterable[tuple[str, str]] = ()) -> None:
        """Record one finished cycle; ``at`` (Unix time) marks it successful."""
        self._cycles.labels(watch, outcome).inc()
        if at is not None:
            self._last_success.labels(watch).set(at)
        if models is not None:
            self._models.labels(watch).set(models)
        for kind in event_types:
            self._events.labels(watch, kind).inc()
        for rule, target in alerts:
            self._alerts.labels(rule, target).inc()

    def fetch_duration(self, watch: str, seconds: float) -> None:
        self._fetch.labels(watch).observe(seconds)

    def forget_watch(self, watch: str) -> None:
        """Drop the gauges of a watch removed by a reload (counters stay, as Prometheus
        expects of counters)."""
        for gauge in (self._last_success, self._models):
            with contextlib.suppress(KeyError):
                gauge.remove(watch)

    # Notifications -----------------------------------------------------------------

    def notification_sent(self, target: str) -> None:
        self._sent.labels(target).inc()

    def notification_failed(self, target: str) -> None:
        self._failed.labels(target).inc()

    def notification_dead_lettered(self, target: str, alerts: int = 1) -> None:
        self._dead.labels(target).inc(alerts)

    def notifications_pending(self, pending: dict[str, int]) -> None:
        """Set the pending gauge of every target at once (targets not named: 0)."""
        self._pending.clear()
        for target, count in pending.items():
            self._pending.labels(target).set(count)

    def notifications_dead(self, dead: dict[str, int]) -> None:
        """Set the dead-letter gauge of every target at once (targets not named: 0)."""
        self._dead_waiting.clear()
        for target, count in dead.items():
            self._dead_waiting.labels(target).set(count)

    def targets(self, names: Iterable[str], *, failing: Iterable[str]) -> None:
        """Set the failing gauge of every configured target (1 failing, else 0)."""
        bad = set(failing)
        self._target_failing.clear()
        for name in names:
            self._target_failing.labels(name).set(1 if name in bad else 0)

    def target_stopped(self, target: str, *, stopped: bool) -> None:
        self._target_stopped.labels(target).set(1 if stopped else 0)

    # Exposition --------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
