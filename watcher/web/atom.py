"""An Atom feed (RFC 4287) of stored events: pure, values in and bytes out.

Entry ids are ``urn:uuid:`` names derived (UUID v5) from the database's instance id and the
event's row id, so an entry keeps its id across restarts and two databases never share
one.  The feed's id is derived the same way from its canonical filter query.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from xml.etree import ElementTree as ET

from watcher import __version__
from watcher.events import Event
from watcher.notify.render import describe, line

ATOM = "http://www.w3.org/2005/Atom"
# XML 1.0 allows neither most control characters nor lone surrogates; catalogue text may
# hold either.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def clean(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry."""
    return _NOT_XML.sub("\ufffd", text)


def entry_id(instance: uuid.UUID, row: int) -> str:
    return f"urn:uuid:{uuid.uuid5(instance, f'event/{row}')}"


def feed_id(instance: uuid.UUID, query: str) -> str:
    return f"urn:uuid:{uuid.uuid5(instance, f'feed?{query}')}"


@dataclass(frozen=True)
class FeedInfo:
    id: str
    title: str
    self_url: str        # this feed, with its query
    page_url: str        # the HTML page with the same filters
    updated: str         # RFC 3339; the newest entry's time, or when the feed was asked for


def render(info: FeedInfo, entries: Sequence[tuple[str, str, Event]],
           today: date | None = None) -> bytes:
    """The feed document; ``entries`` are ``(entry id, model page URL, event)``, newest first."""
    ET.register_namespace("", ATOM)
    root = ET.Element(f"{{{ATOM}}}feed")
    _text(root, "id", info.id)
    _text(root, "title", info.title)
    _text(root, "updated", info.updated)
    author = ET.SubElement(root, f"{{{ATOM}}}author")
    _text(author, "name", "openrouter-watcher")
    generator = _text(root, "generator", "openrouter-watcher")
    generator.set("version", __version__)
    _link(root, "self", info.self_url, "application/atom+xml")
    _link(root, "alternate", info.page_url, "text/html")
    for ident, page, event in entries:
        entry = ET.SubElement(root, f"{{{ATOM}}}entry")
        _text(entry, "id", ident)
        _text(entry, "title", clean(line(event, today)))
        _text(entry, "updated", event["detected_at"])
        _text(entry, "published", event["detected_at"])
        _link(entry, "alternate", page, "text/html")
        category = ET.SubElement(entry, f"{{{ATOM}}}category")
        category.set("term", event["type"])
        summary = _text(entry, "summary", clean(_summary(event, today)))
        summary.set("type", "text")
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def _summary(event: Event, today: date | None) -> str:
    parts = [describe(event, today), f"model: {event['model']}", f"watch: {event['watch']}"]
    if event.get("field"):
        parts.append(f"field: {event['field']}")
    return "\n".join(parts)


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}")
    element.text = clean(text)
    return element


def _link(parent: ET.Element, rel: str, href: str, media: str) -> None:
    link = ET.SubElement(parent, f"{{{ATOM}}}link")
    link.set("rel", rel)
    link.set("href", clean(href))
    link.set("type", media)
