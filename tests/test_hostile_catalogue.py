"""A hostile catalogue: names, descriptions, ids and prices crafted to ping, inject or crash.

The same two responses (a baseline, then the changes) go through ``diff``, ``once``,
``history``/``show``/CSV, and a real daemon whose targets are a JSON webhook, a
Slack-format and a Discord-format webhook (``format: markdown`` on loopback ``json://``,
checked with Apprise's own Slack conversion and Discord mention detection), a real
Mattermost plugin pointed at loopback, HTML e-mail through aiosmtpd and the console; then
its pages and feed.  What reaches each sink has no raw mention, no control character, no
markup of the catalogue's, and every legitimate event is still there.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import feedparser
import pytest
from apprise.plugins.discord import USER_ROLE_DETECTION_RE
from apprise.plugins.slack import NotifySlack

from tests.daemon import Daemon, wait_for
from tests.fakes import FakeOpenRouter, Reply, _free_port
from tests.sinks import SMTPServer, WebhookSink, mail_text
from tests.test_cli import cli
from watcher import snapshot
from watcher.config import Target
from watcher.diff import diff
from watcher.events import events_from_changes
from watcher.notify.render import compose

PING = "<!channel> <!here> <@U123> @everyone @here"
LINK = "[click me](http://evil.example/steal)"
HTML = '<img src=x onerror=alert(1)><script>alert("x")</script><b>bold</b>'
TERMINAL = "\x1b[2J\x1b[31mRED\x1b[0m \x1b]8;;http://evil.example\x07osc\x1b]8;;\x07 \r\x08\x7f\x9b"
FORGED_LOG = '\n{"level": "error", "event": "forged.line", "timestamp": "2026-01-01T00:00:00Z"}\n'
EVIL_NAME = f"{PING} Free GPU {LINK} {HTML} *bold* _it_ `code` ~~gone~~ ||spoiler||"
EVIL_DESCRIPTION = f"{TERMINAL}{FORGED_LOG}{LINK}{HTML}"
EVIL_ID = "evil/<script>x</script>@everyone"
PUBLIC_URL = "https://watcher.example.com"


def _model(model_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": model_id, "name": model_id.title(), "context_length": 8192,
            "pricing": {"prompt": "0.000001", "completion": "0.000002"}, **fields}


def catalogue(step: int) -> list[dict[str, Any]]:
    """Step 0 is the baseline; step 1 changes every hostile model and one honest one."""
    before = step == 0
    return [
        _model("good/model", pricing={"prompt": "0.000001" if before else "0.000002",
                                      "completion": "0.000002"}),
        _model("good/stays"),
        _model("good/stays-too"),
        _model("good/stays-three"),
        _model("evil/channel", name=EVIL_NAME,
               description="old" if before else EVIL_DESCRIPTION,
               pricing={"prompt": "0.000001" if before else "0.000003"}),
        _model("evil/tiny", pricing={"prompt": "1e-400" if before else "0.000001"}),
        _model("evil/huge", pricing={"prompt": "0.000001" if before else "1e20"}),
        _model("evil/digits", pricing={"prompt": "0.000001" if before else "1" * 10_000}),
        _model("evil/nan", pricing={"prompt": "NaN" if before else "Infinity"}),
        _model("evil/zero", pricing={"prompt": "-0" if before else "0.5"}),
        _model("evil/tiered", pricing={"prompt": "0.000001"} if before else "tiered"),
        _model("evil/shape", architecture={"modality": "text"} if before else ["a", "b"]),
        *([_model("gone/model")] if before else [_model(EVIL_ID, name=EVIL_NAME)]),
    ]


def body(step: int) -> bytes:
    return json.dumps({"data": catalogue(step)}).encode()


# One entry per legitimate event of step 0 -> 1: (type, model).
EXPECTED = {
    ("price_changed", "good/model"), ("price_changed", "evil/channel"),
    ("field_changed", "evil/channel"), ("price_changed", "evil/tiny"),
    ("price_changed", "evil/huge"), ("price_changed", "evil/digits"),
    ("price_changed", "evil/nan"), ("price_changed", "evil/zero"),
    ("price_changed", "evil/tiered"), ("field_changed", "evil/shape"),
    ("model_removed", "gone/model"), ("model_added", EVIL_ID),
}
MODELS = {model for _, model in EXPECTED}

# What must never reach a person: a live mention, a Markdown or HTML link of the
# catalogue's, a tag of the catalogue's, a control character other than newline.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
RAW = ("<!channel>", "<!here>", "<@U123>", "@everyone", "@here", "<script", "<img", "<b>",
       "](http://evil", "\x1b")


def assert_clean(text: str, *, where: str, slack: bool = False) -> None:
    """``slack``: Slack's mrkdwn, where ``[x](url)`` is plain text and links are ``<url|x>``."""
    assert not CONTROL.search(text), f"{where}: control character {CONTROL.search(text)!r}"
    for raw in RAW:
        if not (slack and raw.startswith("](")):
            assert raw not in text, f"{where}: {raw!r} reached it raw"
    if slack:
        assert "<http://evil" not in text, f"{where}: a Slack link of the catalogue's"


OUR_LINKS = ("https://openrouter.ai/", f"{PUBLIC_URL}/models/")
MD_LINK = re.compile(r"(?<!\\)\[((?:\\.|[^\]\\])*)\]\(([^)]*)\)")


def assert_markdown_clean(text: str, *, where: str) -> None:
    """Markdown as a chat service reads it: only our links, every ``<`` escaped, no ping."""
    assert not CONTROL.search(text), f"{where}: control character {CONTROL.search(text)!r}"
    assert not re.search(r"(?<!\\)<", text), f"{where}: an unescaped '<'"
    assert not re.search(r"@(everyone|here|channel|all)", text), f"{where}: a mention"
    for label, url in MD_LINK.findall(text):
        assert url.startswith(OUR_LINKS), f"{where}: a link of the catalogue's: {label} {url}"


def events() -> list[dict[str, Any]]:
    old, new = snapshot.parse(body(0)), snapshot.parse(body(1))
    return events_from_changes(diff(old, new), old=old, new=new, watch="models",
                               detected_at="2026-01-04T19:13:29Z")


def test_the_hostile_step_has_every_event_and_none_raises() -> None:
    found = events()
    assert {(e["type"], e["model"]) for e in found} == EXPECTED
    pcts = {e["model"]: e["change_pct"] for e in found if e["type"] == "price_changed"}
    # Numbers the diff cannot compute with have no change_pct; honest ones keep theirs.
    assert pcts["good/model"] == 100.0
    assert pcts["evil/channel"] == 200.0
    for odd in ("evil/tiny", "evil/huge", "evil/digits", "evil/nan", "evil/zero", "evil/tiered"):
        assert pcts[odd] is None, odd


def test_each_format_neutralises_the_catalogue_and_keeps_every_event() -> None:
    found = events()
    slack = compose(Target("slack", "slack://T000/B000/XXXX"), found, key="k",
                    public_url=PUBLIC_URL)
    discord = compose(Target("discord", "discord://1/abc"), found, key="k")
    mail = compose(Target("mail", "mailto://u:p@127.0.0.1"), found, key="k")
    console = compose(Target("console", "console://"), found, key="k")
    # What Apprise's Slack plugin makes of the Markdown: no mention, no link of theirs.
    slack_text = NotifySlack._commonmark_to_slack(slack.body)
    assert_clean(slack_text, where="slack", slack=True)
    assert f"<{PUBLIC_URL}/models/good/model|good/model>" in slack_text
    # Apprise's Discord plugin would make an allowed mention of each of these: none.
    assert USER_ROLE_DETECTION_RE.findall(discord.body) == []
    assert_markdown_clean(discord.body, where="discord")
    assert len(discord.body) <= 2000
    assert_html_clean(mail.body, where="mail", links=("https://openrouter.ai/",))
    assert not CONTROL.search(console.body)
    for message in (slack, discord, mail, console):
        assert message.notify_type == "failure"  # gone/model was removed
    # Every model has its line, with the odd values shown as they came.
    for model in MODELS - {EVIL_ID}:
        assert f"/{model}" in mail.body, model
    assert "1e-400 -> $1.00 / 1M prompt tokens" in console.body
    assert "$0.00 -> $500,000.00 / 1M prompt tokens" in console.body  # "-0" is zero
    assert "$1.00 -> 1e20 / 1M prompt tokens" in console.body  # no price: shown as it came
    assert "NaN -> Infinity / 1M prompt tokens" in console.body
    assert 'pricing changed: {"prompt":"0.000001"} -> tiered' in console.body
    assert 'architecture: {"modality":"text"} -> ["a","b"]' in console.body


def test_diff_prints_no_control_character_and_every_event(tmp_path: Path) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_bytes(body(0))
    new.write_bytes(body(1))
    text = cli("diff", str(old), str(new))
    assert text.returncode == 0, text.stderr
    assert not CONTROL.search(text.stdout)
    assert "\x1b" not in text.stdout
    assert "forged.line" not in "".join(x for x in text.stdout.splitlines() if x.startswith("{"))
    for model in MODELS:
        assert model in text.stdout
    as_json = cli("diff", str(old), str(new), "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    printed = [json.loads(x) for x in as_json.stdout.splitlines()]
    assert {(e["type"], e["model"]) for e in printed} == EXPECTED
    assert not CONTROL.search(as_json.stdout)  # JSON escapes them: the text is as it came
    assert any(e.get("new") == EVIL_DESCRIPTION for e in printed)


@pytest.fixture
def hostile(fake_openrouter: FakeOpenRouter) -> FakeOpenRouter:
    fake_openrouter.set_script([Reply(body=body(0))])
    return fake_openrouter


def _config(tmp_path: Path, server: FakeOpenRouter, targets: str, extra: str = "") -> Path:
    names = re.findall(r"^  ([a-z]+):", targets, re.MULTILINE)
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - name: all\n    on: [model_added, model_removed, price_changed, "
        f"field_changed, expiration_set]\n    notify: [{', '.join(names)}]\n")
    path = tmp_path / "config.yaml"
    path.write_text(f"""
state_dir: state
watches:
  - {{name: models, url: "{server.url}", interval: 1s, timeout: 5s}}
targets:
{targets}
rules: [rules.yaml]
delivery: {{retry_backoff: 0.2s, max_backoff: 1s, stop_grace: 1s}}
{extra}
""")
    return path


def test_once_history_show_and_csv_print_it_safely(tmp_path: Path, hostile: FakeOpenRouter) -> None:
    path = _config(tmp_path, hostile, "  console: console://")
    assert cli("once", "--config", str(path)).returncode == 0
    hostile.set_script([Reply(body=body(1))])
    once = cli("once", "--config", str(path))
    assert once.returncode == 0, once.stderr
    assert not CONTROL.search(once.stdout)
    assert "=== OpenRouter models: " in once.stdout  # the console digest, as text
    for model in MODELS:
        assert model in once.stdout
    history = cli("history", "--config", str(path))
    assert history.returncode == 0, history.stderr
    assert not CONTROL.search(history.stdout)
    assert len(history.stdout.splitlines()) == len(EXPECTED)
    as_json = cli("history", "--config", str(path), "--format", "json")
    assert {(e["type"], e["model"]) for e in map(json.loads, as_json.stdout.splitlines())} \
        == EXPECTED
    csv_out = cli("history", "--config", str(path), "--format", "csv")
    assert csv_out.returncode == 0, csv_out.stderr
    assert "\x1b" not in csv_out.stdout
    for model in ("evil/channel", "evil/huge", "evil/tiered", "evil/digits", "evil/nan"):
        show = cli("show", model, "--config", str(path))
        assert show.returncode == 0, show.stderr
        assert not CONTROL.search(show.stdout)
        assert model in show.stdout
        assert "Traceback" not in show.stderr


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


OUR_TAGS = {"h3", "ul", "li", "a", "p", "html", "head", "body", "meta", "title", "br", "div"}


def assert_html_clean(html: str, *, where: str, links: tuple[str, ...]) -> None:
    """Only our tags, only links to the model pages, no control character."""
    assert not CONTROL.search(html), f"{where}: control character"
    found = tags(html).tags
    assert {tag for tag, _ in found} <= OUR_TAGS, {tag for tag, _ in found} - OUR_TAGS
    hrefs = [attrs.get("href") or "" for tag, attrs in found if tag == "a"]
    assert hrefs
    assert all(href.startswith(links) for href in hrefs), hrefs
    assert all(set(attrs) <= {"href"} for tag, attrs in found if tag == "a")


@pytest.fixture
def sinks() -> Iterator[dict[str, WebhookSink]]:
    started = {name: WebhookSink().start() for name in ("hook", "slack", "discord", "mattermost")}
    try:
        yield started
    finally:
        for sink in started.values():
            sink.stop()


def _get(url: str) -> tuple[int, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as reply:
        return reply.status, reply.read().decode()


def test_a_daemon_delivers_every_event_to_every_sink_neutralised(
        tmp_path: Path, hostile: FakeOpenRouter, sinks: dict[str, WebhookSink],
        smtp: SMTPServer) -> None:
    port = _free_port()
    targets = f"""  hook: {sinks['hook'].url()}
  slackish:
    url: {sinks['slack'].url(path='slack')}
    format: markdown
    max_length: 8000
  discordish:
    url: {sinks['discord'].url(path='discord')}
    format: markdown
    max_length: 2000
  mattermost: mmost://127.0.0.1:{sinks['mattermost'].port}/abcdefghijklmnopqrstuvwxyz
  mail: {smtp.url()}
  console: console://"""
    path = _config(tmp_path, hostile, targets,
                   f'http: {{listen: "127.0.0.1:{port}", public_url: "{PUBLIC_URL}"}}')
    daemon = Daemon(path).start()
    try:
        daemon.wait_started()
        wait_for(lambda: "cycle.baseline" in daemon.logs(), what="the baseline")
        hostile.set_script([Reply(body=body(1))])
        wait_for(lambda: all(s.delivered for s in sinks.values()) and smtp.messages
                 and "notify.console" in daemon.output(), timeout=60, what="every sink")
        base = f"http://127.0.0.1:{port}"
        pages = {url: _get(base + url) for url in
                 ("/", "/feed.atom", "/api/events",
                  *(f"/models/{m}" for m in sorted(MODELS - {EVIL_ID})))}
    finally:
        assert daemon.stop() == 0

    # The JSON webhook: the event document itself, every event, values as they came.
    (hook,) = sinks["hook"].delivered
    assert hook.payload["idempotency_key"] == hook.headers["Idempotency-Key"]
    assert {(e["type"], e["model"]) for e in hook.payload["events"]} == EXPECTED
    assert any(e.get("new") == EVIL_DESCRIPTION for e in hook.payload["events"])

    # Slack-format: what Apprise's Slack plugin would post has no mention and no link of theirs.
    (slack,) = sinks["slack"].delivered
    slack_text = NotifySlack._commonmark_to_slack(slack.payload["message"])
    assert_clean(slack_text, where="slack", slack=True)
    assert f"<{PUBLIC_URL}/models/gone/model|gone/model>" in slack_text
    assert slack.payload["type"] == "failure"
    # Discord-format: nothing Apprise's Discord plugin would turn into an allowed mention.
    (discord,) = sinks["discord"].delivered
    assert USER_ROLE_DETECTION_RE.findall(discord.payload["message"]) == []
    assert_markdown_clean(discord.payload["message"], where="discord")
    assert len(discord.payload["message"]) <= 2000
    # Apprise's real Mattermost plugin (which pings on @channel, @here, @all) on loopback.
    (mattermost,) = sinks["mattermost"].delivered
    title, text = mattermost.payload["text"].split("\r\n", 1)  # Apprise joins them with CRLF
    assert title.startswith("OpenRouter models: ")
    assert_markdown_clean(text, where="mattermost")
    for model in MODELS - {EVIL_ID}:
        assert f"[{model}]({PUBLIC_URL}/models/{model})" in text, model

    # HTML e-mail: only our tags, only our links.
    (mail,) = smtp.messages
    html = next(p.get_payload(decode=True).decode() for p in mail.walk()  # type: ignore[union-attr]
                if p.get_content_type() == "text/html")
    assert_html_clean(html, where="mail", links=(f"{PUBLIC_URL}/models/",))
    assert not CONTROL.search(mail_text(mail).replace("\r\n", "\n"))  # SMTP's own CRLF
    for model in MODELS - {EVIL_ID}:
        assert f"{PUBLIC_URL}/models/{model}" in html, model

    # The console target: one JSON object per line on stdout, like the logs on stderr.
    console = [json.loads(x) for x in daemon.output().splitlines() if x.strip()]
    (message,) = [c for c in console if c["event"] == "notify.console"]
    assert "gone/model" in message["body"]
    assert not CONTROL.search(message["body"])
    logs = [json.loads(x) for x in daemon.logs().splitlines() if x.strip()]
    assert "forged.line" not in {entry.get("event") for entry in console + logs}

    # The pages and the feed answer, with the catalogue's markup escaped.
    for url, (status, text) in pages.items():
        assert status == 200, url
        if url.endswith(".atom") or url.startswith("/api"):
            continue
        page_tags = {tag for tag, _ in tags(text).tags}
        assert not page_tags & {"script", "img", "b"}, url
        assert not CONTROL.search(text), url
    feed = feedparser.parse(pages["/feed.atom"][1])
    assert not feed.bozo, feed.bozo_exception
    assert {e.link.rsplit("/models/", 1)[1] for e in feed.entries} >= {"good/model", "evil/tiny"}
    assert {(e["type"], e["model"]) for e in json.loads(pages["/api/events"][1])} == EXPECTED


def test_a_runaway_template_on_reload_is_refused_and_the_daemon_goes_on(
        tmp_path: Path, hostile: FakeOpenRouter, sinks: dict[str, WebhookSink]) -> None:
    import signal

    path = _config(tmp_path, hostile, f"  hook: {sinks['hook'].url()}")
    daemon = Daemon(path).start()
    try:
        daemon.wait_started()
        wait_for(lambda: "cycle.baseline" in daemon.logs(), what="the baseline")
        # The loop that froze a daemon on SIGHUP, and two that allocate before any output.
        for body_t in ("{% for e in events recursive %}{{ loop(events) }}{% endfor %}",
                       "{{ 'x' | center(2000000000) }}",
                       ("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}"
                        "{% endfor %}")):
            quoted = body_t.replace("'", "''")
            _config(tmp_path, hostile, f"  hook:\n    url: {sinks['hook'].url()}\n"
                                       f"    body: '{quoted}'")
            failures = daemon.logs().count("config.reload_failed")
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)
            wait_for(lambda n=failures: daemon.logs().count("config.reload_failed") > n,
                     what="the refused reload")
        logs = daemon.logs()
        for reason in ("recursive loops are not available",
                       "an argument of the 'center' filter is too large",
                       "template does too much work"):
            assert re.search(r"config\.yaml:\d+: targets\.hook\.body: template refused: "
                             + re.escape(reason), logs), reason
        # The running config stays, and the next change is still delivered.
        hostile.set_script([Reply(body=body(1))])
        wait_for(lambda: sinks["hook"].delivered, what="the next change")
    finally:
        assert daemon.stop() == 0
    assert {(e["type"], e["model"]) for e in sinks["hook"].delivered[0].payload["events"]} \
        == EXPECTED
