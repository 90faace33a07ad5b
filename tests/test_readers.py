"""Commands that only read the state leave no file behind and work on a read-only directory
(root reading a DynamicUser service's state must leave nothing the service cannot write)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeOpenRouter
from tests.test_cli import cli

NOBODY = 65534
READERS = (["status"], ["history"], ["show", "mistralai/devstral-2512:free"],
           ["once", "--dry-run"], ["check"])


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can read (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="orw-readers-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for item in (path, *path.rglob("*")):
            item.chmod(0o755)
        shutil.rmtree(path)


def service_state(directory: Path, server: FakeOpenRouter) -> Path:
    """A config, and the state its service left after two polls and a clean stop."""
    config = directory / "config.yaml"
    (directory / "rules.yaml").write_text(
        "rules:\n  - {name: all, on: [expiration_set, model_added], notify: [console]}\n")
    config.write_text(f"state_dir: state\nwatches:\n  - {{name: models, url: '{server.url}', "
                      "interval: 10m}\ntargets: {console: 'console://'}\nrules: [rules.yaml]\n")
    for step in (24, 25):
        server.set_script([step])
        assert cli("once", "--config", str(config)).returncode == 0
    for item in (directory, *directory.rglob("*")):
        item.chmod(0o755 if item.is_dir() else 0o644)
    return config


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_read_only_commands_leave_no_file_behind(shared_dir: Path,
                                                 fake_openrouter: FakeOpenRouter) -> None:
    config = service_state(shared_dir, fake_openrouter)
    before = listing(shared_dir / "state")
    assert not [name for name in before if name.endswith(("-wal", "-shm"))]
    for args in READERS:
        proc = cli(*args, "--config", str(config))
        assert proc.returncode == 0, (args, proc.stderr)
        assert listing(shared_dir / "state") == before, args
    history = cli("history", "--config", str(config)).stdout
    assert "mistralai/devstral-2512:free" in history


def test_read_only_commands_work_on_a_read_only_state_directory(
        shared_dir: Path, fake_openrouter: FakeOpenRouter) -> None:
    config = service_state(shared_dir, fake_openrouter)
    state = shared_dir / "state"
    for item in state.iterdir():
        item.chmod(0o444)
    state.chmod(0o555)
    # Root may write anywhere: the readers then run as another user, as a person would.
    prefix = (["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
              if os.geteuid() == 0 else [])
    for args in READERS:
        proc = subprocess.run([*prefix, sys.executable, "-m", "watcher", *args,
                               "--config", str(config)], capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        if args == ["history"]:
            assert "expires 2026-01-27" in proc.stdout
