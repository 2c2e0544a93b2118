"""Exact search over the whole corpus: cosine on float vectors, Hamming distance on packed bits.

No index and no approximation: what is measured is the model, not a vector store's recall. The
order of the results is trec_eval's own (score descending, ties broken by document id descending),
so the ranking handed to pytrec_eval, its top 100 and its top 10 all agree with what trec_eval
would rank from the same scores, even where binary vectors tie.

Binary vectors are packed exactly as the gateway packs ``ubinary`` (a bit set where the value is
> 0, dimension 0 in the most significant bit): :func:`gateway.serving.postprocess.pack_ubinary`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from gateway.serving.postprocess import pack_ubinary

__all__ = ["Ranking", "hamming_scores", "pack_ubinary", "search", "tie_order", "top_k", "truncate"]

#: query x document cells scored at once (float32/int: ~64 MB a block)
_BLOCK_CELLS = 16_000_000

#: per query: (document indices best first, their scores)
Ranking = list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]


def truncate(vectors: npt.NDArray[np.float32], dimensions: int) -> npt.NDArray[np.float32]:
    """The first ``dimensions`` of each row, re-normalised: what the gateway returns for
    ``dimensions`` (it truncates, then normalises) from a full-width vector."""
    out = np.asarray(vectors[:, :dimensions], dtype=np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def tie_order(doc_ids: Sequence[str]) -> npt.NDArray[np.int64]:
    """Per document, its place when ids are sorted descending: trec_eval's tie-break (0 comes first)."""
    order = sorted(range(len(doc_ids)), key=lambda i: doc_ids[i], reverse=True)
    place = np.empty(len(doc_ids), dtype=np.int64)
    place[order] = np.arange(len(doc_ids))
    return place


def top_k(scores: npt.NDArray[np.floating] | npt.NDArray[np.integer], k: int, ties: npt.NDArray[np.int64]) -> Ranking:
    """The ``k`` best documents per row of ``scores`` in trec_eval's order. Every document tied
    with the k-th score is a candidate, so the cut at ``k`` is the one trec_eval would make."""
    k = min(k, scores.shape[1])
    out: Ranking = []
    for row in scores:
        part = np.argpartition(-row, k - 1)[:k]
        cand = np.flatnonzero(row >= row[part].min())
        best = cand[np.lexsort((ties[cand], -row[cand]))[:k]]
        out.append((best.astype(np.int64), row[best].astype(np.float64)))
    return out


def hamming_scores(queries: npt.NDArray[np.uint8], docs: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    """``-hamming(q, d)`` for every pair of packed bit rows (popcount of XOR): higher is closer."""
    width = queries.shape[1]
    if width % 8 == 0:  # 64 bits at a time
        queries, docs = queries.view(np.uint64), docs.view(np.uint64)
    xor = np.bitwise_xor(queries[:, None, :], docs[None, :, :])
    return -np.bitwise_count(xor).sum(axis=2, dtype=np.int64)


def search(
    queries: npt.NDArray[np.float32], docs: npt.NDArray[np.float32], *, encoding: str, k: int,
    ties: npt.NDArray[np.int64],
) -> Ranking:
    """Rank every document for every query: ``float`` by dot product of the (unit) vectors,
    ``binary`` by Hamming distance of their packed signs."""
    if encoding == "binary":
        qb, db = np.ascontiguousarray(pack_ubinary(queries)), np.ascontiguousarray(pack_ubinary(docs))
        cells = max(1, docs.shape[0] * qb.shape[1])

        def score(lo: int, hi: int) -> npt.NDArray[np.floating] | npt.NDArray[np.integer]:
            return hamming_scores(qb[lo:hi], db)
    elif encoding == "float":
        cells = max(1, docs.shape[0])

        def score(lo: int, hi: int) -> npt.NDArray[np.floating] | npt.NDArray[np.integer]:
            return queries[lo:hi] @ docs.T
    else:
        raise ValueError(f"unknown encoding {encoding!r}")
    step = max(1, _BLOCK_CELLS // cells)
    out: Ranking = []
    for lo in range(0, queries.shape[0], step):
        out.extend(top_k(score(lo, lo + step), k, ties))
    return out
