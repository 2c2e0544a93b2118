"""Vector spaces: every embedding names its space (``x-embed-space``), a request can pin one
(``x-embed-expect-space``: 409 naming both when it would be served elsewhere), and a reload that
changes the weights moves the space. Over real HTTP with the real HF engine on tiny checkpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.config import load_settings
from gateway.contract import EngineCapabilities
from gateway.pool.spaces import space_of
from tests.support.server import LiveServer, live_server

ADMIN = {"authorization": "Bearer s3cret"}


def _caps(**kw: object) -> EngineCapabilities:
    base: dict[str, object] = {"tasks": frozenset({None}), "dimensions": 64, "max_input_tokens": 64,
                               "weights": "sha256:aaaa", "numerics": "fp32-exact"}
    return EngineCapabilities(**{**base, **kw})  # type: ignore[arg-type]


def test_the_space_changes_with_each_thing_that_makes_vectors_incomparable() -> None:
    ref = space_of(_caps(), "hf", "text-matching", None, True)
    assert ref.id == space_of(_caps(identity="another|device"), "other-engine", "text-matching", 64, True).id
    others = [
        space_of(_caps(weights="sha256:bbbb"), "hf", "text-matching", None, True),
        space_of(_caps(), "hf", "retrieval.query", None, True),
        space_of(_caps(), "hf", "text-matching", 32, True),
        space_of(_caps(), "hf", "text-matching", None, False),
        space_of(_caps(numerics="int8"), "hf", "text-matching", None, True),
    ]
    assert len({ref.id, *(o.id for o in others)}) == 6
    unknown = space_of(_caps(weights=None), "a", None, None, True)
    assert unknown.id != space_of(_caps(weights=None), "b", None, None, True).id  # unknown weights: per engine


def _config(path: Path, model: Path) -> None:
    path.write_text(f"engines:\n  hf:\n    model: {model}\n    device: cpu\n    max_input_tokens: 64\n"
                    "auth:\n  admin_key: s3cret\ncache:\n  memory_bytes: 0\n")


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine_hf.tools.synthetic import TINY, write_checkpoints

    return write_checkpoints(tmp_path_factory.mktemp("tiny-other"), TINY, layouts=("original",), seed=99)["original"]


@pytest.fixture
def server(original_dir: Path, tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    config = tmp_path / "gateway.yaml"
    _config(config, original_dir)
    with live_server(load_settings(config), reload_settings=lambda: load_settings(config)) as s:
        yield s, config


def _embed(s: LiveServer, expect: str | None = None, **body: object) -> httpx.Response:
    headers = {"x-embed-expect-space": expect} if expect else {}
    return httpx.post(s.url + "/v1/embeddings", json={"input": ["dark roast"], **body}, headers=headers, timeout=60)


def test_every_response_names_its_space_and_v1_models_lists_it(server: tuple[LiveServer, Path]) -> None:
    s, _ = server
    matching, query = _embed(s), _embed(s, task="retrieval.query")
    short, raw = _embed(s, dimensions=16), _embed(s, normalized=False)
    spaces = {r.headers["x-embed-space"] for r in (matching, query, short, raw)}
    assert len(spaces) == 4 and all(len(x) == 16 for x in spaces)
    assert _embed(s).headers["x-embed-space"] == matching.headers["x-embed-space"]  # stable
    cards = {c["id"]: c for c in httpx.get(s.url + "/v1/models").json()["data"]}
    assert cards["jina-embeddings-v3"]["space"] == matching.headers["x-embed-space"]
    assert cards["jina-embeddings-v3-query"]["space"] == query.headers["x-embed-space"]
    width = str(cards["jina-embeddings-v3"]["max_dimensions"])
    assert cards["jina-embeddings-v3"]["spaces"]["retrieval.query"][width] == query.headers["x-embed-space"]
    tei = httpx.post(s.url + "/embed", json={"inputs": "dark roast"})
    assert tei.headers["x-embed-space"] == matching.headers["x-embed-space"]
    info = httpx.get(s.url + "/info").json()
    assert info["models"]["jina-embeddings-v3"]["spaces"]["text-matching"] == matching.headers["x-embed-space"]


def test_a_pinned_request_gets_409_after_a_reload_that_changed_the_weights(
    server: tuple[LiveServer, Path], other_weights: Path
) -> None:
    s, config = server
    before = _embed(s).headers["x-embed-space"]
    assert _embed(s, expect=before).status_code == 200
    wrong = _embed(s, expect="0123456789abcdef")
    assert wrong.status_code == 409
    err = wrong.json()["error"]
    assert err["code"] == "space_mismatch" and err["param"] == "x-embed-expect-space"
    assert "0123456789abcdef" in err["message"] and before in err["message"]
    tei = httpx.post(s.url + "/embed", json={"inputs": "x"}, headers={"x-embed-expect-space": "0123456789abcdef"})
    assert tei.status_code == 409 and tei.json()["error_type"] == "Validation"

    _config(config, other_weights)
    assert httpx.post(s.url + "/admin/reload", headers=ADMIN, timeout=120).status_code == 200
    stale = _embed(s, expect=before)
    assert stale.status_code == 409, stale.text
    after = _embed(s).headers["x-embed-space"]
    assert after != before and after in stale.json()["error"]["message"]
    assert _embed(s, expect=after).status_code == 200


def test_our_client_pins_the_space_it_first_saw(server: tuple[LiveServer, Path], other_weights: Path) -> None:
    from gateway.client.http import GatewayClient, GatewayRequestError

    s, config = server
    client = GatewayClient(s.url)
    try:
        first = client.embed(["dark roast"], model=None, task="retrieval.passage", dimensions=32)
        assert first.space and client.spaces == {(None, "retrieval.passage", 32, True): first.space}
        assert client.embed(["more"], model=None, task="retrieval.passage", dimensions=32).space == first.space
        _config(config, other_weights)
        assert httpx.post(s.url + "/admin/reload", headers=ADMIN, timeout=120).status_code == 200
        with pytest.raises(GatewayRequestError) as refused:
            client.embed(["after the reload"], model=None, task="retrieval.passage", dimensions=32)
        assert refused.value.status == 409 and refused.value.code == "space_mismatch"
        # another (task, dimensions) was never pinned: it is served, and pinned from now on
        assert client.embed(["x"], model=None, task="retrieval.query", dimensions=32).space
    finally:
        client.close()
