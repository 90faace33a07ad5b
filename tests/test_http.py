"""The real daemon's /healthz and /metrics, scraped before and after a change and while
the upstream fails; the ``health`` command against them."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.daemon import Daemon, wait_for
from tests.fakes import FakeOpenRouter, Reply, _free_port, snapshot_bytes

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with NO_PROXY.open(url, timeout=5) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def samples(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    status, body, content_type = get(f"{base}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


def value(metrics: dict, name: str, **labels: str) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


def fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def health(base: str) -> tuple[int, dict]:
    status, body, _ = get(f"{base}/healthz")
    return status, json.loads(body)


def write_config(tmp_path: Path, server: FakeOpenRouter, port: int) -> Path:
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: exp, on: [expiration_set], notify: [out]}\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{server.url}", interval: 1s, timeout: 5s, retries: 0}}
targets:
  out: console://
rules: [rules.yaml]
http:
  listen: "127.0.0.1:{port}"
""")
    return path


def health_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watcher", "health", *args],
                          capture_output=True, text=True, timeout=30, check=False)


def test_healthz_and_metrics_before_and_after_a_change_and_while_failing(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    fake_openrouter.set_script([24])
    path = write_config(tmp_path, fake_openrouter, port)
    daemon = Daemon(path).start()
    try:
        # Before any change: the baseline, healthy.
        wait_for(lambda: value(samples(base) if _up(base) else {},
                               "openrouter_watcher_cycles_total", watch="models",
                               outcome="unchanged"), what="a baseline and an unchanged cycle")
        status, body = health(base)
        assert status == 200, body
        assert body["status"] == "ok"
        assert body["problems"] == []
        assert body["watches"]["models"]["last_outcome"] in ("baseline", "unchanged")
        before = samples(base)
        assert value(before, "openrouter_watcher_cycles_total", watch="models",
                     outcome="baseline") == 1
        models = len(json.loads(snapshot_bytes(24))["data"])
        assert value(before, "openrouter_watcher_models", watch="models") == models
        assert value(before, "openrouter_watcher_events_total", watch="models",
                     type="expiration_set") is None
        assert value(before, "openrouter_watcher_fetch_duration_seconds_count",
                     watch="models") >= 2
        first_success = value(before, "openrouter_watcher_last_success_timestamp_seconds",
                              watch="models")
        assert first_success is not None
        assert health_command("--config", str(path)).returncode == 0

        # A change: its events and alerts are counted, the message goes out.
        fake_openrouter.set_script([25])
        wait_for(lambda: value(samples(base), "openrouter_watcher_notifications_pending",
                               target="out") == 0
                 and value(samples(base), "openrouter_watcher_cycles_total", watch="models",
                           outcome="changed"), what="the change, sent")
        after = samples(base)
        assert value(after, "openrouter_watcher_cycles_total", watch="models",
                     outcome="changed") == 1
        assert value(after, "openrouter_watcher_events_total", watch="models",
                     type="expiration_set") == 1
        assert value(after, "openrouter_watcher_alerts_total", rule="exp", target="out") == 1
        assert value(after, "openrouter_watcher_notifications_sent_total", target="out") == 1
        assert value(after, "openrouter_watcher_last_success_timestamp_seconds",
                     watch="models") > first_success
        assert health(base)[0] == 200
        # The same listener serves the history pages, the feed and the JSON API.
        page = fetch_text(f"{base}/")
        assert "mistralai/devstral-2512:free" in page
        assert "<table" in page
        assert "devstral-2512:free" in fetch_text(f"{base}/feed.atom")
        api = json.loads(fetch_text(f"{base}/api/events?type=expiration_set"))
        assert [(e["model"], e["new"]) for e in api] == [("mistralai/devstral-2512:free", "2026-01-27")]
        assert "<svg" in fetch_text(f"{base}/models/mistralai/mistral-nemo")  # a priced model: a chart

        # The upstream fails: unhealthy after 3 intervals without a successful cycle.
        fake_openrouter.set_script([Reply(status=503, body=b"down")])
        wait_for(lambda: health(base)[0] == 503, timeout=15, what="503 from /healthz")
        status, body = health(base)
        assert body["status"] == "unhealthy"
        (problem,) = body["problems"]
        assert problem.startswith("watch models: last successful cycle ")
        assert "HTTP 503" in problem
        failing = samples(base)
        assert value(failing, "openrouter_watcher_cycles_total", watch="models",
                     outcome="failed") >= 3
        checked = health_command("--url", f"{base}/healthz")
        assert checked.returncode == 1
        assert "HTTP 503" in checked.stdout

        # It recovers.
        fake_openrouter.set_script([25])
        wait_for(lambda: health(base)[0] == 200, timeout=15, what="200 again")
        assert daemon.stop() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
    assert "Traceback" not in daemon.logs()
    for line in daemon.logs().splitlines():  # stderr is not a terminal: JSON lines only
        assert isinstance(json.loads(line), dict), line
    assert health_command("--url", f"{base}/healthz").returncode == 1  # nobody listens now


def test_failed_and_dead_lettered_notifications_are_counted(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    from tests.sinks import WebhookSink

    sink = WebhookSink(fail_first=1000).start()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    fake_openrouter.set_script([24, 25])
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {name: exp, on: [expiration_set], notify: [hook]}\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"""
state_dir: state
watches: [{{name: models, url: "{fake_openrouter.url}", interval: 1s, timeout: 5s}}]
targets:
  hook: {sink.url()}
rules: [rules.yaml]
delivery: {{max_age: 1s, retry_backoff: 0.2s, max_backoff: 0.3s, stop_grace: 1s}}
http: {{listen: "127.0.0.1:{port}"}}
""")
    daemon = Daemon(path).start()
    try:
        wait_for(lambda: _up(base) and value(samples(base),
                                             "openrouter_watcher_notifications_dead_lettered_total",
                                             target="hook"), timeout=20, what="a dead letter")
        metrics = samples(base)
        assert value(metrics, "openrouter_watcher_notifications_dead_lettered_total",
                     target="hook") == 1
        assert value(metrics, "openrouter_watcher_notifications_failed_total",
                     target="hook") == len(sink.requests) >= 2
        assert value(metrics, "openrouter_watcher_notifications_pending", target="hook") == 0
        assert value(metrics, "openrouter_watcher_notifications_sent_total", target="hook") is None
        assert daemon.stop() == 0
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            daemon.kill()
        sink.stop()


def test_unhealthy_from_the_start_when_the_upstream_never_answers(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    fake_openrouter.set_script([Reply(status=500, body=b"no")])
    daemon = Daemon(write_config(tmp_path, fake_openrouter, port)).start()
    try:
        wait_for(lambda: _up(base), what="the listener")
        wait_for(lambda: health(base)[0] == 503, timeout=15, what="503")
        (problem,) = health(base)[1]["problems"]
        assert problem.startswith("watch models: no successful cycle since the start")
        assert value(samples(base), "openrouter_watcher_last_success_timestamp_seconds",
                     watch="models") is None
    finally:
        daemon.stop()


def test_health_without_a_listener_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text('watches: [{name: models, url: "http://127.0.0.1:9/api/v1/models", '
                    "interval: 10m}]\n")
    proc = health_command("--config", str(path))
    assert proc.returncode == 2
    assert "http.listen is not configured" in proc.stderr


def test_listen_address_in_use_exits_1_with_a_clear_message(
        tmp_path: Path, fake_openrouter: FakeOpenRouter) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "watcher", "run", "--config",
             str(write_config(tmp_path, fake_openrouter, port))],
            capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1
    assert f"http.listen: cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def _up(base: str) -> bool:
    try:
        get(f"{base}/healthz")
    except OSError:
        return False
    return True
