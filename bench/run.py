"""Run every benchmark of issue 6 once, print a table of medians and ratios, write JSON.

    .venv/bin/python -m bench                 # everything, ~10 minutes on 2 cores
    .venv/bin/python -m bench --quick         # no 50,000-model DeepDiff, a 200-cycle daemon

Ratios compare figures measured in this run only (no absolute thresholds): the cycle
against ``orjson.loads`` of the same bytes, DeepDiff against the cycle on the same pair.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import daemon, inmemory, storage
from bench.catalogue import real_numbers, real_pair, reshuffled_pair, synthetic_pairs

RESULTS = Path(__file__).resolve().parent / "results"
CHANGED, SMALL, UNCHANGED = (10, 11), (24, 25), (2, 3)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="skip DeepDiff at 50,000 models and run a 200-cycle daemon")
    parser.add_argument("--sizes", default="5000,50000", help="synthetic catalogue sizes")
    parser.add_argument("--budget", type=float, default=0.6,
                        help="seconds of timing per real pair (default 0.6)")
    parser.add_argument("--cycles", type=int, default=1000, help="daemon cycles (default 1000)")
    parser.add_argument("--watches", type=int, default=5,
                        help="watches polling the loopback server every 1 s (default 5)")
    parser.add_argument("--no-daemon", action="store_true", help="skip the daemon RSS run")
    parser.add_argument("--out", type=Path, help="JSON file (default bench/results/<time>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.cycles = min(args.cycles, 200)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    rules = inmemory.load_rules()
    result: dict[str, Any] = {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": sys.version.split()[0], "machine": platform.machine(),
        "platform": platform.platform(), "orjson": orjson.__version__,
    }

    numbers = real_numbers()
    steps = []
    for a, b in itertools.pairwise(numbers):
        # DeepDiff on every step once, three times on the pairs the table shows.
        runs = 3 if (a, b) in (CHANGED, SMALL, UNCHANGED) else 1
        steps.append(inmemory.measure_pair(real_pair(a, b), rules, budget=args.budget,
                                           baselines=True, baseline_runs=runs))
        _progress(steps[-1], started)
    result["real"] = steps
    # Every real response against itself in another order: the most common poll, 40 times.
    result["reshuffled"] = []
    for n in numbers:
        result["reshuffled"].append(inmemory.measure_pair(
            reshuffled_pair(n), rules, budget=args.budget / 2, baselines=False, commit_runs=5))
    _progress(result["reshuffled"][-1], started)

    synthetic = []
    sizes = [int(s) for s in args.sizes.split(",") if s]
    for size in sizes:
        for pair in synthetic_pairs(size):
            baselines = not (args.quick and size > 10_000)
            synthetic.append(inmemory.measure_pair(pair, rules, budget=max(args.budget, 3.0),
                                                   baselines=baselines, commit_runs=3))
            _progress(synthetic[-1], started)
            del pair
            gc.collect()
    result["synthetic"] = synthetic

    result["storage"] = storage.measure(synthetic=tuple(
        p for p in synthetic_pairs(min(sizes)) if p.changed) if sizes else ())
    print(f"[{time.monotonic() - started:6.0f}s] storage done", file=sys.stderr)

    if not args.no_daemon:
        result["daemon"] = daemon.measure(cycles=args.cycles, watches=args.watches)
        print(f"[{time.monotonic() - started:6.0f}s] daemon done", file=sys.stderr)

    result["summary"] = summarise(result)
    result["seconds"] = round(time.monotonic() - started, 1)
    print(table(result))
    out = args.out or RESULTS / f"{result['when'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"\nfigures written to {out}")


def _progress(row: dict[str, Any], started: float) -> None:
    print(f"[{time.monotonic() - started:6.0f}s] {row['pair']}: cycle {row['cycle_ms']:.2f} ms, "
          f"loads {row['loads_ms']:.2f} ms", file=sys.stderr)


def _pair(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(r for r in rows if r["pair"] == name)


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """The figures the targets speak of, each with its ratio and verdict."""
    real = result["real"]
    changed = [r for r in real if r["outcome"] == "changed"]
    unchanged = [r for r in real if r["outcome"] == "unchanged"]
    s: dict[str, Any] = {}

    def ratio(rows: list[dict[str, Any]], key: str) -> float:
        return sum(r[key] for r in rows) / sum(r["loads_ms"] for r in rows)

    s["cycle_vs_loads_changed_all"] = ratio(changed, "cycle_ms")
    s["cycle_vs_loads_changed_worst"] = max(r["cycle_ms"] / r["loads_ms"] for r in changed)
    s["cycle_vs_loads_unchanged_all"] = ratio(unchanged, "cycle_ms") if unchanged else None
    shuffled = result["reshuffled"]
    s["cycle_vs_loads_reshuffled_all"] = ratio(shuffled, "cycle_ms")
    s["cycle_vs_loads_reshuffled_worst"] = max(r["cycle_ms"] / r["loads_ms"] for r in shuffled)
    s["cycle_commit_vs_loads_reshuffled_all"] = ratio(shuffled, "cycle_commit_ms")
    s["cycle_commit_vs_loads_changed_all"] = ratio(changed, "cycle_commit_ms")
    s["parse_vs_loads_all"] = ratio(real, "parse_ms")
    speedups = {}
    for row in [*real, *result["synthetic"]]:
        if "deepdiff_ms" in row:
            speedups[row["pair"]] = {"ignore_order": row["deepdiff_ms"] / row["cycle_ms"],
                                     "keyed": row["deepdiff_keyed_ms"] / row["cycle_ms"]}
    s["deepdiff_speedups"] = speedups
    for key in ("deepdiff", "deepdiff_keyed"):
        s[f"{key}_vs_cycle_real_all"] = (sum(r[f"{key}_ms"] for r in real)
                                         / sum(r["cycle_ms"] for r in real))
        s[f"{key}_vs_cycle_real_worst"] = min(r[f"{key}_ms"] / r["cycle_ms"] for r in real)
    per_model = {}
    for kind in ("changed", "unchanged"):
        rows = sorted((r for r in result["synthetic"] if r["pair"].endswith(f" {kind}")),
                      key=lambda r: r["models"])
        if len(rows) >= 2:
            small, large = rows[0], rows[-1]
            per_model[kind] = {
                "sizes": [small["models"], large["models"]],
                "cycle_us_per_model": [1e3 * r["cycle_ms"] / r["models"] for r in (small, large)],
                "loads_us_per_model": [1e3 * r["loads_ms"] / r["models"] for r in (small, large)],
                "cycle_growth": (large["cycle_ms"] / large["models"])
                / (small["cycle_ms"] / small["models"]),
                "loads_growth": (large["loads_ms"] / large["models"])
                / (small["loads_ms"] / small["models"]),
            }
    s["per_model"] = per_model
    return s


def verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "MISSED")


def table(result: dict[str, Any]) -> str:
    s, real, syn = result["summary"], result["real"], result["synthetic"]
    ch = _pair(real, f"real {CHANGED[0]:03d}->{CHANGED[1]:03d}")
    sm = _pair(real, f"real {SMALL[0]:03d}->{SMALL[1]:03d}")
    un = _pair(real, f"real {UNCHANGED[0]:03d}->{UNCHANGED[1]:03d}")
    changed = [r for r in real if r["outcome"] == "changed"]
    rows: list[tuple[str, str, str, str, str]] = []

    def add(what: str, value: str, ratio: str = "", target: str = "", met: bool | None = None,
            ) -> None:
        rows.append((what, value, ratio, target, verdict(met) if target else ""))

    def ms(v: float) -> str:
        return f"{v:,.2f} ms" if v < 100 else f"{v:,.0f} ms"

    add(f"Real snapshots ({min(r['models'] for r in real)}-{max(r['models'] for r in real)} "
        f"models, ~{statistics.median(r['bytes'] for r in real) / 1e3:.0f} KB), "
        f"{len(real)} steps", "median", "ratio")
    for row, label in ((ch, "changed"), (sm, "changed"), (un, "unchanged")):
        name = row["pair"].removeprefix("real ")
        detail = f"{row['events']} events, {row['alerts']} alerts" if row["events"] else "order only"
        add(f"{name} ({label}, {detail})", "", "vs loads")
        add("  orjson.loads (the floor)", ms(row["loads_ms"]), "1.00x")
        add("  snapshot.parse (validate)", ms(row["parse_ms"]), f"{row['parse_ms'] / row['loads_ms']:.2f}x")
        limit = 3.0 if label == "changed" else 1.5
        add("  whole in-memory cycle", ms(row["cycle_ms"]), f"{row['cycle_ms'] / row['loads_ms']:.2f}x",
            f"<= {limit:g}x", row["cycle_ms"] / row["loads_ms"] <= limit)
        add("  cycle + SQLite commit", ms(row["cycle_commit_ms"]),
            f"{row['cycle_commit_ms'] / row['loads_ms']:.2f}x")
        for key, label2 in (("deepdiff_ms", "DeepDiff(data, ignore_order)"),
                            ("deepdiff_keyed_ms", "DeepDiff keyed by id")):
            speed = row[key] / row["cycle_ms"]
            add(f"  {label2}", ms(row[key]), f"cycle {speed:,.0f}x faster", ">= 100x", speed >= 100)
    add(f"All {len(changed)} changed real steps (sum of medians)", "", "vs loads")
    add("  whole in-memory cycle", ms(sum(r["cycle_ms"] for r in changed)),
        f"{s['cycle_vs_loads_changed_all']:.2f}x", "<= 3x", s["cycle_vs_loads_changed_all"] <= 3)
    add("  worst single step", "", f"{s['cycle_vs_loads_changed_worst']:.2f}x", "<= 3x",
        s["cycle_vs_loads_changed_worst"] <= 3)
    add("  cycle + SQLite commit", ms(sum(r["cycle_commit_ms"] for r in changed)),
        f"{s['cycle_commit_vs_loads_changed_all']:.2f}x")
    for key, label2 in (("deepdiff", "DeepDiff(data, ignore_order)"),
                        ("deepdiff_keyed", "DeepDiff keyed by id")):
        add(f"  {label2}, all {len(real)} steps (1 run each)",
            ms(sum(r[f"{key}_ms"] for r in real)),
            f"cycle {s[f'{key}_vs_cycle_real_all']:,.0f}x faster", ">= 100x",
            s[f"{key}_vs_cycle_real_all"] >= 100)
        add("    slowest step for us", "", f"cycle {s[f'{key}_vs_cycle_real_worst']:,.0f}x faster",
            ">= 100x", s[f"{key}_vs_cycle_real_worst"] >= 100)
    shuffled = result["reshuffled"]
    add(f"All {len(shuffled)} real responses, reshuffled (unchanged, sum of medians)", "", "vs loads")
    add("  whole in-memory cycle", ms(sum(r["cycle_ms"] for r in shuffled)),
        f"{s['cycle_vs_loads_reshuffled_all']:.2f}x", "<= 1.5x", s["cycle_vs_loads_reshuffled_all"] <= 1.5)
    add("  worst single response", "", f"{s['cycle_vs_loads_reshuffled_worst']:.2f}x", "<= 1.5x",
        s["cycle_vs_loads_reshuffled_worst"] <= 1.5)
    add("  cycle + SQLite commit", ms(sum(r["cycle_commit_ms"] for r in shuffled)),
        f"{s['cycle_commit_vs_loads_reshuffled_all']:.2f}x")

    for row in syn:
        add(f"{row['pair'].capitalize()} ({row['bytes'] / 1e6:.1f} MB, {row['events']} events)",
            "", "vs loads")
        add("  orjson.loads (the floor)", ms(row["loads_ms"]), "1.00x")
        limit = 3.0 if row["outcome"] == "changed" else 1.5
        add("  whole in-memory cycle", ms(row["cycle_ms"]), f"{row['cycle_ms'] / row['loads_ms']:.2f}x",
            f"<= {limit:g}x", row["cycle_ms"] / row["loads_ms"] <= limit)
        add("  cycle + SQLite commit", ms(row["cycle_commit_ms"]),
            f"{row['cycle_commit_ms'] / row['loads_ms']:.2f}x")
        for key, label2 in (("deepdiff_ms", "DeepDiff(data, ignore_order)"),
                            ("deepdiff_keyed_ms", "DeepDiff keyed by id")):
            if key in row:
                speed = row[key] / row["cycle_ms"]
                add(f"  {label2} (1 run)", ms(row[key]), f"cycle {speed:,.0f}x faster", ">= 100x",
                    speed >= 100)
    for kind, pm in s["per_model"].items():
        a, b = pm["sizes"]
        add(f"Per-model cost, {kind}: {b:,} vs {a:,} models",
            f"{pm['cycle_us_per_model'][1]:.2f} us", f"{pm['cycle_growth']:.2f}x "
            f"(loads {pm['loads_growth']:.2f}x)", "<= 1.3x", pm["cycle_growth"] <= 1.3)

    st = result["storage"]
    add("State database (used pages after a WAL checkpoint)", "", "")
    add(f"  per unchanged poll ({st['unchanged_polls']:,} polls)",
        f"{st['unchanged_bytes_per_poll']:.0f} B", "", "<= 200 B", st["unchanged_bytes_per_poll"] <= 200)
    add(f"  per changed snapshot, compressed blob (median of {st['changed_steps']})",
        f"{st['changed_blob_median_bytes'] / 1e3:.1f} KB",
        f"{st['changed_blob_median_bytes'] / st['response_median_bytes']:.1%} of the response",
        "<= 100 KB", st["changed_blob_median_bytes"] <= 100_000)
    add("  per changed step, everything (snapshot + events + outbox), median",
        f"{st['changed_median_bytes'] / 1e3:.1f} KB", "", "<= 100 KB", st["changed_median_bytes"] <= 100_000)
    add("  per changed step, everything, largest step", f"{st['changed_max_bytes'] / 1e3:.1f} KB",
        "", "<= 100 KB", st["changed_max_bytes"] <= 100_000)
    for key, value in st.items():
        if key.startswith("synthetic"):
            add(f"  {key.removesuffix(' bytes')}", f"{value / 1e3:,.0f} KB", "", "(not a target)")

    if "daemon" in result:
        d = result["daemon"]
        add(f"Daemon `run`: {d['cycles']:,} cycles, {d['watches']} watches, {d['seconds']:.0f} s "
            f"({', '.join(f'{k} {v}' for k, v in sorted(d['checks'].items()))})", "", "")
        add("  peak RSS (VmHWM)", f"{d['peak_rss_mb']:.1f} MB", "", "< 100 MB", d["peak_rss_mb"] < 100)
        add("  RSS after warm-up -> at the end", f"{d['rss_after_warmup_mb']:.1f} -> "
            f"{d['rss_end_mb']:.1f} MB", "")
        add("  trend after warm-up (least squares)", f"{d['slope_kb_per_100_cycles']:+.0f} KB",
            "per 100 cycles", "flat", abs(d["first_quarter_mean_mb"] - d["last_quarter_mean_mb"]) < 2)
        add("  mean RSS, first -> last quarter", f"{d['first_quarter_mean_mb']:.1f} -> "
            f"{d['last_quarter_mean_mb']:.1f} MB", "", "")

    return markdown(("measurement", "median", "ratio", "target", ""), rows)


def markdown(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A Markdown table with aligned columns."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join(lines)
