from __future__ import annotations

import pytest

from gateway.contract import EngineCapabilities, Task, UnsupportedTaskError
from gateway.routing import plan

ALL = frozenset([*Task, None])
CAPS = {
    "hf": EngineCapabilities(tasks=ALL, dimensions=1024, max_input_tokens=8192, late_chunking=True),
    "vllm": EngineCapabilities(tasks=frozenset([Task.TEXT_MATCHING]), dimensions=1024, max_input_tokens=8192),
}
ROUTES = {"text-matching": ["vllm", "hf"], "retrieval.query": ["hf"], "none": ["hf"]}


def test_route_order_and_capability_filter() -> None:
    assert plan(Task.TEXT_MATCHING, ROUTES, CAPS) == ["vllm", "hf"]
    assert plan(Task.RETRIEVAL_QUERY, ROUTES, CAPS) == ["hf"]
    assert plan(None, ROUTES, CAPS) == ["hf"]


def test_late_chunking_goes_to_capable_engines_only() -> None:
    assert plan(Task.TEXT_MATCHING, ROUTES, CAPS, late_chunking=True) == ["hf"]


def test_disabled_engine_is_skipped_and_no_engine_is_an_error() -> None:
    assert plan(Task.TEXT_MATCHING, ROUTES, {"vllm": CAPS["vllm"]}) == ["vllm"]
    with pytest.raises(UnsupportedTaskError, match="retrieval.query"):
        plan(Task.RETRIEVAL_QUERY, ROUTES, {"vllm": CAPS["vllm"]})
