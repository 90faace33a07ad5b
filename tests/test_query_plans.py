"""The reads of history pages and of each poll use the indexes: no statement they run walks
a whole table of the history (events, spans, versions, checks, snapshots), which grow for
years.

SQLite only: these are SQLite's plans (EXPLAIN QUERY PLAN); PostgreSQL's planner picks its
own from the same indexes and statistics (``vacuum`` runs ANALYZE)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import snapshot_bytes
from watcher import snapshot
from watcher.diff import diff
from watcher.events import events_from_changes
from watcher.store import DB_NAME, EventQuery, Store

# The tables that grow with the history, and the aliases the store's queries give them.
GROWING = ("events", "spans", "versions", "checks", "snapshots", "e", "s", "v", "f", "l")
re_bounded = re.compile(r"ORDER BY id DESC LIMIT \d+$")


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three watches over ten real steps, with their events and unchanged checks."""
    root = tmp_path_factory.mktemp("plans")
    polled = [snapshot.parse(snapshot_bytes(n)) for n in range(8, 18)]
    with Store.open(root) as store:
        for watch in ("a", "b", "c"):
            for k, current in enumerate(polled):
                at = f"2026-01-{k + 1:02d}T00:00:00Z"
                events = [] if k == 0 else events_from_changes(
                    diff(polled[k - 1], current), old=polled[k - 1], new=current, watch=watch,
                    detected_at=at)
                store.commit_cycle(watch, at, current, "changed" if k else "baseline", events)
                store.record_check(watch, f"2026-01-{k + 1:02d}T01:00:00Z", "unchanged")
        store.pack_versions()  # no ANALYZE: the daemon never runs one, the planner guesses
    return root


def statements(state: Path, read: Callable[[Store], Any]) -> list[str]:
    """The SQL ``read`` runs, with its parameters filled in (sqlite3's expanded SQL)."""
    seen: list[str] = []
    with Store.open(state, readonly=True) as store:
        store._conn.set_trace_callback(seen.append)
        read(store)
    return [s for s in seen if s.lstrip().upper().startswith(("SELECT", "WITH"))]


def plan(state: Path, sql: str) -> list[str]:
    conn = sqlite3.connect(state / DB_NAME)
    try:
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    finally:
        conn.close()


def full_scans(sql: str, steps: list[str]) -> list[str]:
    """The steps of a plan that read a growing table whole.  Reading the newest rows
    backwards by id until a LIMIT is reached is a scan in the plan but costs the limit."""
    if " WHERE " not in sql and re_bounded.search(sql):
        return []
    return [step for step in steps if step.startswith("SCAN")
            and step.split()[1] in GROWING]


# Each read, and the indexes its plan must use: an index that matches the query but not
# its selective part (a model's events found through events_watch, in id order) is a
# search in the plan and still reads every event of the watch.  "spans PRIMARY KEY": the
# spans table's own (watch, model, first_snap) order; "SEARCH ...": that very step.
READS: dict[str, tuple[Callable[[Store], Any], set[str]]] = {
    "model_states (show, the model pages)": (lambda s: s.model_states("b", "z-ai/glm-4.7"),
                                             {"spans PRIMARY KEY", "events_model"}),
    "latest_snapshot (the next diff)": (lambda s: s.latest_snapshot("b"), {"spans_open"}),
    "rebuild_snapshot": (lambda s: s.rebuild_snapshot(5), set()),
    # One seek per model, not every span of the watch (which DISTINCT read, briefs and all).
    "models_ever": (lambda s: s.models_ever("b"),
                    {"SEARCH spans USING PRIMARY KEY (watch=? AND model>?)"}),
    "watches (show, every model page)": (lambda s: s.watches(), {"snapshots_watch"}),
    "events of a watch": (lambda s: s.event_rows(EventQuery(watch="b", limit=100)),
                          {"events_watch"}),
    "events of a type": (lambda s: s.event_rows(EventQuery(type="price_changed", limit=100)),
                         {"events_type"}),
    "events since": (lambda s: s.event_rows(EventQuery(since="2026-01-05T00:00:00Z", limit=100)),
                     {"events_time"}),
    "the newest events (the change page)": (lambda s: s.event_rows(EventQuery(limit=100)), set()),
    "last_checks (status)": (lambda s: s.last_checks(), {"checks_watch"}),
    "sent reminders": (lambda s: s.sent_reminders("b"), set()),
}


@pytest.mark.parametrize("name", list(READS))
def test_each_read_uses_its_index(state: Path, name: str) -> None:
    read, indexes = READS[name]
    ran = statements(state, read)
    assert ran, "the read ran no statement: the trace did not see it"
    used: list[str] = []
    for sql in ran:
        steps = plan(state, sql)
        assert full_scans(sql, steps) == [], sql
        used += steps
    for index in indexes:
        if index.startswith("SEARCH "):  # a whole step of the plan
            assert index in used, (index, used)
            continue
        table, _, key = index.partition(" ")
        assert any(f"INDEX {index} " in step or step.endswith(f"INDEX {index}")
                   or (key == "PRIMARY KEY" and step.startswith(f"SEARCH {table} USING PRIMARY KEY"))
                   for step in used), (index, used)
