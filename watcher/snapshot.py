"""Parse and validate a models response into a :class:`Snapshot`.

A snapshot holds the models keyed by id, exactly as received, plus one fingerprint per
model (its orjson bytes).  Two snapshots with the same models in another list order have
equal fingerprints, which is what makes the common poll (nothing changed but the order)
cost little more than the parse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

from watcher.errors import SnapshotError


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The models of one response, keyed by id."""

    models: Mapping[str, dict[str, Any]]
    fingerprints: Mapping[str, bytes] = field(repr=False)

    @cached_property
    def digest(self) -> str:
        """Content hash: the same for the same models, whatever their order in ``data``."""
        h = hashlib.blake2b(digest_size=16)
        for model_id in sorted(self.fingerprints):
            h.update(self.fingerprints[model_id])
            h.update(b"\n")
        return h.hexdigest()

    def same_content(self, other: Snapshot) -> bool:
        """True when both hold byte-identical models (list order aside)."""
        return self.fingerprints == other.fingerprints

    def encode(self) -> bytes:
        """Canonical JSON (models sorted by id) for storage; :func:`parse` reads it back."""
        parts = [self.fingerprints[i] for i in sorted(self.fingerprints)]
        return b'{"data":[' + b",".join(parts) + b"]}"


def parse(body: bytes) -> Snapshot:
    """Parse one response body; :class:`SnapshotError` says why it cannot be trusted."""
    return from_items(data_of(body))


def data_of(body: bytes) -> list[Any]:
    """The ``data`` list of one response page."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        head = body[:64].lstrip().lower()
        if head.startswith((b"<!doctype", b"<html", b"<")):
            raise SnapshotError("response is HTML, not JSON (a proxy or error page?)") from None
        raise SnapshotError(f"response is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SnapshotError(f"response is a JSON {type(doc).__name__}, expected an object")
    data = doc.get("data")
    if not isinstance(data, list):
        raise SnapshotError("response has no 'data' list")
    return data


def from_items(items: Iterable[Any]) -> Snapshot:
    """Validate model objects and key them by id."""
    models: dict[str, dict[str, Any]] = {}
    fingerprints: dict[str, bytes] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise SnapshotError(f"data[{index}] is not an object")
        model_id = item.get("id")
        if not isinstance(model_id, str) or not model_id:
            raise SnapshotError(f"data[{index}] has no string 'id'")
        if model_id in models:
            raise SnapshotError(f"duplicate model id {model_id!r} at data[{index}]")
        models[model_id] = item
        fingerprints[model_id] = orjson.dumps(item)
    return Snapshot(models=models, fingerprints=fingerprints)


def parse_pages(pages: list[bytes]) -> Snapshot:
    """Parse a paged response: the ``data`` lists of every page, in order."""
    if len(pages) == 1:
        return parse(pages[0])
    items: list[Any] = []
    for page in pages:
        items.extend(data_of(page))
    return from_items(items)
