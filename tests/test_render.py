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
