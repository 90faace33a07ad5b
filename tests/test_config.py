"""Strict config loading: one bad-config fixture per error, each message names file, line, key."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from watcher import config
from watcher.errors import ConfigError

CONFIGS = Path(__file__).parent / "configs"
ROOT = Path(__file__).parent.parent
BAD = sorted((CONFIGS / "bad").glob("*.yaml"))


def expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path} must start with '# expect: <regex>'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_config_is_rejected_with_file_line_and_key(path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert re.search(expected_message(path), str(caught.value)), str(caught.value)
    assert str(caught.value).startswith(str(path))


def test_there_is_a_fixture_for_each_error() -> None:
    assert len(BAD) >= 19


@pytest.mark.parametrize("path", BAD[:3] + [p for p in BAD if p.stem == "unset_env"],
                         ids=lambda p: p.stem)
def test_cli_check_exits_2_without_traceback(path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "watcher", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert re.search(expected_message(path), proc.stderr)
    assert proc.stdout == ""


def test_full_example_loads(write_config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "json://127.0.0.1:9/hook-token-abc")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-canary-key")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "default.yaml").write_text(
        "rules:\n  - {name: all-prices, on: [price_changed], notify: [team, console]}\n")
    path = write_config("""
state_dir: ./state                 # where the SQLite database lives
watches:
  - name: models
    url: https://openrouter.ai/api/v1/models
    interval: 10m
  - name: my-models
    url: https://openrouter.ai/api/v1/models/user
    interval: 10m
    api_key_env: OPENROUTER_API_KEY
targets:
  console: console://
  team: ${SLACK_WEBHOOK_URL}
rules: [rules/default.yaml]
""")
    settings = config.load(path)
    assert settings.state_dir == tmp_path / "state"
    assert [(w.name, w.interval) for w in settings.watches] == [("models", 600.0), ("my-models", 600.0)]
    assert settings.watches[0].api_key is None
    assert settings.watches[1].api_key == "sk-or-v1-canary-key"
    assert settings.targets["team"].url == "json://127.0.0.1:9/hook-token-abc"
    assert [r.name for r in settings.rules] == ["all-prices"]
    assert {"sk-or-v1-canary-key", "json://127.0.0.1:9/hook-token-abc"} <= settings.secrets
    assert "console://" not in settings.secrets
    assert settings.warnings == ()


def test_empty_rules_list_is_valid_and_state_dir_defaults(write_config, monkeypatch) -> None:
    path = write_config("watches: [{name: m, url: 'http://127.0.0.1:1/m', interval: 1h}]\nrules: []\n")
    assert config.load(path).rules == ()
    assert config.load(path).state_dir == Path("state")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/openrouter-watcher")
    assert config.load(path).state_dir == Path("/var/lib/openrouter-watcher")


def test_api_key_file_and_credentials_directory(write_config, monkeypatch, tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "api-key").write_text("sk-or-v1-from-file\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    path = write_config("""
watches:
  - name: mine
    url: https://openrouter.ai/api/v1/models/user
    interval: 30s
    api_key_file: ${CREDENTIALS_DIRECTORY}/api-key
""")
    settings = config.load(path)
    assert settings.watches[0].api_key == "sk-or-v1-from-file"
    assert "sk-or-v1-from-file" in settings.secrets
    assert len(settings.warnings) == 1
    assert "below 60s" in settings.warnings[0]


def test_rule_globs_expand_relative_to_the_config(write_config, tmp_path: Path) -> None:
    (tmp_path / "rules.d").mkdir()
    for name in ("b", "a"):
        (tmp_path / "rules.d" / f"{name}.yaml").write_text(
            f"rules:\n  - {{name: r-{name}, on: [model_added], notify: [console]}}\n")
    path = write_config("watches: [{name: m, url: 'http://127.0.0.1:1/m', interval: 1h}]\n"
                        "targets: {console: 'console://'}\nrules: ['rules.d/*.yaml']\n")
    assert [r.name for r in config.load(path).rules] == ["r-a", "r-b"]


def test_config_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config.find_config(None) == config.packaged_config()
    (tmp_path / "openrouter-watcher.yaml").write_text("x")
    assert config.find_config(None) == Path("openrouter-watcher.yaml")
    monkeypatch.setenv("OPENROUTER_WATCHER_CONFIG", "/etc/openrouter-watcher/config.yaml")
    assert config.find_config(None) == Path("/etc/openrouter-watcher/config.yaml")
    assert config.find_config("given.yaml") == Path("given.yaml")


def test_packaged_default_config_loads() -> None:
    settings = config.load(config.packaged_config())
    assert [w.url for w in settings.watches] == ["https://openrouter.ai/api/v1/models"]
    assert set(settings.targets) == {"console"}
    assert settings.rules


@pytest.mark.parametrize("path", sorted(Path(__file__).parent.parent.joinpath("rules").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_rule_file_loads(path: Path) -> None:
    from watcher.rules.load import load_rule_files

    assert load_rule_files([path], targets={"console"}, watches={"models"})


def test_http_public_url_is_kept_without_its_trailing_slash(write_config) -> None:
    path = write_config('watches: [{name: m, url: "http://127.0.0.1:1/m", interval: 1h}]\n'
                        "rules: []\n"
                        'http: {listen: "127.0.0.1:9464", public_url: "https://w.example.com/watch/"}\n')
    settings = config.load(path)
    assert settings.http is not None
    assert settings.http.public_url == "https://w.example.com/watch"


def test_a_key_left_out_takes_the_dataclass_default(write_config) -> None:
    """Each default is written once, on the dataclass: the reader leaves absent keys out."""
    path = write_config('watches: [{name: m, url: "http://127.0.0.1:1/m", interval: 1h}]\n'
                        'http: {listen: "127.0.0.1:9464"}\n'
                        "delivery: {}\nretention: {}\noperator: {notify: []}\n")
    settings = config.load(path)
    assert settings.watches == (config.Watch(name="m", url="http://127.0.0.1:1/m", interval=3600),)
    assert settings.http == config.Http(host="127.0.0.1", port=9464)
    assert (settings.delivery, settings.retention, settings.operator) == (
        config.Delivery(), config.Retention(), config.Operator())
    assert (settings.log_level, settings.expiring_soon_days) == ("info", (7, 1))


def test_keys_given_fill_their_fields(write_config) -> None:
    path = write_config("""
watches:
  - {name: m, url: "http://127.0.0.1:1/m", interval: 90s, timeout: 5s, max_body_mb: 0.5,
     max_pages: 3, retries: 0, retry_backoff: 10ms, max_retry_after: 1m, max_removed_pct: 50,
     confirm_polls: 1}
delivery: {max_age: 1h, retry_backoff: 1s, max_backoff: 1m, stop_grace: 2s}
retention: {unchanged_checks: forever, messages: 8d, dead_letters: never, events: 1h}
expiring_soon_days: [1, 14, 1]
""")
    settings = config.load(path)
    assert settings.watches[0] == config.Watch(
        name="m", url="http://127.0.0.1:1/m", interval=90, timeout=5, max_body_bytes=1 << 19,
        max_pages=3, max_removed_pct=50, confirm_polls=1,
        retry=config.RetryPolicy(attempts=1, backoff=0.01, max_retry_after=60))
    assert settings.delivery == config.Delivery(max_age=3600, retry_backoff=1, max_backoff=60,
                                                stop_grace=2)
    assert settings.retention == config.Retention(unchanged_checks=None, messages=8 * 86400,
                                                  dead_letters=None, events=3600)
    assert settings.expiring_soon_days == (14, 1)


def _tree(node: object) -> object:
    """A node as nested tuples of (tag, line, column, value): what yamldoc reads of it."""
    value = node.value  # type: ignore[attr-defined]
    if isinstance(value, list):
        value = [tuple(_tree(n) for n in item) if isinstance(item, tuple) else _tree(item)
                 for item in value]
    mark = node.start_mark  # type: ignore[attr-defined]
    return (node.tag, mark.line, mark.column, value)  # type: ignore[attr-defined]


SHIPPED_YAML = sorted({*ROOT.glob("rules/*.yaml"), *ROOT.glob("examples/**/*.yaml"),
                       *ROOT.glob("watcher/defaults/**/*.yaml"), *CONFIGS.glob("warn/*.yaml")})


@pytest.mark.parametrize("path", SHIPPED_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_libyaml_and_pyyaml_own_parser_compose_the_same_nodes(path: Path) -> None:
    from watcher import yamldoc

    if not yamldoc.yaml.__with_libyaml__:  # every PyYAML wheel has it; a source build may not
        pytest.skip("PyYAML without libyaml: only the Python reader exists, nothing to compare")
    text = path.read_text()
    trees = []
    for loader_class in (yamldoc._CLoader, yamldoc._PyLoader):
        loader = loader_class(text, path)
        try:
            trees.append(_tree(loader.get_single_node()))
        finally:
            loader.dispose()
    assert trees[0] == trees[1]
