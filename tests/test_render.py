"""Messages people want to read: titles, grouping, prices per million, limits."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

from tests.test_replay import events_between
from watcher.config import Target
from watcher.notify.render import compose, describe, digest_title, money


def test_prices_read_per_million_tokens() -> None:
    event = next(e for e in events_between(10, 11)
                 if e["model"] == "z-ai/glm-4.7" and e["field"] == "pricing.prompt")
    assert describe(event) == "$0.40 -> $0.16 / 1M prompt tokens (-60%)"
    image = next(e for e in events_between(14, 15) if e["field"] == "pricing.image")
    assert describe(image) == "$0.002888 -> $0.00 per image (-100%)"
    assert money(Decimal("0.035")) == "$0.035"
    assert money(Decimal(12)) == "$12.00"


def test_title_summarises_and_body_groups_by_kind() -> None:
    events = [e for e in events_between(13, 14) if e["type"] != "field_changed"]
    assert digest_title(events) == "OpenRouter models: 3 new, 6 removed, 11 price changes, 1 context change"
    message = compose(Target("team", "slack://T000/B000/XXXX"), events, key="k", today=date(2026, 1, 12))
    assert message.format == "markdown"
    assert message.body.index("**New models**") < message.body.index("**Removed models**") \
        < message.body.index("**Price changes**")
    assert ("- Z.AI: GLM 4.7 ([z-ai/glm-4.7](https://openrouter.ai/z-ai/glm-4.7)): "
            "$0.16 -> $0.40 / 1M prompt tokens (+150%)") in message.body


def test_long_digests_are_cut_to_the_target_limit_with_a_count() -> None:
    events = events_between(22, 23)  # 65 models rewrote their architecture: a long digest
    discord = compose(Target("d", "discord://1/abc"), events, key="k")
    telegram = compose(Target("t", "tgram://bot/chat"), events, key="k")
    assert len(discord.body) <= 2000 < len(telegram.body) <= 4096
    more, footer = discord.body.rsplit("\n\n", 1)
    assert more.endswith("more")
    assert footer == "Detected 2026-01-01 00:00 UTC"
    shown = discord.body.count("\n- ")
    hidden = int(discord.body.rsplit("... and ", 1)[1].split()[0])
    full = compose(Target("c", "console://"), events, key="k").body
    assert shown + hidden == full.count("\n  - ") > shown > 5
    mail = compose(Target("m", "mailto://u:p@127.0.0.1"), events, key="k")
    assert mail.format == "html"
    assert "... and" not in mail.body
    assert "<h3>" in mail.body


def test_webhooks_get_the_events_as_json() -> None:
    events = events_between(24, 25)
    message = compose(Target("w", "json://127.0.0.1:9/hook"), events, key="abc")
    doc = json.loads(message.body)
    assert doc["idempotency_key"] == "abc"
    assert doc["events"] == events
    assert doc["title"] == message.title == "OpenRouter models: 1 expiring, 1 other change"


def test_expiration_lines_count_the_days() -> None:
    (event,) = [e for e in events_between(24, 25) if e["type"] == "expiration_set"]
    assert describe(event, date(2026, 1, 20)) == "expires 2026-01-27 (7 days left)"
    assert describe(event, date(2026, 1, 26)) == "expires 2026-01-27 (1 day left)"
    assert describe(event, date(2026, 1, 28)) == "expires 2026-01-27 (passed yesterday)"
    assert describe(event, date(2026, 1, 27)) == "expires 2026-01-27 (today)"


def _event(kind: str, **fields: object) -> dict[str, object]:
    return {"watch": "models", "type": kind, "model": "a/b", "name": "A B", "field": None,
            "old": None, "new": None, "change_pct": None,
            "detected_at": "2026-01-04T19:13:29Z", **fields}


def test_notify_type_follows_the_worst_event() -> None:
    from watcher.notify.render import notify_type

    cheaper = _event("price_changed", field="pricing.prompt", old="0.000002", new="0.000001")
    dearer = _event("price_changed", field="pricing.prompt", old="0", new="0.000001")
    assert notify_type([_event("model_added"), cheaper]) == "info"
    assert notify_type([_event("expiration_cleared")]) == "info"
    assert notify_type([cheaper, dearer]) == "warning"  # from free is an increase too
    assert notify_type([_event("expiring_soon", new="2026-01-10")]) == "warning"
    assert notify_type([_event("expiration_set", new="2026-01-10"), dearer,
                        _event("model_removed")]) == "failure"
    assert notify_type([_event("model_unavailable_to_account")]) == "failure"
    message = compose(Target("s", "slack://T/B/C"), [dearer], key="k")
    assert message.notify_type == "warning"


def test_lines_link_to_openrouter_or_to_this_daemon_and_say_when() -> None:
    events = [_event("model_added", model="mistralai/devstral-2512:free"),
              _event("model_added", model="a/b", detected_at="2026-01-04T19:20:00Z")]
    text = compose(Target("c", "console://"), events, key="k").body
    assert "\n    https://openrouter.ai/mistralai/devstral-2512:free\n" in text
    assert text.endswith("Detected 2026-01-04 19:13 to 19:20 UTC")
    mail = compose(Target("m", "mailto://u:p@h"), events, key="k",
                   public_url="https://watch.example.com/w").body
    assert '<a href="https://watch.example.com/w/models/a/b">a/b</a>' in mail
    # An id cannot make a link that resolves elsewhere.
    evil = compose(Target("c", "console://"), [_event("model_added", model="x/../../api/y")],
                   key="k", public_url="https://w.example").body
    # (browsers resolve "%2E%2E" segments as "..": the slashes are encoded instead)
    assert "https://w.example/models/x%2F..%2F..%2Fapi%2Fy" in evil


def test_user_templates_escape_catalogue_text_for_the_target() -> None:
    from watcher.notify.templates import Template

    body = Template("{% for e in events %}{{ e.name }}|{% endfor %}{{ body }}")
    evil = [_event("model_added", name="<b>x</b> @everyone [a](http://e)")]
    mail = compose(Target("m", "mailto://u:p@h", body=body), evil, key="k").body
    assert mail.startswith("&lt;b&gt;x&lt;/b&gt; @everyone [a](http://e)|<h3>New models</h3>")
    chat = compose(Target("s", "slack://T/B/C", body=body), evil, key="k").body
    assert chat.startswith("\\<b>x\\</b> @\u200beveryone \\[a\\](http://e)|**New models**")
    text = compose(Target("c", "console://", body=Template("{{ lines[0] }}")),
                   [_event("model_added", name="\x1b[2Jx\r\ny")], key="k").body
    assert text == "\ufffd[2Jx  y (a/b): new model"


def test_a_template_refused_at_send_time_gives_the_digest_instead() -> None:
    from watcher.notify.templates import Template

    pairs = Template("{% for a in events %}{% for b in events %}{% if a == b %}{% endif %}{% endfor %}"
                     "{% endfor %}")
    events = [_event("model_added", model=f"m/{i}") for i in range(1100)]  # 1.2M iterations
    message = compose(Target("c", "console://", body=pairs), events, key="k")
    assert message.body.startswith("(the 'c' template was refused for these events: "
                                   "template does too much work")
    assert "New models:\n  - A B (m/0): new model" in message.body
    hook = compose(Target("h", "json://127.0.0.1:9/h", body=pairs), events, key="k")
    assert json.loads(hook.body)["events"][0]["model"] == "m/0"  # still the JSON document
    short = compose(Target("d", "discord://1/abc", body=pairs), events, key="k")
    assert len(short.body) <= 2000
    assert short.body.startswith("(the 'd' template was refused")
