"""Observability: every Prometheus metric (:mod:`~gateway.obs.metrics`), the log formats
(:mod:`~gateway.obs.logs`) and a request's facts on their way to both (:mod:`~gateway.obs.context`)."""
