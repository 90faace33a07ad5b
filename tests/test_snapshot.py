"""Snapshots: validation messages, and content compared by each model's exact bytes."""

from __future__ import annotations

import gc
import hashlib
import random
import tracemalloc
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes import snapshot_bytes
from watcher import snapshot
from watcher.errors import SnapshotError


def by_model(snap: snapshot.Snapshot) -> dict[str, bytes]:
    """Each model's orjson bytes: what "the same content" means."""
    return {i: orjson.dumps(m) for i, m in snap.models.items()}


@pytest.mark.parametrize(("items", "message"), [
    ([{"id": "a"}, "b"], "data[1] is not an object"),
    ([{"id": "a"}, ["id"]], "data[1] is not an object"),
    ([{"id": "a"}, {"name": "b"}], "data[1] has no string 'id'"),
    ([{"id": ""}], "data[0] has no string 'id'"),
    ([{"id": 7}], "data[0] has no string 'id'"),
    ([{"id": ["a"]}], "data[0] has no string 'id'"),
    ([{"id": None}, "x"], "data[0] has no string 'id'"),
    ([{"id": "a"}, {"id": "b"}, {"id": "a"}], "duplicate model id 'a' at data[2]"),
])
def test_invalid_items_say_what_is_wrong(items: list[Any], message: str) -> None:
    with pytest.raises(SnapshotError) as info:
        snapshot.from_items(items)
    assert str(info.value) == message


def test_items_from_any_iterable_and_an_empty_list() -> None:
    assert list(snapshot.from_items(iter([{"id": "a"}])).models) == ["a"]
    assert snapshot.from_items([]).models == {}


def test_encode_and_digest_are_those_of_the_sorted_model_bytes() -> None:
    snap = snapshot.parse(snapshot_bytes(11))
    prints = by_model(snap)
    assert snap.fingerprints == prints
    assert snap.encode() == b'{"data":[' + b",".join(prints[i] for i in sorted(prints)) + b"]}"
    h = hashlib.blake2b(digest_size=16)
    for model_id in sorted(prints):
        h.update(prints[model_id] + b"\n")
    assert snap.digest == h.hexdigest()
    assert snapshot.parse(snap.encode()).same_content(snap)


values = st.one_of(st.none(), st.booleans(), st.integers(-2, 2), st.sampled_from([0.0, 1.0, 2.0]),
                   st.sampled_from(["", "0", "1", "x"]))
model = st.dictionaries(st.sampled_from(["a", "b", "c"]),
                        st.one_of(values, st.lists(values, max_size=3)), max_size=3)
catalogue = st.dictionaries(st.sampled_from(["m1", "m2", "m3", "m4"]), model, max_size=4)


@given(catalogue, catalogue, st.randoms(use_true_random=False))
def test_same_content_is_equal_bytes_of_every_model(a, b, rnd: random.Random) -> None:
    """Also where == would say equal: 1 vs 1.0 vs True, keys in another order."""
    items_a = [{"id": i, **m} for i, m in a.items()]
    items_b = [{"id": i, **m} for i, m in b.items()]
    for items in (items_a, items_b):
        rnd.shuffle(items)
    x, y = snapshot.from_items(items_a), snapshot.from_items(items_b)
    assert x.same_content(y) == (by_model(x) == by_model(y)) == y.same_content(x)
    reordered = [dict(reversed(item.items())) for item in reversed(items_a)]
    z = snapshot.from_items(reordered)
    assert z.same_content(x) == (by_model(z) == by_model(x))


def test_order_only_real_polls_have_the_same_content() -> None:
    assert snapshot.parse(snapshot_bytes(3)).same_content(snapshot.parse(snapshot_bytes(2)))
    assert not snapshot.parse(snapshot_bytes(11)).same_content(snapshot.parse(snapshot_bytes(10)))


def test_kept_bytes_hold_no_spare_buffer() -> None:
    snap = snapshot.parse(snapshot_bytes(11))
    tracemalloc.start()
    try:
        prints = snap.fingerprints
        chunks = snap.chunks
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    content = sum(len(p) for p in prints.values()) + sum(len(c) for c in chunks)
    assert held < 1.5 * content


def test_many_chunks_compare_and_encode_like_one_array() -> None:
    items = [{"id": f"m{n:04d}", "n": n, "tags": ["a", "b"]} for n in range(3 * snapshot.CHUNK + 5)]
    snap = snapshot.from_items(items)
    assert len(snap.chunks) == 4
    shuffled = list(reversed(items))
    assert snapshot.from_items(shuffled).same_content(snap)
    for where in (0, snapshot.CHUNK, len(items) - 1):
        changed = [dict(item) for item in items]
        changed[where]["n"] = 1.0 * changed[where]["n"]  # == but other bytes
        assert not snapshot.from_items(changed).same_content(snap)
        assert not snap.same_content(snapshot.from_items(changed))
    prints = by_model(snap)
    assert snap.encode() == b'{"data":[' + b",".join(prints[i] for i in sorted(prints)) + b"]}"
    assert snapshot.from_items([]).encode() == b'{"data":[]}'


def test_a_large_response_is_parsed_without_collections_and_leaves_the_collector_as_it_was() -> None:
    items = [{"id": f"m{n:05d}", "tags": ["a", "b"], "pricing": {"prompt": "0.1"}, "x": "y" * 200}
             for n in range(snapshot.LARGE // 200)]
    body = orjson.dumps({"data": items})
    assert len(body) >= snapshot.LARGE
    collections = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        snap = snapshot.parse(body)
    finally:
        gc.callbacks.remove(count)
    assert collections == [1]  # the young generations, before the parse; none during it
    assert len(snap.models) == len(items)
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
    gc.disable()
    try:
        assert snapshot.parse(body).models.keys() == snap.models.keys()
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("depth", [300, 1000, 1100, 5000])
def test_json_nested_too_deep_is_a_snapshot_error(depth: int) -> None:
    body = b'{"data": [{"id": "ok"}, {"id": "deep", "x": ' + b"[" * depth + b"]" * depth + b"}]}"
    with pytest.raises(SnapshotError, match=r"nested more than 254 deep|not valid JSON"):
        snapshot.parse(body)
    with pytest.raises(SnapshotError):
        snapshot.parse_pages([b'{"data": [{"id": "a"}]}', body])


def test_json_nested_as_deep_as_can_be_stored_is_parsed() -> None:
    depth = 250
    body = b'{"data": [{"id": "deep", "x": ' + b"[" * depth + b"]" * depth + b"}]}"
    snap = snapshot.parse(body)
    assert snapshot.parse(snap.encode()).same_content(snap)
