"""The HTTP layer: one vertical slice per API dialect, on shared pieces.

Slices (a slice imports no other slice; ``tests/test_architecture.py`` checks it):

* :mod:`gateway.api.openai` — OpenAI's embeddings API with Jina's fields (``/v1/...``);
* :mod:`gateway.api.tei` — Text Embeddings Inference's API (``/embed``, ...);
* :mod:`gateway.api.ops` — the operational API (``/health``, ``/ready``, ``/metrics``, ``/info``, ``/admin/...``).

Shared: :mod:`~gateway.api.errors` (the one error table, the default error body),
:mod:`~gateway.api.middleware` (the front door), :mod:`~gateway.api.policy` (what each route is),
:mod:`~gateway.api.auth`, :mod:`~gateway.api.services`, :mod:`~gateway.api.disconnect`,
:mod:`~gateway.api.quoting`, :mod:`~gateway.api.error_parts`, :mod:`~gateway.api.wire_view`.
"""
