"""Issue 12's targets: a history of years, built through the store API, and what it costs.

    .venv/bin/python -m bench.history            # 100,000 changed polls, 1,000,000 checks
    .venv/bin/python -m bench.history --quick    # a tenth of everything: a minute or two

The history is written as the daemon writes it: a baseline of a 500-model catalogue of real
shape (tests/data's newest response, cloned under new ids as bench/catalogue.py does), then
changed polls (1-5 models' prices moved; some models change often, some rarely, a fifth
never) through ``Store.commit_cycle`` with the events ``diff`` + ``events`` make and one
alert per event, each then marked sent as the deliverer does; between them, unchanged
checks through ``Store.record_check``.  Poll times are spread over two years, seeded.

On it, in order: the bytes per changed poll and per unchanged check (used pages after a
WAL checkpoint, split by table with ``dbstat``); ``show MODEL``'s timeline built in this
process for models with many and few versions; p95 of 200 requests each of
``/api/models/{id}``, ``/models/{id}`` and ``/?limit=100`` to a real ``python -m watcher
run`` on a copy of the state; a prune with the default retention, each batch timed (the
daemon runs them on its loop: the longest is how long a poll may wait), and the size after
it and after ``vacuum``.  Then a schema-2 database with 10,000 distinct stored snapshots
(``tests/legacy.py``, as release 0.1.0 wrote them) is migrated by ``Store.open`` in a child
process: wall time and the child's peak RSS.  Last, ``bench.inmemory``'s changed real poll
with its commit against ``orjson.loads`` on the real steps.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import os
import platform
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from bench import inmemory
from bench.catalogue import clones_of, real_body, real_numbers, real_pair
from bench.daemon import LoopbackServer, free_port
from bench.run import CHANGED, RESULTS, SMALL, UNCHANGED, markdown, verdict
from bench.storage import used_bytes
from tests.legacy import write_schema2
from watcher.clock import iso
from watcher.config import Retention
from watcher.diff import diff
from watcher.events import change_key, events_from_changes
from watcher.snapshot import Snapshot, from_items
from watcher.store import DB_NAME, PACK_BATCH, Alert, Store
from watcher.timeline import timeline

WATCH = "models"
SCOPE = "openrouter.ai"
TARGET = "console"
START = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
YEAR = 365 * 86400.0
NEVER_CHANGE = 0.2  # the share of models whose price never moves
MIGRATE = ("import sys, pathlib; from watcher.store import Store; "
           "Store.open(pathlib.Path(sys.argv[1])).close()")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the polls, checks and migrated snapshots")
    parser.add_argument("--changed", type=int, default=100_000, help="changed polls (100,000)")
    parser.add_argument("--unchanged", type=int, default=1_000_000,
                        help="unchanged checks (1,000,000)")
    parser.add_argument("--models", type=int, default=500, help="catalogue size (500)")
    parser.add_argument("--years", type=float, default=2.0, help="time the polls span (2)")
    parser.add_argument("--snapshots", type=int, default=10_000,
                        help="stored snapshots of the schema-2 database to migrate (10,000)")
    parser.add_argument("--requests", type=int, default=200, help="requests per page (200)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--no-history", action="store_true",
                        help="skip the synthetic history (sizes, timelines, requests, prune)")
    parser.add_argument("--no-daemon", action="store_true", help="skip the requests to `run`")
    parser.add_argument("--no-migration", action="store_true", help="skip the schema-2 migration")
    parser.add_argument("--no-real", action="store_true", help="skip the real-step commit ratios")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/<time>.json)")
    parser.add_argument("--table", type=Path, metavar="JSON",
                        help="print the table of an earlier run's figures, and run nothing")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="build the history into DIR/state (with DIR/built.json) and keep it")
    parser.add_argument("--reuse", type=Path, metavar="DIR",
                        help="measure the history --keep built in DIR (a copy of it: DIR is "
                             "left as it is) instead of building one; a database of an older "
                             "schema is upgraded first, and the upgrade timed")
    args = parser.parse_args(argv)
    if args.quick:
        args.changed //= 10
        args.unchanged //= 10
        args.snapshots = max(1, args.snapshots // 10)
    return args


def catalogue(size: int) -> Snapshot:
    """The newest real response, cloned under new ids up to ``size`` models."""
    items = orjson.loads(real_body(real_numbers()[-1]))["data"]
    return from_items(items + clones_of(items, max(0, size - len(items))))


@dataclass
class Prices:
    """Which models' prices move, and to what: a seeded, skewed choice.

    A model's weight falls with its rank (the busiest changes ~10x as often as the
    quietest that changes at all) and a fifth of the models never change, so the history
    holds models with thousands of versions and models with one.
    """

    rnd: random.Random
    ids: list[str]

    def __post_init__(self) -> None:
        order = sorted(self.ids)
        self.rnd.shuffle(order)
        moving = order[:int(len(order) * (1 - NEVER_CHANGE))]
        self.moving = moving
        self.cum = list(itertools.accumulate(1 / (rank + 50) for rank in range(len(moving))))

    def pick(self) -> list[str]:
        want = self.rnd.randint(1, 5)
        chosen: set[str] = set()
        while len(chosen) < want:
            chosen.update(self.rnd.choices(self.moving, cum_weights=self.cum, k=want - len(chosen)))
        return sorted(chosen)

    def moved(self, item: dict[str, Any]) -> dict[str, Any]:
        """``item`` with its prompt or completion price moved, as a new object."""
        pricing = dict(item.get("pricing") or {})
        key = self.rnd.choice(("prompt", "completion"))
        while True:
            price = f"{self.rnd.randint(1, 200_000) * 1e-10:.10f}".rstrip("0")
            if pricing.get(key) != price:
                break
        pricing[key] = price
        return {**item, "pricing": pricing}


def changed_poll(old: Snapshot, prices: Prices) -> tuple[Snapshot, list[str]]:
    """``old`` with 1-5 models' prices moved, and which."""
    models = dict(old.models)
    chosen = prices.pick()
    for model in chosen:
        models[model] = prices.moved(models[model])
    new = Snapshot(models=models)
    # The unchanged models' bytes are those of ``old`` (the same objects): reuse them rather
    # than serialise 500 models per poll, which would only slow the build, not what is measured.
    fingerprints = dict(old.fingerprints)
    fingerprints.update({m: bytes(memoryview(orjson.dumps(models[m]))) for m in chosen})
    new.__dict__["fingerprints"] = fingerprints
    return new, chosen


def build(state_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Write the synthetic history into a fresh store in ``state_dir``."""
    rnd = random.Random(args.seed)
    current = catalogue(args.models)
    prices = Prices(random.Random(args.seed + 1), list(current.models))
    polls = args.changed + args.unchanged
    changed_at = set(rnd.sample(range(polls), args.changed))
    step = args.years * YEAR / (polls + 1)
    store = Store.open(state_dir)
    store.commit_cycle(WATCH, iso(START), current, "baseline", [], now=START)
    store.pack_versions()  # as `once`, or the daemon's first prune, does: its versions packed
    baseline_bytes = used_bytes(state_dir / DB_NAME)
    versions: Counter[str] = Counter(dict.fromkeys(current.models, 1))
    events_total = 0
    started = time.monotonic()
    timings = {"changed": 0.0, "unchanged": 0.0, "pack": 0.0}
    packs: list[float] = []  # the daily housekeeping's packing transactions, each timed
    pack_cpu: list[float] = []  # and their CPU time (this thread's): what contention leaves out
    packed = 0
    day = iso(START)[:10]
    done = 0
    for n in range(polls):
        now = START + (n + 1 + rnd.uniform(-0.4, 0.4)) * step
        at = iso(now)
        if at[:10] != day:  # a new UTC day: the daemon's daily prune packs the new versions
            day = at[:10]
            while True:
                t, c = time.perf_counter(), time.thread_time()
                count = store.pack_versions(PACK_BATCH)
                packs.append(time.perf_counter() - t)
                pack_cpu.append(time.thread_time() - c)
                store.checkpoint()  # as App.prune does between steps, in a worker thread
                packed += count
                if count < PACK_BATCH:
                    break
        if n not in changed_at:
            t = time.perf_counter()
            store.record_check(WATCH, at, "unchanged")
            timings["unchanged"] += time.perf_counter() - t
            continue
        new, chosen = changed_poll(current, prices)
        t = time.perf_counter()
        events = events_from_changes(diff(current, new), old=current, new=new, watch=WATCH,
                                     detected_at=at)
        alerts = [Alert(event=e, rule="prices", target=TARGET, scope=SCOPE,
                        change_key=change_key(SCOPE, e)) for e in events]
        store.commit_cycle(WATCH, at, new, "changed", events, alerts, now=now,
                           same_change_window=3 * step)
        # The deliverer: the due rows as messages, each sent, then marked so.
        groups, _ = store.groups([p.id for p in store.pending() if p.due_at <= now])
        for group in groups:
            store.mark_sent(group.rows, now)
        timings["changed"] += time.perf_counter() - t
        events_total += len(events)
        versions.update(chosen)
        current = new
        done += 1
        if done % max(1, args.changed // 10) == 0:
            _note(f"{done:,} of {args.changed:,} changed polls, {n + 1:,} of {polls:,} in all",
                  started)
    store.close()
    return {"changed_polls": args.changed, "unchanged_checks": args.unchanged,
            "models": args.models, "events": events_total, "baseline_bytes": baseline_bytes,
            "first_at": iso(START), "last_at": iso(START + polls * step), "end": START + (polls + 1) * step,
            "build_seconds": round(time.monotonic() - started, 1),
            "changed_poll_ms_mean": 1e3 * timings["changed"] / max(1, args.changed),
            "pack_us_per_version": 1e6 * sum(packs) / max(1, packed),
            "pack_longest_ms": 1e3 * max(packs, default=0.0), "versions_packed": packed,
            "pack_longest_cpu_ms": 1e3 * max(pack_cpu, default=0.0),
            "record_check_us_mean": 1e6 * timings["unchanged"] / max(1, args.unchanged),
            "versions": dict(versions), "last_digest": current.digest}


def _note(message: str, started: float) -> None:
    print(f"[{time.monotonic() - started:6.0f}s] {message}", file=sys.stderr, flush=True)


def sizes(db: Path, built: dict[str, Any]) -> dict[str, Any]:
    """Used bytes, by table, and per changed poll and unchanged check."""
    total = used_bytes(db)
    conn = sqlite3.connect(db)
    tables = dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"))
    (checks,) = conn.execute("SELECT COUNT(*) FROM checks").fetchone()
    conn.close()
    # Unchanged checks are rows of ``checks`` (and its index) like any other check: their
    # share of those pages is theirs, everything else belongs to the changed polls.
    unchanged = (tables["checks"] + tables["checks_watch"]) * built["unchanged_checks"] / checks
    changed = total - built["baseline_bytes"] - unchanged
    return {"used_bytes": total, "file_bytes": db.stat().st_size, "tables": tables,
            "per_unchanged_check": unchanged / max(1, built["unchanged_checks"]),
            "per_changed_poll": changed / max(1, built["changed_polls"]),
            "per_changed_poll_by_table": {
                name: size / built["changed_polls"] for name, size in tables.items()
                if name not in ("checks", "checks_watch")}}


def sample_models(versions: dict[str, int], count: int = 10) -> dict[str, list[str]]:
    """``count`` models with the most versions, as many with the fewest (of those that
    changed), as many spread in between, and half as many that never changed."""
    ranked = sorted(versions, key=lambda m: (-versions[m], m))
    moved = [m for m in ranked if versions[m] > 1]
    middle = moved[count:-count]
    return {"many": moved[:count], "middle": middle[::max(1, len(middle) // count)][:count],
            "few": moved[-count:], "never": [m for m in ranked if versions[m] == 1][:count // 2]}


def timelines(state_dir: Path, models: dict[str, list[str]], runs: int = 3) -> dict[str, Any]:
    """``show MODEL``'s work in this process: model_states + timeline, median of ``runs``;
    and the store's read (model_states) alone."""
    per_model: dict[str, float] = {}
    reads: dict[str, float] = {}
    with Store.open(state_dir, readonly=True) as store:
        for model in itertools.chain(*models.values()):
            whole, read = [], []
            for _ in range(runs):
                t = time.perf_counter()
                states = store.model_states(WATCH, model)
                read.append((time.perf_counter() - t) * 1e3)
                story = timeline(model, states, watch=WATCH)
                whole.append((time.perf_counter() - t) * 1e3)
            if story["first_seen"] is None:
                raise AssertionError(f"{model}: no timeline")
            per_model[model] = statistics.median(whole)
            reads[model] = statistics.median(read)
    values = list(per_model.values())
    return {"per_model_ms": per_model, "read_ms": reads, "median_ms": statistics.median(values),
            "p95_ms": p95(values), "max_ms": max(values),
            "groups": {g: statistics.median(per_model[m] for m in ms) for g, ms in models.items()},
            "read_groups": {g: statistics.median(reads[m] for m in ms) for g, ms in models.items()}}


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


class CatalogueServer(LoopbackServer):
    """Serves one catalogue at ``/api/v1/models``: the daemon's polls find nothing new."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    async def _models(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.body, content_type="application/json")

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/models", self._models)


def page_requests(history: Path, models: list[str], count: int, body: bytes) -> dict[str, Any]:
    """p95 of ``count`` requests per page to a real daemon on a copy of the history."""
    with tempfile.TemporaryDirectory(prefix="bench-history-run-") as tmp_name, \
            CatalogueServer(body) as server:
        tmp = Path(tmp_name)
        (tmp / "state").mkdir()
        shutil.copy(history, tmp / "state" / DB_NAME)
        port = free_port()
        config = tmp / "config.yaml"
        config.write_text(
            "state_dir: state\nlog_level: warning\ntargets:\n  console: console://\n"
            f"http:\n  listen: 127.0.0.1:{port}\nwatches:\n  - name: {WATCH}\n"
            f"    url: http://127.0.0.1:{server.port}/api/v1/models\n    interval: 1h\n")
        with (tmp / "stderr").open("wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", "watcher", "run", "--config",
                                     str(config)], stdout=subprocess.DEVNULL, stderr=err,
                                    stdin=subprocess.DEVNULL, cwd=tmp)
        try:
            conn = _wait_listening(port, proc, tmp / "stderr")
            paths = {
                "/api/models/{id}": [f"/api/models/{quote(models[i % len(models)], safe='/')}"
                                     for i in range(count)],
                "/models/{id}": [f"/models/{quote(models[i % len(models)], safe='/')}"
                                 for i in range(count)],
                "/?limit=100": ["/?limit=100"] * count,
            }
            out: dict[str, Any] = {}
            for name, urls in paths.items():
                samples = []
                for url in urls:
                    t = time.perf_counter()
                    conn.request("GET", url)
                    response = conn.getresponse()
                    response.read()
                    samples.append((time.perf_counter() - t) * 1e3)
                    if response.status != 200:
                        raise AssertionError(f"GET {url}: {response.status}")
                out[name] = {"requests": len(samples), "median_ms": statistics.median(samples),
                             "p95_ms": p95(samples), "max_ms": max(samples)}
            conn.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    return out


def _wait_listening(port: int, proc: subprocess.Popen[bytes], stderr: Path
                    ) -> http.client.HTTPConnection:
    deadline = time.monotonic() + 300  # it runs a quick_check of the whole database first
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}: {stderr.read_text()[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
        except OSError:
            conn.close()
            time.sleep(0.2)
            continue
        return conn
    raise RuntimeError("the daemon did not listen within 300 s")


def prune(state_dir: Path, end: float) -> dict[str, Any]:
    """The default retention at the end of the history: every batch (generator step) timed,
    the write-ahead log checkpointed between them as the daemon does (off its loop)."""
    db = state_dir / DB_NAME
    store = Store.open(state_dir)
    steps: list[float] = []
    cpu: list[float] = []  # each step's CPU time (this thread's): what contention leaves out
    kinds: list[str] = []  # what each step removed
    before: dict[str, int] = {}
    started = time.perf_counter()
    batches = store.prune(Retention(), end)
    while True:
        t, c = time.perf_counter(), time.thread_time()
        pruned = next(batches, None)
        steps.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.thread_time() - c) * 1e3)
        if pruned is None:
            break
        store.checkpoint()  # as App.prune does between steps, in a worker thread: not timed
        now = dict(vars(pruned))  # the generator yields one object, updated
        kinds.append(",".join(k for k, v in now.items() if v != before.get(k, 0)) or "none")
        before = now
    total = time.perf_counter() - started
    longest = sorted(range(len(kinds)), key=lambda i: -steps[i])[:5]
    store.close()
    after = used_bytes(db)
    store = Store.open(state_dir)
    t = time.perf_counter()
    before_file, after_file = store.vacuum()
    vacuum_s = time.perf_counter() - t
    store.close()
    return {"batches": len(steps) - 1, "seconds": round(total, 2),
            "longest_batch_ms": max(steps), "median_batch_ms": statistics.median(steps),
            "longest_batch_cpu_ms": max(cpu),
            "longest": [{"ms": steps[i], "cpu_ms": cpu[i], "step": i, "removed": kinds[i]}
                        for i in longest],
            "removed": before, "used_bytes_after": after, "file_bytes_before_vacuum": before_file,
            "file_bytes_after_vacuum": after_file, "vacuum_seconds": round(vacuum_s, 1)}


def legacy_history(count: int, models: int, seed: int) -> Iterator[tuple[str, str, Snapshot]]:
    """``count`` distinct snapshots, 1-5 models' prices moved between each, hourly."""
    current = catalogue(models)
    prices = Prices(random.Random(seed), list(current.models))
    for n in range(count):
        yield WATCH, iso(START + n * 3600.0), current
        current, _ = changed_poll(current, prices)


def migration(count: int, models: int, seed: int) -> dict[str, Any]:
    """Write a schema-2 database of ``count`` snapshots and time ``Store.open`` migrating it."""
    with tempfile.TemporaryDirectory(prefix="bench-history-migrate-") as tmp_name:
        state_dir = Path(tmp_name) / "state"
        t = time.perf_counter()
        digests = []

        def recorded() -> Iterator[tuple[str, str, Snapshot]]:
            for watch, at, snap in legacy_history(count, models, seed):
                digests.append(snap.digest)
                yield watch, at, snap

        path = write_schema2(state_dir, recorded())
        written = time.perf_counter() - t
        size = path.stat().st_size
        t = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", MIGRATE, str(state_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t
        if proc.returncode:
            raise RuntimeError(f"the migration exited with {proc.returncode}")
        with Store.open(state_dir, readonly=True) as store:
            stored = store.stored_snapshots(WATCH)
            latest = store.latest_snapshot(WATCH)
        if [d for _, _, d in stored] != digests or latest is None or latest.digest != digests[-1]:
            raise AssertionError("the migrated history differs from the one written")
        return {"snapshots": count, "models": models, "write_seconds": round(written, 1),
                "schema2_bytes": size, "migrated_bytes": used_bytes(path),
                "seconds": round(seconds, 1), "peak_rss_mb": usage.ru_maxrss / 1024}


def real_steps(quick: bool) -> dict[str, Any]:
    """bench.inmemory on the real steps: the cycle and the cycle with its commit vs loads."""
    rules = inmemory.load_rules()
    pairs = list(itertools.pairwise(real_numbers()))
    if quick:
        pairs = [CHANGED, SMALL, UNCHANGED]
    rows = [inmemory.measure_pair(real_pair(a, b), rules, budget=0.3, baselines=False)
            for a, b in pairs]
    changed = [r for r in rows if r["outcome"] == "changed"]
    unchanged = [r for r in rows if r["outcome"] == "unchanged"]

    def ratio(rs: list[dict[str, Any]], key: str) -> float:
        return sum(r[key] for r in rs) / sum(r["loads_ms"] for r in rs)

    return {"steps": rows, "changed_steps": len(changed),
            "commit_vs_loads_changed_all": ratio(changed, "cycle_commit_ms"),
            "commit_vs_loads_changed_worst": max(r["cycle_commit_ms"] / r["loads_ms"]
                                                 for r in changed),
            "cycle_vs_loads_changed_all": ratio(changed, "cycle_ms"),
            "commit_vs_loads_unchanged_all": ratio(unchanged, "cycle_commit_ms"),
            "cycle_vs_loads_unchanged_all": ratio(unchanged, "cycle_ms")}


def history(args: argparse.Namespace, result: dict[str, Any], done: Callable[[str], None]
            ) -> None:
    """Build the synthetic history (or take the one --reuse names), then measure its sizes,
    timelines, pages and prune."""
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp_name:
        state_dir = Path(tmp_name) / "state"
        if args.reuse:
            built = orjson.loads((args.reuse / "built.json").read_bytes())
            shutil.copytree(args.reuse / "state", state_dir)
            result["upgrade"] = upgrade(state_dir)
        else:
            if args.keep:
                state_dir = args.keep / "state"
            built = build(state_dir, args)
            if args.keep:
                (args.keep / "built.json").write_bytes(orjson.dumps(built))
        measure(args, built, state_dir, result, done)


def upgrade(state_dir: Path) -> dict[str, Any]:
    """Open ``state_dir`` as the daemon does (upgrading an older schema) in a child process:
    wall time and the child's peak RSS."""
    (version,) = sqlite3.connect(state_dir / DB_NAME).execute("PRAGMA user_version").fetchone()
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", MIGRATE, str(state_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"opening {state_dir} failed")
    return {"from_schema": version, "seconds": round(time.perf_counter() - t, 1),
            "peak_rss_mb": usage.ru_maxrss / 1024}


def measure(args: argparse.Namespace, built: dict[str, Any], state_dir: Path,
            result: dict[str, Any], done: Callable[[str], None]) -> None:
    result["history"] = {k: v for k, v in built.items() if k not in ("versions", "end")}
    counts = sorted(built["versions"].values())
    result["history"]["versions_per_model"] = {"min": counts[0], "median": counts[len(counts) // 2],
                                               "max": counts[-1]}
    db = state_dir / DB_NAME
    result["size"] = sizes(db, built)
    models = sample_models(built["versions"])
    result["sampled"] = {g: {m: built["versions"][m] for m in ms} for g, ms in models.items()}
    done("history and sizes")
    result["timeline"] = timelines(state_dir, models)
    done("timelines")
    with Store.open(state_dir, readonly=True) as store:
        loads = []
        for _ in range(5):  # what a daemon reads at start for its first diff
            t = time.perf_counter()
            latest = store.latest_snapshot(WATCH)
            loads.append((time.perf_counter() - t) * 1e3)
    if latest is None:
        raise AssertionError("no baseline")
    result["baseline_load_ms"] = statistics.median(loads)
    if not args.no_daemon:
        result["requests"] = page_requests(db, list(itertools.chain(*models.values())),
                                           args.requests, latest.encode())
        done("requests")
    if args.keep:  # the kept history stays as built: prune a copy
        with tempfile.TemporaryDirectory(prefix="bench-history-prune-") as tmp_name:
            shutil.copytree(state_dir, Path(tmp_name) / "state")
            result["prune"] = prune(Path(tmp_name) / "state", built["end"])
    else:
        result["prune"] = prune(state_dir, built["end"])
    done("prune and vacuum")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.table:
        print(table(orjson.loads(args.table.read_bytes())))
        return
    started = time.monotonic()
    result: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": sys.version.split()[0], "machine": platform.machine(),
        "platform": platform.platform(), "cpus": os.cpu_count(), "sqlite": sqlite3.sqlite_version,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    out = args.out or RESULTS / f"history-{result['when'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def done(what: str) -> None:
        # Written after every part: a long run stopped early still leaves its figures.
        result["seconds"] = round(time.monotonic() - started, 1)
        out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        _note(f"{what} done", started)

    if not args.no_history:
        history(args, result, done)
    if not args.no_migration:
        result["migration"] = migration(args.snapshots, args.models, args.seed)
        done("migration")
    if not args.no_real:
        result["real"] = real_steps(args.quick)
        done("real steps")
    print(table(result))
    print(f"\nfigures written to {out}")


def table(result: dict[str, Any]) -> str:
    """The figures the targets speak of, each with its verdict."""
    rows: list[tuple[str, str, str, str]] = []

    def add(what: str, value: str, target: str = "", met: bool | None = None) -> None:
        rows.append((what, value, target, verdict(met) if target else ""))

    def ms(v: float) -> str:
        return f"{v:,.1f} ms" if v < 100 else f"{v:,.0f} ms"

    if "history" in result:
        _history_rows(result, add, ms)
    _later_rows(result, add)
    return markdown(("measurement", "figure", "target", ""), rows)


Add = Callable[..., None]


def _history_rows(result: dict[str, Any], add: Add, ms: Callable[[float], str]) -> None:
    h, size = result["history"], result["size"]
    per_model = h["versions_per_model"]
    if "upgrade" in result:
        u = result["upgrade"]
        add(f"A history kept by an earlier run (schema {u['from_schema']}), upgraded by `Store.open` "
            f"in a child process: {u['seconds']:,.1f} s, peak RSS {u['peak_rss_mb']:.0f} MB", "")
    add(f"History: {h['changed_polls']:,} changed polls + {h['unchanged_checks']:,} unchanged "
        f"checks, {h['models']} models, {h['first_at'][:10]} .. {h['last_at'][:10]}", "")
    add(f"  {h['events']:,} events, one alert each, sent; versions per model "
        f"{per_model['min']}-{per_model['max']:,} (median {per_model['median']:,})", "")
    add("  database, used pages after a WAL checkpoint", f"{size['used_bytes'] / 1e6:,.0f} MB")
    add("  per changed poll (average: all it writes, its check included)",
        f"{size['per_changed_poll'] / 1e3:.2f} KB", "<= 6 KB", size["per_changed_poll"] <= 6000)
    top = sorted(size["per_changed_poll_by_table"].items(), key=lambda kv: -kv[1])[:6]
    add("    of it: " + ", ".join(f"{name} {b / 1e3:.2f} KB" for name, b in top[:4]), "")
    add("  per unchanged check", f"{size['per_unchanged_check']:.0f} B", "<= 100 B",
        size["per_unchanged_check"] <= 100)
    if "pack_us_per_version" in h:
        add(f"  daily packing of the day's new versions ({h['versions_packed']:,} in all): "
            f"{h['pack_us_per_version']:.0f} us a version; longest transaction",
            ms(h["pack_longest_ms"]), "<= 50 ms", h["pack_longest_ms"] <= 50)
        if "pack_longest_cpu_ms" in h:
            add("    the most CPU time one transaction took (wall beyond it: waiting for the disk or a core)",
                ms(h["pack_longest_cpu_ms"]))
    p = result.get("prune")
    if p is None:
        return
    removed = p["removed"]
    add(f"  after `prune` (default retention: {removed['unchanged_checks']:,} checks, "
        f"{removed['messages']:,} messages gone)", f"{p['used_bytes_after'] / 1e6:,.0f} MB")
    add("  after `vacuum` (file size)", f"{p['file_bytes_after_vacuum'] / 1e6:,.0f} MB")
    add(f"  prune: {p['batches']:,} batches in {p['seconds']:,.1f} s, longest batch "
        f"(median {p['median_batch_ms']:.1f} ms)", ms(p["longest_batch_ms"]), "<= 50 ms",
        p["longest_batch_ms"] <= 50)
    if "longest_batch_cpu_ms" in p:
        add("    the most CPU time one batch took (wall beyond it: waiting for the disk or a core)",
            ms(p["longest_batch_cpu_ms"]))
    t = result["timeline"]
    sampled = result["sampled"]
    if "baseline_load_ms" in result:
        add("The latest snapshot of the watch (the next diff's baseline), read from its open "
            "spans", ms(result["baseline_load_ms"]))
    add(f"`show MODEL` timeline in-process, {len(t['per_model_ms'])} models: median", ms(t["median_ms"]))
    add("  p95", ms(t["p95_ms"]), "<= 50 ms", t["p95_ms"] <= 50)
    for group, label in (("many", "with the most versions"), ("middle", "in between"),
                         ("few", "with the fewest versions"), ("never", "never changed")):
        counts = list(sampled[group].values())
        read = f", of it model_states {ms(t['read_groups'][group])}" if "read_groups" in t else ""
        add(f"  median of the {len(counts)} {label} ({min(counts):,}-{max(counts):,} versions{read})",
            ms(t["groups"][group]))
    add(f"  slowest ({max(sampled['many'].values()):,} versions)", ms(t["max_ms"]))
    if "requests" in result:
        add("Running daemon, p95 of sequential requests (the same models)", "")
        for name, r in result["requests"].items():
            add(f"  {name} ({r['requests']} requests, median {ms(r['median_ms'])})",
                ms(r["p95_ms"]), "<= 50 ms", r["p95_ms"] <= 50)


def _later_rows(result: dict[str, Any], add: Add) -> None:
    if "migration" in result:
        m = result["migration"]
        add(f"Migration of a schema-2 database: {m['snapshots']:,} snapshots of {m['models']} "
            f"models, {m['schema2_bytes'] / 1e6:,.0f} MB -> {m['migrated_bytes'] / 1e6:,.0f} MB", "")
        add("  wall time (`Store.open` in a child process)", f"{m['seconds']:,.1f} s", "<= 2 min",
            m["seconds"] <= 120)
        add("  peak RSS of the child", f"{m['peak_rss_mb']:.0f} MB", "<= 150 MB",
            m["peak_rss_mb"] <= 150)
    if "real" in result:
        r = result["real"]
        add(f"Real steps (bench.inmemory), {r['changed_steps']} changed: cycle + SQLite commit "
            "vs orjson.loads, sum of medians", f"{r['commit_vs_loads_changed_all']:.2f}x", "<= 5x",
            r["commit_vs_loads_changed_all"] <= 5)
        add("  worst single changed step", f"{r['commit_vs_loads_changed_worst']:.2f}x", "<= 5x",
            r["commit_vs_loads_changed_worst"] <= 5)
        add("  in-memory cycle alone vs loads (changed)", f"{r['cycle_vs_loads_changed_all']:.2f}x")
        add("  the commit's share (cycle + commit, less the cycle) vs loads",
            f"{r['commit_vs_loads_changed_all'] - r['cycle_vs_loads_changed_all']:.2f}x")
        add("  unchanged step: cycle, and with its commit, vs loads",
            f"{r['cycle_vs_loads_unchanged_all']:.2f}x, {r['commit_vs_loads_unchanged_all']:.2f}x")


if __name__ == "__main__":
    main()
