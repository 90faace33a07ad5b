"""The model-version store: every stored snapshot comes back as it was polled, and a
model's history reads only that model's rows yet tells the same story as every snapshot."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import snapshot_bytes
from tests.test_diff_properties import catalogue, snap
from watcher import snapshot
from watcher.diff import as_decimal, diff, diff_model
from watcher.events import Event, events_from_changes, make_event, summary
from watcher.store import Store
from watcher.timeline import timeline

# Each test runs on both backends (the ``backend`` fixture): the same rows must come back.
NewState = Callable[[], Any]

# A history is a list of polls; each poll is a catalogue, or None for "the same as before".
histories = st.lists(st.one_of(catalogue, st.none()), min_size=1, max_size=8)


def commit_history(store: Store, watch: str, polls: list[dict | None]) -> list[snapshot.Snapshot]:
    """Commit ``polls`` as a poll loop would (a snapshot and its events only when the
    content changed); return the snapshots stored, in order."""
    stored: list[snapshot.Snapshot] = []
    for number, models in enumerate(polls):
        at = f"2026-01-{number + 1:02d}T00:00:00Z"
        if models is None or (stored and snap(models).same_content(stored[-1])):
            store.record_check(watch, at, "unchanged")
            continue
        current = snap(models)
        commit(store, watch, at, stored[-1] if stored else None, current)
        stored.append(current)
    return stored


def commit(store: Store, watch: str, at: str, baseline: snapshot.Snapshot | None,
           current: snapshot.Snapshot) -> None:
    events = ([] if baseline is None else events_from_changes(
        diff(baseline, current), old=baseline, new=current, watch=watch, detected_at=at))
    store.commit_cycle(watch, at, current, "changed" if baseline else "baseline", events)


# new_state gives each example a fresh state of its own (it is a maker, not a state).
FRESH_EACH = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@settings(max_examples=60, suppress_health_check=FRESH_EACH)
@given(histories, histories)
def test_every_stored_snapshot_is_rebuilt_equal_in_content_to_what_was_polled(
        new_state: NewState, first: list, second: list) -> None:
    with Store.open(new_state()) as store:
        polled = {"a": commit_history(store, "a", first)}
        store.pack_versions()  # one watch's versions compressed, the other's as polled
        polled["b"] = commit_history(store, "b", second)
        for _ in range(2):  # as written, then with every version packed
            for watch, snaps in polled.items():
                rows = store.stored_snapshots(watch)
                assert len(rows) == len(snaps)
                for (snapshot_id, _, digest), want in zip(rows, snaps, strict=True):
                    got = store.rebuild_snapshot(snapshot_id)
                    assert got.encode() == want.encode()
                    assert got.digest == digest == want.digest
                latest = store.latest_snapshot(watch)
                assert (latest is None) == (not snaps)
                if snaps:
                    assert latest is not None
                    assert latest.encode() == snaps[-1].encode()
            store.pack_versions()
            assert store._read("SELECT COUNT(*) FROM versions WHERE zdict IS NULL") == [(0,)]


def spans_expected(snaps: list[snapshot.Snapshot]) -> int:
    """One span per run of stored snapshots in which a model kept the same bytes."""
    runs = 0
    for k, current in enumerate(snaps):
        before = snaps[k - 1].fingerprints if k else {}
        runs += sum(1 for model, data in current.fingerprints.items() if before.get(model) != data)
    return runs


def test_a_store_reopened_before_each_poll_writes_only_what_changed(state: Any) -> None:
    """A daemon restarted before each poll commits from the baseline it read back: the
    models whose bytes did not move keep their spans (real steps change a few of ~350
    models), and every snapshot still rebuilds equal."""
    stored: list[snapshot.Snapshot] = []
    for number in range(0, 40, 3):
        current = snapshot.parse(snapshot_bytes(number))
        with Store.open(state) as store:
            baseline = store.latest_snapshot("w")
            if baseline is not None and current.same_content(baseline):
                continue
            commit(store, "w", f"2026-01-{number + 1:02d}T00:00:00Z", baseline, current)
            stored.append(current)
    with Store.open(state, readonly=True) as store:
        rows = store.stored_snapshots("w")
        assert [store.rebuild_snapshot(r[0]).encode() for r in rows] == [
            s.encode() for s in stored]
        (spans,) = store._read("SELECT COUNT(*) FROM spans")[0]
    # Most models kept their bytes from poll to poll: far fewer spans than models polled.
    assert spans == spans_expected(stored) < sum(len(s.models) for s in stored) // 2


def timeline_over_snapshots(model_id: str, history: list[tuple[str, snapshot.Snapshot]], *,
                            watch: str) -> dict[str, Any]:
    """The oracle: the 0.1.0 timeline, which walked every stored snapshot of the watch."""
    entries: list[Event] = []
    prices: dict[str, list[dict[str, Any]]] = {}
    context: list[dict[str, Any]] = []
    previous = name = first_seen = last_seen = None
    for index, (taken_at, whole) in enumerate(history):
        item = whole.models.get(model_id)
        if item is not None:
            name = item.get("name") or name
            last_seen = taken_at
            first_seen = first_seen or taken_at
            pricing = item.get("pricing") if isinstance(item.get("pricing"), dict) else {}
            for key in sorted(set(pricing or {}) | set(prices)):
                value = (pricing or {}).get(key, "0")
                if isinstance(value, str):
                    series = prices.setdefault(key, [])
                    if not series or as_decimal(series[-1]["price"]) != as_decimal(value):
                        series.append({"at": taken_at, "price": value})
            if not context or context[-1]["context_length"] != item.get("context_length"):
                context.append({"at": taken_at, "context_length": item.get("context_length")})
        if previous is None and item is not None:
            entries.append(make_event(watch=watch, type="model_added", model=model_id,
                                      name=item.get("name"), new=summary(item),
                                      detected_at=taken_at, in_baseline=index == 0))
        elif previous is not None and item is None:
            entries.append(make_event(watch=watch, type="model_removed", model=model_id,
                                      name=previous.get("name"), old=summary(previous),
                                      detected_at=taken_at))
        elif previous is not None and item is not None:
            changes = diff_model(model_id, previous, item)
            if changes:
                entries += events_from_changes(changes, old=snapshot.from_items([previous]),
                                               new=snapshot.from_items([item]), watch=watch,
                                               detected_at=taken_at)
        previous = item
    prices = {k: v for k, v in prices.items() if any(as_decimal(p["price"]) for p in v)}
    return {"model": model_id, "name": name, "watch": watch, "first_seen": first_seen,
            "last_seen": last_seen, "present": previous is not None, "events": entries,
            "prices": prices, "context_length": context}


@settings(max_examples=60, suppress_health_check=FRESH_EACH)
@given(histories)
def test_a_model_timeline_from_its_own_rows_equals_the_walk_over_every_snapshot(
        new_state: NewState, polls: list) -> None:
    """The timeline reads the model's versions and recorded events; the 0.1.0 timeline
    diffed every stored snapshot: the same story."""
    with Store.open(new_state()) as store:
        snaps = commit_history(store, "w", polls)
        taken = [(at, s) for (_, at, _), s in zip(store.stored_snapshots("w"), snaps, strict=True)]
        for model_id in sorted({m for s in snaps for m in s.models} | {"never-listed"}):
            assert (timeline(model_id, store.model_states("w", model_id), watch="w")
                    == timeline_over_snapshots(model_id, taken, watch="w"))


def test_the_real_history_tells_the_same_story_from_model_rows(state: Any) -> None:
    """All 40 real responses as one watch's history: every model's timeline."""
    polled = [snapshot.parse(snapshot_bytes(n)) for n in range(40)]
    with Store.open(state) as store:
        stored: list[tuple[str, snapshot.Snapshot]] = []
        for number, current in enumerate(polled):
            at = f"2026-01-{number // 24 + 1:02d}T{number % 24:02d}:00:00Z"
            if stored and current.same_content(stored[-1][1]):
                continue
            commit(store, "models", at, stored[-1][1] if stored else None, current)
            stored.append((at, current))
        models = sorted(set(itertools.chain.from_iterable(s.models for s in polled)))
        for model_id in models:
            assert (timeline(model_id, store.model_states("models", model_id), watch="models")
                    == timeline_over_snapshots(model_id, stored, watch="models")), model_id
