"""The real command against a real loopback server: baseline, change, exit codes, output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import FakeOpenRouter, Reply, snapshot_path

ROOT = Path(__file__).parent.parent


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "watcher", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=cwd, check=False)


@pytest.fixture
def watch_config(write_config, fake_openrouter: FakeOpenRouter, tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: everything, on: [model_added, model_removed, price_changed, "
        "expiration_set], notify: [console]}\n")
    return write_config(f"""
state_dir: state
watches:
  - name: models
    url: {fake_openrouter.url}
    interval: 1m
    timeout: 5s
targets:
  console: console://
rules: [rules.yaml]
""")


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_once_records_a_baseline_then_reports_the_change(watch_config: Path,
                                                          fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([24])
    first = cli("once", "--config", str(watch_config), "--format", "json")
    assert first.returncode == 0, first.stderr
    assert first.stdout == ""  # a baseline emits no events

    fake_openrouter.set_script([25])
    second = cli("once", "--config", str(watch_config), "--format", "json")
    assert second.returncode == 0, second.stderr
    events = json_lines(second.stdout)
    assert {(e["type"], e["model"]) for e in events} == {
        ("expiration_set", "mistralai/devstral-2512:free"),
        ("field_changed", "mistralai/mistral-nemo"),
    }
    devstral = next(e for e in events if e["type"] == "expiration_set")
    assert devstral["new"] == "2026-01-27"
    assert devstral["watch"] == "models"
    assert set(devstral) >= {"watch", "type", "model", "field", "old", "new", "change_pct",
                             "detected_at"}

    # Nothing new: no events, still exit 0; the stored history has them all.
    third = cli("once", "--config", str(watch_config), "--format", "json")
    assert (third.returncode, third.stdout) == (0, "")
    history = cli("history", "--config", str(watch_config), "--format", "json",
                  "--type", "expiration_set")
    assert [e["model"] for e in json_lines(history.stdout)] == ["mistralai/devstral-2512:free"]
    text = cli("history", "--config", str(watch_config), "--model", "mistralai/*", "--since", "1d")
    assert "(mistralai/devstral-2512:free): expires 2026-01-27" in text.stdout
    assert "mistralai/mistral-nemo" in text.stdout


def test_once_text_output_is_for_people(watch_config: Path, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([10])
    assert "baseline recorded (353 models)" in cli("once", "--config", str(watch_config)).stdout
    fake_openrouter.set_script([11])
    out = cli("once", "--config", str(watch_config)).stdout
    assert "z-ai/glm-4.7): $0.40 -> $0.16 / 1M prompt tokens (-60%)" in out
    assert "models: 42 events (350 models)" in out


def test_failed_fetch_exits_1_and_keeps_the_baseline(watch_config: Path,
                                                     fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([24])
    assert cli("once", "--config", str(watch_config)).returncode == 0
    fake_openrouter.set_script([Reply(status=404, body=b"not here")])
    failed = cli("once", "--config", str(watch_config))
    assert failed.returncode == 1
    assert "models: FAILED:" in failed.stdout
    assert "HTTP 404" in failed.stdout
    assert "Traceback" not in failed.stderr
    fake_openrouter.set_script([Reply(body=b"<html><body>Bad gateway</body></html>")])
    html = cli("once", "--config", str(watch_config))
    assert html.returncode == 1
    assert "HTML, not JSON" in html.stdout
    # The baseline is untouched: the next good poll diffs against 024, not against junk.
    fake_openrouter.set_script([25])
    events = json_lines(cli("once", "--config", str(watch_config), "--format", "json").stdout)
    assert [e["type"] for e in events if e["type"] != "field_changed"] == ["expiration_set"]


def test_bearer_key_is_sent_to_models_user(write_config, fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([3])
    path = write_config(f"""
state_dir: state
watches:
  - name: mine
    url: {fake_openrouter.url}/user
    interval: 10m
    api_key_env: TEST_OPENROUTER_KEY
""")
    proc = cli("once", "--config", str(path), env={"TEST_OPENROUTER_KEY": "sk-or-v1-canary-1234"})
    assert proc.returncode == 0, proc.stderr
    assert fake_openrouter.requests[-1]["Authorization"] == "Bearer sk-or-v1-canary-1234"
    assert fake_openrouter.requests[-1]["User-Agent"].startswith("openrouter-watcher/")
    assert "canary" not in proc.stdout + proc.stderr


def test_diff_command_on_files(tmp_path: Path) -> None:
    proc = cli("diff", str(snapshot_path(24)), str(snapshot_path(25)), "--format", "json")
    assert proc.returncode == 0
    assert [e["type"] for e in json_lines(proc.stdout)].count("expiration_set") == 1
    assert cli("diff", str(snapshot_path(2)), str(snapshot_path(3))).stdout == ""
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"id": "a"}, {"id": "a"}]}')
    proc = cli("diff", str(bad), str(snapshot_path(3)))
    assert proc.returncode == 1
    assert "duplicate model id 'a'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_diff_with_rules_shows_routes(watch_config: Path) -> None:
    proc = cli("diff", str(snapshot_path(10)), str(snapshot_path(11)), "--rules",
               "--config", str(watch_config), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    events = json_lines(proc.stdout)
    prices = [e for e in events if e["type"] == "price_changed"]
    assert prices
    assert all(e["routes"] == [{"rule": "everything", "target": "console"}] for e in prices)
    assert all(e["routes"] == [] for e in events if e["type"] == "field_changed")


def test_diff_matched_shows_only_the_events_a_rule_sends(watch_config: Path) -> None:
    steps = (str(snapshot_path(10)), str(snapshot_path(11)))
    every = cli("diff", *steps, "--rules", "--config", str(watch_config))
    assert "-> nowhere" in every.stdout  # the field_changed events go nowhere
    matched = cli("diff", *steps, "--matched", "--config", str(watch_config))
    assert matched.returncode == 0, matched.stderr
    assert "-> nowhere" not in matched.stdout
    assert "field_changed" not in matched.stdout
    routed = every.stdout.count("-> console (rule everything)")
    assert routed > 0
    assert matched.stdout.count("-> console (rule everything)") == routed
    as_json = json_lines(cli("diff", *steps, "--rules", "--matched", "--config",
                             str(watch_config), "--format", "json").stdout)
    assert len(as_json) == routed
    assert all(e["routes"] for e in as_json)


def test_dry_run_shows_the_events_no_rule_matches(watch_config: Path,
                                                  fake_openrouter: FakeOpenRouter) -> None:
    fake_openrouter.set_script([24])
    assert cli("once", "--config", str(watch_config)).returncode == 0
    fake_openrouter.set_script([25])
    dry = cli("once", "--dry-run", "--config", str(watch_config))
    assert dry.returncode == 0, dry.stderr
    assert "  rule 'everything' -> console: Mistral: Devstral 2 2512 (free)" in dry.stdout
    assert ("  no rule -> nowhere: field_changed: Mistral: Mistral Nemo "
            "(mistralai/mistral-nemo)") in dry.stdout


def test_demo_runs_offline_and_shows_real_changes() -> None:
    proc = cli("demo")
    assert proc.returncode == 0, proc.stderr
    assert "baseline recorded (340 models)" in proc.stdout
    assert "Mistral: Devstral 2 2512 (free) (mistralai/devstral-2512:free): expires 2026-01-27" in proc.stdout
    assert "=== OpenRouter models: 1 expiring ===" in proc.stdout  # the console digest, delivered
    assert "(7 days left)" in proc.stdout  # the clock reads each snapshot's own time
    assert "11 of them match the default rules" in proc.stdout


def test_version_and_help() -> None:
    assert cli("--version").stdout.startswith("openrouter-watcher ")
    for command in ("run", "once", "check", "history", "diff", "demo"):
        proc = cli(command, "--help")
        assert proc.returncode == 0
        assert "usage: openrouter-watcher" in proc.stdout
    assert cli("nonsense").returncode == 2


def test_unusable_state_database_is_an_error_not_a_fresh_start(watch_config: Path) -> None:
    state = watch_config.parent / "state"
    state.mkdir()
    (state / "openrouter-watcher.sqlite3").write_bytes(b"this is not a database" * 100)
    proc = cli("once", "--config", str(watch_config))
    assert proc.returncode == 1
    assert "not treated as empty" in proc.stderr
    assert "Traceback" not in proc.stderr
