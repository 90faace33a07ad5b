"""Issue 13's start-up target: ``--help``, ``status`` and ``history`` within 0.2 s of a bare
interpreter.

    .venv/bin/python -m bench.startup             # 21 runs of each command: ~30 s
    .venv/bin/python -m bench.startup --runs 5

A small state database is made first, through the real command: ``once`` three times
against a loopback server replaying real responses of tests/data (a baseline and two
changed polls, their events and their console notifications).  Then each command runs
``--runs`` times in a fresh interpreter, the commands taking turns so that a busy machine
slows them alike.  The figures are medians of the child's wall time and of its CPU time
(user + system: less moved by other work on the machine), each against ``python -c pass``
measured the same way.  The children cache their bytecode in the temporary directory
(``PYTHONPYCACHEPREFIX``), as an installed package has it: without a cache (with
``PYTHONDONTWRITEBYTECODE`` set) the watcher's own modules compile on every start, which
costs more than all of the imports.  One more run of each, under a probe that reports at its end, gives
which of the heavy libraries (aiohttp, Apprise, DeepDiff, Jinja2) it loaded and its peak
RSS (``VmHWM``: the child's own, not the bench process it was forked from).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.daemon import ROOT, ReplayServer

HEAVY = ("aiohttp", "apprise", "deepdiff", "jinja2")
TARGET = 0.2  # seconds beyond `python -c pass`
WATCHER = ("-m", "watcher")
# Runs a command as `python -m watcher` would, then prints (to stderr, after its own
# output) the heavy libraries loaded and the peak RSS in kB.
PROBE = f"""
import sys
from pathlib import Path
if sys.argv[1:3] == ["-m", "watcher"]:
    from watcher import cli
    try:
        cli.run_command(sys.argv[3:])
    except SystemExit:
        pass
heavy = ",".join(m for m in {HEAVY!r} if m in sys.modules) or "-"
peak = [l.split()[1] for l in Path("/proc/self/status").read_text().splitlines()
        if l.startswith("VmHWM:")][0]
print(heavy, peak, file=sys.stderr)
"""


def commands(config: Path) -> list[tuple[str, list[str], bool]]:
    """(label, arguments after ``python``, whether the target applies); the floor first."""
    at = ["--config", str(config)]
    return [
        ("python -c pass", ["-c", "pass"], False),
        ("openrouter-watcher --help", [*WATCHER, "--help"], True),
        ("openrouter-watcher status", [*WATCHER, "status", *at], True),
        ("openrouter-watcher history", [*WATCHER, "history", *at], True),
        ("openrouter-watcher check (may load Apprise)", [*WATCHER, "check", *at], False),
    ]


def child_env(tmp: Path) -> dict[str, str]:
    """This environment, without a config of its own, caching bytecode under ``tmp``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("OPENROUTER_WATCHER") and k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(tmp / "pycache")}


def make_state(tmp: Path, server: ReplayServer, env: dict[str, str]) -> Path:
    """A config and a state database made by three real ``once`` runs."""
    shutil.copy(ROOT / "rules" / "default.yaml", tmp / "default.yaml")
    config = tmp / "config.yaml"
    config.write_text("state_dir: state\ntargets:\n  console: console://\n"
                      "rules: [default.yaml]\n"
                      f"watches:\n  - name: w1\n    url: {server.url('w1')}\n    interval: 1m\n")
    for _ in range(3):
        subprocess.run([sys.executable, *WATCHER, "once", "--config", str(config)],
                       check=True, capture_output=True, env=env, timeout=120)
    return config


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one child ``python ARGS``."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"python {' '.join(args)} exited {child.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime


def probed(args: list[str], env: dict[str, str]) -> tuple[str, float]:
    """The heavy libraries ``python ARGS`` has loaded when it ends ("-" for none), and its
    peak RSS in MB."""
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True,
                          text=True, env=env, timeout=60, check=True)
    heavy, peak_kb = proc.stderr.strip().splitlines()[-1].split()
    return heavy, int(peak_kb) / 1024


@dataclass
class Row:
    command: str
    wall: float         # median seconds
    cpu: float          # median CPU seconds
    beyond: float       # wall seconds more than `python -c pass`
    cpu_beyond: float   # CPU seconds more than `python -c pass`
    rss: float          # peak MB
    heavy: str          # the heavy libraries it loaded
    target: str         # met, MISSED, or "" where the target does not apply


def measure(runs: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as name, \
            ReplayServer(repeats=1) as server:
        env = child_env(Path(name))
        rows = commands(make_state(Path(name), server, env))
        for _, args, _ in rows:  # warm: bytecode written, files in the page cache
            timed(args, env)
        samples: list[list[tuple[float, float]]] = [[] for _ in rows]
        for _ in range(runs):
            for index, (_, args, _) in enumerate(rows):
                samples[index].append(timed(args, env))
        probes = [probed(args, env) for _, args, _ in rows]
    walls = [statistics.median(w for w, _ in taken) for taken in samples]
    cpus = [statistics.median(c for _, c in taken) for taken in samples]
    out = []
    for (label, _, held), wall, cpu, (heavy, rss) in zip(rows, walls, cpus, probes, strict=True):
        met = "met" if wall - walls[0] <= TARGET else "MISSED"
        out.append(Row(command=label, wall=wall, cpu=cpu, beyond=wall - walls[0],
                       cpu_beyond=cpu - cpus[0], rss=rss, heavy=heavy, target=met if held else ""))
    return out


def table(rows: list[Row]) -> str:
    head = ("command", "wall", "beyond `python -c pass`", "CPU", "beyond", "peak RSS",
            "heavy libraries loaded", f"<= {TARGET * 1000:.0f} ms beyond")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        beyond, cpu_beyond = (("", "") if row is rows[0] else
                              (f"{row.beyond * 1000:+.0f} ms", f"{row.cpu_beyond * 1000:+.0f} ms"))
        lines.append(f"| `{row.command}` | {row.wall * 1000:.0f} ms | {beyond} | "
                     f"{row.cpu * 1000:.0f} ms | {cpu_beyond} | {row.rss:.0f} MB | "
                     f"{row.heavy} | {row.target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21, help="runs of each command (21)")
    args = parser.parse_args(argv)
    rows = measure(args.runs)
    print(f"{args.runs} runs each, medians; Python {platform.python_version()}, "
          f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores")
    print(table(rows))


if __name__ == "__main__":
    main()
