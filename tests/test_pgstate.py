"""The state in PostgreSQL: a real server (tests/pg.py), the same replays as SQLite, the
config and start-up errors, and ``migrate-state`` both ways.

The store's own behaviour is tested on both backends by the store test files (their
``state`` fixture); this file holds what is about PostgreSQL itself."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import DATA, FakeOpenRouter
from tests.pg import PASSWORD, state_yaml
from tests.sinks import WebhookSink
from tests.test_cli import cli
from tests.test_daemon import assert_resent_once_after_sigkill, daemon_config
from tests.test_history import replay
from watcher import config, snapshot
from watcher.errors import StateError
from watcher.events import make_event
from watcher.store import SCHEMA_VERSION, EventQuery, Store

STEPS = sorted(int(p.name[:3]) for p in DATA.glob("*.json.gz"))


def write_config(folder: Path, server: FakeOpenRouter, state: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(state_yaml(state, folder) + f"watches: [{{name: models, url: '{server.url}', "
                    "interval: 1h}]\nexpiring_soon_days: []\n")
    return path


def output(path: Path, *args: str) -> str:
    proc = cli(*args, "--config", str(path))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


async def test_a_real_replay_on_postgresql_records_what_sqlite_records(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, pg_database: config.Database) -> None:
    paths = {}
    for name, state in (("sqlite", tmp_path / "sqlite" / "state"), ("postgresql", pg_database)):
        paths[name] = write_config(tmp_path / name, fake_openrouter, state)
        await replay(paths[name], fake_openrouter, STEPS)
    histories = {name: output(path, "history", "--format", "json") for name, path in paths.items()}
    events = [json.loads(line) for line in histories["sqlite"].splitlines()]
    assert len(events) > 300
    assert histories["postgresql"] == histories["sqlite"]
    for model in ("z-ai/glm-4.7", "qwen/qwen-max", "mistralai/devstral-2512:free"):
        shown = {name: output(path, "show", model, "--format", "json")
                 for name, path in paths.items()}
        assert shown["postgresql"] == shown["sqlite"]
    assert PASSWORD not in histories["postgresql"]


def run(path: Path, *args: str) -> Any:
    return cli(*args, "--config", str(path))


async def test_migrate_state_sqlite_to_postgresql_and_back_keeps_history_and_show(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, pg_database: config.Database,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = write_config(tmp_path / "first", fake_openrouter, tmp_path / "first" / "state")
    await replay(first, fake_openrouter, STEPS[:30])
    on_pg = write_config(tmp_path / "pg", fake_openrouter, pg_database)
    back = write_config(tmp_path / "back", fake_openrouter, tmp_path / "back" / "state")
    monkeypatch.setenv("PGPASSWORD", PASSWORD)  # a URL on the command line: libpq's own
    there = cli("migrate-state", "--from", str(tmp_path / "first" / "state"),
                "--to", pg_database.url)
    assert there.returncode == 0, there.stderr
    assert there.stdout.startswith("copied ")
    # Back with the config's state as the source (its password_file), into a new directory.
    home = run(on_pg, "migrate-state", "--to", str(tmp_path / "back" / "state"))
    assert home.returncode == 0, home.stderr
    assert home.stdout.split(":")[0].split(" rows")[0] == there.stdout.split(" rows")[0]
    models = ("z-ai/glm-4.7", "qwen/qwen-max", "mistralai/devstral-2512:free", "openai/gpt-4o")
    seen = {}
    for path in (first, on_pg, back):
        seen[path] = [output(path, "history", "--format", "json")] + [
            output(path, "show", model, "--format", "json") for model in models]
    assert len(seen[first][0].splitlines()) > 200
    assert seen[on_pg] == seen[first]
    assert seen[back] == seen[first]
    for proc in (there, home):
        assert PASSWORD not in proc.stdout + proc.stderr
    # The copy goes on where the original stopped: new ids after the copied ones.
    await replay(on_pg, fake_openrouter, STEPS[30:])
    await replay(first, fake_openrouter, STEPS[30:])
    assert output(on_pg, "history", "--format", "json") == output(first, "history",
                                                                 "--format", "json")


async def test_migrate_state_refuses_a_target_that_holds_a_state(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, pg_database: config.Database,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    source = write_config(tmp_path / "a", fake_openrouter, tmp_path / "a" / "state")
    await replay(source, fake_openrouter, [10, 11])
    target = write_config(tmp_path / "b", fake_openrouter, pg_database)
    await replay(target, fake_openrouter, [12])
    before = output(target, "history", "--format", "json")
    proc = run(source, "migrate-state", "--to", pg_database.url)
    assert proc.returncode == 1
    assert "is not empty (its snapshots table has rows): migrate-state copies into a new" in (
        proc.stderr)
    assert "Traceback" not in proc.stderr
    assert output(target, "history", "--format", "json") == before
    into_itself = run(source, "migrate-state", "--to", str(tmp_path / "a" / "state"))
    assert into_itself.returncode == 2
    assert "are the same state" in into_itself.stderr
    sqlite_target = run(target, "migrate-state", "--to", str(tmp_path / "a" / "state"))
    assert sqlite_target.returncode == 1
    assert "is not empty" in sqlite_target.stderr


def test_a_wrong_password_or_database_is_a_config_error_and_no_password_is_shown(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, pg_server: Any) -> None:
    name = pg_server.database()
    wrong = config.Database(url=pg_server.url(name), password="not-" + PASSWORD)
    missing = config.Database(url=pg_server.url("no_such_db"), password=PASSWORD)
    for state, said in ((wrong, "password authentication failed"),
                        (missing, 'database "no_such_db" does not exist')):
        path = write_config(tmp_path / said.split()[0].strip('"'), fake_openrouter, state)
        for command in (["once"], ["status"], ["history"]):
            proc = run(path, *command)
            assert proc.returncode == 2, (command, proc.stderr)
            assert said in proc.stderr
            assert proc.stderr.startswith("openrouter-watcher: config error: state: "
                                          f"{state.url}: ")
            assert "Traceback" not in proc.stderr
            assert PASSWORD not in proc.stdout + proc.stderr
    assert fake_openrouter.served == 0  # nothing polled without a state to record it in


def test_an_unreachable_server_is_exit_1_without_a_traceback(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    state = config.Database(url=f"postgresql://watcher@127.0.0.1:{port}/watcher",
                            password=PASSWORD)
    path = write_config(tmp_path, fake_openrouter, state)
    proc = run(path, "once")
    assert proc.returncode == 1
    assert f"{state.url}: cannot connect to PostgreSQL: " in proc.stderr
    assert "Connection refused" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("text", "said"), [
    ("state: postgresql://watcher:pg-canary-Zq81x@127.0.0.1/watcher", "the URL holds a password"),
    ("state: {url: 'postgresql://w@127.0.0.1:5432/'}", "the URL names no database"),
    ("state: {url: 'mysql://w@h/db'}", "expected a postgresql://"),
    ("state: {url: 'postgresql://w@h/db', password_env: NO_SUCH_VAR}",
     "environment variable NO_SUCH_VAR is not set"),
    ("state: {url: 'postgresql://w@h/db', password_env: A, password_file: b}",
     "give password_file or password_env, not both"),
    ("state: {url: 'postgresql://w@h/db', passwd: x}", "passwd"),
    ("state_dir: s\nstate: postgresql://w@h/db", "give state_dir or state, not both"),
])
def test_bad_state_config_is_exit_2_naming_file_and_line(tmp_path: Path, text: str,
                                                         said: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("watches: [{name: m, url: 'http://127.0.0.1:9/api/v1/models', interval: 1h}]\n" + text + "\n")
    proc = run(path, "check")
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr
    assert f"{path}:" in proc.stderr
    assert PASSWORD not in proc.stderr


def test_the_password_comes_from_the_environment_and_is_redacted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_database: config.Database) -> None:
    monkeypatch.setenv("WATCHER_DB_PASSWORD", PASSWORD)
    path = tmp_path / "config.yaml"
    path.write_text(f"state: {{url: '{pg_database.url}', password_env: WATCHER_DB_PASSWORD}}\n"
                    "watches: [{name: m, url: 'http://127.0.0.1:9/api/v1/models', interval: 1h}]\n")
    settings = config.load(path)
    assert settings.database is not None
    assert settings.database.password == PASSWORD
    assert PASSWORD in settings.secrets  # what the log redactor hides
    assert PASSWORD not in repr(settings) + str(settings.database)
    proc = run(path, "once", "--log-level", "debug")  # the watch fails; the state opens
    assert PASSWORD not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    with Store.open(settings.state, readonly=True) as store:
        assert store.last_checks()["m"]["outcome"] == "failed"


def test_a_state_written_by_a_newer_release_is_refused(pg_database: config.Database) -> None:
    import psycopg

    with Store.open(pg_database) as store:
        store.record_check("w", "2026-01-01T00:00:00Z", "unchanged")
    assert pg_database.password is not None
    with psycopg.connect(pg_database.url, password=pg_database.password.reveal(),
                         autocommit=True) as conn:
        conn.execute("UPDATE watcher_schema SET version = 99")
    for readonly in (False, True):
        with pytest.raises(StateError, match=r"written by a newer openrouter-watcher \(schema "
                           rf"99, this one knows {SCHEMA_VERSION}\)"):
            Store.open(pg_database, readonly=readonly)


def test_an_empty_database_has_no_state_for_readers_and_writers_create_it_once(
        pg_database: config.Database) -> None:
    with pytest.raises(StateError, match="no state yet"):
        Store.open(pg_database, readonly=True)
    # Several instances starting together: one creates the schema, the others find it.
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: Store.open(pg_database), range(4)))
    try:
        assert len({s.instance_id() for s in stores}) == 1
        stores[0].record_check("w", "2026-01-01T00:00:00Z", "unchanged")
        assert stores[3].last_checks()["w"]["outcome"] == "unchanged"  # no writer lock
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("pattern", ["*", "z-ai/*", "*:free", "?-ai/glm-4.?", "[a-m]*",
                                     "[^a-m]*", "*[0-9]", "openai/gpt-4o", "OPENAI/*", "a.b*",
                                     "(x)*", "50%*", "*\\*", "*[*]*"])
def test_a_model_glob_selects_on_postgresql_what_it_selects_on_sqlite(
        pg_database: config.Database, tmp_path: Path, pattern: str) -> None:
    models = ["z-ai/glm-4.7", "z-ai/glm-4.6", "openai/gpt-4o", "qwen/qwen3:free", "a.bc",
              "axbc", "(x)y", "50%off", "back\\slash\\", "star*d", "M-upper"]
    found = {}
    for state in (tmp_path / "state", pg_database):
        with Store.open(state) as store:
            store.commit_cycle("w", "2026-01-01T00:00:00Z", None, "changed", [
                make_event(watch="w", type="model_added", model=m,
                           detected_at="2026-01-01T00:00:00Z") for m in models])
            found[str(state)] = [e["model"] for e in store.events(EventQuery(model_glob=pattern))]
    sqlite_found, pg_found = found.values()
    assert pg_found == sqlite_found


def test_translation_of_the_store_dialect() -> None:
    from watcher.pgstate import translate

    assert translate("SELECT a FROM t INDEXED BY t_i WHERE +t.s = ? AND x LIKE '5%'") == (
        "SELECT a FROM t WHERE t.s = %s AND x LIKE '5%%'", False)
    assert translate("SELECT '?' FROM t WHERE a = 1 AND b = 'x%'") == (
        "SELECT '?' FROM t WHERE a = 1 AND b = 'x%'", False)
    assert translate("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)") == (
        "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING", False)
    assert translate("INSERT INTO checks (watch) VALUES (?)") == (
        "INSERT INTO checks (watch) VALUES (%s) RETURNING id", True)
    assert translate("INSERT INTO checks (watch) VALUES (?)", returning=False) == (
        "INSERT INTO checks (watch) VALUES (%s)", False)
    assert translate("SELECT group_concat(d.id) FROM d") == (
        "SELECT string_agg((d.id)::text, ',') FROM d", False)
    assert translate("BEGIN IMMEDIATE") == ("BEGIN", False)
    assert translate("UPDATE o SET attempts = attempts + 1 WHERE id = ?") == (
        "UPDATE o SET attempts = attempts + 1 WHERE id = %s", False)


@pytest.mark.slow
def test_a_daemon_on_postgresql_killed_after_commit_resends_after_restart(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink,
        pg_database: config.Database) -> None:
    """test_daemon's SIGKILL-between-commit-and-send, with the state in PostgreSQL: the
    killed daemon's session ends, the committed alert is sent by the next, once, with the
    same idempotency key."""
    path = daemon_config(tmp_path, fake_openrouter, webhook)
    path.write_text(path.read_text().replace("state_dir: state\n",
                                             state_yaml(pg_database, tmp_path)))

    def a_reader_beside_the_running_daemon() -> None:
        assert output(path, "status").strip()

    logs = assert_resent_once_after_sigkill(path, fake_openrouter, webhook,
                                            beside=a_reader_beside_the_running_daemon)
    assert PASSWORD not in logs
    assert "Traceback" not in logs


def test_a_nul_in_a_model_id_costs_that_id_its_nul_not_the_poll(
        pg_database: config.Database) -> None:
    """PostgreSQL text holds no NUL: the write must not fail (a failed write stops the
    daemon), so the id is stored with U+FFFD in its place; the other models as they are."""
    body = json.dumps({"data": [{"id": "evil/\u0000id", "name": "n\u0000ame"},
                                {"id": "good/model", "name": "Good"}]}).encode()
    snap = snapshot.parse(body)
    with Store.open(pg_database) as store:
        store.commit_cycle("w", "2026-01-01T00:00:00Z", snap, "baseline", [
            make_event(watch="w", type="model_added", model="evil/\u0000id",
                       detected_at="2026-01-01T00:00:00Z")])
        latest = store.latest_snapshot("w")
        assert latest is not None
        assert sorted(latest.models) == ["evil/\ufffdid", "good/model"]
        assert latest.models["evil/\ufffdid"]["name"] == "n\u0000ame"  # JSON keeps it
        assert latest.models["good/model"] == snap.models["good/model"]
        assert [e["model"] for e in store.events()] == ["evil/\u0000id"]  # the JSON body
