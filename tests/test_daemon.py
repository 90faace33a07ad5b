"""The real daemon process: crash safety and clean stops."""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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


def assert_resent_once_after_sigkill(path: Path, fake_openrouter: FakeOpenRouter,
                                     webhook: WebhookSink,
                                     beside: Callable[[], None] = lambda: None) -> str:
    """A daemon on the config at ``path`` is SIGKILLed while its first send hangs (the alert
    committed, not marked sent; ``beside`` runs then); the next daemon sends it once, with
    the same idempotency key.  The two daemons' logs."""
    fake_openrouter.set_script([24, 25])
    webhook.stall = True  # the send starts, and hangs: the daemon has committed, not marked sent
    daemon = Daemon(path).start()
    try:
        wait_for(lambda: webhook.requests, what="the first (stalled) send")
        beside()
        daemon.kill()
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
    stalled = webhook.requests[0]
    webhook.stall = False
    restarted = Daemon(path).start()
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
    return daemon.logs() + restarted.logs()


def test_sigkill_after_commit_before_send_resends_after_restart(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    assert_resent_once_after_sigkill(daemon_config(tmp_path, fake_openrouter, webhook),
                                     fake_openrouter, webhook)


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
    # Our own records; those of libraries (apprise's worker thread may still speak as the
    # process exits) carry a "logger" key.
    names = [entry["event"] for entry in logs if "logger" not in entry]
    assert "notify.grace_expired" in names
    assert names[-1] == "daemon.stopped"
    from watcher.store import Store

    store = Store.open(tmp_path / "state")
    try:
        assert store.outbox_status()["hook"]["pending"] == 1
    finally:
        store.close()


def test_sighup_reloads_a_good_config_and_keeps_the_running_one_on_a_bad_one(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    second = WebhookSink().start()
    try:
        config_path = daemon_config(tmp_path, fake_openrouter, webhook)
        fake_openrouter.set_script([24])
        daemon = Daemon(config_path).start()
        try:
            wait_for(lambda: "cycle.baseline" in daemon.logs(), what="the baseline")
            # Good: a new target, and the rule now sends there.
            config_path.write_text(config_path.read_text().replace(
                "targets:\n", f"targets:\n  second: {second.url()}\n"))
            (tmp_path / "rules.yaml").write_text(
                "rules:\n  - {name: exp, on: [expiration_set], notify: [second]}\n")
            daemon.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "config.reloaded" in daemon.logs(), what="the reload")
            # Bad: the running config stays.
            (tmp_path / "rules.yaml").write_text(
                "rules:\n  - {name: exp, on: [expiration_sett], notify: [second]}\n")
            daemon.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "config.reload_failed" in daemon.logs(), what="the failed reload")
            fake_openrouter.set_script([25])
            wait_for(lambda: second.delivered, what="the change at the reloaded target")
            assert daemon.stop() == 0
        finally:
            if daemon.proc and daemon.proc.poll() is None:
                daemon.kill()
        assert webhook.requests == []
        (message,) = second.delivered
        assert [e["model"] for e in message.message["events"]] == ["mistralai/devstral-2512:free"]
        failed = next(json.loads(line) for line in daemon.logs().splitlines()
                      if "config.reload_failed" in line)
        assert "unknown event type 'expiration_sett'" in failed["reason"]
        assert "rules.yaml:2" in failed["reason"]
    finally:
        second.stop()


def committed_changes(state: Path) -> int:
    import sqlite3

    db = state / "openrouter-watcher.sqlite3"
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(
            "SELECT COUNT(*) FROM checks WHERE outcome IN ('baseline', 'changed')").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def pending_notifications(state: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{state / 'openrouter-watcher.sqlite3'}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_at_random_moments_loses_no_notification(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink, seed: int) -> None:
    import random

    from tests.test_replay import events_between

    rnd = random.Random(seed)
    steps = [10, 11, 12, 13, 14, 15, 16]
    config_path = daemon_config(tmp_path, fake_openrouter, webhook)
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: all, on: [model_added, model_removed, price_changed], notify: [hook]}\n")
    state = tmp_path / "state"
    daemon = Daemon(config_path).start()
    kills = 0
    try:
        for index, step in enumerate(steps, start=1):
            fake_openrouter.set_script([step])
            while committed_changes(state) < index:
                time.sleep(rnd.uniform(0.0, 1.2))
                if rnd.random() < 0.5:
                    daemon.kill()
                    kills += 1
                    daemon = Daemon(config_path).start()
        wait_for(lambda: pending_notifications(state) == 0, timeout=60, what="every send")
        daemon.wait_started()
        assert daemon.stop() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
    assert kills >= 2
    by_key = {r.headers["Idempotency-Key"]: r.message["events"] for r in webhook.delivered}
    received = sorted(
        (e["type"], e["model"], e["field"], json.dumps(e["old"]), json.dumps(e["new"]))
        for events in by_key.values() for e in events)
    expected = sorted(
        (e["type"], e["model"], e["field"], json.dumps(e["old"]), json.dumps(e["new"]))
        for a, b in itertools.pairwise(steps) for e in events_between(a, b)
        if e["type"] in ("model_added", "model_removed", "price_changed"))
    assert received == expected


def test_once_refuses_a_state_directory_in_use_but_readers_work_beside_the_daemon(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink) -> None:
    from tests.test_cli import cli

    fake_openrouter.set_script([24])
    config_path = daemon_config(tmp_path, fake_openrouter, webhook)
    daemon = Daemon(config_path).start()
    try:
        daemon.wait_started()
        wait_for(lambda: committed_changes(tmp_path / "state") >= 1, what="the baseline")
        once = cli("once", "--config", str(config_path))
        assert once.returncode == 1
        assert "is in use by another openrouter-watcher" in once.stderr
        assert "Traceback" not in once.stderr
        for reader in (["status"], ["history"], ["once", "--dry-run"]):
            proc = cli(*reader, "--config", str(config_path))
            assert proc.returncode == 0, (reader, proc.stderr)
        assert daemon.stop() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
    assert cli("once", "--config", str(config_path)).returncode == 0  # free again
