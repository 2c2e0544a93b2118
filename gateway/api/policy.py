"""What each route is, declared where the route is: its API dialect (the error shape it answers
in) and whether it embeds or calls an engine.

Why here and not in a list of paths: the front door must bound every embedding route by the
concurrency gate, hold its snapshot through a reload, and answer a refused request in the
route's own error shape. A list of paths beside the routes drifts (a new route silently skips the
gate); a policy on the endpoint and a dialect on the route class cannot. :class:`RouteMap` reads
them from the app's routes once, and matches a request as Starlette does (path template, method).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from re import Pattern
from typing import Any, Literal, NamedTuple, TypeVar

from starlette.routing import BaseRoute, compile_path

__all__ = ["Dialect", "Matched", "RouteMap", "RoutePolicy", "policy_of", "route_policy"]

#: the API a route speaks: OpenAI's (and Jina's) error shape, or TEI's
Dialect = Literal["openai", "tei"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    dialect: Dialect = "openai"
    #: embeds: bounded by the concurrency gate (``limits.max_concurrent_requests``), holds its snapshot
    work: bool = False
    #: calls an engine without embedding (TEI's /tokenize): holds its snapshot, not gated
    engine: bool = False

    @property
    def holds_snapshot(self) -> bool:
        return self.work or self.engine


#: a path no route serves
_NO_ROUTE = RoutePolicy()


def route_policy(*, work: bool = False, engine: bool = False) -> Callable[[F], F]:
    """Mark an endpoint as embedding (``work``) or calling an engine (``engine``)."""

    def mark(fn: F) -> F:
        fn.__route_policy__ = (work, engine)  # type: ignore[attr-defined]
        return fn

    return mark


def policy_of(route: BaseRoute) -> RoutePolicy:
    """A route's policy: the dialect of its route class (``dialect`` attribute), the flags of its endpoint."""
    work, engine = getattr(getattr(route, "endpoint", None), "__route_policy__", (False, False))
    return RoutePolicy(dialect=getattr(route, "dialect", "openai"), work=work, engine=engine)


class Matched(NamedTuple):
    """What a request's method and path match."""

    #: the route's path template (for metric labels; ``other`` when no route has the path)
    template: str
    policy: RoutePolicy
    #: the route, when it serves itself without routing (its ``direct`` attribute, a route with
    #: no path parameters: :class:`gateway.api.body.JsonBodyRoute`); else None
    direct: BaseRoute | None = None


class RouteMap:
    """The app's routes as (template, methods, policy), matched against a request's method and path."""

    def __init__(self, routes: Iterable[BaseRoute], extra_templates: Iterable[str] = ()) -> None:
        entries: list[tuple[Pattern[str], Matched, frozenset[str] | None]] = []
        for route in routes:
            path = getattr(route, "path", None)
            if path is None:
                continue
            methods = getattr(route, "methods", None)
            regex, _, params = compile_path(path)
            direct = route if getattr(route, "direct", False) and not params else None
            entries.append((regex, Matched(path, policy_of(route), direct), frozenset(methods) if methods else None))
        entries += [(compile_path(t)[0], Matched(t, _NO_ROUTE), None) for t in extra_templates]
        self._entries = tuple(entries)
        self.match = lru_cache(maxsize=4096)(self._match)

    def _match(self, method: str, path: str) -> Matched:
        """The route of that method, else the first template the path matches (a 405 is labelled
        by it, with no policy)."""
        fallback: Matched | None = None
        for regex, matched, methods in self._entries:
            if regex.match(path):
                if methods is None or method in methods:
                    return matched
                fallback = fallback or Matched(matched.template, _NO_ROUTE)
        return fallback or Matched("other", _NO_ROUTE)

    def policies(self) -> list[tuple[str, frozenset[str] | None, RoutePolicy]]:
        """Every route's template, methods and policy (for the OpenAPI document and tests)."""
        return [(m.template, methods, m.policy) for _, m, methods in self._entries]
