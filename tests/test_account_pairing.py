"""Both watches on: the public list and the account's, over real steps, through real Apprise.

The account's list is the public one less some models, and from one step on less one
more.  The catalogue moves at random moments of the poll period, so either watch may see
a change first, and sometimes between the two requests of the account watch's cycle.
Every change must reach the webhook exactly once, and the account's loss be told once,
never a removal by OpenRouter as a loss of the account.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.daemon import Daemon, wait_for
from tests.fakes import CatalogueSteps, snapshot_bytes
from tests.sinks import WebhookSink
from watcher import config, fetch, snapshot
from watcher.app import App, unavailable_to_account
from watcher.config import RetryPolicy
from watcher.diff import diff
from watcher.events import events_from_changes
from watcher.store import EventQuery, Store

STEPS = list(range(13, 22))    # 8 real transitions, 6 of them with removals
NOT_FOR_ACCOUNT = {"openai/gpt-4o", "z-ai/glm-4.7"}
LOST, LOST_AT = "mistralai/mistral-large", 16  # the account loses it from this step on
ROUTED = ["model_added", "model_removed", "model_unavailable_to_account",
          "model_available_to_account", "price_changed", "expiration_set",
          "expiration_changed", "expiration_cleared", "context_length_changed"]


def hidden(step: int) -> set[str]:
    return NOT_FOR_ACCOUNT | ({LOST} if step >= LOST_AT else set())


def identity(event: dict) -> tuple:
    """The change, whichever watch saw it."""
    if event["type"].startswith("model_"):
        return (event["type"], event["model"])
    return (event["type"], event["model"], event["field"], event["old"], event["new"])


def expected_changes() -> Counter:
    """Every change of the public list over STEPS, plus the account's one loss: computed
    step by step from the real snapshots, not by the daemon."""
    out: Counter = Counter()
    snaps = {n: snapshot.parse(snapshot_bytes(n)) for n in STEPS}
    for before, after in itertools.pairwise(STEPS):
        events = events_from_changes(diff(snaps[before], snaps[after]), old=snaps[before],
                                     new=snaps[after], watch="models", detected_at="")
        out.update(identity(e) for e in events if e["type"] in ROUTED)
    out[("model_unavailable_to_account", LOST)] += 1
    return out


@pytest.fixture
def catalogue() -> Iterator[CatalogueSteps]:
    server = CatalogueSteps(STEPS, hidden).start()
    try:
        yield server
    finally:
        server.stop()


def write_config(tmp_path: Path, server: CatalogueSteps, sink: WebhookSink, *,
                 account_first: bool, intervals: tuple[str, str] = ("1s", "1s")) -> Path:
    public = f'{{name: models, url: "{server.url}", interval: {intervals[0]}, timeout: 5s}}'
    account = (f'{{name: my-models, url: "{server.url}/user", interval: {intervals[1]}, '
               'timeout: 5s, api_key_env: PAIR_KEY}')
    watches = [account, public] if account_first else [public, account]
    (tmp_path / "rules.yaml").write_text(
        f"rules:\n  - {{name: all, on: [{', '.join(ROUTED)}], notify: [hook]}}\n")
    path = tmp_path / "config.yaml"
    path.write_text(
        "state_dir: state\nwatches:\n" + "".join(f"  - {w}\n" for w in watches)
        + f'targets: {{hook: "{sink.url()}"}}\nrules: [rules.yaml]\n'
        "delivery: {retry_backoff: 0.05s, max_backoff: 0.2s}\n")
    return path


class VirtualClock:
    def __init__(self) -> None:
        self.start = datetime(2026, 1, 5, 21, 0, tzinfo=UTC)
        self.t = 0.0

    def __call__(self) -> datetime:
        return self.start + timedelta(seconds=self.t)


async def replay(path: Path, server: CatalogueSteps, seed: int) -> App:
    """Poll both watches at their intervals on a virtual clock, moving the catalogue at
    random moments; now and then the move falls inside the account watch's cycle, between
    two of its three requests."""
    rng = random.Random(seed)
    settings = config.load(path)
    by_name = {w.name: w for w in settings.watches}
    longest = max(w.interval for w in settings.watches)
    switches, t = [], 0.0
    for _ in STEPS[1:]:
        t += rng.uniform(1.5, 2.5) * longest
        switches.append(t)
    end = t + 3 * longest
    polls = sorted((offset + k * w.interval, order, w.name)
                   for order, w in enumerate(settings.watches)
                   for offset in [rng.uniform(0, w.interval)]
                   for k in range(int(end / w.interval) + 1))
    clock = VirtualClock()
    seen: dict[str, int] = {}
    store = Store.open(settings.state_dir)
    async with fetch.new_session() as session:
        app = App(settings, store, session, clock=clock, retry=RetryPolicy(attempts=1))
        for at, _, name in polls:
            clock.t = at
            index = sum(1 for s in switches if s <= at)
            server.step = STEPS[index]
            # The move may come early, inside this cycle of the account watch, once the
            # public watch has seen the step (so that no watch skips a step).
            if (name == "my-models" and index < len(switches) and seen.get("models") == index
                    and rng.random() < 0.3):
                server.switch = (len(server.requests) + rng.choice([1, 2]), STEPS[index + 1])
                switches[index] = at
            await app.cycle(by_name[name])
            seen[name] = index
            server.switch = None
            await app.deliverer.drain()
        app.close()
    store.close()
    return app


def delivered(sink: WebhookSink) -> Counter:
    return Counter(identity(e) for r in sink.delivered for e in r.message["events"])


@pytest.mark.parametrize(("account_first", "intervals", "seed"), [
    (False, ("1s", "1s"), 1),
    (True, ("1s", "1s"), 2),
    (False, ("1s", "2500ms"), 3),
    (True, ("3s", "1s"), 4),
])
async def test_every_change_reaches_the_target_once_and_no_removal_is_taken_for_a_loss(
        tmp_path: Path, catalogue: CatalogueSteps, webhook: WebhookSink, monkeypatch,
        account_first: bool, intervals: tuple[str, str], seed: int) -> None:
    monkeypatch.setenv("PAIR_KEY", "sk-or-v1-pairing")
    path = write_config(tmp_path, catalogue, webhook, account_first=account_first,
                        intervals=intervals)
    app = await replay(path, catalogue, seed)

    got, want = delivered(webhook), expected_changes()
    assert got == want, (f"missing: {want - got}; extra: {got - want}")
    assert all(count == 1 for count in got.values())
    with Store.open(Path(tmp_path / "state"), readonly=True) as store:
        losses = store.events(EventQuery(type="model_unavailable_to_account"))
        account_events = store.events(EventQuery(watch="my-models"))
        app.store = store
        assert unavailable_to_account(app) == {"my-models": sorted(hidden(STEPS[-1]))}
    assert [(e["watch"], e["model"]) for e in losses] == [("my-models", LOST)]
    # History keeps what each watch saw: the account watch recorded its own copy of the
    # removals and price changes that reached the target through the public watch.
    assert {e["type"] for e in account_events} >= {"model_removed", "price_changed"}


async def test_a_model_the_account_gets_back_is_available_again(
        tmp_path: Path, webhook: WebhookSink, monkeypatch) -> None:
    monkeypatch.setenv("PAIR_KEY", "sk-or-v1-pairing")
    steps = [13, 13, 13]
    server = CatalogueSteps([13], lambda step: NOT_FOR_ACCOUNT | ({LOST} if step == 1 else set()))
    server.docs = dict.fromkeys(range(3), server.docs[13])
    server.start()
    try:
        path = write_config(tmp_path, server, webhook, account_first=False)
        settings = config.load(path)
        store = Store.open(settings.state_dir)
        public, mine = settings.watches
        async with fetch.new_session() as session:
            app = App(settings, store, session, retry=RetryPolicy(attempts=1))
            results = []
            for step in range(len(steps)):
                server.step = step
                results.append(await app.cycle(public))
                results.append(await app.cycle(mine))
                await app.deliverer.drain()
            app.close()
        store.close()
    finally:
        server.stop()
    told = [(e["type"], e["model"]) for r in webhook.delivered for e in r.message["events"]]
    assert told == [("model_unavailable_to_account", LOST), ("model_available_to_account", LOST)]
    assert [r.outcome for r in results] == ["baseline", "baseline", "unchanged", "changed",
                                            "unchanged", "changed"]


async def test_the_same_change_is_sent_once_across_a_restart(
        tmp_path: Path, catalogue: CatalogueSteps, webhook: WebhookSink, monkeypatch) -> None:
    """The public watch queues a change; the process stops; the account watch of a new
    process sees the same change and must not send it again."""
    monkeypatch.setenv("PAIR_KEY", "sk-or-v1-pairing")
    path = write_config(tmp_path, catalogue, webhook, account_first=False)
    settings = config.load(path)
    public, mine = settings.watches

    async def one(watch_name: str, step: int) -> None:
        catalogue.step = step
        with Store.open(settings.state_dir) as store:
            async with fetch.new_session() as session:
                app = App(settings, store, session, retry=RetryPolicy(attempts=1))
                await app.cycle({"models": public, "my-models": mine}[watch_name])
                await app.deliverer.drain()
                app.close()

    await one("models", 10 + 3)
    await one("my-models", 13)
    await one("models", 14)
    await one("my-models", 14)
    got = delivered(webhook)
    assert got, "the 013 -> 014 changes reach the target"
    assert all(count == 1 for count in got.values()), got
    with Store.open(settings.state_dir, readonly=True) as store:
        states = store.outbox_status()["hook"]
    assert states["duplicate"] > 0
    assert states["sent"] == sum(got.values())


@pytest.mark.slow
def test_a_real_daemon_with_both_watches_sends_every_change_once(
        tmp_path: Path, catalogue: CatalogueSteps, webhook: WebhookSink) -> None:
    """The same promise in real time: a daemon process polls both watches every second
    while the catalogue moves at random moments (seeded)."""
    path = write_config(tmp_path, catalogue, webhook, account_first=False)
    daemon = Daemon(path, env={"PAIR_KEY": "sk-or-v1-pairing"}).start()
    try:
        daemon.wait_started()
        wait_for(lambda: len(catalogue.requests) >= 3, what="both watches polled")
        rng = random.Random(7)
        for step in STEPS[1:]:
            time.sleep(rng.uniform(3.0, 4.0))
            catalogue.step = step
        want = expected_changes()
        wait_for(lambda: delivered(webhook) == want, timeout=30, what="every change delivered")
        time.sleep(2.5)  # two more polls of each watch: nothing more may arrive
        assert daemon.stop() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
    got = delivered(webhook)
    assert got == want, f"missing: {want - got}; extra: {got - want}"
    assert all(count == 1 for count in got.values())
    assert "Traceback" not in daemon.logs()
