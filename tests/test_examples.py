"""The service example, copied as the README says, delivers to the targets it defines."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes import FakeOpenRouter
from tests.sinks import Received, SMTPServer, WebhookSink, mail_text
from tests.test_cli import cli

ROOT = Path(__file__).parent.parent


def webhook_events(received: Received) -> list[dict[str, Any]]:
    """The events of one webhook message (the document, or the document in ``message``)."""
    payload = received.payload
    document = payload if "events" in payload else orjson.loads(payload["message"])
    return list(document["events"])


def install_example(tmp_path: Path, fake: FakeOpenRouter, webhook: WebhookSink,
                    smtp: SMTPServer) -> tuple[Path, dict[str, str]]:
    """README, "Run it under systemd", step 2: the config and its rules into /etc, the
    secrets into the credentials directory.  The one edit: the watches poll a loopback
    replay of real responses instead of openrouter.ai."""
    etc = tmp_path / "etc"
    (etc / "rules").mkdir(parents=True)
    config = etc / "config.yaml"
    text = (ROOT / "examples/config.yaml").read_text()
    assert text.count("https://openrouter.ai/api/v1/models") == 2
    config.write_text(text.replace("https://openrouter.ai", fake.url.removesuffix("/api/v1/models")))
    shutil.copy(ROOT / "examples/rules/team.yaml", etc / "rules/team.yaml")
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    (creds / "openrouter-api-key").write_text("sk-or-v1-example-test-key")
    (creds / "slack-url").write_text(webhook.url())
    (creds / "mail-url").write_text(smtp.url(to="oncall@example.com"))
    for secret in creds.iterdir():
        secret.chmod(0o600)
    env = {"CREDENTIALS_DIRECTORY": str(creds), "STATE_DIRECTORY": str(tmp_path / "state")}
    return config, env


def test_the_service_example_sends_vendor_price_increases_to_slack_and_mail(
        tmp_path: Path, fake_openrouter: FakeOpenRouter, webhook: WebhookSink,
        smtp: SMTPServer) -> None:
    config, env = install_example(tmp_path, fake_openrouter, webhook, smtp)
    check = cli("check", "--config", str(config), env=env)
    assert check.returncode == 0, check.stderr
    assert "warning" not in check.stdout  # every target is used, every rule can fire

    # Real step 013 -> 014: 50 changes, among them google/gemma-3-27b-it +11.1% (prompt),
    # and price increases of vendors the example does not name (minimax, moonshotai).
    fake_openrouter.set_script([13])
    first = cli("once", "--config", str(config), env=env)
    assert first.returncode == 0, first.stderr
    assert webhook.requests == []  # a baseline alerts nothing
    fake_openrouter.set_script([14])
    second = cli("once", "--config", str(config), env=env)
    assert second.returncode == 0, second.stderr
    assert "config.warning" not in second.stderr
    assert "sk-or-v1-example-test-key" not in second.stdout + second.stderr

    sent = [e for r in webhook.delivered for e in webhook_events(r)]
    prices = {(e["model"], e["field"], e["change_pct"]) for e in sent if e["type"] == "price_changed"}
    assert ("google/gemma-3-27b-it", "pricing.prompt", 11.1) in prices
    assert ("minimax/minimax-m2.1", "pricing.prompt", 125.0) in prices  # Slack hears every price

    # E-mail hears the vendors' increases, not the other vendors' ones.
    assert smtp.messages
    mail = "\n".join(mail_text(m) for m in smtp.messages)
    assert "google/gemma-3-27b-it" in mail
    assert "+11.1%" in mail
    assert "qwen/qwen3-next-80b-a3b-instruct" in mail
    assert "minimax/minimax-m2.1" not in mail
    assert "moonshotai/" not in mail


def test_the_readme_recipe_is_what_the_example_rules_start_with() -> None:
    import yaml

    readme = (ROOT / "README.md").read_text()
    recipe = readme[readme.index("**Recipe:"):]
    block = recipe[recipe.index("```yaml\n") + 8:recipe.index("```\n", recipe.index("```yaml"))]
    shown = yaml.safe_load(block)["rules"]
    shipped = yaml.safe_load((ROOT / "examples/rules/team.yaml").read_text())["rules"]
    assert shown == shipped[:len(shown)]
    assert {t for rule in shown for t in rule["notify"]} == {"team", "oncall-mail"}


def test_the_unit_and_compose_hand_over_exactly_the_secrets_the_example_reads() -> None:
    import re

    import yaml

    reads = set(re.findall(r"\$\{CREDENTIALS_DIRECTORY\}/([\w-]+)",
                           (ROOT / "examples/config.yaml").read_text()))
    assert reads == {"openrouter-api-key", "slack-url", "mail-url"}
    unit = (ROOT / "systemd/openrouter-watcher.service").read_text()
    assert set(re.findall(r"^LoadCredential=([\w-]+):", unit, re.MULTILINE)) == reads
    compose = yaml.safe_load((ROOT / "compose.example.yaml").read_text())
    assert set(compose["secrets"]) == reads
    assert set(compose["services"]["watcher"]["secrets"]) == reads
    assert "./rules:/etc/openrouter-watcher/rules:ro" in compose["services"]["watcher"]["volumes"]


def test_the_postgresql_compose_runs_two_replicas_with_the_secrets_its_config_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """compose.postgresql.yaml: two watcher replicas on a PostgreSQL service, the example's
    secrets plus the database password, and the state lines its header gives load."""
    import re

    import yaml

    from watcher import config

    text = (ROOT / "compose.postgresql.yaml").read_text()
    compose = yaml.safe_load(text)
    watcher = compose["services"]["watcher"]
    assert watcher["deploy"]["replicas"] == 2
    assert watcher["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert set(watcher["secrets"]) == {"openrouter-api-key", "slack-url", "mail-url",
                                       "postgres-password"}
    assert "postgres-password" in compose["services"]["postgres"]["secrets"]
    state = "\n".join(line[4:] for line in text.splitlines()
                      if re.match(r"^#   (state:|  url:|  password_file:)", line))
    (tmp_path / "postgres-password").write_text("not-a-real-password\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "config.yaml").write_text(
        state + "\nwatches:\n  - {name: models, url: 'http://127.0.0.1:1/api/v1/models', "
        "interval: 10m}\n")
    loaded = config.load(tmp_path / "config.yaml")
    assert loaded.database is not None
    assert loaded.database.url == "postgresql://watcher@postgres:5432/watcher"
    assert loaded.database.password is not None
    assert loaded.database.password.reveal() == "not-a-real-password"
