"""``embed-gateway embed``: embed a file of texts in bulk and store the vectors (docs/ingestion.md).

Sources (:mod:`~gateway.ingest.sources`) turn JSONL / CSV / TSV / Parquet / text lines into
:class:`~gateway.ingest.records.Record` objects that remember their line; embedders
(:mod:`~gateway.ingest.embedders`) call a running gateway over HTTP or the HF engine in-process;
sinks (:mod:`~gateway.ingest.sinks`, :mod:`~gateway.ingest.qdrant_sink`,
:mod:`~gateway.ingest.pgvector_sink`) write Parquet, ``.npy``, Milvus, Qdrant or Postgres/pgvector,
and each knows which ids it already holds, which is what makes an interrupted run resumable without
duplicates; the stores are stamped with the run's vector space (:mod:`~gateway.ingest.stamp`). The logic
(:mod:`~gateway.ingest.plan`) is pure; :mod:`~gateway.ingest.runner` is the async shell, which
reads the input once for one or several models (one lane each; :mod:`~gateway.ingest.targets`
says which output each model fills).
Nothing here imports torch unless the in-process embedder is chosen.
"""

__all__: list[str] = []
