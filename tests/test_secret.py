"""A Secret never prints its value, and neither do the settings that hold one: not in a
repr, a str, an f-string or a structlog line, even with the log redactor empty."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from watcher import config, log
from watcher.secret import Secret

API_KEY = "sk-or-v1-CANARYAPIKEY0101"
HOOK_TOKEN = "CANARYHOOKTOKEN0102"
SMTP_PASSWORD = "CANARYSMTPPASS0103"
CANARIES = (API_KEY, HOOK_TOKEN, SMTP_PASSWORD)


def test_a_secret_shows_only_a_mask() -> None:
    secret = Secret(API_KEY)
    assert repr(secret) == str(secret) == f"{secret}" == f"{secret:>40}" == "Secret('****')"
    stdlib_logging = "%s" % secret  # noqa: UP031 - how a stdlib log record formats it
    for shown in (stdlib_logging, repr([secret]), repr({"k": secret})):
        assert API_KEY not in shown
    assert secret.reveal() == API_KEY


def test_a_secret_equals_its_value_and_hashes_like_it() -> None:
    assert Secret(API_KEY) == Secret(API_KEY) == API_KEY
    assert Secret(API_KEY) != "sk-or-v1-other"
    assert Secret(API_KEY) != 42
    assert {Secret(API_KEY): 1}[Secret(API_KEY)] == 1
    assert Secret.of(API_KEY) == Secret.of(Secret(API_KEY))
    assert not Secret("")


@pytest.fixture
def settings(write_config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> config.Settings:
    monkeypatch.setenv("OPENROUTER_API_KEY", API_KEY)
    monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)
    (tmp_path / "hook-url").write_text(f"json://127.0.0.1:9/hook/{HOOK_TOKEN}\n")
    path = write_config("""
watches:
  - {name: mine, url: "http://127.0.0.1:1/api/v1/models/user", interval: 1h,
     api_key_env: OPENROUTER_API_KEY}
targets:
  hook: {url_file: hook-url}
  mail: "mailtos://watcher:${SMTP_PASSWORD}@127.0.0.1:2525?to=ops@example.com"
operator: {notify: [hook, mail]}
""")
    loaded = config.load(path)
    assert loaded.watches[0].api_key == API_KEY  # the canaries are really in there
    assert HOOK_TOKEN in loaded.targets["hook"].url.reveal()
    assert SMTP_PASSWORD in loaded.targets["mail"].url.reveal()
    return loaded


def test_settings_with_secrets_never_print_them(settings: config.Settings) -> None:
    shown = [repr(settings), str(settings), f"{settings}", f"{settings!r}",
             repr(settings.watches), repr(settings.targets), str(settings.targets["mail"])]
    for text in shown:
        assert not [c for c in CANARIES if c in text], text
    assert "Secret('****')" in repr(settings.watches[0])


@pytest.mark.parametrize("json", [True, False], ids=["json", "console"])
def test_a_log_line_with_the_settings_never_shows_a_secret(
        settings: config.Settings, json: bool) -> None:
    stream = io.StringIO()
    log.redactor.update(())  # the Secret type alone keeps them out, not the redactor
    log.configure("debug", stream=stream, json=json)
    log.get().info("config.loaded", settings=settings, watch=settings.watches[0],
                   key=settings.watches[0].api_key, targets=settings.targets)
    text = stream.getvalue()
    assert "config.loaded" in text
    assert not [c for c in CANARIES if c in text], text
