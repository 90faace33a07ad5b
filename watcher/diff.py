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

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from watcher.snapshot import Snapshot

if TYPE_CHECKING:
    from decimal import Decimal

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
    """The changed fields of one model: DeepDiff over the normalised fields that differ."""
    # Imported here: DeepDiff takes ~50 ms to import, and the commands that only read the
    # state (`status`, `history`) import this module for its value helpers.
    from deepdiff import DeepDiff  # noqa: PLC0415

    a, b = _differing_fields(old, new)
    if a == b:
        return []
    paths: set[Path] = set()
    for items in DeepDiff(a, b, **DEEPDIFF_OPTIONS).values():
        for level in items:
            paths.add(_field_path(level.path(output_format="list")))
    before, after = a.get("pricing", {}), b.get("pricing", {})
    if ("pricing",) in paths and isinstance(before, dict) and isinstance(after, dict):
        # The whole pricing object appeared or vanished (e.g. every price went to "0"):
        # report it per price, like any other price change.
        paths.discard(("pricing",))
        paths.update(("pricing", k) for k in before.keys() | after.keys())
    return [Change("changed", model_id, p, value_at(old, p), value_at(new, p))
            for p in sorted(paths)]


# threshold_to_diff_deeper=0: always report the fields inside an object, never the object
# whole because most of its keys changed (DeepDiff's default would then report a model as
# one change of its root).  ignore_private_variables=False: a JSON key such as "__x" is
# data like any other.
DEEPDIFF_OPTIONS: dict[str, Any] = {"view": "tree", "threshold_to_diff_deeper": 0,
                                    "ignore_private_variables": False}


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


_ABSENT = object()


def _differing_fields(old: dict[str, Any], new: dict[str, Any]
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The normalised form of the fields whose values differ, on each side.

    Fields with the same value on both sides are left out of both: they can hold no
    change, and most fields of a changed model did not change, so DeepDiff only walks what
    moved (on a step where a null key appears on every model, that is next to nothing).
    Equal to ``normalize(old), normalize(new)`` minus their common fields.
    """
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    for key, value in old.items():
        other = new.get(key, _ABSENT)
        if other is not _ABSENT and _same_value(value, other):
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


# A price outside these bounds is no price a model has (real ones are 1e-12..1e2 per
# token or unit): it is kept and compared as the string it came as, never computed with
# ("1e-400", "1e400", 10,000 digits would make Decimal arithmetic raise, or format a
# number with a million zeros; "1e20" per token would be read as a real price).
MAX_DIGITS = 40
MIN_EXPONENT = -20   # 1e-20
MAX_EXPONENT = 9     # below 1e10


def as_decimal(value: Any) -> Decimal | None:
    """A price string as a Decimal; None for anything that is not a finite decimal string
    of at most ``MAX_DIGITS`` digits, zero or between 1e-20 and 1e10 in size."""
    if not isinstance(value, str) or len(value) > 2 * MAX_DIGITS:
        return None
    return _decimal(value)


@functools.lru_cache(maxsize=4096)
def _decimal(value: str) -> Decimal | None:
    """:func:`as_decimal` of a string; remembered, since a catalogue holds few distinct
    prices and a model's timeline reads each of them thousands of times."""
    from decimal import Decimal, InvalidOperation  # noqa: PLC0415 - not at every start (cli.py)

    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    if number.is_zero():
        return Decimal(0)  # "-0", "0e5" and "0.000" are all the price 0
    if (len(number.as_tuple().digits) > MAX_DIGITS
            or not MIN_EXPONENT <= number.adjusted() <= MAX_EXPONENT):
        return None
    return number
