"""DeepDiff over the differing fields only reports exactly what DeepDiff over whole models does.

``reference_diff_model`` normalises both models whole and hands them to DeepDiff, with the
same options; ``diff_model`` leaves the fields that are the same on both sides out first.
They must agree on every real model version in tests/data and on generated JSON.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from deepdiff import DeepDiff
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import DATA, snapshot_bytes
from watcher.diff import DEEPDIFF_OPTIONS, Change, Path, diff_model, normalize, value_at


def reference_diff_model(model_id: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    a, b = normalize(old), normalize(new)
    if a == b:
        return []
    paths: set[Path] = set()
    for items in DeepDiff(a, b, **DEEPDIFF_OPTIONS).values():
        for level in items:
            path: list[str] = []
            for part in level.path(output_format="list"):
                if not isinstance(part, str):
                    break
                path.append(part)
            paths.add(tuple(path))
    before, after = a.get("pricing", {}), b.get("pricing", {})
    if ("pricing",) in paths and isinstance(before, dict) and isinstance(after, dict):
        paths.discard(("pricing",))
        paths.update(("pricing", k) for k in before.keys() | after.keys())
    return [Change("changed", model_id, p, value_at(old, p), value_at(new, p)) for p in sorted(paths)]


def test_every_real_model_version_pair_agrees_with_deepdiff() -> None:
    versions: dict[str, dict[bytes, dict[str, Any]]] = {}
    for path in sorted(DATA.glob("[0-9][0-9][0-9]_*.json.gz")):
        for item in orjson.loads(snapshot_bytes(int(path.name[:3])))["data"]:
            versions.setdefault(item["id"], {})[orjson.dumps(item)] = item
    compared = 0
    for model_id, seen in versions.items():
        history = list(seen.values())
        for old, new in itertools.pairwise(history):
            assert diff_model(model_id, old, new) == reference_diff_model(model_id, old, new)
            compared += 1
    assert compared > 300


keys = st.sampled_from(["a", "b", "c", "d", "e", "prompt", "__x", "pricing"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from([0.0, 1.0, 2.5]),
                    st.sampled_from(["", "x", "y", "0", "0.5", "-1"]))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
prices = st.dictionaries(st.sampled_from(["prompt", "completion", "image"]),
                         st.sampled_from(["0", "0.50", "0.5", "-1", "1e-7", "x", 0]), max_size=3)
models = st.one_of(
    st.dictionaries(keys, json_values, max_size=6),
    st.builds(lambda m, p: {**m, "pricing": p}, st.dictionaries(keys, json_values, max_size=4), prices),
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model and a copy with a few values replaced, added or removed somewhere inside."""
    old = draw(models)
    new = orjson.loads(orjson.dumps(old))
    for _ in range(draw(st.integers(1, 3))):
        target: Any = new
        while isinstance(target, dict) and target and draw(st.booleans()):
            child = target[draw(st.sampled_from(sorted(target)))]
            if not isinstance(child, dict):
                break
            target = child
        if isinstance(target, dict):
            target[draw(keys)] = draw(json_values)
            if target and draw(st.booleans()):
                target.pop(draw(st.sampled_from(sorted(target))))
    return old, new


@settings(max_examples=400)
@given(mutated())
def test_mutated_models_agree_with_deepdiff(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    agree(*pair)


@settings(max_examples=200)
@given(models, models)
def test_unrelated_models_agree_with_deepdiff(old: dict[str, Any], new: dict[str, Any]) -> None:
    agree(old, new)


def agree(old: dict[str, Any], new: dict[str, Any]) -> None:
    old, new = {"id": "m", **old}, {"id": "m", **new}  # a model always has its id
    assert diff_model("m", old, new) == reference_diff_model("m", old, new)


def check(old: dict[str, Any], new: dict[str, Any]) -> list[Path]:
    found = diff_model("m", old, new)
    assert found == reference_diff_model("m", old, new)
    return [c.path for c in found]


def test_type_changes_are_reported_where_they_happen() -> None:
    assert check({"a": {"b": 1, "c": 1}}, {"a": {"b": 1.0, "c": 1}}) == []  # equal: no change
    assert check({"a": {"b": 1, "c": 2}}, {"a": {"b": 1.0, "c": 3}}) == [("a", "b"), ("a", "c")]
    assert check({"a": {"b": True, "c": 2}}, {"a": {"b": "yes", "c": 2}}) == [("a", "b")]


def test_an_object_whose_keys_mostly_changed_is_still_reported_key_by_key() -> None:
    assert check({"t": {"a": 1, "b": 2, "c": 3}, "k": 1},
                 {"t": {"d": 1, "e": 2, "c": 3}, "k": 1}) == [
        ("t", "a"), ("t", "b"), ("t", "d"), ("t", "e")]
    # Even when every field of the model changed, no event is about the model as a whole.
    assert check({"x": 1, "y": 2}, {"x": 2, "y": 3}) == [("x",), ("y",)]


def test_lists_are_reported_at_their_own_path() -> None:
    assert check({"l": [{"a": 1}, {"a": 2}]}, {"l": [{"a": 1}, {"a": 3}]}) == [("l",)]
    assert check({"l": ["x", "y"]}, {"l": ["y", "z"]}) == [("l",)]


def test_keys_that_look_private_are_data_too() -> None:
    assert check({"__p": 1, "a": 1}, {"__p": 2, "a": 1}) == [("__p",)]


def test_a_pricing_that_is_not_an_object_is_reported_not_crashed_on() -> None:
    assert check({"pricing": {"prompt": "0.1"}}, {"pricing": ["0.1"]}) == [("pricing",)]
