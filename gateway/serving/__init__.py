"""Serving one request: the internal spec, the use case, routing, post-processing, retries.

* :mod:`~gateway.serving.spec` — :class:`EmbeddingSpec` and :class:`OutputFormat`, what the wire
  schemas convert into;
* :mod:`~gateway.serving.service` — :class:`EmbeddingService`: alias, limits, fallback;
* :mod:`~gateway.serving.routing` — pure route resolution and per-job plans;
* :mod:`~gateway.serving.postprocess` — truncate, normalise, encode;
* :mod:`~gateway.serving.retry` — the one retry policy;
* :mod:`~gateway.serving.tokenizing` — :class:`TokenService`: tokenize and decode (TEI's
  ``/tokenize`` and ``/decode``) with the engine that serves the task.

Nothing here imports the HTTP layer (:mod:`gateway.api`); the ingest command's local mode uses the
same service without a server.
"""
