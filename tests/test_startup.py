"""The commands that only read start without the heavy libraries (aiohttp, Apprise, DeepDiff,
Jinja2): each runs in a fresh interpreter that reports, at its end, which of them it loaded.
How long start-up takes is measured by bench/startup.py, not asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes import FakeOpenRouter, snapshot_path
from tests.test_cli import cli

# The four heavy libraries, and two that cost ~40 ms each but only the commands that poll,
# send or log need: asyncio, and structlog (set up on the first log line, watcher.log).
# psycopg: only a PostgreSQL state loads it (watcher.pgstate), never a SQLite one.
HEAVY = ("aiohttp", "apprise", "deepdiff", "jinja2", "asyncio", "structlog", "psycopg")
# What reading the config and the state needs; `--help` (or a usage error) needs none of it.
PIPELINE = ("yaml", "orjson", "sqlite3", "watcher.config", "watcher.store")
# Runs the command as `python -m watcher` does, then prints its exit code and the heavy
# libraries loaded on a last line of its own.
PROBE = f"""
import sys
from watcher import cli
try:
    code = cli.run_command(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
sys.stdout.flush()
print("\\nexit", code, "loaded", *(m for m in {HEAVY + PIPELINE!r} if m in sys.modules))
"""


def probe(*args: str) -> tuple[str, int, set[str]]:
    """The output of ``openrouter-watcher ARGS``, its exit code, which of the heavy libraries
    and of the pipeline's modules it loaded."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=120, check=False)
    output, _, last = proc.stdout.rstrip("\n").rpartition("\n")
    words = last.split()
    assert words[:1] == ["exit"], proc.stdout + proc.stderr
    return output, int(words[1]), set(words[3:])


@pytest.fixture
def recorded(write_config, fake_openrouter: FakeOpenRouter, tmp_path: Path) -> Path:
    """A config and a state with a baseline, a changed poll and its events, made by `once`."""
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: everything, on: [expiration_set], notify: [console]}\n")
    config = write_config(f"""
state_dir: state
watches:
  - {{name: models, url: "{fake_openrouter.url}", interval: 1m, timeout: 5s}}
targets:
  console: console://
rules: [rules.yaml]
""")
    for step in (24, 25):
        fake_openrouter.set_script([step])
        once = cli("once", "--config", str(config))
        assert once.returncode == 0, once.stderr
    return config


@pytest.mark.parametrize(("args", "code", "shown"), [
    (("--help",), 0, "Watch the OpenRouter model catalogue"),
    (("history", "--help"), 0, "--since AGE"),
    (("statu",), 2, "invalid choice: 'statu'"),
    (("history", "--limit", "many"), 2, "invalid int value"),
])
def test_help_and_usage_errors_load_neither_the_libraries_nor_the_pipeline(
        args: tuple[str, ...], code: int, shown: str) -> None:
    output, exit_code, loaded = probe(*args)
    assert (exit_code, loaded) == (code, set())
    assert shown in output + _stderr_of(*args)


def _stderr_of(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "watcher", *args], capture_output=True,
                          text=True, timeout=60, check=False).stderr


DEVSTRAL = "mistralai/devstral-2512:free"  # its expiration date was set in step 25


@pytest.mark.parametrize(("args", "shown"), [
    (("status",), "watch models: last check"),
    (("status", "--format", "json"), '"models"'),
    (("history",), DEVSTRAL),
    (("history", "--format", "json"), DEVSTRAL),
    (("history", "--format", "csv", "--since", "7d"), DEVSTRAL),
    (("show", DEVSTRAL), DEVSTRAL),  # reads the usage too (watcher.usage, without aiohttp)
])
def test_reading_the_state_loads_none_of_the_heavy_libraries(recorded: Path, args: tuple[str, ...],
                                                              shown: str) -> None:
    output, code, loaded = probe(*args, "--config", str(recorded))
    assert (code, loaded & set(HEAVY)) == (0, set())
    assert shown in output  # the command did its work


def test_the_probe_sees_a_library_a_command_loads() -> None:
    # `diff` of two saved responses runs DeepDiff: the probe is not blind to lazy imports.
    output, code, heavy = probe("diff", str(snapshot_path(24)), str(snapshot_path(25)))
    assert code == 0
    assert "expiration_set" in output
    assert "deepdiff" in heavy  # (which imports asyncio itself)


def test_a_command_that_logs_sets_up_structlog_on_its_first_line(recorded: Path) -> None:
    # `once` polls (asyncio, aiohttp) and logs: the deferred set-up happens, and the
    # lines it writes are structlog's JSON lines (stderr is not a terminal here).
    proc = subprocess.run([sys.executable, "-m", "watcher", "once", "--config", str(recorded),
                           "--log-level", "debug"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, proc.stderr
    assert all(line.startswith("{") and '"event":' in line for line in lines), lines
