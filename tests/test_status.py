"""The progress rules behind the watchdog and /healthz, on a clock the test sets."""

from __future__ import annotations

from watcher.config import RetryPolicy, Watch
from watcher.metrics import Metrics
from watcher.status import LATE, SLACK, Status, cycle_budget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(interval: float = 60.0) -> tuple[Status, Clock, Watch]:
    clock = Clock()
    status = Status(monotonic=clock, wall=lambda: 1_700_000_000.0 + clock.now)
    watch = Watch(name="models", url="http://127.0.0.1:9/", interval=interval, timeout=10.0,
                  retry=RetryPolicy(attempts=2, max_backoff=5.0, max_retry_after=20.0))
    status.configure([watch])
    status.restarted("models")
    return status, clock, watch


def test_the_budget_is_what_the_timeouts_and_retries_allow() -> None:
    _, _, watch = setup()
    assert cycle_budget(watch) == 2 * 10.0 + 1 * 20.0 + SLACK


def test_a_cycle_within_its_budget_is_progress_past_it_is_stuck() -> None:
    status, clock, watch = setup()
    status.cycle_started("models")
    clock.now += cycle_budget(watch) - 1
    assert status.stuck() == []
    clock.now += 2
    (reason,) = status.stuck()
    assert reason.startswith("watch models: a cycle has been running for")


def test_a_sleeping_loop_must_wake_on_time() -> None:
    status, clock, _ = setup()
    status.waiting("models", clock.now + 60)
    clock.now += 60 + LATE - 0.5
    assert status.stuck() == []
    clock.now += 1
    assert status.stuck() == ["watch models: the poll loop is 6s late"]


def test_a_loop_that_never_reports_is_stuck() -> None:
    status, clock, _ = setup()
    clock.now += LATE + 3.1
    assert status.stuck() == ["watch models: the poll loop has not moved for 8s"]


def test_failing_cycles_are_progress_but_unhealthy_after_three_intervals() -> None:
    status, clock, _ = setup(interval=60)
    for _ in range(4):
        status.waiting("models", clock.now + 60)
        clock.now += 60
        status.cycle_started("models")
        status.cycle_finished("models", "failed", error="HTTP 503")
        assert status.stuck() == []
    (reason,) = status.unhealthy()
    assert reason == ("watch models: no successful cycle since the start 240s ago, more than "
                      "3 intervals of 60s; last error: HTTP 503")
    status.cycle_finished("models", "unchanged", models=3)
    assert status.unhealthy() == []


def test_summary_line() -> None:
    status, clock, _ = setup()
    assert status.summary(pending=0) == "1 watch, no change yet, 0 pending"
    status.cycle_finished("models", "changed", models=3)
    clock.now += 12 * 60
    status.cycle_finished("models", "failed", error="x")
    assert status.summary(pending=2) == "1 watch, last change 12 min ago, failing: models, 2 pending"


def test_a_reload_keeps_what_was_learnt_and_drops_removed_watches() -> None:
    status, _, watch = setup()
    status.cycle_finished("models", "changed", models=3)
    other = Watch(name="mine", url="http://127.0.0.1:9/", interval=30.0)
    status.configure([watch, other])
    assert status.watches["models"].models == 3
    status.configure([other])
    assert list(status.watches) == ["mine"]


def test_each_metrics_instance_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.cycle("models", "changed", event_types=["price_changed"])
    one.notification_sent("slack")
    one.notifications_pending({"slack": 2})
    text_one, text_two = one.render()[0].decode(), two.render()[0].decode()
    assert 'openrouter_watcher_events_total{type="price_changed",watch="models"} 1.0' in text_one
    assert 'openrouter_watcher_notifications_sent_total{target="slack"} 1.0' in text_one
    assert 'openrouter_watcher_notifications_pending{target="slack"} 2.0' in text_one
    assert "price_changed" not in text_two
