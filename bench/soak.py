"""A bounded soak: thousands of cycles with random faults; memory flat, nothing lost.

Not part of the test suite.  Runs the real App (fetch, diff, store, outbox, Apprise
delivery) in one process against loopback servers: the fake OpenRouter replays the real
snapshots in tests/data round and round and answers with a random fault a quarter of the
time; the webhook sink fails a fifth of the sends.  At the end the sink turns healthy, the
outbox is drained, and every recorded alert must have been received (duplicates only by
idempotency key).

    .venv/bin/python bench/soak.py [--cycles 3000] [--seed 1]

Prints RSS samples and a verdict, and writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes import FakeOpenRouter, Reply, snapshot_bytes  # noqa: E402
from tests.sinks import WebhookSink  # noqa: E402
from watcher import config, fetch, log  # noqa: E402
from watcher.app import App  # noqa: E402
from watcher.store import Store  # noqa: E402

FAULTS = [
    Reply(status=500), Reply(status=503), Reply(status=429, headers={"Retry-After": "0"}),
    Reply(status=401), Reply(body=b"<html>bad gateway</html>", content_type="text/html"),
    Reply(body=b'{"data": [{"id": "a"'), Reply(body=b'{"data": []}'), Reply(body=b"{}", delay=1.2),
]


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


class FlakySink(WebhookSink):
    """Fails a share of the sends at random (seeded); keeps only counts, so that what the
    soak measures is the watcher's memory, not the sink's."""

    def __init__(self, rnd: random.Random, share: float) -> None:
        super().__init__()
        self.rnd, self.share, self.healthy, self.failed = rnd, share, False, 0
        self.received: dict[str, int] = {}  # idempotency key -> events in the message
        self.sends = 0

    async def _hook(self, request):  # type: ignore[no-untyped-def]
        from aiohttp import web

        payload = await request.json()
        if not self.healthy and self.rnd.random() < self.share:
            self.failed += 1
            return web.Response(status=500)
        self.sends += 1
        message = json.loads(payload["message"])
        self.received[message["idempotency_key"]] = len(message["events"])
        return web.Response(text="ok")


async def soak(cycles: int, seed: int) -> dict:
    rnd = random.Random(seed)
    bodies = [snapshot_bytes(n) for n in range(40)]
    server = FakeOpenRouter().start()
    sink = FlakySink(rnd, 0.2).start()
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "rules.yaml").write_text(
            "rules:\n  - {name: all, on: [model_added, model_removed, price_changed, "
            "expiration_set, expiration_changed, context_length_changed], notify: [hook]}\n")
        (folder / "config.yaml").write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{server.url}", interval: 1m, timeout: 1s, retries: 1,
      retry_backoff: 1ms, confirm_polls: 2}}
targets: {{hook: "{sink.url()}"}}
rules: [rules.yaml]
delivery: {{retry_backoff: 1s, max_backoff: 5s, max_age: 30d}}
expiring_soon_days: [7, 1]
""")
        log.configure("error")
        settings = config.load(folder / "config.yaml")
        store = Store.open(settings.state_dir)
        now = [datetime(2026, 1, 1, tzinfo=UTC)]
        started = time.monotonic()
        async with fetch.new_session() as session:
            app = App(settings, store, session, clock=lambda: now[0])
            step = 0
            for cycle in range(cycles):
                if rnd.random() < 0.25:
                    server.set_script([rnd.choice(FAULTS)])
                else:
                    server.set_script([Reply(body=bodies[step % len(bodies)])])
                    step += 1
                await app.cycle(settings.watches[0])
                await app.deliverer.drain()
                server.requests.clear()
                now[0] += timedelta(minutes=10)
                if cycle % max(1, cycles // 20) == 0:
                    samples.append((cycle, round(rss_mb(), 1)))
            sink.healthy = True
            now[0] += timedelta(hours=2)
            await app.deliverer.drain()
            await app.operator.wait()
            app.close()
        elapsed = time.monotonic() - started
        status = store.outbox_status().get("hook", {})
        alerts = sum(v for k, v in status.items() if k in ("sent", "pending", "dead", "cancelled"))
        db_bytes = sum(p.stat().st_size for p in (folder / "state").iterdir())
        store.close()
    alerts_received = sum(sink.received.values())
    server.stop()
    sink.stop()
    warm = [mb for cycle, mb in samples if cycle >= cycles // 5]
    return {
        "cycles": cycles, "seed": seed, "seconds": round(elapsed, 1),
        "rss_mb_samples": samples, "rss_mb_after_warmup_min": min(warm),
        "rss_mb_after_warmup_max": max(warm), "rss_mb_peak": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "alerts_recorded": alerts, "alerts_received": alerts_received,
        "messages_received": len(sink.received),
        "duplicate_sends": sink.sends - len(sink.received),
        "failed_sends": sink.failed,
        "outbox": status, "db_bytes": db_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(soak(args.cycles, args.seed))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    for cycle, mb in result["rss_mb_samples"]:
        print(f"cycle {cycle:>6}: RSS {mb:6.1f} MB")
    ok = (result["alerts_received"] == result["alerts_recorded"]
          and result["outbox"].get("pending", 0) == 0 and result["outbox"].get("dead", 0) == 0)
    growth = result["rss_mb_after_warmup_max"] - result["rss_mb_after_warmup_min"]
    print(f"{result['cycles']} cycles in {result['seconds']} s; alerts recorded "
          f"{result['alerts_recorded']}, received {result['alerts_received']} in "
          f"{result['messages_received']} messages ({result['failed_sends']} failed sends "
          f"retried); RSS after warm-up {result['rss_mb_after_warmup_min']}-"
          f"{result['rss_mb_after_warmup_max']} MB (+{growth:.1f}); database "
          f"{result['db_bytes'] / 2**20:.1f} MB")
    print("OK: nothing lost" if ok else "FAILED: alerts lost or stuck")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
