"""Hostile config files are rejected quickly, with flat memory and a clear message."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from watcher import config
from watcher.errors import ConfigError

LAUGHS = """\
watches:
  - {name: models, url: "http://127.0.0.1:1/m", interval: 10m}
rules:
  - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  - &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  - &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  - &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  - &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  - &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  - &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  - &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
  - &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
  - *i
"""


def test_billion_laughs_is_rejected_in_a_subprocess_with_flat_memory(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    code = (
        "import resource, sys, time\n"
        "from pathlib import Path\n"
        "from watcher import config\n"
        "from watcher.errors import ConfigError\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "start = time.process_time()\n"
        "try:\n"
        f"    config.load(Path({str(path)!r}))\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "print(time.process_time() - start)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    message, cpu_seconds, grown_kb = proc.stdout.splitlines()
    assert message.startswith(f"{path}:4: rules[0]: expected a string, got a list")  # line 4
    # Bounds, not timings: the node budget stops it long before 9**9 expansions.
    assert float(cpu_seconds) < 5
    assert int(grown_kb) < 50_000


def test_file_over_the_size_cap_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * (2 << 20))
    with pytest.raises(ConfigError, match="file is too large"):
        config.load(path)


def test_python_tags_are_not_constructed(tmp_path: Path) -> None:
    path = tmp_path / "tags.yaml"
    path.write_text("watches: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match=r"tags.yaml:1: watches: YAML tag .*python/object/apply:os.system. is not allowed"):
        config.load(path)
    assert not (tmp_path / "pwned").exists()
    assert not Path("pwned").exists()


def test_resource_module_is_available() -> None:
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_node_budget_stops_a_huge_but_well_shaped_file(tmp_path: Path, monkeypatch) -> None:
    from watcher import yamldoc

    monkeypatch.setattr(yamldoc, "MAX_NODES", 50)
    path = tmp_path / "many.yaml"
    path.write_text("watches:\n" + "".join(
        f"  - {{name: w{i}, url: 'http://127.0.0.1:1/m', interval: 10m}}\n" for i in range(20)))
    with pytest.raises(ConfigError, match="too many YAML nodes"):
        config.load(path)
