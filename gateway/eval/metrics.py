"""The four figures, computed by trec_eval (``pytrec_eval``), never by hand.

* ``ndcg@10``: trec_eval's ``ndcg_cut.10`` (graded relevance);
* ``recall@10`` / ``recall@100``: ``recall.10`` / ``recall.100``;
* ``mrr@10``: ``recip_rank`` of the run cut to its first 10 documents (trec_eval's ``recip_rank``
  has no cut-off of its own; the run's order is trec_eval's, see :mod:`gateway.eval.search`).

Averages over queries are trec_eval's own aggregation (``compute_aggregated_measure``).
pytrec_eval comes with the ``test`` extra, or ``pip install pytrec-eval-terrier``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["METRICS", "Run", "Scores", "cut", "evaluate"]

#: query id -> document id -> score, best first (the order trec_eval ranks them in)
Run = dict[str, dict[str, float]]

#: our name -> (trec_eval measure to ask for, the key it answers with)
_MEASURES: dict[str, tuple[str, str]] = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10"),
    "recall@10": ("recall.10", "recall_10"),
    "recall@100": ("recall.100", "recall_100"),
}
METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


@dataclass(frozen=True)
class Scores:
    #: metric -> mean over the evaluated queries
    mean: dict[str, float]
    #: query id -> metric -> value
    per_query: dict[str, dict[str, float]]


def _pytrec_eval() -> Any:
    try:
        import pytrec_eval
    except ImportError as exc:
        raise RuntimeError("eval needs pytrec_eval: pip install pytrec-eval-terrier") from exc
    return pytrec_eval


def cut(run: Mapping[str, Mapping[str, float]], k: int) -> Run:
    """The first ``k`` documents of each query's run (runs are kept best first)."""
    return {q: dict(list(docs.items())[:k]) for q, docs in run.items()}


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]) -> Scores:
    """nDCG@10, recall@10, recall@100 and MRR@10 of ``run`` against ``qrels``. Every judged query
    counts: one the run has nothing for scores 0 (trec_eval would silently skip it)."""
    pte = _pytrec_eval()
    qrels = {q: dict(d) for q, d in qrels.items()}
    main = pte.RelevanceEvaluator(qrels, {m for m, _ in _MEASURES.values()}).evaluate(
        {q: dict(d) for q, d in run.items() if q in qrels})
    mrr = pte.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut({q: run[q] for q in run if q in qrels}, 10))
    per_query: dict[str, dict[str, float]] = {}
    for q in qrels:
        row = {name: float(main.get(q, {}).get(key, 0.0)) for name, (_, key) in _MEASURES.items()}
        row["mrr@10"] = float(mrr.get(q, {}).get("recip_rank", 0.0))
        per_query[q] = row
    mean = {name: float(pte.compute_aggregated_measure(_MEASURES[name][1] if name in _MEASURES else "recip_rank",
                                                      [per_query[q][name] for q in per_query]))
            for name in METRICS}
    return Scores(mean=mean, per_query=per_query)
