"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis + hypothesis).

The real app over real HTTP with the real HF engine (tiny checkpoint; a 64-token input limit and
a small token total, so over-long inputs and the 413 are reached often), API keys on. Schemathesis
generates requests from the schema — valid ones (positive) and schema-violating ones (negative) —
and every response must: not be a 5xx; have a status the schema documents for the operation;
match the schema's body for that status; reject what the schema rejects; and never carry a stack
trace or a file path. Bounded: a fixed number of examples per operation, derandomised (the same
inputs every run), on loopback only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.config import load_settings
from tests.support.server import LiveServer

KEY = "fuzz-key-0123456789"
#: examples per operation and generation mode; see docs/reliability.md for the totals of a run
EMBEDDING_EXAMPLES = 150
TEI_EXAMPLES = 40
OTHER_EXAMPLES = 15
#: TEI's routes: fuzzed in both modes; their error bodies are TEI's {"error": str, "error_type": str}
TEI_LABELS = ["POST /embed", "POST /embed_all", "POST /embed_sparse", "POST /tokenize", "POST /decode"]
TRIED: dict[str, int] = {}
STATUSES: dict[int, int] = {}


@pytest.fixture(scope="module")
def fuzz_server(original_dir: Path) -> Iterator[LiveServer]:
    s = LiveServer(load_settings(
        engines={"hf": {"model": str(original_dir), "device": "cpu", "max_input_tokens": 64}},
        limits={"max_tokens_per_request": 2000, "max_body_bytes": 65536},
        auth={"api_keys": [KEY]},
    )).start()
    yield s
    s.stop()


def operations() -> list[Any]:
    """The app's operations, from the schema it serves (built without starting anything)."""
    from gateway.app import create_app

    schema = schemathesis.openapi.from_dict(create_app(load_settings()).openapi())
    return [result.ok() for result in schema.get_all_operations()]


OPERATIONS = {op.label: op for op in operations()}

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          negative_data_rejection]


def _no_internals(response: Any, tei: bool = False) -> None:
    text = response.text
    assert "Traceback" not in text and "/work/" not in text and "site-packages" not in text, text[:500]
    if response.status_code >= 400 and response.headers.get("content-type", [""])[0].startswith("application/json"):
        body = json.loads(text)
        if tei:
            assert set(body) == {"error", "error_type"} and isinstance(body["error"], str), body
        else:
            assert set(body) == {"error", "detail"} and set(body["error"]) == {"message", "type", "param", "code"}, body
            assert body["detail"] == body["error"]["message"], body


def fuzz(server: LiveServer, label: str, mode: GenerationMode, examples: int) -> None:
    """``examples`` generated requests for one operation in one mode, each sent and checked."""

    @given(case=OPERATIONS[label].as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        TRIED[label] = TRIED.get(label, 0) + 1
        response = case.call(base_url=server.url, headers={"authorization": f"Bearer {KEY}"}, timeout=60)
        STATUSES[response.status_code] = STATUSES.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS)
        _no_internals(response, tei=label in TEI_LABELS)

    run()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize("label", ["POST /v1/embeddings", "POST /v1/chunk-embeddings"])
def test_embedding_routes_never_5xx_and_match_their_schema(fuzz_server: LiveServer, label: str, mode: GenerationMode) -> None:
    fuzz(fuzz_server, label, mode, EMBEDDING_EXAMPLES)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize("label", TEI_LABELS)
def test_tei_routes_never_5xx_and_match_their_schema(fuzz_server: LiveServer, label: str, mode: GenerationMode) -> None:
    fuzz(fuzz_server, label, mode, TEI_EXAMPLES)


@pytest.mark.parametrize(
    "label", [k for k in OPERATIONS if "embeddings" not in k and k != "POST /admin/reload" and k not in TEI_LABELS]
)
def test_other_routes_never_5xx_and_match_their_schema(fuzz_server: LiveServer, label: str) -> None:
    # positive only: these take no body, so there is nothing schema-invalid to generate
    fuzz(fuzz_server, label, GenerationMode.POSITIVE, OTHER_EXAMPLES)


def test_fuzzing_tried_enough_inputs() -> None:
    """The examples really ran (a schema that generated nothing would pass the tests above)."""
    assert TRIED.get("POST /v1/embeddings", 0) >= 200, TRIED
    assert TRIED.get("POST /v1/chunk-embeddings", 0) >= 100, TRIED
    assert all(TRIED.get(label, 0) >= 40 for label in TEI_LABELS), TRIED
    assert {200, 400} <= set(STATUSES), STATUSES  # both accepted and refused inputs were reached
    print(f"fuzz examples tried: {sum(TRIED.values())} {TRIED}; statuses {dict(sorted(STATUSES.items()))}")
