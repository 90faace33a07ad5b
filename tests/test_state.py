"""Opening the state: a new database is made whole, an empty file is an error, and the
writer's lock cannot be deleted from under a running daemon.

SQLite only: files, drafts and the directory lock are SQLite's; opening a PostgreSQL state
(created once by concurrent writers, no lock, a newer schema refused) is tested in
tests/test_pgstate.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.daemon import Daemon, wait_for
from tests.fakes import FakeOpenRouter
from tests.sinks import WebhookSink
from tests.test_cli import cli
from tests.test_daemon import committed_changes, daemon_config
from watcher.errors import StateError
from watcher.store import DB_NAME, SCHEMA_VERSION, Store


def test_a_new_database_is_complete_from_its_first_byte(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Store.open(state) as store:
        instance = store.instance_id()
    conn = sqlite3.connect(state / DB_NAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()[0] == str(
            instance)
    finally:
        conn.close()
    assert sorted(p.name for p in state.iterdir()) == [DB_NAME]  # no draft, no lock file


def test_a_draft_left_by_a_crash_while_creating_is_built_again(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / f"{DB_NAME}.new").write_bytes(b"half a database")
    with Store.open(state) as store:
        assert store.watches() == []
    assert not (state / f"{DB_NAME}.new").exists()


@pytest.mark.parametrize("command", [["once"], ["status"], ["history"], ["once", "--dry-run"],
                                     ["show", "a/b"]])
def test_a_zero_byte_database_is_an_error_not_a_fresh_start(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, command: list[str]) -> None:
    fake_openrouter.set_script([24])
    path = tmp_path / "config.yaml"
    path.write_text(f"state_dir: state\nwatches: [{{name: models, url: '{fake_openrouter.url}', "
                    "interval: 1h}]\n")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / DB_NAME).write_bytes(b"")
    proc = cli(*command, "--config", str(path))
    assert proc.returncode == 1
    assert f"{DB_NAME}: the file is empty (0 bytes)" in proc.stderr
    assert "not treated as empty; move it aside" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert fake_openrouter.served == 0  # no poll, so no baseline: the pending alerts are not lost
    assert (tmp_path / "state" / DB_NAME).stat().st_size == 0


def test_a_daemon_refuses_a_zero_byte_database(tmp_path: Path, fake_openrouter: FakeOpenRouter,
                                               webhook: WebhookSink) -> None:
    config_path = daemon_config(tmp_path, fake_openrouter, webhook)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / DB_NAME).write_bytes(b"")
    daemon = Daemon(config_path).start()
    assert daemon.proc is not None
    assert daemon.proc.wait(30) == 1
    assert "the file is empty (0 bytes)" in daemon.logs()
    assert "Traceback" not in daemon.logs()


def test_store_open_refuses_an_empty_file_in_process(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"")
    with pytest.raises(StateError, match=r"empty \(0 bytes\)"):
        Store.open(tmp_path)
    with pytest.raises(StateError, match=r"empty \(0 bytes\)"):
        Store.open(tmp_path, readonly=True)


def test_deleting_files_beside_the_database_does_not_free_it_for_a_second_writer(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    fake_openrouter.set_script([24])
    config_path = daemon_config(tmp_path, fake_openrouter, webhook)
    state = tmp_path / "state"
    # An older version's lock file, as an upgrade leaves it: not what holds the lock now.
    state.mkdir()
    (state / "openrouter-watcher.lock").write_bytes(b"")
    daemon = Daemon(config_path).start()
    try:
        daemon.wait_started()
        wait_for(lambda: committed_changes(state) >= 1, what="the baseline")
        # Delete everything in the state directory that is not the database itself.
        removed = [p for p in state.iterdir()
                   if not p.name.startswith(DB_NAME)]
        for extra in removed:
            extra.unlink()
        assert [p.name for p in removed] == ["openrouter-watcher.lock"]
        once = cli("once", "--config", str(config_path))
        assert once.returncode == 1
        assert "is in use by another openrouter-watcher" in once.stderr
        assert "Traceback" not in once.stderr
        for reader in (["status"], ["history"], ["once", "--dry-run"],
                       ["show", "mistralai/devstral-2512:free"]):
            proc = cli(*reader, "--config", str(config_path))
            assert proc.returncode == 0, (reader, proc.stderr)
        assert daemon.proc is not None
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
    assert cli("once", "--config", str(config_path)).returncode == 0  # free again


def test_the_lock_is_on_the_directory_itself(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state"):
        moved = tmp_path / "moved"
        (tmp_path / "state").rename(moved)  # the same directory under another name
        with pytest.raises(StateError, match="is in use by another openrouter-watcher"):
            Store.open(moved)
