"""The outbox keeps the rule templates a message renders with (schema 8): a message is
rendered as it was queued, whatever the rules say by the time it is sent."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.fakes import FakeOpenRouter
from tests.sinks import WebhookSink
from tests.test_notify import Clock, close_app, open_app, write
from watcher import config
from watcher.store import DB_NAME

RULES = ("rules:\n"
         "  - name: prices\n"
         "    on: [price_changed]\n"
         "    notify: [hook]\n"
         "    title: 'queued: {{ count }} price changes'\n")


async def queue_a_change(tmp_path: Path, server: FakeOpenRouter, hook: WebhookSink,
                         rules: str) -> tuple[Path, Clock]:
    """A baseline (010) and a change (011) recorded, its message queued and not sent."""
    path = write(tmp_path, server, f"  hook:\n    url: {hook.url()}\n    format: text\n", rules)
    clock = Clock()
    app, store = await open_app(path, clock)
    try:
        for step in (10, 11):
            server.set_script([step])
            assert (await app.cycle(app.settings.watches[0])).outcome in ("baseline", "changed")
    finally:
        await close_app(app, store)
    return path, clock


def outbox(path: Path) -> list[tuple[str, str | None, str | None]]:
    state = config.load(path).state_dir
    with sqlite3.connect(state / DB_NAME) as conn:
        return conn.execute("SELECT state, title_tpl, last_error FROM outbox ORDER BY id").fetchall()


async def send(path: Path, clock: Clock) -> None:
    app, store = await open_app(path, clock)
    try:
        await app.send_due()
    finally:
        await close_app(app, store)


async def test_a_message_renders_with_the_template_it_was_queued_with(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    path, clock = await queue_a_change(tmp_path, fake_openrouter, webhook, RULES)
    assert {row[1] for row in outbox(path)} == {"queued: {{ count }} price changes"}
    # The rule's template is edited before the message goes out.
    (tmp_path / "rules.yaml").write_text(RULES.replace("queued:", "edited:"))
    await send(path, clock)
    (received,) = webhook.delivered
    assert received.payload["title"].startswith("queued: ")
    assert {row[0] for row in outbox(path)} == {"sent"}


async def test_a_queued_template_refused_at_render_is_dead_lettered_with_its_reason(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    path, clock = await queue_a_change(tmp_path, fake_openrouter, webhook, RULES)
    state = config.load(path).state_dir
    with sqlite3.connect(state / DB_NAME) as conn:  # as a damaged or hand-edited row would be
        conn.execute("UPDATE outbox SET title_tpl = ?", ("x" * 20_000,))
    await send(path, clock)
    assert webhook.delivered == []
    rows = outbox(path)
    assert {row[0] for row in rows} == {"dead"}
    assert all("the template of rule 'prices', as queued, is refused" in (row[2] or "")
               for row in rows)
