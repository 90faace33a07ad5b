"""The state in PostgreSQL: a real server (tests/pg.py), the same replays as SQLite, the
config and start-up errors, and ``migrate-state`` both ways.

The store's own behaviour is tested on both backends by the store test files (their
``state`` fixture); this file holds what is about PostgreSQL itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.fakes import DATA, FakeOpenRouter
from tests.pg import PASSWORD, state_yaml
from tests.test_cli import cli
from tests.test_history import taken_at
from watcher import config, fetch
from watcher.app import App
from watcher.store import Store

STEPS = sorted(int(p.name[:3]) for p in DATA.glob("*.json.gz"))


def write_config(folder: Path, server: FakeOpenRouter, state: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(state_yaml(state, folder) + f"watches: [{{name: models, url: '{server.url}', "
                    "interval: 1h}]\nexpiring_soon_days: []\n")
    return path


async def replay(path: Path, server: FakeOpenRouter, steps: list[int]) -> None:
    """Every step, one cycle each, as `once` runs it, at the time it was taken."""
    settings = config.load(path)
    store = Store.open(settings.state)
    now = [taken_at(steps[0])]
    try:
        async with fetch.new_session() as session:
            app = App(settings, store, session, clock=lambda: now[0])
            for step in steps:
                now[0] = taken_at(step)
                server.set_script([step])
                await app.cycle(settings.watches[0])
            app.close()
    finally:
        store.close()


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
