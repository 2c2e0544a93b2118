"""/metrics, /info, request ids and the JSON log lines, through the real app and the real HF engine."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import load_settings
from gateway.obs.context import RequestContext, current_request
from gateway.obs.logs import JsonFormatter, TextFormatter
from tests.support.server import LiveServer, live_server


@pytest.fixture(scope="module")
def server(original_dir: Path) -> Iterator[LiveServer]:
    # the cache off: these tests read the engine's own timings and counts per request
    settings = load_settings(engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}},
                             cache={"memory_bytes": 0})
    with live_server(settings) as s:
        yield s


def samples(server: LiveServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(server.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return float(got.get((name, tuple(sorted(labels.items()))), 0.0))


def test_metrics_cover_requests_failures_latency_tokens_batches_and_engine_state(server: LiveServer, reference) -> None:  # type: ignore[no-untyped-def]
    texts = ["the user likes coffee", "người dùng thích cà phê"]
    before = samples(server)
    ok = httpx.post(server.url + "/v1/embeddings", json={"input": texts, "model": "jina-embeddings-v3-query"})
    assert ok.status_code == 200
    bad = httpx.post(server.url + "/v1/embeddings", json={"input": ["x", "word " * 100]})
    assert bad.status_code == 400
    missing = httpx.post(server.url + "/v1/embeddings", json={"input": "x", "model": "gpt-4"})
    assert missing.status_code == 404
    after = samples(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    served = {"route": "/v1/embeddings", "model": "jina-embeddings-v3-query", "task": "retrieval.query", "engine": "hf"}
    assert delta("embed_gateway_requests_total", **served, status="200") == 1
    assert delta("embed_gateway_request_duration_seconds_count", **served) >= 1
    tokens = sum(len(reference.token_ids(t, "retrieval.query")) for t in texts)
    labels = {"model": "jina-embeddings-v3-query", "task": "retrieval.query", "engine": "hf"}
    assert delta("embed_gateway_tokens_total", **labels) == tokens
    assert delta("embed_gateway_inputs_total", **labels) == 2
    assert delta("embed_gateway_queue_duration_seconds_count", engine="hf", task="retrieval.query") == 1
    assert delta("embed_gateway_inference_duration_seconds_count", engine="hf", task="retrieval.query") == 1
    assert delta("embed_gateway_batch_size_count", engine="hf") >= 1
    assert delta("embed_gateway_batch_tokens_sum", engine="hf") >= tokens
    assert ("embed_gateway_queue_depth", (("engine", "hf"),)) in after
    # failures: by status and error code, with what was known when it failed
    too_long = {"route": "/v1/embeddings", "model": "jina-embeddings-v3", "task": "text-matching", "engine": "hf"}
    assert delta("embed_gateway_request_failures_total", **too_long, status="400", code="input_too_long") == 1
    unknown = {"route": "/v1/embeddings", "model": "", "task": "", "engine": ""}  # never the client's model name
    assert delta("embed_gateway_request_failures_total", **unknown, status="404", code="model_not_found") == 1
    assert not any("gpt-4" in str(k) for k in after)
    # engine state, read live
    assert value(after, "embed_gateway_engine_ready", engine="hf") == 1
    assert value(after, "embed_gateway_circuit_open", engine="hf") == 0
    assert value(after, "embed_gateway_parity_status", engine="hf", status="not_required") == 1
    assert ("embed_gateway_fallbacks_total", ()) not in after  # declared with labels, none yet


def test_info_describes_model_engines_limits_and_version(server: LiveServer) -> None:
    from gateway import __version__

    info = httpx.get(server.url + "/info").json()
    assert info["version"] == __version__
    assert info["model"] == "original"  # a local directory is shown by name, never by path
    assert "/tmp" not in json.dumps(info)
    assert info["dtype"] == "float32" and info["device"] == "cpu" and info["dimensions"] == 64
    hf = info["engines"]["hf"]
    assert hf["tasks"] == sorted(["classification", "none", "retrieval.passage", "retrieval.query", "separation",
                                  "text-matching"])
    assert hf["max_input_tokens"] == 64 and hf["max_batch_tokens"] == 1024 and hf["max_queued_tokens"] == 262144
    assert info["limits"] == {
        "max_inputs_per_request": 2048, "max_tokens_per_request": 300000, "max_input_tokens": 64,
        "max_body_bytes": 4194304, "max_concurrent_requests": 512, "request_timeout": 600.0,
    }
    assert info["routes"]["text-matching"] == ["hf"] and info["api_keys_required"] is False


def test_request_id_is_accepted_echoed_or_made_on_every_response(server: LiveServer) -> None:
    r = httpx.post(server.url + "/v1/embeddings", json={"input": "x"}, headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    err = httpx.post(server.url + "/v1/embeddings", json={"input": ""}, headers={"x-request-id": "bad-1"})
    assert err.status_code == 400 and err.headers["x-request-id"] == "bad-1"
    assert len(httpx.get(server.url + "/v1/nowhere").headers["x-request-id"]) == 32
    # not a plain token (could forge log lines): replaced
    forged = httpx.get(server.url + "/health", headers={"x-request-id": 'x" level=error'})
    assert forged.headers["x-request-id"] != 'x" level=error' and len(forged.headers["x-request-id"]) == 32
    timing = httpx.post(server.url + "/v1/embeddings", json={"input": "x"})
    assert timing.headers["x-embed-engine"] == "hf"
    assert float(timing.headers["x-queue-time"]) >= 0 and float(timing.headers["x-inference-time"]) > 0


def test_access_log_has_the_request_id_and_no_texts_unless_asked(original_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "my private memory about my doctor"
    for texts_on in (False, True):
        settings = load_settings(engines={"hf": {"model": str(original_dir), "device": "cpu"}},
                                 server={"log_request_texts": texts_on})
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="gateway.access"), live_server(settings) as s:
            r = httpx.post(s.url + "/v1/embeddings", json={"input": [secret]}, headers={"x-request-id": "rid-7"})
            assert r.status_code == 200
            s.stop()  # the access line is written after the response: stop to be sure it is there
        lines = [rec for rec in caplog.records if rec.name == "gateway.access"]
        assert len(lines) == 1
        line = JsonFormatter().format(lines[0])
        record = json.loads(line)
        assert record["request_id"] == "rid-7" and record["status"] == 200 and record["route"] == "/v1/embeddings"
        assert record["model"] == "jina-embeddings-v3" and record["engine"] == "hf" and record["tokens"] > 0
        assert (secret in line) is texts_on
        if texts_on:
            assert record["texts"] == [secret]


def test_formatters_put_the_context_request_id_on_every_line() -> None:
    token = current_request.set(RequestContext("req-42"))
    try:
        record = logging.LogRecord("gateway.service", logging.WARNING, __file__, 1, "engine %s failed", ("vllm",), None)
        as_json = json.loads(JsonFormatter().format(record))
        assert as_json["request_id"] == "req-42" and as_json["message"] == "engine vllm failed"
        assert as_json["level"] == "warning" and as_json["logger"] == "gateway.service"
        assert "[req-42]" in TextFormatter().format(record)
    finally:
        current_request.reset(token)
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "no request", (), None)
    assert "request_id" not in json.loads(JsonFormatter().format(outside))


def test_json_timestamps_are_utc_to_the_millisecond_across_seconds() -> None:
    fmt = JsonFormatter()
    for created in (1_800_000_000.25, 1_800_000_000.999, 1_800_000_001.0, 1_700_000_000.5):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        want = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(record.msecs):03d}Z"
        assert json.loads(fmt.format(record))["ts"] == want


def test_openapi_documents_what_the_app_answers(server: LiveServer) -> None:
    schema = httpx.get(server.url + "/openapi.json").json()
    post = schema["paths"]["/v1/embeddings"]["post"]
    assert "422" not in post["responses"]  # validation errors are 400 through the error table
    for status in ("200", "400", "401", "404", "413", "429", "500", "503", "504"):
        assert status in post["responses"], status
    assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert "security" not in schema["paths"]["/health"]["get"]
    assert {"/metrics", "/info", "/ready"} <= set(schema["paths"])
