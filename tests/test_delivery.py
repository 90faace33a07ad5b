"""The delivery path under stress: a full disk, broken stored rows, clock steps, dead
targets.  Real SQLite, real Apprise, real loopback sinks, real daemon processes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from tests.daemon import Daemon, wait_for
from tests.fakes import FakeOpenRouter, Reply, _free_port
from tests.sinks import Received, WebhookSink
from tests.test_cli import cli
from tests.test_notify import FAST, Clock, close_app, open_app, write
from watcher import fetch
from watcher.app import App
from watcher.config import Target, url_secrets
from watcher.config import load as load_config
from watcher.log import Redactor
from watcher.notify.deliver import AppriseSender
from watcher.notify.render import Message
from watcher.store import Store


class DiskFillingSink(WebhookSink):
    """A webhook that fills ``disk`` to the last byte before it answers its first request
    (with 500 if ``fail_first``): the state then cannot record what became of the send.

    SQLite in WAL mode appends every transaction to the -wal file, which only a checkpoint
    rewinds (at 1,000 pages, more than this disk holds): on a full disk each write needs new
    pages and fails with SQLITE_FULL ("database or disk is full"), while reads still work.
    A new connection cannot even open the database there ("disk I/O error")."""

    def __init__(self, disk: Path, fail_first: int = 0) -> None:
        super().__init__(fail_first=fail_first)
        self.filler = disk / "filler"

    async def _hook(self, request: web.Request) -> web.Response:
        if not self.requests:
            fill(self.filler)
        return await super()._hook(request)


def fill(path: Path) -> None:
    """Write ``path`` until the file system has not one byte left."""
    with path.open("wb", buffering=0) as out:
        for size in (1 << 16, 1 << 12, 1):
            chunk = b"\0" * size
            try:
                while True:
                    out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise


@contextlib.contextmanager
def small_disk(where: Path, size: str = "2m") -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``where`` (root only: CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs the suite as root)")
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def said(request: Received) -> str:
    """All a webhook request carried, as text (the notice is somewhere in it)."""
    return json.dumps(request.payload)


def logs_of(daemon: Daemon) -> list[dict]:
    return [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]


@pytest.mark.parametrize(("answer", "unrecorded"), [
    (200, "was sent but cannot be recorded"), (500, "a failed send cannot be recorded")])
def test_a_full_disk_after_a_send_stops_the_target_and_resumes_without_resending(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink, answer: int,
        unrecorded: str) -> None:
    with small_disk(tmp_path / "state") as disk:
        hook = DiskFillingSink(disk, fail_first=1 if answer == 500 else 0).start()
        port = _free_port()
        try:
            (tmp_path / "rules.yaml").write_text(
                "rules:\n  - {name: exp, on: [expiration_set], notify: [hook]}\n")
            config = tmp_path / "config.yaml"
            config.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{fake_openrouter.url}", interval: 1h, timeout: 5s}}
targets:
  hook: {hook.url()}
  ops: {webhook.url()}
operator: {{notify: [ops]}}
rules: [rules.yaml]
delivery: {{retry_backoff: 0.2s, max_backoff: 1s, stop_grace: 1s}}
http: {{listen: "127.0.0.1:{port}"}}
""")
            fake_openrouter.set_script([24])
            assert cli("once", "--config", str(config)).returncode == 0  # the baseline
            fake_openrouter.set_script([25])  # the daemon's first poll finds one expiry
            daemon = Daemon(config, log_level="debug").start()  # debug: each retry is logged
            try:
                wait_for(lambda: "notify.target_stopped" in daemon.logs(), what="the stop")
                (stopped,) = [e for e in logs_of(daemon) if e["event"] == "notify.target_stopped"]
                assert stopped["level"] == "error"
                assert stopped["target"] == "hook"
                assert unrecorded in stopped["reason"]
                assert "database or disk is full" in stopped["reason"]
                status, body = healthz(port)
                assert status == 200  # liveness: a restart would free no disk space
                assert body["status"] == "degraded"
                assert any(w.startswith("target hook: stopped since") for w in body["warnings"])
                wait_for(lambda: any("hook is stopped" in said(r) for r in webhook.requests),
                         what="the operator notice")
                # The record is retried (every second at most here) and nothing is resent.
                wait_for(lambda: daemon.logs().count("notify.still_stopped") >= 2
                         or len(hook.requests) > 1, what="retries of the record")
                assert len(hook.requests) == 1
                hook.filler.unlink()  # the disk has room again
                wait_for(lambda: "notify.target_resumed" in daemon.logs(), what="the resume")
                wait_for(lambda: hook.delivered, what="the message delivered")
                status, body = healthz(port)
                assert (status, body["status"], body["warnings"]) == (200, "ok", [])
                assert daemon.stop() == 0
            finally:
                if daemon.proc and daemon.proc.poll() is None:
                    daemon.kill()
            # Sent once; or, when that send failed, retried once after the disk had room.
            assert [r.status for r in hook.requests] == ([200] if answer == 200 else [500, 200])
            assert len({r.headers["Idempotency-Key"] for r in hook.requests}) == 1
            (sent,) = hook.delivered
            assert sent.message["events"][0]["model"] == "mistralai/devstral-2512:free"
            status_cmd = cli("status", "--config", str(config))
            assert status_cmd.returncode == 0, status_cmd.stdout + status_cmd.stderr
            assert "target hook: 1 sent, 0 pending, 0 dead-lettered" in status_cmd.stdout
        finally:
            hook.stop()


class SlowFailingSink(WebhookSink):
    """Answers every request with ``status`` after ``delay`` seconds."""

    def __init__(self, status: int, delay: float = 0.0) -> None:
        super().__init__(fail_first=10**9, fail_status=status)
        self.delay = delay

    async def _hook(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay)
        return await super()._hook(request)


async def test_sends_failing_at_once_keep_their_own_reasons() -> None:
    slow = SlowFailingSink(500, delay=0.5).start()
    try:
        with ThreadPoolExecutor(max_workers=4) as executor:
            team = AppriseSender(Target(name="team", url=slow.url()), executor)
            typo = AppriseSender(Target(name="typo", url="slak://T000/B000/XXXX"), executor)
            message = Message(title="t", body='{"idempotency_key": "k", "events": []}',
                              format="json", key="k")

            async def after_a_while() -> None:
                await asyncio.sleep(0.2)  # while team's send is in flight
                await typo.send(message)

            results = await asyncio.gather(team.send(message), after_a_while(),
                                           return_exceptions=True)
        team_error, typo_error = (str(r) for r in results)
        assert slow.requests  # team's send really was in flight
        assert "500" in team_error
        assert "Unparseable" not in team_error
        assert "slak" not in team_error
        assert "is not a URL Apprise can send to" in typo_error
        assert "500" not in typo_error
    finally:
        slow.stop()


def dead_letter_config(tmp_path: Path, server: FakeOpenRouter, hook: WebhookSink,
                       other: WebhookSink, ops: WebhookSink) -> Path:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: exp, on: [expiration_set], notify: [hook, other]}\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{server.url}", interval: 1h, timeout: 5s}}
targets:
  hook: {hook.url()}
  other: {other.url()}
  ops: {ops.url()}
operator: {{notify: [hook, other, ops]}}
rules: [rules.yaml]
delivery: {{max_age: 1s, retry_backoff: 0.05s, max_backoff: 0.1s, stop_grace: 1s}}
""")
    return config


def test_dead_letters_are_told_shown_with_their_own_reason_and_resent(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    hook = WebhookSink(fail_first=10**9, fail_status=404).start()
    other = SlowFailingSink(500, delay=0.5).start()
    try:
        config = dead_letter_config(tmp_path, fake_openrouter, hook, other, webhook)
        fake_openrouter.set_script([24])
        assert cli("once", "--config", str(config)).returncode == 0
        fake_openrouter.set_script([25])
        assert cli("once", "--config", str(config)).returncode == 0  # the alerts fail
        time.sleep(1.2)  # past delivery.max_age
        second = cli("once", "--config", str(config))
        assert second.returncode == 0, second.stderr
        assert "notify.dead_lettered" in second.stderr

        # Each dead target is an operator notice to the other operator targets only.
        notices = [said(r) for r in webhook.requests]
        assert any("for target hook were dead-lettered" in n for n in notices), notices
        assert any("for target other were dead-lettered" in n for n in notices), notices
        assert not any("for target hook" in said(r) for r in hook.requests)
        assert any("for target hook" in said(r) for r in other.requests)

        status = cli("status", "--config", str(config))
        assert status.returncode == 1
        lines = {line.split(":")[0]: line for line in status.stdout.splitlines()}
        assert "0 sent, 0 pending, 1 dead-lettered" in lines["target hook"]
        assert "404" in lines["target hook"]
        assert "500" not in lines["target hook"]
        assert "500" in lines["target other"]
        assert "404" not in lines["target other"]
        assert "resend" in status.stderr
        as_json = cli("status", "--config", str(config), "--format", "json")
        assert as_json.returncode == 1
        assert json.loads(as_json.stdout)["targets"]["hook"]["dead"] == 1

        # Without a daemon, resend sends at once; one that fails again is dead again.
        again = cli("resend", "other", "--config", str(config))
        assert again.returncode == 1, again.stdout + again.stderr
        assert "target other: 1 dead letter(s) resent: 0 sent, 1 dead-lettered again" in again.stdout

        # Beside a running daemon, resend puts them back and the daemon sends them.
        hook.fail_first = 0
        failed_key = hook.requests[0].headers["Idempotency-Key"]
        daemon = Daemon(config).start()
        try:
            daemon.wait_started()
            beside = cli("resend", "hook", "--since", "1h", "--config", str(config))
            assert beside.returncode == 0, beside.stdout + beside.stderr
            assert "target hook: 1 dead letter(s) put back in the outbox" in beside.stdout
            assert "a daemon is running" in beside.stdout
            wait_for(lambda: hook.delivered, what="the resent message")
            assert daemon.stop() == 0
        finally:
            if daemon.proc and daemon.proc.poll() is None:
                daemon.kill()
        (delivered,) = hook.delivered
        assert delivered.headers["Idempotency-Key"] == failed_key  # the same message
        assert delivered.message["events"][0]["model"] == "mistralai/devstral-2512:free"

        assert cli("status", "--config", str(config)).returncode == 1  # other's dead letter
        future = cli("resend", "other", "--drop", "--since", "2999-01-01", "--config", str(config))
        assert "target other: no dead letters queued since then" in future.stdout
        dropped = cli("resend", "other", "--drop", "--config", str(config))
        assert "target other: 1 dead letter(s) dropped" in dropped.stdout
        final = cli("status", "--config", str(config))
        assert final.returncode == 0, final.stdout
        assert "target hook: 1 sent, 0 pending, 0 dead-lettered" in final.stdout
    finally:
        hook.stop()
        other.stop()


def test_resend_rejects_unknown_targets_and_bad_times(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    config = dead_letter_config(tmp_path, fake_openrouter, webhook, webhook, webhook)
    unknown = cli("resend", "nope", "--config", str(config))
    assert unknown.returncode == 2
    assert "unknown target(s): nope" in unknown.stderr
    bad = cli("resend", "--since", "yesterday", "--config", str(config))
    assert bad.returncode == 2
    assert "--since: expected an age such as 30m" in bad.stderr
    assert "Traceback" not in bad.stderr + unknown.stderr


def test_redaction_masks_the_secrets_of_a_url_not_the_hosts_it_names(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    password, token = "smtp-canary-pass-77", "TIiajkdnlazkcOXrIdevi7FQ"
    (tmp_path / "rules.yaml").write_text("rules: []\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{fake_openrouter.url}", interval: 1h, timeout: 5s}}
targets:
  mail: "mailto://watcher:{password}@127.0.0.1:{fake_openrouter.port}?smtp=127.0.0.1&port={fake_openrouter.port}&to=team@example.com&from=watcher@example.com"
  team: slack://T1JJ3T3L2/A1BRTD4JD/{token}
rules: [rules.yaml]
""")
    settings = load_config(config)
    redactor = Redactor()
    redactor.update(settings.secrets)
    assert password in settings.secrets
    assert token in settings.secrets
    assert "T1JJ3T3L2" in settings.secrets  # Slack's "host" is a token
    assert redactor.text(f"GET {fake_openrouter.url} failed") == f"GET {fake_openrouter.url} failed"
    assert redactor.text(f"login watcher:{password} refused") == "login *** refused"
    assert "mailrelay" not in url_secrets("json://mailrelay/hook")  # a compose service name
    assert url_secrets("discord://123456789012/TOKENdiscord99") == [
        "discord://123456789012/TOKENdiscord99", "TOKENdiscord99", "123456789012"]
    assert url_secrets("json://host:port/x")  # a broken port is no crash
    # The real command: the watch's own URL stays readable in its failure.
    fake_openrouter.set_script([Reply(status=500, body=b"down")])
    failed = cli("once", "--config", str(config))
    assert failed.returncode == 1
    assert f"127.0.0.1:{fake_openrouter.port}/api/v1/models" in failed.stdout + failed.stderr
    assert password not in failed.stdout + failed.stderr


async def test_stored_rows_that_cannot_be_read_or_rendered_are_dead_lettered_not_spun_on(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    path = write(tmp_path, fake_openrouter, f"  hook: {webhook.url()}",
                 "rules:\n  - {name: prices, on: [price_changed], notify: [hook]}\n")
    app, store = await open_app(path, Clock())
    try:
        for step in (10, 11):
            fake_openrouter.set_script([step])
            await app.cycle(app.settings.watches[0])
        db = sqlite3.connect(store.path)
        rows = [r[0] for r in db.execute("SELECT event_id FROM outbox ORDER BY id")]
        assert len(rows) == 23
        # Not JSON; JSON but no event; an event too deeply nested to be sent as JSON.
        deep = "[" * 500 + "]" * 500
        broken = {rows[0]: '{"type": "price_chan', rows[1]: "[1, 2]",
                  rows[2]: '{"watch": "models", "type": "price_changed", "model": "x/y", '
                           f'"field": "pricing.prompt", "old": {deep}, "new": "1"}}'}
        with db:
            for event_id, body in broken.items():
                db.execute("UPDATE events SET body = ? WHERE id = ?", (body, event_id))
        statements: list[str] = []
        store._conn.set_trace_callback(statements.append)  # observe the SQL, change nothing
        stop = asyncio.Event()
        runner = asyncio.create_task(app.deliverer.run(stop))
        for _ in range(200):
            if webhook.delivered:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)  # a spinning loop would read the outbox thousands of times
        stop.set()
        await runner
        outbox_reads = [s for s in statements if "FROM outbox" in s]
        assert len(outbox_reads) <= 12, len(outbox_reads)
        dead = dict(db.execute("SELECT event_id, last_error FROM outbox WHERE state = 'dead'"))
        assert set(dead) == set(broken)
        assert "not valid JSON" in dead[rows[0]]
        assert "not a JSON object" in dead[rows[1]]
        assert "cannot render the message: TypeError: Recursion limit reached" in dead[rows[2]]
        (sent,) = webhook.delivered
        assert len(sent.message["events"]) == 20  # every other alert, in one message
        status = store.outbox_status()["hook"]
        assert (status["sent"], status["dead"], status["pending"]) == (20, 3, 0)
    finally:
        await close_app(app, store)


class Clocks:
    """A wall clock that can be stepped and a monotonic clock that only moves on."""

    def __init__(self) -> None:
        self.wall = datetime(2026, 1, 20, 21, 0, tzinfo=UTC)
        self.mono = 1000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def run(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.mark.parametrize("step_days", [-3, 3])
async def test_retries_and_settle_windows_follow_the_monotonic_clock_not_wall_steps(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, step_days: int) -> None:
    sink = WebhookSink(fail_first=1).start()
    try:
        path = write(tmp_path, fake_openrouter, f"  hook: {sink.url()}\n  calm: {sink.url(path='calm')}",
                     "rules:\n  - {name: exp, on: [expiration_set], notify: [hook]}\n"
                     "  - {name: quiet, on: [expiration_set], settle: 2h, notify: [calm]}\n",
                     extra="")
        path.write_text(path.read_text().replace(
            "delivery: {retry_backoff: 0.05s, max_backoff: 0.2s}",
            "delivery: {retry_backoff: 60s, max_backoff: 120s}"))
        clocks = Clocks()
        settings = load_config(path)
        store = Store.open(settings.state_dir)
        async with fetch.new_session() as session:
            app = App(settings, store, session, clock=clocks.now, monotonic=clocks.monotonic,
                      retry=FAST)
            for step in (24, 25):
                fake_openrouter.set_script([step])
                await app.cycle(settings.watches[0])
            await app.deliverer.drain()
            assert [r.status for r in sink.requests] == [500]  # hook failed; calm is settling
            clocks.wall += timedelta(days=step_days)  # NTP, a VM restore, a person
            clocks.run(30)  # before the earliest retry (backoff 60 s, jittered: 30..60 s)
            await app.deliverer.drain()
            assert [r.status for r in sink.requests] == [500]  # neither early nor late
            clocks.run(31)
            await app.deliverer.drain()
            assert [r.status for r in sink.requests] == [500, 200]  # the retry, on time
            clocks.run(2 * 3600 - 70)
            await app.deliverer.drain()
            assert len(sink.requests) == 2  # the settle window holds, whichever way
            clocks.run(20)
            await app.deliverer.drain()
            app.close()
        assert [r.status for r in sink.requests] == [500, 200, 200]
        assert store.outbox_status()["calm"]["sent"] == 1
        store.close()
    finally:
        sink.stop()


async def test_a_due_time_stored_before_a_step_back_delays_a_restart_by_the_policy_at_most(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    path = write(tmp_path, fake_openrouter, f"  hook: {webhook.url()}",
                 "rules:\n  - {name: exp, on: [expiration_set], notify: [hook]}\n")
    path.write_text(path.read_text().replace(
        "delivery: {retry_backoff: 0.05s, max_backoff: 0.2s}",
        "delivery: {retry_backoff: 60s, max_backoff: 120s}"))
    clocks = Clocks()
    settings = load_config(path)
    store = Store.open(settings.state_dir)
    async with fetch.new_session() as session:
        app = App(settings, store, session, clock=clocks.now, monotonic=clocks.monotonic,
                  retry=FAST)
        for step in (24, 25):
            fake_openrouter.set_script([step])
            await app.cycle(settings.watches[0])
        # As if a retry had been stored 48 h ahead of a clock that was then set back.
        with store.transaction() as tx:
            tx.execute("UPDATE outbox SET attempts = 3, due_at = ?",
                       (clocks.wall.timestamp() + 48 * 3600,))
        restarted = App(settings, store, session, clock=clocks.now, monotonic=clocks.monotonic,
                        retry=FAST)
        await restarted.deliverer.drain()
        assert webhook.requests == []
        clocks.run(121)  # max_backoff: the longest any retry can rightly wait
        await restarted.deliverer.drain()
        app.close()
        restarted.close()
    assert len(webhook.delivered) == 1
    store.close()


def test_a_dead_target_keeps_healthz_200_and_shows_in_its_body_and_metrics(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    hook = WebhookSink(fail_first=10**9, fail_status=404).start()
    port = _free_port()
    try:
        (tmp_path / "rules.yaml").write_text(
            "rules:\n  - {name: exp, on: [expiration_set], notify: [hook]}\n")
        config = tmp_path / "config.yaml"
        config.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{fake_openrouter.url}", interval: 1s, timeout: 5s}}
targets:
  hook: {hook.url()}
rules: [rules.yaml]
delivery: {{max_age: 1s, retry_backoff: 0.2s, max_backoff: 0.5s, stop_grace: 1s}}
http: {{listen: "127.0.0.1:{port}"}}
""")
        fake_openrouter.set_script([24, 25])
        daemon = Daemon(config).start()
        try:
            wait_for(lambda: "notify.dead_lettered" in daemon.logs(), what="a dead letter")
            status, body = healthz(port)
            assert status == 200
            assert body["status"] == "degraded"
            assert body["problems"] == []
            assert any(w.startswith("target hook: failing since") and "404" in w
                       for w in body["warnings"]), body["warnings"]
            wait = "target hook: 1 dead letter(s) wait; `openrouter-watcher resend hook` sends them again"
            assert wait in body["warnings"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                metrics = resp.read().decode()
            assert 'openrouter_watcher_target_failing{target="hook"} 1.0' in metrics
            assert 'openrouter_watcher_notifications_dead{target="hook"} 1.0' in metrics
            assert daemon.stop() == 0
        finally:
            if daemon.proc and daemon.proc.poll() is None:
                daemon.kill()
    finally:
        hook.stop()


def test_polls_go_on_while_the_disk_is_full_and_the_change_is_told_once_there_is_room(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    """A full disk under the state does not stop the daemon: each poll fails to record
    (logged once, told to the operator), the baseline stays, and once there is room the
    change is recorded and sent, once."""
    with small_disk(tmp_path / "state") as disk:
        ops = WebhookSink().start()
        port = _free_port()
        try:
            (tmp_path / "rules.yaml").write_text(
                "rules:\n  - {name: exp, on: [expiration_set], notify: [hook]}\n")
            config = tmp_path / "config.yaml"
            config.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{fake_openrouter.url}", interval: 1s, timeout: 5s}}
targets:
  hook: {webhook.url()}
  ops: {ops.url()}
operator: {{notify: [ops]}}
rules: [rules.yaml]
http: {{listen: "127.0.0.1:{port}"}}
""")
            fake_openrouter.set_script([24])
            assert cli("once", "--config", str(config)).returncode == 0  # the baseline
            daemon = Daemon(config).start()
            try:
                daemon.wait_started()
                fill(disk / "filler")
                fake_openrouter.set_script([25])  # one expiry, while nothing can be written
                wait_for(lambda: "state.unwritable" in daemon.logs(), what="the failed record")
                served = fake_openrouter.served
                wait_for(lambda: fake_openrouter.served >= served + 2, what="two more polls")
                assert daemon.proc is not None
                assert daemon.proc.poll() is None, "the daemon goes on"
                assert daemon.logs().count("state.unwritable") == 1
                assert not webhook.requests
                wait_for(lambda: any("cannot record" in said(r) for r in ops.requests),
                         what="the operator notice")
                (disk / "filler").unlink()
                wait_for(lambda: webhook.delivered, what="the change, told once there is room")
                wait_for(lambda: "state.writable" in daemon.logs(), what="the recovery")
                time.sleep(2.5)  # two more polls: nothing is told twice
                assert daemon.stop() == 0
            finally:
                if daemon.proc and daemon.proc.poll() is None:
                    daemon.kill()
        finally:
            ops.stop()
    (sent,) = webhook.delivered
    assert [e["model"] for e in sent.message["events"]] == ["mistralai/devstral-2512:free"]
    assert any("recovered" in said(r) for r in ops.requests)
