"""The fast field comparison reports exactly the paths DeepDiff reported before it.

``reference_diff_model`` is ``diff_model`` as it was when every changed model went through
DeepDiff; the fast walk must agree with it on every real model version in tests/data and
on generated JSON, including the shapes where it hands over to DeepDiff.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from deepdiff import DeepDiff
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import DATA, snapshot_bytes
from watcher import diff as diff_module
from watcher.diff import Change, Path, diff_model, normalize, value_at


def reference_diff_model(model_id: str, old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    a, b = normalize(old), normalize(new)
    if a == b:
        return []
    paths: set[Path] = set()
    for items in DeepDiff(a, b, view="tree").values():
        for level in items:
            path: list[str] = []
            for part in level.path(output_format="list"):
                if not isinstance(part, str):
                    break
                path.append(part)
            paths.add(tuple(path))
    if ("pricing",) in paths:
        paths.discard(("pricing",))
        keys = a.get("pricing", {}).keys() | b.get("pricing", {}).keys()
        paths.update(("pricing", k) for k in keys)
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


# "pricing" is left out: a "pricing" that is not an object crashes diff_model, before and
# after the fast walk (reported; OpenRouter always sends an object).
keys = st.sampled_from(["a", "b", "c", "d", "e", "prompt", "__x"])
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


def test_an_object_whose_keys_mostly_changed_is_one_change() -> None:
    assert check({"t": {"a": 1, "b": 2, "c": 3}, "k": 1},
                 {"t": {"d": 1, "e": 2, "c": 3}, "k": 1}) == [("t",)]


def test_lists_are_reported_at_their_own_path() -> None:
    assert check({"l": [{"a": 1}, {"a": 2}]}, {"l": [{"a": 1}, {"a": 3}]}) == [("l",)]
    assert check({"l": ["x", "y"]}, {"l": ["y", "z"]}) == [("l",)]


def test_shapes_the_walk_cannot_decide_go_to_deepdiff(monkeypatch) -> None:
    calls = []
    original = diff_module._deepdiff_paths

    def spy(a: dict[str, Any], b: dict[str, Any]) -> set[Path]:
        calls.append(a)
        return original(a, b)

    monkeypatch.setattr(diff_module, "_deepdiff_paths", spy)
    check({"__p": 1, "a": 1}, {"__p": 2, "a": 2})                # DeepDiff skips "__" keys
    check({"l": [1, 2], "a": 1}, {"l": [1.0, 2], "a": 2})       # equal lists, other types
    check({"l": [{"__p": 1}], "a": 1}, {"l": [{"__p": 2}], "a": 1})
    assert len(calls) == 3
    calls.clear()
    check({"l": [1, 2], "a": 1}, {"l": [1, 3], "a": 1})
    assert calls == []
