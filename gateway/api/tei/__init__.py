"""Text Embeddings Inference's API as a dialect on the same port, in TEI's error shape.

* :mod:`~gateway.api.tei.protocol` — TEI's wire types; requests convert themselves with ``to_spec()``;
* :mod:`~gateway.api.tei.render` — TEI's bare-array bodies (vectors, sparse weights, tokens);
* :mod:`~gateway.api.tei.errors` — TEI's error table and bodies;
* :mod:`~gateway.api.tei.routes` — ``/embed`` (also ``/``, ``/invocations``), ``/embed_all``,
  ``/embed_sparse``, ``/tokenize``, ``/decode``, each also under ``/models/{model}``.
"""
