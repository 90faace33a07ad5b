"""Links we build for a model stay where they were meant to go, and the feed's links do not
follow the ``Host`` header a client sends."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote, urljoin

import feedparser
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.fakes import FakeOpenRouter, Reply
from tests.test_cli import cli
from watcher import config
from watcher.links import model_id_path, model_path
from watcher.store import Store
from watcher.web import routes as web_routes

HOSTILE_IDS = ["evil/../../api/account", "x/./y", "..", "a//b", "/lead", "trail/",
               "q?x=1#frag", "sp ace/%2e%2e/é", "back\\slash/..", "ok/%2E%2E"]
DOTS = {".", "..", ".%2e", "%2e.", "%2e%2e", "%2e"}  # what browsers resolve (WHATWG URL)


@pytest.mark.parametrize("model", [m for m in HOSTILE_IDS if m != ".."]
                         + ["z-ai/glm-4.7", "mistralai/devstral-2512:free"])
def test_a_model_path_resolves_to_itself(model: str) -> None:
    path = model_path("", model)
    assert path.startswith("/models/")
    assert unquote(path.removeprefix("/models/")) == model
    segments = path.split("/")
    assert not {s.lower() for s in segments[2:]} & DOTS, path
    assert "" not in segments[2:], path
    assert not set("?#\\ ") & set(path)
    assert urljoin("https://watcher.example.com/", path) == f"https://watcher.example.com{path}"


def test_ordinary_ids_keep_their_slashes() -> None:
    assert model_path("", "z-ai/glm-4.7") == "/models/z-ai/glm-4.7"
    assert model_path("/w", "mistralai/devstral-2512:free") == "/w/models/mistralai/devstral-2512:free"
    assert model_path("https://w.example/", "a/b") == "https://w.example/models/a/b"
    assert model_id_path("evil/../../api/account") == "evil%2F..%2F..%2Fapi%2Faccount"
    # Only dots: no encoding makes that a segment; the change page filtered on it instead.
    assert model_path("", "..") == "/?model=.."
    assert model_path("", ".") == "/?model=."


@pytest.fixture
def state(tmp_path: Path, fake_openrouter: FakeOpenRouter) -> Path:
    """A state whose second poll added models with hostile ids."""
    path = tmp_path / "config.yaml"
    path.write_text(f"state_dir: state\nwatches: [{{name: models, url: '{fake_openrouter.url}', "
                    "interval: 1h}]\n")
    plain = [{"id": "a/plain", "name": "Plain"}]
    hostile = [{"id": model, "name": f"hostile {n}"} for n, model in enumerate(HOSTILE_IDS)]
    fake_openrouter.set_script([Reply(body=json.dumps({"data": plain}).encode()),
                                Reply(body=json.dumps({"data": plain + hostile}).encode())])
    assert cli("once", "--config", str(path)).returncode == 0
    assert cli("once", "--config", str(path)).returncode == 0
    return path


async def serve(path: Path) -> TestClient:
    settings = config.load(path)
    store = Store.open(settings.state_dir)
    app = web.Application()
    web_routes.register(app, store=store, settings=settings)

    async def close_store(_: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close_store)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client(state: Path) -> AsyncIterator[TestClient]:
    client = await serve(state)
    try:
        yield client
    finally:
        await client.close()


async def test_page_links_of_hostile_ids_open_those_models(client: TestClient) -> None:
    html = await (await client.get("/")).text()
    links = re.findall(r'<td class="model"><a href="([^"]+)"', html)
    assert len(links) == len(HOSTILE_IDS)
    for link in links:
        resolved = urljoin(str(client.make_url("/")), link.replace("&amp;", "&"))
        assert resolved == str(client.make_url("/")).rstrip("/") + link.replace("&amp;", "&")
        resp = await client.get(link.replace("&amp;", "&"), allow_redirects=False)
        assert resp.status == 200, link  # the model's own page, not /api/account
        assert resp.content_type == "text/html"
    for model in HOSTILE_IDS:
        assert model_path("", model) in {link.replace("&amp;", "&") for link in links}


async def test_feed_links_use_the_address_reached_not_the_host_header(
        client: TestClient) -> None:
    resp = await client.get("/feed.atom", headers={"Host": "attacker.example"})
    assert resp.status == 200
    feed = feedparser.parse(await resp.read())
    assert not feed.bozo
    origin = str(client.make_url("/")).rstrip("/")
    links = [entry.link for entry in feed.entries]
    assert len(links) == len(HOSTILE_IDS)
    assert all(link.startswith(f"{origin}/") for link in links)
    assert {link.removeprefix(origin) for link in links} == {model_path("", m) for m in HOSTILE_IDS}
    rels = {link.rel: link.href for link in feed.feed.links}
    assert rels["self"] == f"{origin}/feed.atom"
    assert rels["alternate"] == f"{origin}/"
    assert b"attacker.example" not in await resp.read()


async def test_feed_links_use_public_url_when_it_is_set(state: Path) -> None:
    text = state.read_text() + ("http: {listen: '127.0.0.1:9464', "
                                "public_url: 'https://watcher.example.com/changes/'}\n")
    state.write_text(text)
    client = await serve(state)
    try:
        resp = await client.get("/feed.atom?type=model_added", headers={"Host": "attacker.example"})
        feed = feedparser.parse(await resp.read())
    finally:
        await client.close()
    base = "https://watcher.example.com/changes"
    assert {e.link for e in feed.entries} == {model_path(base, m) for m in HOSTILE_IDS}
    rels = {link.rel: link.href for link in feed.feed.links}
    assert rels["self"] == f"{base}/feed.atom?type=model_added"
    assert rels["alternate"] == f"{base}/?type=model_added"
