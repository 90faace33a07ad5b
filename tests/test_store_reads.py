"""Every read of the state database fails as StateError, never as a bare sqlite3 or
psycopg error: callers (the status line, the metrics scrape, the cycle) catch StateError
alone.  On both backends."""

from __future__ import annotations

import re
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
        state: Any, read: Callable[[Store], Any]) -> None:
    with Store.open(state) as store:
        drop_tables(state)  # as a damaged or foreign database would have it
        with pytest.raises(StateError, match=f"^{re.escape(store.where)}: cannot read "):
            read(store)
        if store.database is not None:
            assert store.where == store.database.url  # the URL holds no password


def drop_tables(state: Any) -> None:
    """The tables gone, behind the store's back (another connection)."""
    if isinstance(state, Path):
        other = sqlite3.connect(state / DB_NAME)
        try:
            for table in TABLES:
                other.execute(f"DROP TABLE IF EXISTS {table}")
            other.commit()
        finally:
            other.close()
        return
    import psycopg

    with psycopg.connect(state.url, password=state.password.reveal(), autocommit=True) as other:
        other.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)} CASCADE")
