"""Canary secrets never appear in logs, errors, history, status or the database."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from tests.daemon import Daemon, wait_for
from tests.fakes import FakeOpenRouter, Reply
from tests.sinks import SMTPServer, WebhookSink
from tests.test_cli import cli

API_KEY = "sk-or-v1-CANARYAPIKEY0001"
HOOK_TOKEN = "CANARYHOOKTOKEN0002"
SMTP_PASSWORD = "CANARYSMTPPASS0003"
CANARIES = (API_KEY, HOOK_TOKEN, SMTP_PASSWORD)


def leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    forms = [f for c in CANARIES for f in (c, urllib.parse.quote(c), c[4:-4])]
    return [f for f in forms if f in text]


def test_canaries_stay_secret_in_every_failure_scenario(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    hook = WebhookSink(fail_first=3).start()
    # The SMTP server checks the canary password, then rejects every mail: retried, failing.
    smtp = SMTPServer(user="watcher", password=SMTP_PASSWORD).start()
    smtp.inbox.reject = True
    try:
        (tmp_path / "rules.yaml").write_text(
            "rules:\n  - {name: all, on: [price_changed, model_removed, model_added], "
            "notify: [hook, mail]}\n")
        config_path = tmp_path / "config.yaml"
        mail_url = smtp.url().replace(SMTP_PASSWORD, "${SMTP_PASSWORD}")
        config_path.write_text(f"""
state_dir: state
watches:
  - name: mine
    url: "{fake_openrouter.url}/user"
    interval: 1s
    timeout: 1s
    retries: 1
    retry_backoff: 10ms
    api_key_env: OPENROUTER_API_KEY
targets:
  hook: "{hook.url(path='hook/' + HOOK_TOKEN)}"
  mail: "{mail_url}"
operator: {{notify: [hook, mail]}}
rules: [rules.yaml]
delivery: {{retry_backoff: 0.1s, max_backoff: 0.3s, stop_grace: 1s}}
""")
        env = {"OPENROUTER_API_KEY": API_KEY, "SMTP_PASSWORD": SMTP_PASSWORD}
        fake_openrouter.set_script([
            10, Reply(status=500), Reply(status=401), Reply(body=b"<html>oops</html>"),
            Reply(body=b'{"data": [1, 2'), Reply(body=b"{}", delay=2), 11, Reply(status=403),
            Reply(body=b'{"data": []}'), 12,
        ])
        daemon = Daemon(config_path, env=env, log_level="debug").start()
        try:
            wait_for(lambda: fake_openrouter.served >= 12 and hook.delivered, timeout=60,
                     what="the whole fault schedule and a delivered message")
            assert daemon.stop() == 0
        finally:
            if daemon.proc and daemon.proc.poll() is None:
                daemon.kill()
        assert all(r["Authorization"] == f"Bearer {API_KEY}" for r in fake_openrouter.requests)
        outputs = {"daemon stdout": daemon.output(), "daemon stderr": daemon.logs()}
        assert "notify.failing" in outputs["daemon stderr"]  # the mail target really failed
        assert smtp.logins  # ... after logging in with the canary password
        assert "watch.failing" in outputs["daemon stderr"]

        fake_openrouter.set_script([Reply(status=401)])
        for args in (["once", "--log-level", "debug"], ["once", "--format", "json"],
                     ["history"], ["history", "--format", "json"], ["status"],
                     ["status", "--format", "json"], ["test-notify", "--log-level", "debug"],
                     ["check"], ["once", "--dry-run"]):
            proc = cli(*args, "--config", str(config_path), env=env)
            outputs[" ".join(args)] = proc.stdout + proc.stderr
        assert "mail: FAILED" in outputs["test-notify --log-level debug"]

        bad = tmp_path / "bad.yaml"
        bad.write_text(config_path.read_text().replace("interval: 1s", "interval: soon"))
        proc = cli("check", "--config", str(bad), env=env)
        assert proc.returncode == 2
        outputs["bad config"] = proc.stdout + proc.stderr

        for name, text in outputs.items():
            assert leaks(text) == [], f"secret in {name}"
        for db_file in (tmp_path / "state").iterdir():
            assert leaks(db_file.read_bytes()) == [], f"secret in {db_file.name}"
    finally:
        hook.stop()
        smtp.stop()


def test_redactor_masks_secrets_in_tracebacks_and_nested_values(capsys) -> None:
    import io

    from watcher import log

    stream = io.StringIO()
    log.redactor.update([API_KEY])
    try:
        log.configure("debug", stream=stream, json=True)
        logger = log.get()
        try:
            raise RuntimeError(f"request failed with key {API_KEY}")
        except RuntimeError:
            logger.exception("boom", headers={"Authorization": f"Bearer {API_KEY}"},
                             items=[API_KEY])
        import logging

        logging.getLogger("aiohttp.client").error("token %s rejected", API_KEY)
    finally:
        log.redactor.update([])
    text = stream.getvalue()
    assert "Traceback" in text
    assert "RuntimeError" in text
    assert API_KEY not in text
    assert text.count("***") >= 4


def test_a_rotated_api_key_file_is_used_at_the_next_poll_and_masked(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    """The daemon reads api_key_file before each poll: no restart for a rotated key."""
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(f"""
state_dir: state
watches:
  - {{name: mine, url: "{fake_openrouter.url}/user", interval: 1s, timeout: 2s,
      api_key_file: api-key}}
""")
    fake_openrouter.set_script([24])
    rotated = "sk-or-v1-ROTATEDKEY0004"
    daemon = Daemon(config_path).start()
    try:
        wait_for(lambda: any(r.get("Authorization") == f"Bearer {API_KEY}"
                             for r in fake_openrouter.requests), what="a poll with the first key")
        staged = tmp_path / "api-key.new"
        staged.write_text(rotated + "\n")
        staged.replace(key_file)  # as a secret manager rotates: a whole new file
        wait_for(lambda: any(r.get("Authorization") == f"Bearer {rotated}"
                             for r in fake_openrouter.requests), what="a poll with the new key")
        key_file.unlink()  # a key file that vanished fails the poll, and says which file
        wait_for(lambda: "cannot read api_key_file" in daemon.logs(), what="the missing file")
        assert daemon.stop() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
    assert f"{tmp_path}/api-key" in daemon.logs()
    assert rotated not in daemon.logs() + daemon.output()
    assert not leaks(daemon.logs() + daemon.output())


def test_a_rotated_key_is_masked_from_its_first_use(tmp_path: Path) -> None:
    from watcher import log
    from watcher.config import Watch
    from watcher.fetch import with_current_key

    key_file = tmp_path / "api-key"
    key_file.write_text("sk-or-v1-FIRSTKEY0005")
    log.redactor.update({"sk-or-v1-FIRSTKEY0005", "other-secret-0006"})
    watch = Watch(name="mine", url="http://127.0.0.1:1/api/v1/models/user", interval=60,
                  api_key="sk-or-v1-FIRSTKEY0005", api_key_file=key_file)
    key_file.write_text("sk-or-v1-SECONDKEY0007\n")
    assert with_current_key(watch).api_key == "sk-or-v1-SECONDKEY0007"
    line = "old sk-or-v1-FIRSTKEY0005 new sk-or-v1-SECONDKEY0007 other other-secret-0006"
    assert log.redactor.text(line) == "old *** new *** other ***"
    log.redactor.update(())
