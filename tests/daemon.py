"""Run the real daemon as a subprocess, as systemd or Docker would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


class Daemon:
    """``python -m watcher run`` with its stdout and stderr captured to files."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None,
                 log_level: str = "info") -> None:
        self.config = config
        self.env = {**os.environ, **(env or {})}
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None
        self.stdout = config.parent / "daemon.stdout"
        self.stderr = config.parent / "daemon.stderr"
        self._log_offset = 0

    def start(self) -> Daemon:
        self._log_offset = self.stderr.stat().st_size if self.stderr.exists() else 0
        with self.stdout.open("ab") as out, self.stderr.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "watcher", "run", "--config", str(self.config),
                 "--log-level", self.log_level],
                stdout=out, stderr=err, env=self.env, stdin=subprocess.DEVNULL)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def wait_started(self, timeout: float = 30) -> None:
        """Until this process logged ``daemon.started`` (its signal handlers are in place)."""
        wait_for(lambda: "daemon.started" in self.logs()[self._log_offset:], timeout,
                 what="daemon.started")

    def logs(self) -> str:
        return self.stderr.read_text() if self.stderr.exists() else ""

    def output(self) -> str:
        return self.stdout.read_text() if self.stdout.exists() else ""


def wait_for(condition: Callable[[], object], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
