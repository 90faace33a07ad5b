"""Every read of the state database fails as StateError, never as a bare sqlite3 error:
callers (the status line, the metrics scrape, the cycle) catch StateError alone."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from watcher.errors import StateError
from watcher.store import DB_NAME, Store

READS: dict[str, Callable[[Store], Any]] = {
    "watches": Store.watches,
    "sent_reminders": lambda s: s.sent_reminders("models"),
    "events": Store.events,
    "model_states": lambda s: s.model_states("models", "a/b"),
    "latest_snapshot": lambda s: s.latest_snapshot("models"),
    "rebuild_snapshot": lambda s: s.rebuild_snapshot(1),
    "outbox_status": Store.outbox_status,
    "pending": Store.pending,
    "last_checks": Store.last_checks,
}
TABLES = ("events", "reminders", "outbox", "checks", "snapshots", "spans")


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_a_read_of_a_damaged_database_is_a_state_error_naming_it(
        tmp_path: Path, read: Callable[[Store], Any]) -> None:
    with Store.open(tmp_path) as store:
        other = sqlite3.connect(tmp_path / DB_NAME)
        try:  # as a damaged or foreign file would have it: the tables are gone
            for table in TABLES:
                other.execute(f"DROP TABLE IF EXISTS {table}")
            other.commit()
        finally:
            other.close()
        with pytest.raises(StateError, match=f"^{tmp_path / DB_NAME}: cannot read "):
            read(store)
