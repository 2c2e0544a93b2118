"""The OpenAI embeddings API with Jina's extensions, as one dialect (its errors: OpenAI's ``error``
object plus Jina's ``detail``, :mod:`gateway.api.errors`).

* :mod:`~gateway.api.openai.protocol` — the wire types; requests convert themselves with ``to_spec()``;
* :mod:`~gateway.api.openai.render` — response bodies from the service's outcome, model cards;
* :mod:`~gateway.api.openai.routes` — ``/v1/embeddings``, ``/v1/chunk-embeddings``, ``/v1/models``.
"""
