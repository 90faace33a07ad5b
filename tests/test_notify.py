"""Rules and notifications end to end: real webhook sink, real SMTP server, real SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fakes import FakeOpenRouter
from tests.sinks import SMTPServer, WebhookSink, mail_text
from tests.test_cli import cli
from watcher import config, fetch
from watcher.app import App
from watcher.config import RetryPolicy
from watcher.store import Store

FAST = RetryPolicy(attempts=1)


class Clock:
    """A settable UTC clock for in-process apps."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 4, 19, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


def write(tmp_path: Path, server: FakeOpenRouter, targets: str, rules: str,
          extra: str = "") -> Path:
    (tmp_path / "rules.yaml").write_text(rules)
    path = tmp_path / "config.yaml"
    path.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{server.url}", interval: 1m, timeout: 5s}}
targets:
{targets}
rules: [rules.yaml]
delivery: {{retry_backoff: 0.05s, max_backoff: 0.2s}}
{extra}
""")
    return path


async def replay(app: App, server: FakeOpenRouter, steps: list[int], clock: Clock) -> None:
    for step in steps:
        server.set_script([step])
        await app.cycle(app.settings.watches[0])
        await app.deliverer.drain()
        clock.advance(hours=1)


async def open_app(path: Path, clock: Clock) -> tuple[App, Store]:
    settings = config.load(path)
    store = Store.open(settings.state_dir)
    session = fetch.new_session()
    return App(settings, store, session, clock=clock, retry=FAST), store


async def close_app(app: App, store: Store) -> None:
    await app.session.close()
    app.close()
    store.close()


async def test_webhook_and_email_get_what_their_rules_select(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink,
        smtp: SMTPServer) -> None:
    path = write(tmp_path, fake_openrouter,
                 f"  hook: {webhook.url()}\n  mail: {smtp.url()}",
                 "rules:\n"
                 "  - {name: prices, on: [price_changed], notify: [hook]}\n"
                 "  - {name: catalogue, on: [model_added, model_removed], notify: [mail]}\n")
    clock = Clock()
    app, store = await open_app(path, clock)
    try:
        await replay(app, fake_openrouter, [10, 11], clock)
    finally:
        await close_app(app, store)

    (hook,) = webhook.delivered
    message = hook.message
    assert {e["type"] for e in message["events"]} == {"price_changed"}
    assert len(message["events"]) == 23
    glm = next(e for e in message["events"] if e["model"] == "z-ai/glm-4.7" and e["field"] == "pricing.prompt")
    assert (glm["old"], glm["new"], glm["change_pct"]) == ("0.0000004", "0.00000016", -60.0)
    assert hook.payload["title"] == "OpenRouter models: 11 price changes"
    assert hook.headers["Idempotency-Key"] == message["idempotency_key"]

    (mail,) = smtp.messages
    assert mail["Subject"] == "OpenRouter models: 3 removed"
    text = mail_text(mail)
    for model in ("tngtech/tng-r1t-chimera:free", "alibaba/tongyi-deepresearch-30b-a3b:free",
                  "arliai/qwq-32b-arliai-rpr-v1"):
        assert model in text
    assert "glm-4.7" not in text
    assert "price" not in text.lower()


async def test_smtp_with_auth(tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    server = SMTPServer(user="watcher", password="smtp-canary-pass-77").start()
    try:
        path = write(tmp_path, fake_openrouter, f"  mail: {server.url()}",
                     "rules:\n  - {name: exp, on: [expiration_set], notify: [mail]}\n")
        clock = Clock(datetime(2026, 1, 20, 21, 0, tzinfo=UTC))
        app, store = await open_app(path, clock)
        try:
            await replay(app, fake_openrouter, [24, 25], clock)
        finally:
            await close_app(app, store)
        (mail,) = server.messages
        assert server.logins == ["watcher"]
        assert mail["Subject"] == "OpenRouter models: 1 expiring"
        assert "mistralai/devstral-2512:free" in mail_text(mail)
        assert "expires 2026-01-27 (7 days left)" in mail_text(mail)
    finally:
        server.stop()


async def test_failing_target_is_retried_once_delivered_and_does_not_delay_others(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, smtp: SMTPServer) -> None:
    sink = WebhookSink(fail_first=3).start()
    try:
        path = write(tmp_path, fake_openrouter, f"  hook: {sink.url()}\n  mail: {smtp.url()}",
                     "rules:\n  - {name: exp, on: [expiration_set], notify: [hook, mail]}\n")
        settings = config.load(path)
        store = Store.open(settings.state_dir)
        async with fetch.new_session() as session:
            app = App(settings, store, session, retry=FAST)
            fake_openrouter.set_script([24])
            await app.cycle(settings.watches[0])
            fake_openrouter.set_script([25])
            stop = asyncio.Event()
            runner = asyncio.create_task(app.deliverer.run(stop))
            await app.cycle(settings.watches[0])
            app.deliverer.poke()
            for _ in range(200):
                if sink.delivered:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await runner
            await app.deliverer.wait_inflight()
            app.close()
        assert [r.status for r in sink.requests] == [500, 500, 500, 200]
        keys = {r.headers["Idempotency-Key"] for r in sink.requests}
        assert len(keys) == 1  # every attempt is the same message
        assert len(smtp.messages) == 1
        status = store.outbox_status()
        assert status["hook"]["sent"] == 1
        assert status["hook"]["pending"] == 0
        assert status["mail"]["sent"] == 1
        store.close()
    finally:
        sink.stop()


async def test_a_message_that_stays_undeliverable_is_dead_lettered(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    sink = WebhookSink(fail_first=10_000, fail_status=404).start()
    try:
        path = write(tmp_path, fake_openrouter, f"  hook: {sink.url()}",
                     "rules:\n  - {name: exp, on: [expiration_set], notify: [hook]}\n",
                     extra="")
        clock = Clock()
        app, store = await open_app(path, clock)
        try:
            await replay(app, fake_openrouter, [24, 25], clock)
            assert store.outbox_status()["hook"]["pending"] == 1
            clock.advance(hours=25)  # past the 24 h maximum age
            await app.deliverer.drain()
            status = store.outbox_status()["hook"]
            assert (status["pending"], status["dead"], status["sent"]) == (0, 1, 0)
        finally:
            await close_app(app, store)
    finally:
        sink.stop()


async def test_default_rules_send_at_most_one_message_per_target_per_cycle(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    rules = (Path(__file__).parent.parent / "rules" / "default.yaml").read_text()
    path = write(tmp_path, fake_openrouter, f"  console: {webhook.url()}", rules)
    clock = Clock(datetime(2026, 1, 14, tzinfo=UTC))
    app, store = await open_app(path, clock)
    steps = list(range(14, 30))
    try:
        for step in steps:
            before = len(webhook.delivered)
            fake_openrouter.set_script([step])
            result = await app.cycle(app.settings.watches[0])
            await app.deliverer.drain()
            got = len(webhook.delivered) - before
            assert got == (1 if result.alerts else 0), step
            clock.advance(hours=6)
    finally:
        await close_app(app, store)
    assert len(webhook.delivered) >= 10


async def test_min_change_pct_lets_through_exactly_the_changes_of_10_percent_or_more(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    path = write(tmp_path, fake_openrouter, f"  hook: {webhook.url()}",
                 "rules:\n  - {name: big, on: [price_changed], min_change_pct: 10, notify: [hook]}\n")
    clock = Clock()
    app, store = await open_app(path, clock)
    try:
        await replay(app, fake_openrouter, [10, 11], clock)
    finally:
        await close_app(app, store)
    all_prices = [e for e in store_events(tmp_path) if e["type"] == "price_changed"]
    expected = {(e["model"], e["field"]) for e in all_prices
                if (e["change_pct"] is not None and abs(e["change_pct"]) >= 10)
                or (e["old"] == "0" and e["new"] != "0")}
    (hook,) = webhook.delivered
    sent = {(e["model"], e["field"]) for e in hook.message["events"]}
    assert sent == expected
    assert ("moonshotai/kimi-k2", "pricing.prompt") not in sent  # +9.6%
    assert ("deepseek/deepseek-chat-v3-0324", "pricing.prompt") not in sent  # -5%
    assert ("moonshotai/kimi-k2", "pricing.completion") in sent  # +30.4%


def store_events(tmp_path: Path) -> list[dict]:
    with Store.open(tmp_path / "state") as store:
        return store.events()


async def test_settle_window_drops_flaps_and_sends_what_holds(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    path = write(tmp_path, fake_openrouter, f"  hook: {webhook.url()}",
                 "rules:\n  - {name: calm, on: [price_changed], settle: 2h, notify: [hook]}\n")
    clock = Clock(datetime(2026, 1, 1, 8, 0, tzinfo=UTC))
    app, store = await open_app(path, clock)
    try:
        # 007 -> 008 -> 009 flaps 15 models there and back, one hour apart: nothing is sent.
        await replay(app, fake_openrouter, [7, 8, 9], clock)
        assert webhook.delivered == []
        # 009 -> 010 changes them again, and it holds: sent once the window has passed.
        fake_openrouter.set_script([10])
        result = await app.cycle(app.settings.watches[0])
        await app.deliverer.drain()
        assert webhook.delivered == []
        clock.advance(hours=2, minutes=1)
        await app.deliverer.drain()
    finally:
        await close_app(app, store)
    (hook,) = webhook.delivered
    sent = {(e["model"], e["field"], e["new"]) for e in hook.message["events"]}
    expected = {(e["model"], e["field"], e["new"]) for e in result.events
                if e["type"] == "price_changed"}
    assert sent == expected
    status = store_status(tmp_path)
    assert status["hook"]["cancelled"] > 0


def store_status(tmp_path: Path) -> dict:
    with Store.open(tmp_path / "state") as store:
        return store.outbox_status()


async def test_expiring_soon_reminds_once_per_threshold(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    path = write(tmp_path, fake_openrouter, f"  hook: {webhook.url()}",
                 "rules:\n  - {name: soon, on: [expiring_soon], models: ['mistralai/*'], notify: [hook]}\n")
    clock = Clock(datetime(2026, 1, 19, 12, 0, tzinfo=UTC))
    app, store = await open_app(path, clock)
    try:
        await replay(app, fake_openrouter, [25, 25], clock)     # baseline; 8 days left: nothing
        assert webhook.delivered == []
        clock.now = datetime(2026, 1, 21, 12, 0, tzinfo=UTC)      # 6 days left: the 7-day reminder
        await replay(app, fake_openrouter, [25, 25, 25], clock)
        assert len(webhook.delivered) == 1
        clock.now = datetime(2026, 1, 26, 12, 0, tzinfo=UTC)      # 1 day left: the 1-day reminder
        await replay(app, fake_openrouter, [25, 25], clock)
    finally:
        await close_app(app, store)
    days = [hook.message["events"][0]["days_left"] for hook in webhook.delivered]
    assert days == [6, 1]
    assert all(h.message["events"][0]["model"] == "mistralai/devstral-2512:free"
               for h in webhook.delivered)


def test_test_notify_reports_each_target(tmp_path: Path, fake_openrouter: FakeOpenRouter,
                                         webhook: WebhookSink, smtp: SMTPServer) -> None:
    missing = WebhookSink(fail_first=10, fail_status=404).start()
    try:
        path = write(tmp_path, fake_openrouter,
                     f"  hook: {webhook.url()}\n  mail: {smtp.url()}\n  gone: {missing.url()}",
                     "rules: []\n")
        ok = cli("test-notify", "hook", "mail", "--config", str(path))
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "hook: delivered" in ok.stdout
        assert "mail: delivered" in ok.stdout
        assert len(webhook.delivered) == 1
        assert len(smtp.messages) == 1
        bad = cli("test-notify", "--config", str(path))
        assert bad.returncode == 1
        assert "gone: FAILED" in bad.stdout
        assert "test message failed for: gone" in bad.stderr
        assert missing.requests
        assert missing.requests[0].status == 404
    finally:
        missing.stop()


def test_once_dry_run_shows_messages_and_changes_nothing(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    path = write(tmp_path, fake_openrouter, f"  hook: {webhook.url('json')}\n  console: console://",
                 "rules:\n  - {name: exp, on: [expiration_set], notify: [console, hook]}\n")
    fake_openrouter.set_script([24])
    assert cli("once", "--config", str(path)).returncode == 0
    db = tmp_path / "state" / "openrouter-watcher.sqlite3"
    before = sqlite3.connect(db).execute("SELECT COUNT(*) FROM checks").fetchone()
    fake_openrouter.set_script([25])
    dry = cli("once", "--dry-run", "--config", str(path))
    assert dry.returncode == 0, dry.stderr
    assert "rule 'exp' -> console: Mistral: Devstral 2 2512 (free)" in dry.stdout
    assert "--- console would get (text) ---\nOpenRouter models: 1 expiring" in dry.stdout
    assert "--- hook would get (json) ---" in dry.stdout
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM checks").fetchone() == before
    assert webhook.requests == []
    # The real run afterwards still finds and sends the change.
    real = cli("once", "--config", str(path))
    assert "=== OpenRouter models: 1 expiring ===" in real.stdout
    assert len(webhook.delivered) == 1
    status = cli("status", "--config", str(path))
    assert "target hook: 1 sent, 0 pending, 0 dead-lettered" in status.stdout
    assert "watch models: last check" in status.stdout


def test_rule_and_target_templates(tmp_path: Path, fake_openrouter: FakeOpenRouter,
                                   webhook: WebhookSink) -> None:
    (tmp_path / "config.yaml")
    path = write(tmp_path, fake_openrouter,
                 f"  hook:\n    url: {webhook.url()}\n    format: text\n"
                 "    title: 'Catalogue: {{ count }} alerts'\n",
                 "rules:\n  - name: exp\n    on: [expiration_set]\n    notify: [hook]\n"
                 "    body: '{% for e in events %}{{ e.model }} expires {{ e.new }}\n{% endfor %}'\n")
    fake_openrouter.set_script([24])
    cli("once", "--config", str(path))
    fake_openrouter.set_script([25])
    assert cli("once", "--config", str(path)).returncode == 0
    (hook,) = webhook.delivered
    assert hook.payload["title"] == "Catalogue: 1 alerts"
    assert hook.payload["message"].strip() == "mistralai/devstral-2512:free expires 2026-01-27"


RULES_BAD = sorted((Path(__file__).parent / "rules" / "bad").glob("*.yaml"))


@pytest.mark.parametrize("path", RULES_BAD, ids=lambda p: p.stem)
def test_bad_rule_file_is_rejected_with_file_line_and_key(path: Path) -> None:
    import re

    from watcher.errors import ConfigError
    from watcher.rules.load import load_rule_files

    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(ConfigError) as caught:
        load_rule_files([path], targets={"team", "console"}, watches={"models"})
    assert re.search(expected, str(caught.value)), str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_there_is_a_rule_fixture_for_each_error() -> None:
    assert len(RULES_BAD) >= 10


async def test_the_delivery_loop_is_quiet_while_a_send_is_in_flight(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    webhook.stall = True
    path = write(tmp_path, fake_openrouter, f"  hook: {webhook.url()}",
                 "rules:\n  - {name: exp, on: [expiration_set], notify: [hook]}\n")
    app, store = await open_app(path, Clock())
    try:
        await replay_cycles(app, fake_openrouter, [24, 25])
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)  # observe the SQL, change nothing
        stop = asyncio.Event()
        runner = asyncio.create_task(app.deliverer.run(stop))
        for _ in range(100):
            if webhook.requests:
                break
            await asyncio.sleep(0.02)
        statements.clear()
        await asyncio.sleep(1.5)  # the send hangs all along
        outbox_reads = [s for s in statements if "FROM outbox" in s]
        stop.set()
        await runner
        assert webhook.requests
        assert len(outbox_reads) <= 2, outbox_reads
    finally:
        await close_app(app, store)


async def replay_cycles(app: App, server: FakeOpenRouter, steps: list[int]) -> None:
    for step in steps:
        server.set_script([step])
        await app.cycle(app.settings.watches[0])
