"""Catalogue text made harmless for each place it goes: terminals, logs, chat Markdown, HTML.

Names, ids, descriptions and prices come from a third party.  Before any of it reaches a
person it passes through one of these:

* :func:`plain` for everything printed or sent: control characters (ANSI/OSC escapes, CR,
  newlines, bidirectional overrides) cannot move a cursor, forge a log line or reorder text
  (:func:`printable` for our own multi-line text, :func:`json_line` for JSON output);
* :func:`markdown` for chat targets: no link, emphasis, code or ``<...>`` syntax survives
  (Slack's ``<!channel>``, Discord's ``<@id>``), and no ``@everyone``/``@here`` pings;
* :func:`html` for e-mail.

The newlines we write ourselves are added after this, so they stay.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, line/paragraph separators, bidirectional embeddings, overrides and
# isolates ("Trojan source"), and lone surrogates (which no encoder can write).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SPACE = frozenset("\t\n\v\f\r\x1c\x1d\x1e\x1f\x85\u2028\u2029")
# Backslash-escaped in Markdown: enough that nothing forms a link ([..](..), <..>), emphasis,
# code, strike-through or a spoiler.  ">" alone opens nothing once every "<" is escaped.
_MARKDOWN = re.compile(r"([\\`*_\[\]<~|])")
ZERO_WIDTH = "\u200b"


def plain(text: str) -> str:
    """``text`` with whitespace controls as spaces and every other control as U+FFFD."""
    if not _CONTROL.search(text):  # the common case: nothing to do
        return text
    return _CONTROL.sub(lambda m: " " if m.group() in _SPACE else "\ufffd", text)


def printable(text: str) -> str:
    """Our own multi-line text for a terminal: its newlines kept, every other control gone."""
    return "\n".join(plain(part) for part in text.split("\n"))


def unping(text: str) -> str:
    """``@everyone``, ``@here``, ``<@U123>``: a zero-width space after each ``@``.

    Chat services (Discord, Mattermost, Slack with ``link_names``) and Apprise's Discord
    plugin, which turns every ``@word`` it finds into an allowed mention, read a mention as
    ``@`` directly followed by a name; the text still reads the same.
    """
    return text.replace("@", "@" + ZERO_WIDTH)


def markdown(text: str) -> str:
    """Plain text for a Markdown body: controls removed, markup escaped, mentions broken."""
    return unping(_MARKDOWN.sub(r"\\\1", plain(text)))


def html(text: str) -> str:
    """Plain text for an HTML body or attribute: :func:`html.escape`, but an apostrophe stays
    one (``quote=True`` would also write ``'`` as ``&#x27;``, changing every message)."""
    from html import escape as html_escape  # noqa: PLC0415 - not at every start (cli.py)

    return html_escape(plain(text), quote=False).replace('"', "&quot;")


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def json_line(document: str) -> str:
    """A JSON text with DEL, C1 controls and bidi overrides written as ``\\uXXXX`` escapes.

    JSON encoders escape C0 controls but send these raw; they only occur inside strings,
    so the escape keeps the document's meaning while no terminal acts on them.
    """
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", document)
