"""Serving one request: the internal spec, the use case, routing, post-processing, retries.

* :mod:`~gateway.serving.spec` — :class:`EmbeddingSpec` and :class:`OutputFormat`, what the wire
  schemas convert into;
* :mod:`~gateway.serving.service` — :class:`EmbeddingService`: alias, limits, fallback;
* :mod:`~gateway.serving.routing` — pure route resolution and per-job plans;
* :mod:`~gateway.serving.postprocess` — truncate, normalise, encode;
* :mod:`~gateway.serving.retry` — the one retry policy.

Nothing here imports the HTTP layer (:mod:`gateway.api`); the ingest command's local mode uses the
same service without a server.
"""
