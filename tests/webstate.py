"""A real state for the web tests and the screenshots: real snapshots replayed through App.

Two watches, as an operator with an API key would have them: ``models`` (the public list,
every bundled snapshot) and ``my-models`` (the account's list, which lacks a few models).
A hostile model is slipped into the last two public snapshots: its name, description and
a pricing key are markup, so every page has untrusted text to escape.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.fakes import DATA, FakeOpenRouter, Reply, snapshot_bytes
from tests.test_history import taken_at
from watcher import config, fetch
from watcher.app import App, unavailable_to_account
from watcher.store import Store

STEPS = len(list(DATA.glob("*.json.gz")))
EVIL_ID = "evil/<script>x:free"
EVIL_NAME = '<script>alert("name")</script> & Co'
EVIL_DESCRIPTION = "<img src=x onerror=alert(1)>"
EVIL_KEY = "<b>key</b>"
API_KEY = "sk-or-v1-CANARYWEBKEY0001"
HOOK_TOKEN = "CANARYWEBHOOK0002"
NOT_FOR_ACCOUNT = ("openai/gpt-4o", "z-ai/glm-4.7")


def evil_model(prompt: str) -> dict[str, object]:
    return {"id": EVIL_ID, "name": EVIL_NAME, "description": EVIL_DESCRIPTION,
            "context_length": 4096, "created": 1,
            "pricing": {"prompt": prompt, "completion": "0.000001", EVIL_KEY: "0.5"}}


def step_reply(step: int, *, evil: bool, drop: tuple[str, ...] = ()) -> Reply:
    doc = json.loads(snapshot_bytes(step))
    doc["data"] = [m for m in doc["data"] if m["id"] not in drop]
    if evil:
        doc["data"].append(evil_model("0.000001" if step < STEPS - 1 else "0.000002"))
    return Reply(body=json.dumps(doc).encode())


def write_config(root: Path, server: FakeOpenRouter) -> Path:
    path = root / "config.yaml"
    path.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{server.url}", interval: 1h}}
  - {{name: my-models, url: "{server.url}/user", interval: 1h, api_key_env: WEB_TEST_KEY}}
targets:
  hook: "json://127.0.0.1:9/hook/{HOOK_TOKEN}"
rules: []
expiring_soon_days: []
""")
    return path


async def replay(root: Path, steps: range | list[int] = range(STEPS), *, hostile: bool = True
                 ) -> tuple[Path, dict[str, list[str]]]:
    """Replay ``steps`` into ``root/state``; returns the config and the account view."""
    server = FakeOpenRouter().start()
    try:
        root.mkdir(parents=True, exist_ok=True)
        path = write_config(root, server)
        settings = config.load(path)
        store = Store.open(settings.state_dir)
        now = [taken_at(steps[0])]
        async with fetch.new_session() as session:
            app = App(settings, store, session, clock=lambda: now[0])
            public, mine = settings.watches
            for index, step in enumerate(steps):
                now[0] = taken_at(step)
                evil = hostile and step >= STEPS - 2
                server.set_script([step_reply(step, evil=evil)])
                await app.cycle(public)
                if index >= len(steps) - 2:  # the account watch starts late: a short history
                    server.user_reply = step_reply(step, evil=evil, drop=NOT_FOR_ACCOUNT)
                    await app.cycle(mine)
            account = unavailable_to_account(app)
            app.close()
        store.close()
    finally:
        server.stop()
    return path, account


def build(root: Path, steps: range | list[int] = range(STEPS), *, hostile: bool = True
          ) -> tuple[Path, dict[str, list[str]]]:
    """:func:`replay` from synchronous code (module fixtures, scripts)."""
    return asyncio.run(replay(root, steps, hostile=hostile))
