"""Which routes the front door gates, holds and answers in TEI's shape comes from the routes
themselves (:mod:`gateway.api.policy`): a route that embeds without saying so fails here."""

from __future__ import annotations

import inspect

from fastapi.routing import APIRoute

from gateway.api.openai.routes import router as openai_router
from gateway.api.ops.routes import router as ops_router
from gateway.api.policy import RouteMap, policy_of
from gateway.api.tei.routes import router as tei_router

ROUTES = [r for rt in (openai_router, ops_router, tei_router) for r in rt.routes if isinstance(r, APIRoute)]


def _embeds(route: APIRoute) -> bool:
    return "_embed(" in inspect.getsource(route.endpoint) or "embed_request(" in inspect.getsource(route.endpoint)


def test_every_route_that_embeds_is_gated_and_no_other_is() -> None:
    embedding = [r for r in ROUTES if _embeds(r)]
    assert {r.path for r in embedding} >= {"/v1/embeddings", "/embed", "/embed_sparse", "/", "/invocations"}
    for route in ROUTES:
        assert policy_of(route).work == _embeds(route), route.path


def test_tei_routes_answer_in_teis_shape_and_the_others_in_openais() -> None:
    for route in ROUTES:
        assert policy_of(route).dialect == ("tei" if route in tei_router.routes else "openai"), route.path


def test_the_map_matches_templates_and_methods() -> None:
    routes = RouteMap(ROUTES)
    assert routes.match("POST", "/embed")[1].work
    assert routes.match("POST", "/tokenize")[1].engine and not routes.match("POST", "/tokenize")[1].work
    assert not routes.match("GET", "/embed")[1].work  # a 405 is not work
    assert routes.match("GET", "/v1/models/x")[:2] == ("/v1/models/{model}", policy_of(
        next(r for r in ROUTES if r.path == "/v1/models/{model}")))
    assert routes.match("POST", "/nowhere")[0] == "other"
