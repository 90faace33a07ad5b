"""Compare two snapshots into field-level changes, without noise.

This is the only module that imports deepdiff.  DeepDiff is slow on whole catalogues
(~270-400 ms for 345 models), so it only sees the few models whose bytes differ, and only
after both sides are normalised, so that what it reports is a real change:

* list order of ``data`` never matters (models are keyed by id);
* a key that is absent, ``null`` or an empty object means the same;
* a pricing key that is absent means ``"0"``; prices compare as ``Decimal``;
* lists of scalars (``supported_parameters``, modalities) are sets.

Changes are reported per *field*: a dotted path of object keys, cut at the first list,
with the old and new values as received (absent is ``None``; an absent price is ``"0"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from deepdiff import DeepDiff

from watcher.snapshot import Snapshot

Path = tuple[str, ...]
_SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Change:
    """One difference: a model added or removed, or one field of a model changed."""

    kind: str  # "added" | "removed" | "changed"
    model: str
    path: Path = ()
    old: Any = None
    new: Any = None


def diff(old: Snapshot, new: Snapshot) -> list[Change]:
    """Every real change from ``old`` to ``new``, sorted by model and path."""
    changes = [Change("removed", i) for i in old.models.keys() - new.models.keys()]
    changes += [Change("added", i) for i in new.models.keys() - old.models.keys()]
    old_prints, new_prints = old.fingerprints, new.fingerprints
    for model_id, fingerprint in new_prints.items():
        before = old_prints.get(model_id)
        if before is None or before == fingerprint:
            continue
        changes += diff_model(model_id, old.models[model_id], new.models[model_id])
    changes.sort(key=lambda c: (c.model, c.kind, c.path))
    return changes


def diff_model(model_id: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """The changed fields of one model."""
    a, b = _normalized_pair(old, new)
    if a == b:
        return []
    try:
        paths = differing_paths(a, b)
    except _Undecided:
        a, b = normalize(old), normalize(new)
        paths = _deepdiff_paths(a, b)
    if ("pricing",) in paths:
        # The whole pricing object appeared or vanished (e.g. every price went to "0"):
        # report it per price, like any other price change.
        paths.discard(("pricing",))
        keys = a.get("pricing", {}).keys() | b.get("pricing", {}).keys()
        paths.update(("pricing", k) for k in keys)
    return [Change("changed", model_id, p, value_at(old, p), value_at(new, p))
            for p in sorted(paths)]


class _Undecided(Exception):  # noqa: N818 - control flow, never leaves this module
    """The fast comparison cannot tell what DeepDiff would report; ask DeepDiff."""


def differing_paths(a: Any, b: Any) -> set[Path]:
    """The field paths where normalised values differ, as DeepDiff would report them.

    DeepDiff costs ~0.2 ms per model even when one price changed; this walk costs a few
    microseconds and gives the same paths for JSON as OpenRouter sends it: a type change is
    reported where it happens, a dict whose keys mostly changed (DeepDiff's
    ``threshold_to_diff_deeper``) is reported whole, and a list is reported at its own path
    when it differs anywhere.  What it cannot decide alike (keys starting with ``__``, which
    DeepDiff skips; lists that are equal but for ``1`` vs ``1.0`` or ``True``) raises
    :class:`_Undecided`, and :func:`diff_model` falls back to DeepDiff itself.
    """
    out: set[Path] = set()
    _walk(a, b, (), out)
    return out


_DEEPER = 0.33  # DeepDiff's threshold_to_diff_deeper


def _walk(a: Any, b: Any, path: Path, out: set[Path]) -> None:
    if a is b:
        return
    if type(a) is not type(b):
        out.add(path)
    elif isinstance(a, dict):
        if _private(a) or _private(b):
            raise _Undecided
        common = a.keys() & b.keys()
        union = len(a) + len(b) - len(common)
        if union > 1 and len(common) / union < _DEEPER:
            out.add(path)
            return
        out.update((*path, k) for k in a.keys() ^ b.keys())
        for key in common:
            x, y = a[key], b[key]
            if x is not y:
                _walk(x, y, (*path, key), out)
    elif isinstance(a, list):
        if a != b:
            if _has_private_keys(a) or _has_private_keys(b):
                raise _Undecided
            out.add(path)
        elif orjson.dumps(a) != orjson.dumps(b):
            raise _Undecided
    elif a != b:
        out.add(path)


def _private(keys: dict[str, Any]) -> bool:
    """True when a key starts with ``__`` (DeepDiff skips those)."""
    return "__" in "\0".join(keys) and any(k.startswith("__") for k in keys)


def _has_private_keys(value: Any) -> bool:
    if isinstance(value, dict):
        return any(k.startswith("__") or _has_private_keys(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_private_keys(v) for v in value)
    return False


def _deepdiff_paths(a: dict[str, Any], b: dict[str, Any]) -> set[Path]:
    paths: set[Path] = set()
    for items in DeepDiff(a, b, view="tree").values():
        for level in items:
            paths.add(_field_path(level.path(output_format="list")))
    return paths


def _field_path(path: list[str | int]) -> Path:
    out: list[str] = []
    for part in path:
        if not isinstance(part, str):
            break
        out.append(part)
    return tuple(out)


def value_at(item: dict[str, Any], path: Path) -> Any:
    """The value at ``path`` as received; absent is None, an absent price is ``"0"``."""
    value: Any = item
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if value is None and len(path) == 2 and path[0] == "pricing":
        return "0"
    return value


def normalize(item: dict[str, Any]) -> dict[str, Any]:
    """The comparable form of one model (see the module docstring)."""
    out = _normalize(item)
    pricing = item.get("pricing")
    if isinstance(pricing, dict):
        prices = _normalize_prices(pricing)
        if prices:
            out["pricing"] = prices
        else:
            out.pop("pricing", None)
    return out if isinstance(out, dict) else {}


def _normalize_prices(pricing: dict[str, Any]) -> dict[str, Any]:
    prices = {}
    for key, value in pricing.items():
        number = as_decimal(value)
        if number is None:
            norm = _normalize(value)
            if norm is not None:
                prices[key] = norm
        elif number != 0:
            prices[key] = format(number.normalize(), "f")
    return prices


class _Same:
    """Stands for a field whose value is byte-identical on both sides."""

    def __repr__(self) -> str:
        return "<same>"


_SAME = _Same()
_ABSENT = object()


def _normalized_pair(old: dict[str, Any], new: dict[str, Any]
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``normalize(old), normalize(new)``, except that a field with the same value on both
    sides is one shared marker instead of its normalised form.

    The two dicts compare and differ exactly like the normalised models (the marker equals
    only itself and the walk skips it), but most fields of a changed model did not change
    and comparing them costs a fraction of normalising them: on a step where a null key
    appears on every model, or zero prices come and go, only what moved is normalised.
    """
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    for key, value in old.items():
        other = new.get(key, _ABSENT)
        if other is not _ABSENT and _same_value(value, other):
            if not _void(key, value):
                a[key] = b[key] = _SAME
            continue
        if (norm := _normalize_field(key, value)) is not None:
            a[key] = norm
        if other is not _ABSENT and (norm := _normalize_field(key, other)) is not None:
            b[key] = norm
    for key in new.keys() - old.keys():
        if (norm := _normalize_field(key, new[key])) is not None:
            b[key] = norm
    return a, b


def _same_value(x: Any, y: Any) -> bool:
    """Identical JSON values (scalars: equal and of one type; the rest: the same bytes)."""
    if type(x) is not type(y):
        return False
    if x is None or isinstance(x, _SCALARS):
        return bool(x == y)
    return orjson.dumps(x) == orjson.dumps(y)


def _normalize_field(key: str, value: Any) -> Any:
    """The normalised value of one field of a model; None when it normalises away."""
    if key == "pricing" and isinstance(value, dict):
        return _normalize_prices(value) or None
    return _normalize(value) if isinstance(value, (dict, list)) else value


def _void(key: str, value: Any) -> bool:
    """True when the field normalises away (None, or objects of nothing but nulls)."""
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    if key == "pricing":
        for price in value.values():  # stops at the first real price
            number = as_decimal(price)
            if (_normalize(price) is not None) if number is None else (number != 0):
                return False
        return True
    return all(_void("", item) for item in value.values())


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            # Scalars stay as they are: recurse only into objects and lists (hot path).
            norm = _normalize(item) if isinstance(item, (dict, list)) else item
            if norm is not None:
                out[key] = norm
        return out or None
    if isinstance(value, list):
        if all(isinstance(v, _SCALARS) for v in value):
            return sorted(value, key=orjson.dumps)
        return [_normalize(v) for v in value]
    return value


def as_decimal(value: Any) -> Decimal | None:
    """A price string as a Decimal; None for anything that is not a finite decimal string."""
    if not isinstance(value, str):
        return None
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
