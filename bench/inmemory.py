"""Time the in-memory cycle against the parse floor and the naive DeepDiff baselines.

:func:`cycle` is ``App.cycle`` after the fetch: parse and validate, then
:func:`watcher.cycle.plan` (the guard, compare with the baseline, diff, events,
expiring_soon reminders, rules -> alerts), and (when given a store) the reads before it
and the one transaction that records it.  Every figure is a median of several runs of
the same work on the same bytes in this process; the report only compares figures of the
same run.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
from deepdiff import DeepDiff

from bench.catalogue import Pair
from watcher import snapshot
from watcher.config import Watch
from watcher.cycle import SAME_CHANGE_MIN_WINDOW, CycleState, Poll, Rules, plan, read_state, record
from watcher.events import Event, expiring_soon
from watcher.rules.load import load_rule_files
from watcher.rules.model import Rule
from watcher.store import Alert, Store

ROOT = Path(__file__).resolve().parent.parent
RULE_FILES = (ROOT / "rules" / "default.yaml", ROOT / "bench" / "rules.yaml")
WATCH = "models"
AT = "2026-01-04T19:13:29Z"
DAYS = (7, 1)  # the config's default expiring_soon_days
BENCH_WATCH = Watch(name=WATCH, url="http://x", interval=60)

Sent = set[tuple[str, str, int]]


def load_rules() -> tuple[Rule, ...]:
    return load_rule_files(RULE_FILES, targets={"console", "slack", "email"}, watches={WATCH})


def cycle(baseline: snapshot.Snapshot, body: bytes, rules: tuple[Rule, ...], today: date,
          sent: Sent, store: Store | None = None) -> tuple[str, list[Event], list[Alert]]:
    """What ``App.cycle`` does with a response body: parse, then :func:`watcher.cycle.plan`
    (the function the daemon runs), and with a store the reads before it and the one
    write after it (:func:`watcher.cycle.record`).

    Not here: the fetch, logging, operator notices and waking the deliverer.
    """
    current = snapshot.parse(body)
    state = (CycleState(baseline, sent=frozenset(sent)) if store is None else
             read_state(store, BENCH_WATCH, baseline, current, paired=False))
    if state.suspicion is not None:
        raise AssertionError("the guard would hold this response")
    planned = plan(state, Poll(current), watch=BENCH_WATCH,
                   rules=Rules(rules, DAYS, SAME_CHANGE_MIN_WINDOW), now=_now(today))
    if store is not None:
        record(store, planned)
    return planned.outcome, planned.events, planned.alerts


def _now(today: date) -> datetime:
    """``AT``'s time of day on ``today``."""
    return datetime.combine(today, datetime.fromisoformat(AT).timetz())


def steady_reminders(baseline: snapshot.Snapshot, today: date) -> Sent:
    """The reminders a daemon polling every day would already have sent by ``today``."""
    return {key for _, key in expiring_soon(baseline, watch=WATCH, today=today, days=DAYS,
                                            sent=set(), detected_at=AT)}


def medians_ms(fns: dict[str, Callable[[], Any]], *, budget: float, least: int = 7,
               most: int = 300) -> dict[str, float]:
    """Median wall time of each function in ms.

    The functions run in turn (a, b, c, a, b, c, ...) until ``budget`` seconds are spent or
    each ran ``most`` times, so that a noisy neighbour slows them all alike and the ratios
    between them hold.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    spent, runs = 0.0, 0
    while runs < least or (spent < budget and runs < most):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - start
            samples[name].append(elapsed * 1e3)
            spent += elapsed
        runs += 1
    return {name: statistics.median(values) for name, values in samples.items()}


def median_ms(fn: Callable[[Any], Any], setup: Callable[[], Any], runs: int) -> float:
    """Median wall time of ``fn(setup())`` in ms; ``setup`` is not timed."""
    samples = []
    for _ in range(runs):
        arg = setup()
        start = time.perf_counter()
        fn(arg)
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def measure_pair(pair: Pair, rules: tuple[Rule, ...], *, budget: float, baselines: bool,
                 commit_runs: int = 9, baseline_runs: int = 1) -> dict[str, Any]:
    """Every in-process figure for one pair of responses."""
    gc.collect()
    baseline = snapshot.parse(pair.old)
    sent = steady_reminders(baseline, pair.today)
    outcome, events, alerts = cycle(baseline, pair.new, rules, pair.today, sent)
    if outcome != ("changed" if pair.changed else "unchanged"):
        raise AssertionError(f"{pair.name}: the cycle says {outcome}")
    out: dict[str, Any] = {"pair": pair.name, "models": pair.models, "bytes": len(pair.new),
                           "outcome": outcome, "events": len(events), "alerts": len(alerts)}
    new = pair.new
    out |= {f"{name}_ms": ms for name, ms in medians_ms({
        "loads": lambda: orjson.loads(new),
        "parse": lambda: snapshot.parse(new),
        "cycle": lambda: cycle(baseline, new, rules, pair.today, sent),
    }, budget=budget).items()}

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        stores = iter(range(10**6))

        def fresh_store() -> Store:
            # A fresh database each run, so that the snapshot is really written every time.
            store = Store.open(Path(tmp) / str(next(stores)))
            store.commit_cycle(WATCH, AT, baseline, "baseline", [],
                               reminders=sorted(sent))
            return store

        def committed(store: Store) -> None:
            cycle(baseline, new, rules, pair.today, sent, store)

        out["cycle_commit_ms"] = median_ms(committed, fresh_store, commit_runs)
    if baselines:
        old_data = orjson.loads(pair.old)["data"]
        new_data = orjson.loads(new)["data"]
        out |= {f"{name}_ms": ms for name, ms in medians_ms({
            "deepdiff": lambda: DeepDiff(old_data, new_data, ignore_order=True),
            "deepdiff_keyed": lambda: DeepDiff({m["id"]: m for m in old_data},
                                               {m["id"]: m for m in new_data}),
        }, budget=0, least=baseline_runs).items()}
        del old_data, new_data
    gc.collect()
    return out
