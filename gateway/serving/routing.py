"""The routing policy lives with the pool (:mod:`gateway.pool.routing`); re-exported here for callers
that still import it from the serving layer."""

from gateway.pool.routing import RouteConfigError, candidates, default_route, plan, resolve_routes

__all__ = ["RouteConfigError", "candidates", "default_route", "plan", "resolve_routes"]
