"""The real daemon process: crash safety and clean stops."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.daemon import Daemon, wait_for
from tests.fakes import FakeOpenRouter
from tests.sinks import WebhookSink


def daemon_config(tmp_path: Path, server: FakeOpenRouter, hook: WebhookSink, extra: str = "") -> Path:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: exp, on: [expiration_set, price_changed], notify: [hook]}\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{server.url}", interval: 1s, timeout: 5s}}
targets:
  hook: {hook.url()}
rules: [rules.yaml]
delivery: {{retry_backoff: 0.2s, max_backoff: 1s, stop_grace: 1s}}
{extra}
""")
    return path


def test_sigkill_after_commit_before_send_resends_after_restart(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    fake_openrouter.set_script([24, 25])
    webhook.stall = True  # the send starts, and hangs: the daemon has committed, not marked sent
    daemon = Daemon(daemon_config(tmp_path, fake_openrouter, webhook)).start()
    try:
        wait_for(lambda: webhook.requests, what="the first (stalled) send")
        daemon.kill()
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
    stalled = webhook.requests[0]
    webhook.stall = False
    restarted = Daemon(daemon.config).start()
    try:
        wait_for(lambda: webhook.delivered, what="the resend after restart")
        assert restarted.stop() == 0
    finally:
        if restarted.proc and restarted.proc.poll() is None:
            restarted.kill()
    (delivered,) = webhook.delivered
    assert delivered.headers["Idempotency-Key"] == stalled.headers["Idempotency-Key"]
    events = delivered.message["events"]
    assert [(e["type"], e["model"]) for e in events] == [
        ("expiration_set", "mistralai/devstral-2512:free")]


def test_sigterm_stops_cleanly_within_the_grace_and_leaves_unsent_pending(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    fake_openrouter.set_script([24, 25])
    webhook.stall = True
    daemon = Daemon(daemon_config(tmp_path, fake_openrouter, webhook)).start()
    try:
        wait_for(lambda: webhook.requests, what="a send in flight")
        assert daemon.stop(signal.SIGTERM, timeout=15) == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
    logs = [json.loads(line) for line in daemon.logs().splitlines() if line.startswith("{")]
    names = [entry["event"] for entry in logs]
    assert "notify.grace_expired" in names
    assert names[-1] == "daemon.stopped"
    from watcher.store import Store

    store = Store.open(tmp_path / "state")
    try:
        assert store.outbox_status()["hook"]["pending"] == 1
    finally:
        store.close()
