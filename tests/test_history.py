"""History you can see: a model's timeline, CSV export, and the account view; each on both
state backends (the ``state`` fixture)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import DATA, FakeOpenRouter, Reply, snapshot_bytes
from tests.pg import state_yaml
from tests.test_cli import cli
from watcher import config, fetch
from watcher.app import App, unavailable_to_account
from watcher.events import Event
from watcher.store import Store


def taken_at(number: int) -> datetime:
    (path,) = DATA.glob(f"{number:03d}_*.json.gz")
    return datetime.strptime(path.name[4:17], "%Y%m%dT%H%M").replace(tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


async def replay_into(tmp_path: Path, server: FakeOpenRouter, steps: list[int],
                      state: Any = None) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(state_yaml(tmp_path / "state" if state is None else state, tmp_path)
                    + f"watches: [{{name: models, url: '{server.url}', "
                    "interval: 1h}]\nexpiring_soon_days: []\n")
    await replay(path, server, steps)
    return path


async def replay(path: Path, server: FakeOpenRouter, steps: list[int]) -> list[Event]:
    """Every step, one cycle each, as `once` runs it, at the time it was taken, with the
    config at ``path``; the events it stored."""
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
        return store.events()
    finally:
        store.close()


async def test_show_prints_every_price_of_a_model_over_time(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, state: Any) -> None:
    path = await replay_into(tmp_path, fake_openrouter, list(range(3, 15)), state)
    proc = cli("show", "z-ai/glm-4.7", "--config", str(path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    (story,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert story["first_seen"] == iso(taken_at(4))
    assert story["present"] is True
    assert [(p["price"], p["at"]) for p in story["prices"]["prompt"]] == [
        ("0.00000011", iso(taken_at(4))), ("0.0000004", iso(taken_at(5))),
        ("0.00000016", iso(taken_at(11))), ("0.0000004", iso(taken_at(14)))]
    assert "image" not in story["prices"]  # never anything but zero
    first = story["events"][0]
    assert (first["type"], first["in_baseline"]) == ("model_added", False)
    text = cli("show", "z-ai/glm-4.7", "--config", str(path)).stdout
    assert "prompt / 1M prompt tokens: $0.11 since 2025-12-22, $0.40 since 2025-12-29" in text
    assert f"{iso(taken_at(11))}  $0.40 -> $0.16 / 1M prompt tokens (-60%)" in text


async def test_show_tells_removals_and_returns(tmp_path: Path,
                                               fake_openrouter: FakeOpenRouter, state: Any) -> None:
    path = await replay_into(tmp_path, fake_openrouter, [18, 19, 20, 21, 22], state)
    proc = cli("show", "qwen/qwen-max", "--config", str(path), "--format", "json")
    (story,) = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [(e["type"], e["detected_at"]) for e in story["events"]
             if e["type"] in ("model_added", "model_removed")]
    assert kinds == [("model_added", iso(taken_at(18))), ("model_removed", iso(taken_at(20))),
                     ("model_added", iso(taken_at(22)))]
    assert story["events"][0]["in_baseline"] is True
    text = cli("show", "qwen/qwen-max", "--config", str(path)).stdout
    assert "present when watching started" in text
    assert "removed from OpenRouter" in text
    missing = cli("show", "no/such-model", "--config", str(path))
    assert missing.returncode == 1
    assert "no stored snapshot has a model 'no/such-model'" in missing.stderr


async def test_history_csv_is_for_spreadsheets(tmp_path: Path,
                                                fake_openrouter: FakeOpenRouter, state: Any) -> None:
    path = await replay_into(tmp_path, fake_openrouter, [10, 11], state)
    rows = list(csv.DictReader(io.StringIO(
        cli("history", "--format", "csv", "--config", str(path)).stdout)))
    events = [json.loads(line) for line in
              cli("history", "--format", "json", "--config", str(path)).stdout.splitlines()]
    assert len(rows) == len(events) == 42
    glm = next(r for r in rows if r["model"] == "z-ai/glm-4.7" and r["field"] == "pricing.prompt")
    assert (glm["old"], glm["new"], glm["change_pct"], glm["type"]) == (
        "0.0000004", "0.00000016", "-60.0", "price_changed")
    removed = next(r for r in rows if r["type"] == "model_removed")
    assert json.loads(removed["old"])["context_length"] > 0
    assert removed["new"] == ""


@pytest.fixture
def account_config(tmp_path: Path, fake_openrouter: FakeOpenRouter, state: Any) -> Path:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: r, on: [model_removed, model_unavailable_to_account], "
        "notify: [console]}\n")
    path = tmp_path / "config.yaml"
    path.write_text(state_yaml(state, tmp_path) + f"""
watches:
  - {{name: models, url: "{fake_openrouter.url}", interval: 1h}}
  - {{name: my-models, url: "{fake_openrouter.url}/user", interval: 1h, api_key_env: KEY}}
targets: {{console: "console://"}}
rules: [rules.yaml]
""")
    return path


def without(number: int, *ids: str) -> Reply:
    doc = json.loads(snapshot_bytes(number))
    doc["data"] = [m for m in doc["data"] if m["id"] not in ids]
    return Reply(body=json.dumps(doc).encode())


async def test_models_the_account_loses_are_not_reported_as_removed_from_openrouter(
        account_config: Path, fake_openrouter: FakeOpenRouter, monkeypatch) -> None:
    monkeypatch.setenv("KEY", "sk-or-v1-test")
    settings = config.load(account_config)
    store = Store.open(settings.state)
    async with fetch.new_session() as session:
        app = App(settings, store, session)
        public, mine = settings.watches
        fake_openrouter.set_script([10])
        fake_openrouter.user_reply = without(10, "openai/gpt-4o")
        await app.cycle(public)
        await app.cycle(mine)
        assert unavailable_to_account(app) == {"my-models": ["openai/gpt-4o"]}
        # The account loses z-ai/glm-4.7 (OpenRouter still lists it); OpenRouter itself drops
        # three models (010 -> 011), which both lists lose.
        fake_openrouter.set_script([11])
        fake_openrouter.user_reply = without(11, "openai/gpt-4o", "z-ai/glm-4.7")
        await app.cycle(public)
        result = await app.cycle(mine)
        app.close()
    store.close()
    kinds = {(e["type"], e["model"]) for e in result.events
             if e["type"] in ("model_removed", "model_unavailable_to_account")}
    assert kinds == {
        ("model_unavailable_to_account", "z-ai/glm-4.7"),
        ("model_removed", "tngtech/tng-r1t-chimera:free"),
        ("model_removed", "alibaba/tongyi-deepresearch-30b-a3b:free"),
        ("model_removed", "arliai/qwq-32b-arliai-rpr-v1"),
    }
    assert len(result.alerts) == 4
