"""A database of an earlier release opens in this one, in place, with its whole history.

SQLite only: the old releases wrote SQLite files; a PostgreSQL state begins at schema 9
(tests/test_pgstate.py checks its version row and that a newer one is refused)."""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import orjson
import pytest

from tests.fakes import DATA, FakeOpenRouter
from tests.sinks import WebhookSink
from watcher import config, fetch
from watcher.app import App
from watcher.config import RetryPolicy
from watcher.errors import StateError
from watcher.store import DB_NAME, SCHEMA_VERSION, EventQuery, Store
from watcher.timeline import timeline


def schema2_state(state_dir: Path) -> Path:
    """tests/data/state-schema2.sqlite3.gz (written by 0.1.0), unpacked into ``state_dir``."""
    state_dir.mkdir(parents=True)
    path = state_dir / DB_NAME
    path.write_bytes(gzip.decompress((DATA / "state-schema2.sqlite3.gz").read_bytes()))
    return path


def fixture_state(state_dir: Path, schema: int) -> Path:
    """tests/data/state-schemaN.sqlite3.gz (see STATE-SCHEMAN.md), unpacked."""
    state_dir.mkdir(parents=True)
    path = state_dir / DB_NAME
    path.write_bytes(gzip.decompress((DATA / f"state-schema{schema}.sqlite3.gz").read_bytes()))
    return path


def raw_rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_schema_2_database_is_migrated_in_place_with_its_history(tmp_path: Path) -> None:
    path = schema2_state(tmp_path / "state")
    assert raw_rows(path, "PRAGMA user_version") == [(2,)]
    events_before = raw_rows(path, "SELECT id, body FROM events ORDER BY id")
    outbox_before = raw_rows(path, "SELECT id, state, target FROM outbox ORDER BY id")
    with Store.open(tmp_path / "state") as store:
        events = store.event_rows(EventQuery())
        status = store.outbox_status()["hook"]
        baseline = store.latest_snapshot("models")
    assert raw_rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert [(i, orjson.loads(b)) for i, b in events_before] == events
    assert len(events) == 42
    assert raw_rows(path, "SELECT id, state, target FROM outbox ORDER BY id") == outbox_before
    assert (status["sent"], status["pending"]) == (5, 21)
    assert baseline is not None
    assert len(baseline.models) == 350


@pytest.mark.parametrize("schema", [5, 6])
def test_a_schema_5_or_6_database_gets_clustered_spans_and_tells_every_timeline_as_before(
        tmp_path: Path, schema: int) -> None:
    """5 -> 7 and 6 -> 7 give every span its brief and first time, in model order (5 makes
    the briefs from the versions, 6 moves them off the versions): every model's story is
    what the schema-5 release told from the same history."""
    path = fixture_state(tmp_path / "state", schema)
    assert raw_rows(path, "PRAGMA user_version") == [(schema,)]
    spans_before = raw_rows(path, "SELECT watch, model, first_snap, last_snap, version "
                                  "FROM spans ORDER BY watch, model, first_snap")
    want = orjson.loads(gzip.decompress((DATA / "state-schema5-timelines.gz").read_bytes()))
    with Store.open(tmp_path / "state"):
        pass
    assert raw_rows(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert raw_rows(path, "SELECT watch, model, first_snap, last_snap, version FROM spans "
                          "ORDER BY watch, model, first_snap") == spans_before
    assert raw_rows(path, "SELECT COUNT(*) FROM spans s JOIN snapshots f ON f.id = s.first_snap "
                          "WHERE s.first_at = f.taken_at AND s.brief IS NOT NULL") == [
        (len(spans_before),)]
    assert "brief" not in {r[1] for r in raw_rows(path, "PRAGMA table_info(versions)")}
    indexes = dict(raw_rows(path, "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                  "AND name IN ('events_model', 'spans_open', 'spans_model')"))
    assert indexes["events_model"].endswith("ON events(model, watch, id)")
    assert indexes["spans_open"].endswith("ON spans(watch, model) WHERE last_snap IS NULL")
    assert "spans_model" not in indexes  # the table's own order now
    with Store.open(tmp_path / "state", readonly=True) as store:
        got = {m: timeline(m, store.model_states("models", m), watch="models")
               for m in sorted(store.models_ever("models"))}
    assert len(got) == 354
    assert sum(len(story["events"]) > 1 for story in got.values()) == 20
    assert got == want


async def test_pending_alerts_of_a_schema_2_database_are_sent_after_the_upgrade(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    schema2_state(tmp_path / "state")
    path = tmp_path / "config.yaml"
    path.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{fake_openrouter.url}", interval: 1h}}
targets: {{hook: "{webhook.url()}"}}
rules: []
""")
    fake_openrouter.set_script([11])
    settings = config.load(path)
    with Store.open(settings.state_dir) as store:
        async with fetch.new_session() as session:
            app = App(settings, store, session, retry=RetryPolicy(attempts=1))
            result = await app.cycle(settings.watches[0])
            await app.deliverer.drain()
            app.close()
        assert store.outbox_status()["hook"]["pending"] == 0
    assert result.outcome == "unchanged"  # the stored baseline is 011 already
    (received,) = webhook.delivered
    assert len(received.message["events"]) == 21


def test_a_database_of_a_newer_release_is_refused(tmp_path: Path) -> None:
    path = schema2_state(tmp_path / "state")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer openrouter-watcher"):
        Store.open(tmp_path / "state")
