"""Parse and validate a models response into a :class:`Snapshot`.

A snapshot holds the models keyed by id, exactly as received.  Its content is the orjson
bytes of each model: two snapshots with the same models in another list order have the
same content, which is what makes the common poll (nothing changed but the order) cost
little more than the parse.  Bytes are computed when first needed: the common poll
serialises the models once, as arrays in id order (:attr:`Snapshot.chunks`); only a
snapshot that differs from its baseline is serialised model by model, for the diff.

A response is parsed only if it can also be serialised: orjson reads JSON nested up to 1,024
deep but writes at most 254, so a model nested deeper is refused here, as a
:class:`SnapshotError` that fails the check, not later as a crash of the cycle.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

from watcher.errors import SnapshotError

CHUNK = 256  # models per array compared at once: bounded buffers, an early exit


@dataclass(frozen=True, eq=False)
class Snapshot:
    """The models of one response, keyed by id."""

    models: Mapping[str, dict[str, Any]]

    @cached_property
    def ids(self) -> list[str]:
        """The model ids, sorted."""
        return sorted(self.models)

    @cached_property
    def chunks(self) -> list[bytes]:
        """The models in id order, as JSON arrays of up to ``CHUNK`` models each."""
        models, ids = self.models, self.ids
        return [_trimmed(orjson.dumps([models[i] for i in ids[k:k + CHUNK]]))
                for k in range(0, len(ids), CHUNK)]

    @cached_property
    def fingerprints(self) -> Mapping[str, bytes]:
        """The orjson bytes of each model, by id."""
        dumps = orjson.dumps
        return {model_id: _trimmed(dumps(item)) for model_id, item in self.models.items()}

    @cached_property
    def digest(self) -> str:
        """Content hash: the same for the same models, whatever their order in ``data``."""
        import hashlib  # noqa: PLC0415 - not at every start (cli.py)

        h = hashlib.blake2b(digest_size=16)
        fingerprints = self.fingerprints
        for model_id in self.ids:
            h.update(fingerprints[model_id])
            h.update(b"\n")
        return h.hexdigest()

    def same_content(self, other: Snapshot) -> bool:
        """True when both hold byte-identical models (list order aside)."""
        if self.models.keys() != other.models.keys():
            return False
        if "chunks" in self.__dict__:  # serialised already (every parsed response is)
            return self.chunks == other.chunks
        # The same ids: serialise this side in the other's id order, a chunk at a time, and
        # compare with the other's chunks.  Each model is a whole JSON value, so the arrays
        # match exactly when every model's bytes do; the first difference ends the check.
        models, ids, dumps = self.models, other.ids, orjson.dumps
        for k, chunk in enumerate(other.chunks):
            if dumps([models[i] for i in ids[k * CHUNK:(k + 1) * CHUNK]]) != chunk:
                return False
        return True

    def encode(self) -> bytes:
        """Canonical JSON (models sorted by id) for storage; :func:`parse` reads it back."""
        return b'{"data":[' + b",".join(chunk[1:-1] for chunk in self.chunks) + b"]}"


def _trimmed(data: bytes) -> bytes:
    """A copy of exactly ``len(data)`` bytes, for bytes that are kept.

    orjson's ``bytes`` keep their whole write buffer: a model's ~1.4 KB of JSON holds
    ~5.8 KB, so the fingerprints of a 345-model baseline took 2.4 MB instead of 0.5 MB.
    """
    return bytes(memoryview(data))


def parse(body: bytes) -> Snapshot:
    """Parse one response body; :class:`SnapshotError` says why it cannot be trusted."""
    return _storable(from_items(data_of(body)))


def _storable(snap: Snapshot) -> Snapshot:
    """``snap``, serialised once (its chunks), or SnapshotError when it cannot be."""
    try:
        snap.chunks  # noqa: B018 - computed for what it raises, and kept
    except orjson.JSONEncodeError as exc:
        for model_id, item in snap.models.items():
            try:
                orjson.dumps(item)
            except orjson.JSONEncodeError:
                raise SnapshotError(f"model {model_id[:100]!r} cannot be stored: {exc} (JSON "
                                    "nested more than 254 deep)") from None
        raise SnapshotError(f"the models cannot be stored: {exc}") from None
    return snap


LARGE = 4 << 20  # response bytes from which the parse keeps the collector out (~3,000 models)


def _loads(body: bytes) -> Any:
    """``orjson.loads``; for a large response, without the cyclic collector walking it.

    Parsed JSON is a tree, it cannot hold a cycle (reference counting frees it); yet the
    containers a large response creates trigger collection after collection during the
    parse, each walking every live object again, and then one more pass over all of them:
    at 50,000 models that made the parse 2.5-4x slower per model than at 5,000.  So the
    young generations are collected first (cheap: they are small), the collector is paused
    for the parse, and what it created is moved straight to the oldest generation
    (``freeze`` + ``unfreeze``, only when nothing else is frozen), where the next full
    collection sees it like any other long-lived object.
    """
    if len(body) < LARGE or not gc.isenabled() or gc.get_freeze_count():
        return orjson.loads(body)
    gc.collect(1)
    gc.disable()
    try:
        doc = orjson.loads(body)
        gc.freeze()
        gc.unfreeze()
        return doc
    finally:
        gc.enable()


def data_of(body: bytes) -> list[Any]:
    """The ``data`` list of one response page."""
    try:
        doc = _loads(body)
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
    items = items if isinstance(items, list) else list(items)
    try:
        models = {item["id"]: item for item in items}
    except (TypeError, KeyError):  # an item that is not an object, or has no usable id
        return _from_items_checked(items)
    # The comprehension checks little: anything but objects with distinct, non-empty string
    # ids takes the checked path, which says what is wrong.
    if (len(models) != len(items) or "" in models or set(map(type, models)) != {str}
            or set(map(type, items)) != {dict}):
        return _from_items_checked(items)
    return Snapshot(models=models)


def _from_items_checked(items: list[Any]) -> Snapshot:
    models: dict[str, dict[str, Any]] = {}
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise SnapshotError(f"data[{index}] is not an object")
        model_id = item.get("id")
        if not isinstance(model_id, str) or not model_id:
            raise SnapshotError(f"data[{index}] has no string 'id'")
        if model_id in models:
            raise SnapshotError(f"duplicate model id {model_id!r} at data[{index}]")
        models[model_id] = item
    return Snapshot(models=models)


def parse_pages(pages: list[bytes]) -> Snapshot:
    """Parse a paged response: the ``data`` lists of every page, in order."""
    if len(pages) == 1:
        return parse(pages[0])
    items: list[Any] = []
    for page in pages:
        items.extend(data_of(page))
    return _storable(from_items(items))
