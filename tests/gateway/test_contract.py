"""The engine contract imports neither FastAPI nor torch (proved in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.contract import (
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    InputTooLongError,
    InvalidRequestError,
    Task,
    is_retryable,
    parse_task,
)


def loaded_after(imports: str, prefixes: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Import ``imports`` in a fresh interpreter; exit 1 (printing them) if modules named
    ``prefixes`` were loaded on the way."""
    code = (
        f"import sys, {imports};"
        f"bad = sorted(m for m in sys.modules if m.startswith({prefixes!r}));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_contract_and_config_import_without_fastapi_or_torch() -> None:
    out = loaded_after("gateway.contract, gateway.config, gateway.serving.routing, gateway.serving.postprocess",
                       ("fastapi", "starlette", "torch", "transformers"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_serving_and_the_pool_do_not_import_the_http_layer() -> None:
    """Arrows point one way: api -> serving -> pool -> contract; the service never sees a wire schema."""
    out = loaded_after("gateway.serving.service, gateway.pool, gateway.ingest.embedders",
                       ("gateway.api", "fastapi", "starlette"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_task_vocabulary_in_model_order() -> None:
    assert [t.value for t in Task] == [
        "retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"
    ]
    assert parse_task(None) is None and parse_task("none") is None
    assert parse_task("text-matching") is Task.TEXT_MATCHING
    with pytest.raises(ValueError, match="valid tasks"):
        parse_task("text_matching")


def test_retryable_classification() -> None:
    for err in (EngineUnavailableError("x"), EngineTimeoutError("x"), EngineOverloadedError("x", retry_after=2)):
        assert is_retryable(err)
    for err in (InvalidRequestError("x"), InputTooLongError(0, 9000, 8192)):
        assert not is_retryable(err)


def test_token_embedding_jobs_are_plain_jobs() -> None:
    from gateway.contract import EmbedJob

    job = EmbedJob(inputs=["x"], task=None, token_embeddings=True, truncation_direction="left")
    assert job.token_embeddings and job.truncation_direction == "left"
    with pytest.raises(ValueError, match="late chunking"):
        EmbedJob(inputs=["x"], task=None, token_embeddings=True, late_chunking=True)
