"""Retention: what only says "nothing changed" goes; history, pending alerts and reminders stay.

What retention keeps and removes is tested on both backends (the ``state`` fixture); how it
reads and deletes (SQLite's query plans, its VM steps, a kill midway, the write-ahead log)
is SQLite's alone."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.daemon import wait_for
from tests.fakes import snapshot_bytes
from tests.legacy import write_schema2
from tests.pg import state_yaml
from tests.test_cli import cli
from watcher import config, fetch, snapshot
from watcher.app import App
from watcher.clock import iso
from watcher.config import Retention
from watcher.errors import ConfigError
from watcher.events import make_event
from watcher.store import DB_NAME, Alert, Store

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def event(watch: str, model: str, at: datetime, new: str = "0.000001") -> dict:
    return make_event(watch=watch, type="price_changed", model=model, detected_at=iso(at),
                      field="pricing.prompt", old="0.0000005", new=new, change_pct=100.0)


def fill(state_dir: Path | config.Database, per_hour: int = 1) -> dict[str, list[int]]:
    """120 days of hourly unchanged checks of two watches, and changes whose messages were
    sent, cancelled, duplicated, dead-lettered or are still pending, 100 and 10 days ago."""
    rows: dict[str, list[int]] = {}
    with Store.open(state_dir) as store:
        base = snapshot.parse(snapshot_bytes(10))
        store.commit_cycle("a", iso(ago(121)), base, "baseline", [])
        store.commit_cycle("b", iso(ago(121)), base, "baseline", [])
        for tick in range(120 * 24 * per_hour):
            for watch in ("a", "b"):
                store.record_check(watch, iso(ago(120) + timedelta(hours=tick / per_hour)),
                                   "unchanged")
        for days in (100, 10):
            at = ago(days)
            events = [event("a", "z-ai/glm-4.7", at), event("a", "openai/gpt-4o", at)]
            alerts = [Alert(event=events[0], rule="r", target="hook", scope="s",
                            change_key=f"k{days}"),
                      Alert(event=events[1], rule="r", target="down")]
            _, ids = store.commit_cycle("a", iso(at), None, "unchanged", events, alerts,
                                        now=at.timestamp())
            seen_by_b = [event("b", "z-ai/glm-4.7", at)]
            store.commit_cycle("b", iso(at), None, "unchanged", seen_by_b,
                               [Alert(event=seen_by_b[0], rule="r", target="hook", scope="s",
                                      change_key=f"k{days}")], now=at.timestamp(),
                               same_change_window=86400)
            outbox = {target: [r[0] for r in store._read(
                "SELECT id FROM outbox WHERE target = ? AND event_id >= ? ORDER BY id",
                (target, ids[0]))] for target in ("hook", "down")}
            store.mark_sent(outbox["hook"][:1], at.timestamp())
            rows[f"sent{days}"] = outbox["hook"][:1]
            rows[f"dup{days}"] = outbox["hook"][1:]
            rows[f"down{days}"] = outbox["down"]
        store.mark_dead(rows["down100"], ago(99).timestamp(), "refused")  # a dead letter
        # A changed poll: its new model versions wait, uncompressed, for a prune to pack them.
        store.commit_cycle("a", iso(ago(50)), snapshot.parse(snapshot_bytes(11)), "changed", [])
        # rows["down10"] stays pending: its target is down
    return rows


def states(state: Path | config.Database) -> dict[int, str]:
    with Store.open(state, readonly=True) as store:
        return dict(store._read("SELECT id, state FROM outbox"))


def unchanged_per_day(state: Path | config.Database, watch: str) -> dict[str, int]:
    with Store.open(state, readonly=True) as store:
        return dict(store._read(
            "SELECT substr(at, 1, 10), COUNT(*) FROM checks WHERE watch = ? AND "
            "outcome = 'unchanged' AND events = 0 GROUP BY 1", (watch,)))


def test_the_default_retention_keeps_history_and_what_is_pending(
        state: Path | config.Database) -> None:
    rows = fill(state)
    assert set(states(state).values()) == {"sent", "duplicate", "dead", "pending"}
    with Store.open(state) as store:
        events_before = store.events()
        story_before = store.model_states("a", "z-ai/glm-4.7")
        baseline_before = store.latest_snapshot("a")
        dry = list(store.prune(Retention(), NOW.timestamp(), dry_run=True))[-1]
        assert len(store.events()) == len(events_before)  # dry: nothing went
        pruned = list(store.prune(Retention(), NOW.timestamp()))[-1]
        assert pruned == dry
        assert store.events() == events_before
        assert store.model_states("a", "z-ai/glm-4.7") == story_before
        latest = store.latest_snapshot("a")
        assert latest is not None
        assert baseline_before is not None
        assert latest.encode() == baseline_before.encode()

    left = states(state)
    # Sent and duplicate messages older than 90 days went (the duplicate first); the dead
    # letter and the pending message stay, and so does everything of 10 days ago.
    assert not set(rows["sent100"] + rows["dup100"]) & left.keys()
    assert {left[r] for r in rows["down100"]} == {"dead"}
    assert {left[r] for r in rows["down10"]} == {"pending"}
    assert {left[r] for r in rows["sent10"] + rows["dup10"]} == {"sent", "duplicate"}
    assert pruned.messages == 2
    for watch in ("a", "b"):
        per_day = unchanged_per_day(state, watch)
        old = {d: n for d, n in per_day.items() if d < iso(ago(30))[:10]}
        recent = {d: n for d, n in per_day.items() if d > iso(ago(30))[:10]}
        assert old
        assert set(old.values()) == {1}, "one unchanged check per day older than 30 days"
        assert all(n == 24 for d, n in recent.items() if d != iso(NOW)[:10])
    # Running it again finds nothing more.
    with Store.open(state) as store:
        assert list(store.prune(Retention(), NOW.timestamp()))[-1].total() == 0


def test_events_and_dead_letters_go_only_when_configured_and_never_while_pending(
        state: Path | config.Database) -> None:
    rows = fill(state)
    retention = Retention(dead_letters=30 * 86400.0, events=60 * 86400.0)
    with Store.open(state) as store:
        pruned = list(store.prune(retention, NOW.timestamp()))[-1]
        left = {(e["watch"], e["detected_at"][:10]) for e in store.events()}
    assert pruned.dead_letters == 1
    assert pruned.events == 3  # the three events of 100 days ago: nothing refers to them now
    assert left == {("a", iso(ago(10))[:10]), ("b", iso(ago(10))[:10])}
    assert {states(state)[r] for r in rows["down10"]} == {"pending"}


def test_deleting_an_old_check_looks_up_what_refers_to_it_by_index(tmp_path: Path) -> None:
    """Each check a prune deletes is checked against the events and outbox rows that could
    refer to it (foreign keys): by index, or every batch would scan the whole history."""
    with Store.open(tmp_path) as store:
        store.commit_cycle("a", iso(ago(121)), snapshot.parse(snapshot_bytes(10)), "baseline", [])
        old = store.record_check("a", iso(ago(100)), "unchanged")
        events = [event("a", f"m/{i}", ago(5)) for i in range(3000)]
        store.commit_cycle("a", iso(ago(5)), None, "unchanged", events,
                           [Alert(event=e, rule="r", target="t") for e in events],
                           now=ago(5).timestamp())
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute("PRAGMA foreign_keys=ON")  # as the store has it
    steps = []
    conn.set_progress_handler(lambda: steps.append(1), 100)  # every 100 VM instructions
    with conn:
        conn.execute("DELETE FROM checks WHERE id = ?", (old,))
    conn.close()
    # A scan of 3,000 events and 3,000 outbox rows takes ~180 hundreds of instructions.
    assert len(steps) < 10


def test_each_prune_step_reads_one_window_however_long_the_history(tmp_path: Path) -> None:
    """The daemon's loop waits for one prune step at a time: its work (SQLite instructions)
    stays that of one window of ids whether 5,000 or 20,000 old messages are due to go."""
    def most_per_step(messages: int) -> int:
        with Store.open(tmp_path / str(messages)) as store:
            store.commit_cycle("a", iso(ago(121)), snapshot.parse(snapshot_bytes(10)),
                               "baseline", [])
            events = [event("a", f"m/{i}", ago(100)) for i in range(messages)]
            store.commit_cycle("a", iso(ago(100)), None, "unchanged", events,
                               [Alert(event=e, rule="r", target="t") for e in events],
                               now=ago(100).timestamp())
            store.mark_sent(range(1, messages + 1), ago(100).timestamp())
            work = [0]
            store._conn.set_progress_handler(lambda: work.__setitem__(0, work[0] + 1), 1000)
            most, removed = 0, 0
            for pruned in store.prune(Retention(), NOW.timestamp()):
                most, work[0], removed = max(most, work[0]), 0, pruned.messages
            assert removed == messages
        return most

    # Reading every sent row through the state index and sorting them, on every read,
    # made it grow with the outbox (2.2x here).
    small, large = most_per_step(5_000), most_per_step(20_000)
    assert large < 1.5 * small


def test_prune_and_vacuum_commands(tmp_path: Path, state: Path | config.Database) -> None:
    fill(state)
    path = tmp_path / "config.yaml"
    path.write_text(state_yaml(state, tmp_path) + "watches:\n  - {name: a, url: 'http://127.0.0.1:9/api/v1/models', interval: 1h}\n"
                    "retention: {unchanged_checks: 1h, messages: 7d}\n")
    dry = cli("prune", "--dry-run", "--config", str(path))
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("would remove ")
    real = cli("prune", "--config", str(path))
    assert real.returncode == 0, real.stderr
    assert real.stdout.replace("removed", "would remove", 1).replace(
        "compressed", "would compress", 1) == dry.stdout
    assert "would compress 0 model versions" not in dry.stdout  # fill() wrote some
    again = cli("prune", "--dry-run", "--config", str(path))
    assert again.stdout.endswith("; would compress 0 model versions\n")
    vacuum = cli("vacuum", "--config", str(path))
    assert vacuum.returncode == 0, vacuum.stderr
    assert " MB -> " in vacuum.stdout


@pytest.mark.parametrize(("text", "where"), [
    ("retention: {unchanged: 30d}", "config.yaml:3"),
    ("retention: {messages: 1d}", "config.yaml:3"),
    ("retention: {events: soon}", "config.yaml:3"),
])
def test_bad_retention_is_a_config_error_with_file_and_line(tmp_path: Path, text: str,
                                                            where: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"watches:\n  - {{name: a, url: 'http://127.0.0.1:9/api/v1/models', interval: 1h}}\n{text}\n")
    with pytest.raises(ConfigError, match=where):
        config.load(path)


def outputs(state_dir: Path, config_path: Path) -> tuple[str, str]:
    history = cli("history", "--format", "json", "--config", str(config_path))
    show = cli("show", "z-ai/glm-4.7", "--format", "json", "--config", str(config_path))
    assert history.returncode == 0, history.stderr
    assert show.returncode == 0, show.stderr
    return history.stdout, show.stdout


def kill_midway(args: list[str], config_path: Path, started: str) -> None:
    """Run ``openrouter-watcher ARGS`` and SIGKILL it once its log says ``started``."""
    log = config_path.parent / "killed.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "watcher", *args, "--config", str(config_path),
                                 "--log-level", "debug"], stderr=err, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: started in log.read_text() or proc.poll() is not None, timeout=60,
                 what=started)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)


@pytest.mark.slow
def test_a_migration_killed_midway_loses_nothing(tmp_path: Path) -> None:
    """A schema-2 history of 300 snapshots, migrated once cleanly and once with a SIGKILL
    in the middle (then again): the same history and timeline."""
    catalogues = [snapshot.parse(snapshot_bytes(n)) for n in range(40)]
    history = [("models", iso(ago(300 - i)), catalogues[i % 40]) for i in range(300)]
    outs = []
    for name, kill in (("clean", False), ("killed", True)):
        root = tmp_path / name
        write_schema2(root / "state", history)
        path = root / "config.yaml"
        path.write_text("state_dir: state\nwatches:\n"
                        "  - {name: models, url: 'http://127.0.0.1:9/api/v1/models', interval: 1h}\n")
        if kill:
            reader = cli("history", "--config", str(path))
            assert reader.returncode == 1
            assert "older openrouter-watcher" in reader.stderr, "a reader never migrates"
            kill_midway(["prune"], path, "state.migrating")
            assert sqlite3.connect(root / "state" / DB_NAME).execute(
                "PRAGMA user_version").fetchone() == (2,), "the kill came before the commit"
        assert cli("prune", "--config", str(path)).returncode == 0
        outs.append(outputs(root / "state", path))
    assert outs[0] == outs[1]
    assert outs[0][0].count("\n") == 299


@pytest.mark.slow
def test_a_prune_killed_midway_loses_nothing(tmp_path: Path) -> None:
    fill(tmp_path / "clean" / "state", per_hour=10)  # ~110 batches to delete
    shutil.copytree(tmp_path / "clean", tmp_path / "killed")
    outs = []
    for name in ("clean", "killed"):
        root = tmp_path / name
        path = root / "config.yaml"
        path.write_text("state_dir: state\nwatches:\n"
                        "  - {name: a, url: 'http://127.0.0.1:9/api/v1/models', interval: 1h}\n"
                        "retention: {unchanged_checks: 1h, messages: 7d}\n")
        if name == "killed":
            before = sum(unchanged_per_day(root / "state", "a").values())
            kill_midway(["prune"], path, "state.prune_batch")
            after = sum(unchanged_per_day(root / "state", "a").values())
            assert 120 < after < before, "killed between batches"
        assert cli("prune", "--config", str(path)).returncode == 0
        outs.append((outputs(root / "state", path), unchanged_per_day(root / "state", "a"),
                     states(root / "state")))
    assert outs[0] == outs[1]


async def test_the_daemon_prunes_between_polls_and_checkpoints_off_its_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """App.prune runs Store.prune a batch at a time and, after each, checkpoints the
    write-ahead log in a worker thread: the loop goes on meanwhile, and what the batches
    removed is in the database file itself afterwards."""
    state = tmp_path / "state"
    fill(state)
    path = tmp_path / "config.yaml"
    path.write_text("state_dir: state\nwatches:\n  - {name: a, url: 'http://127.0.0.1:9/api/v1/models', "
                    "interval: 1h}\nretention: {unchanged_checks: 1h, messages: 7d}\n")
    settings = config.load(path)
    threads: list[str] = []
    checkpoint = Store.checkpoint

    def spied(store: Store) -> None:
        threads.append(threading.current_thread().name)
        checkpoint(store)

    monkeypatch.setattr(Store, "checkpoint", spied)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    with Store.open(state) as store:
        async with fetch.new_session() as session:
            app = App(settings, store, session, clock=lambda: NOW)
            beat = asyncio.create_task(ticker())
            pruned = await app.prune()
            beat.cancel()
            app.close()
        assert pruned.unchanged_checks > 5000
        changed = snapshot.parse(snapshot_bytes(11)).fingerprints.items()
        before = snapshot.parse(snapshot_bytes(10)).fingerprints
        assert pruned.versions_packed == sum(before.get(m) != data for m, data in changed) > 0
        # Every version packed, and every frame of the log copied into the database.
        assert store._read("SELECT COUNT(*) FROM versions WHERE zdict IS NULL") == [(0,)]
        busy, frames, copied = store._read("PRAGMA wal_checkpoint(PASSIVE)")[0]
        assert (busy, frames) == (0, copied)
    assert len(threads) > 10
    assert threading.main_thread().name not in threads
    assert ticks >= len(threads)  # the loop ran while each checkpoint did
