"""The delivery path under stress: a full disk, broken stored rows, clock steps, dead
targets.  Real SQLite, real Apprise, real loopback sinks, real daemon processes."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aiohttp import web

from tests.daemon import Daemon, wait_for
from tests.fakes import FakeOpenRouter, Reply, _free_port
from tests.sinks import WebhookSink
from tests.test_cli import cli
from watcher.config import Target
from watcher.config import load as load_config
from watcher.log import Redactor
from watcher.notify.deliver import AppriseSender
from watcher.notify.render import Message


class DiskFillingSink(WebhookSink):
    """A webhook that fills ``disk`` to the last byte before it answers its first request:
    the message is accepted, and then the state cannot record it."""

    def __init__(self, disk: Path) -> None:
        super().__init__()
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


def logs_of(daemon: Daemon) -> list[dict]:
    return [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]


def test_a_full_disk_after_a_send_stops_the_target_and_resumes_without_resending(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    with small_disk(tmp_path / "state") as disk:
        hook = DiskFillingSink(disk).start()
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
                assert "was sent but cannot be recorded" in stopped["reason"]
                assert "database or disk is full" in stopped["reason"]
                status, body = healthz(port)
                assert status == 200  # liveness: a restart would free no disk space
                assert body["status"] == "degraded"
                assert any(w.startswith("target hook: stopped since") for w in body["warnings"])
                wait_for(lambda: any("hook is stopped" in r.payload.get("message", "")
                                     for r in webhook.requests), what="the operator notice")
                # The record is retried (every second at most here) and nothing is resent.
                wait_for(lambda: daemon.logs().count("notify.still_stopped") >= 2
                         or len(hook.requests) > 1, what="retries of the record")
                assert len(hook.requests) == 1
                hook.filler.unlink()  # the disk has room again
                wait_for(lambda: "notify.target_resumed" in daemon.logs(), what="the resume")
                status, body = healthz(port)
                assert (status, body["status"], body["warnings"]) == (200, "ok", [])
                assert daemon.stop() == 0
            finally:
                if daemon.proc and daemon.proc.poll() is None:
                    daemon.kill()
            assert len(hook.requests) == 1
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
            message = Message(title="t", body="b", format="json", key="k")

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
        first = cli("once", "--config", str(config))
        assert "notifications for 'hook' are pending" in first.stderr
        time.sleep(1.2)  # past delivery.max_age
        second = cli("once", "--config", str(config))
        assert second.returncode == 0, second.stderr
        assert "notify.dead_lettered" in second.stderr

        # Each dead target is an operator notice to the other operator targets only.
        notices = [r.payload["message"] for r in webhook.requests]
        assert any("for target hook were dead-lettered" in n for n in notices), notices
        assert any("for target other were dead-lettered" in n for n in notices), notices
        assert not any("for target hook" in r.payload["message"] for r in hook.requests)
        assert any("for target hook" in r.payload["message"] for r in other.requests)

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
    password, token = "smtp-canary-pass-77", "XTOKENslack0123456789"
    (tmp_path / "rules.yaml").write_text("rules: []\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{fake_openrouter.url}", interval: 1h, timeout: 5s}}
targets:
  mail: "mailto://watcher:{password}@127.0.0.1:{fake_openrouter.port}?smtp=127.0.0.1&port={fake_openrouter.port}&to=team@example.com"
  team: slack://TTOKENA123/BTOKENB456/{token}
rules: [rules.yaml]
""")
    settings = load_config(config)
    redactor = Redactor()
    redactor.update(settings.secrets)
    assert password in settings.secrets
    assert token in settings.secrets
    assert "TTOKENA123" in settings.secrets  # Slack's "host" is a token
    assert redactor.text(f"GET {fake_openrouter.url} failed") == f"GET {fake_openrouter.url} failed"
    assert redactor.text(f"login watcher:{password} refused") == "login *** refused"
    # The real command: the watch's own URL stays readable in its failure.
    fake_openrouter.set_script([Reply(status=500, body=b"down")])
    failed = cli("once", "--config", str(config))
    assert failed.returncode == 1
    assert f"127.0.0.1:{fake_openrouter.port}/api/v1/models" in failed.stdout + failed.stderr
    assert password not in failed.stdout + failed.stderr
