"""Bytes the state database grows by: per unchanged poll, per changed snapshot.

Sizes are taken after ``PRAGMA wal_checkpoint(TRUNCATE)``, as used pages (page count minus
free pages) times the page size, so the WAL and SQLite's free-page reuse do not blur them.
"""

from __future__ import annotations

import itertools
import sqlite3
import statistics
import tempfile
import zlib
from pathlib import Path
from typing import Any

from bench.catalogue import Pair, real_body, real_numbers, taken
from bench.inmemory import AT, WATCH, cycle, load_rules
from watcher import snapshot
from watcher.store import DB_NAME, Store


def used_bytes(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0]
                             for p in ("page_count", "freelist_count", "page_size"))
    conn.close()
    return int((pages - free) * size)


def measure(unchanged_polls: int = 2000, synthetic: tuple[Pair, ...] = ()) -> dict[str, Any]:
    rules = load_rules()
    numbers = real_numbers()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-db-") as tmp:
        store = Store.open(Path(tmp))
        db = Path(tmp) / DB_NAME
        first = snapshot.parse(real_body(numbers[0]))
        store.commit_cycle(WATCH, AT, first, "baseline", [])
        out["baseline_bytes"] = used_bytes(db)

        # Every real step in order, as the daemon records it (snapshot, check, events,
        # outbox rows, reminders): the steps that only reorder the list are unchanged polls.
        baseline, steps = first, []
        for a, b in itertools.pairwise(numbers):
            before = used_bytes(db)
            current = snapshot.parse(real_body(b))
            outcome, events, alerts = cycle(baseline, real_body(b), rules, taken(b), set(), store)
            if outcome == "changed":
                baseline = current
            steps.append({"step": f"{a:03d}->{b:03d}", "outcome": outcome, "events": len(events),
                          "alerts": len(alerts), "bytes": used_bytes(db) - before,
                          "blob_bytes": len(zlib.compress(current.encode(), 6))
                          if outcome == "changed" else 0})
        changed = [s for s in steps if s["outcome"] == "changed"]
        out["real_steps"] = steps
        out["changed_steps"] = len(changed)
        out["changed_median_bytes"] = statistics.median(s["bytes"] for s in changed)
        out["changed_max_bytes"] = max(s["bytes"] for s in changed)
        out["changed_blob_median_bytes"] = statistics.median(s["blob_bytes"] for s in changed)
        out["response_median_bytes"] = statistics.median(len(real_body(n)) for n in numbers)

        before = used_bytes(db)
        for _ in range(unchanged_polls):
            store.record_check(WATCH, AT, "unchanged")
        out["unchanged_polls"] = unchanged_polls
        out["unchanged_bytes_per_poll"] = (used_bytes(db) - before) / unchanged_polls
        store.close()

    for pair in synthetic:
        with tempfile.TemporaryDirectory(prefix="bench-db-") as tmp:
            store = Store.open(Path(tmp))
            db = Path(tmp) / DB_NAME
            old = snapshot.parse(pair.old)
            store.commit_cycle(WATCH, AT, old, "baseline", [])
            before = used_bytes(db)
            cycle(old, pair.new, rules, pair.today, set(), store)
            out[f"{pair.name} bytes"] = used_bytes(db) - before
            store.close()
    return out
