"""The response pairs the benchmark runs on: real snapshots and synthetic catalogues.

A synthetic catalogue of ``size`` models is the older real response of a real step,
cloned under new ids until it holds ``size`` models; its successor is the same catalogue
with the real step applied to the original models (the same few dozen real changes:
prices, expirations, removals) and the ``data`` list shuffled, as OpenRouter does on
most polls.  The unchanged pair is the same models in another order.
"""

from __future__ import annotations

import gzip
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


@dataclass(frozen=True)
class Pair:
    """Two response bodies: the baseline and the next poll."""

    name: str
    old: bytes
    new: bytes
    models: int
    changed: bool
    today: date  # the day of the newer response: which expiration dates are near


def taken(number: int) -> date:
    """The day response ``number`` was recorded (from its file name)."""
    (path,) = DATA.glob(f"{number:03d}_*.json.gz")
    return datetime.strptime(path.name[4:17], "%Y%m%dT%H%M").replace(tzinfo=UTC).date()


def real_numbers() -> list[int]:
    return sorted(int(p.name[:3]) for p in DATA.glob("[0-9][0-9][0-9]_*.json.gz"))


def real_body(number: int) -> bytes:
    (path,) = DATA.glob(f"{number:03d}_*.json.gz")
    return gzip.decompress(path.read_bytes())


def real_pair(a: int, b: int) -> Pair:
    old, new = real_body(a), real_body(b)
    models = len(orjson.loads(new)["data"])
    return Pair(f"real {a:03d}->{b:03d}", old, new, models, changed=_changed(old, new),
                today=taken(b))


def reshuffled_pair(number: int, seed: int = 6) -> Pair:
    """Real response ``number`` and the same models in another order: an unchanged poll."""
    old = real_body(number)
    items = orjson.loads(old)["data"]
    random.Random(seed + number).shuffle(items)
    return Pair(f"real {number:03d} reshuffled", old, orjson.dumps({"data": items}), len(items),
                changed=False, today=taken(number))


def _changed(old: bytes, new: bytes) -> bool:
    def key(body: bytes) -> dict[str, bytes]:
        return {m["id"]: orjson.dumps(m) for m in orjson.loads(body)["data"]}
    return key(old) != key(new)


def synthetic_pairs(size: int, a: int = 10, b: int = 11, seed: int = 6) -> tuple[Pair, Pair]:
    """(changed, unchanged) pairs of ``size`` models built from the real step ``a`` -> ``b``."""
    rnd = random.Random(seed)
    old_items: list[dict[str, Any]] = orjson.loads(real_body(a))["data"]
    new_items: list[dict[str, Any]] = orjson.loads(real_body(b))["data"]
    clones = clones_of(old_items, size - len(old_items))
    old = old_items + clones
    rnd.shuffle(old)
    new = new_items + clones
    rnd.shuffle(new)
    same = list(old)
    rnd.shuffle(same)
    old_body = orjson.dumps({"data": old})
    label, today = f"synthetic {size:,}", taken(b)
    return (Pair(f"{label} changed", old_body, orjson.dumps({"data": new}), len(new),
                 changed=True, today=today),
            Pair(f"{label} unchanged", old_body, orjson.dumps({"data": same}), len(same),
                 changed=False, today=today))


def clones_of(templates: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` copies of ``templates`` (in turn) under new ids, names and slugs."""
    out = []
    for n in range(count):
        template = templates[n % len(templates)]
        copy = orjson.loads(orjson.dumps(template))  # a deep copy, as a parser would make
        suffix = f"-v{n // len(templates) + 2}"
        copy["id"] += suffix
        if isinstance(copy.get("canonical_slug"), str):
            copy["canonical_slug"] += suffix
        if isinstance(copy.get("name"), str):
            copy["name"] += f" v{n // len(templates) + 2}"
        out.append(copy)
    return out
