from __future__ import annotations

import pytest

from gateway.contract import ROUTE_KEYS, EngineCapabilities, EngineUnavailableError, Task, UnsupportedTaskError
from gateway.serving.routing import RouteConfigError, default_route, plan, resolve_routes

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


def test_token_embeddings_go_to_capable_engines_only() -> None:
    caps = {**CAPS, "hf": EngineCapabilities(tasks=ALL, dimensions=1024, max_input_tokens=8192, token_embeddings=True)}
    # text-matching's route starts with vLLM, which cannot return token states; any capable engine serves
    assert plan(Task.TEXT_MATCHING, {"text-matching": ["vllm"]}, caps, token_embeddings=True) == ["hf"]
    with pytest.raises(UnsupportedTaskError, match="token embeddings"):
        plan(Task.TEXT_MATCHING, ROUTES, CAPS, token_embeddings=True)  # no engine declares them


def test_disabled_engine_is_skipped_and_no_engine_is_an_error() -> None:
    assert plan(Task.TEXT_MATCHING, ROUTES, {"vllm": CAPS["vllm"]}) == ["vllm"]
    with pytest.raises(UnsupportedTaskError, match="retrieval.query"):
        plan(Task.RETRIEVAL_QUERY, ROUTES, {"vllm": CAPS["vllm"]})


# --------------------------------------------------------------------------- the routing table


def test_defaults_put_vllm_first_for_text_matching_and_hf_everywhere() -> None:
    table = resolve_routes({}, CAPS)
    assert table["text-matching"] == ["vllm", "hf"]
    assert all(table[k] == ["hf"] for k in ROUTE_KEYS if k != "text-matching")


def test_defaults_with_vllm_disabled_are_hf_only_and_not_an_error() -> None:
    table = resolve_routes({}, {"hf": CAPS["hf"]}, disabled=["vllm"])
    assert set(table) == set(ROUTE_KEYS) and all(v == ["hf"] for v in table.values())


def test_default_order_ignores_registration_order_but_keeps_unknown_engines() -> None:
    caps = {"hf": CAPS["hf"], "extra": CAPS["hf"], "vllm": CAPS["vllm"]}
    assert default_route("text-matching", caps) == ["vllm", "hf", "extra"]
    assert default_route("separation", caps) == ["hf", "extra"]


def test_listed_task_is_strict_and_other_tasks_keep_defaults() -> None:
    table = resolve_routes({"text-matching": ["hf", "vllm"]}, CAPS)
    assert table["text-matching"] == ["hf", "vllm"] and table["separation"] == ["hf"]


@pytest.mark.parametrize(
    ("routes", "disabled", "fragment"),
    [
        ({"text-matching": ["vllm", "hf"]}, ["vllm"], "names engine 'vllm', which is disabled (engines.vllm.enabled: false)"),
        ({"retrieval.query": ["vllm", "hf"]}, [], "names engine 'vllm', which cannot serve 'retrieval.query'"),
        ({"none": ["gpu2"]}, [], "unknown engine 'gpu2'"),
    ],
)
def test_impossible_routes_are_refused_with_the_reason(routes, disabled, fragment) -> None:  # type: ignore[no-untyped-def]
    caps = {n: c for n, c in CAPS.items() if n not in disabled}
    with pytest.raises(RouteConfigError) as info:
        resolve_routes(routes, caps, disabled=disabled)
    assert fragment in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RouteConfigError) as info:
        resolve_routes({"separation": ["vllm"], "none": ["nope"]}, CAPS)
    assert "separation" in str(info.value) and "nope" in str(info.value)


# --------------------------------------------------------------------------- breaker and parity in plan()


def test_open_circuit_is_skipped_while_another_engine_remains() -> None:
    assert plan(Task.TEXT_MATCHING, ROUTES, CAPS, circuit_open={"vllm"}) == ["hf"]


def test_breaker_never_removes_the_last_engine_for_a_task() -> None:
    assert plan(Task.TEXT_MATCHING, ROUTES, CAPS, circuit_open={"vllm", "hf"}) == ["vllm", "hf"]
    assert plan(Task.RETRIEVAL_QUERY, ROUTES, CAPS, circuit_open={"hf"}) == ["hf"]


def test_quarantined_engine_is_removed_even_when_last() -> None:
    assert plan(Task.TEXT_MATCHING, ROUTES, CAPS, quarantined={"vllm"}) == ["hf"]
    with pytest.raises(EngineUnavailableError, match="parity"):
        plan(Task.TEXT_MATCHING, {"text-matching": ["vllm"]}, CAPS, quarantined={"vllm"})


def test_token_ids_skip_engines_that_do_not_take_them() -> None:
    caps = {**CAPS, "vllm": EngineCapabilities(tasks=frozenset([Task.TEXT_MATCHING]), dimensions=1024,
                                                 max_input_tokens=8192, token_ids=False)}
    assert plan(Task.TEXT_MATCHING, ROUTES, caps, token_ids=True) == ["hf"]
    with pytest.raises(UnsupportedTaskError, match="token-id"):
        plan(Task.TEXT_MATCHING, {"text-matching": ["vllm"]}, caps, token_ids=True)
