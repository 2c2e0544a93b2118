"""The pure parts: pairings and dimensions from the model list, bytes per vector, exact search in
trec_eval's order, and the figures, each checked against pytrec_eval itself."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval

from gateway.eval.metrics import evaluate
from gateway.eval.plan import (
    ModelRef,
    ModelView,
    Pairing,
    bytes_per_vector,
    dimensions_for,
    pairings,
    parse_dimensions,
    parse_model,
)
from gateway.eval.runner import to_run
from gateway.eval.search import hamming_scores, pack_ubinary, search, tie_order, top_k, truncate
from tests.gateway.eval.labelled import build

JINA = ("retrieval.query", "retrieval.passage", "separation", "classification", "text-matching", "none")


def test_pairings_follow_the_models_tasks() -> None:
    assert pairings(JINA) == (Pairing("query/passage", "retrieval.query", "retrieval.passage"),
                              Pairing("symmetric", "text-matching", "text-matching"))
    assert pairings(["none"]) == pairings([]) == (Pairing("none", "none", "none"),)  # BGE-M3: no tasks
    assert pairings(["query", "passage"]) == (Pairing("query/passage", "query", "passage"),)  # an e5 model
    assert pairings(["text-matching"]) == (Pairing("symmetric", "text-matching", "text-matching"),)


def test_dimensions_keep_what_fits_and_only_the_full_width_of_a_model_not_matryoshka_trained() -> None:
    jina = ModelView("jina", "jina", JINA, 1024, True)
    m3 = ModelView("bge-m3", "bge-m3", ("none",), 1024, False)
    assert dimensions_for(jina, (2048, 1024, 256, 64)) == ((1024, 256, 64), ("jina is 1024 wide: 2048 left out",))
    assert dimensions_for(jina, None) == ((1024,), ())
    assert dimensions_for(jina, (4096,))[0] == (1024,)
    dims, notes = dimensions_for(m3, (1024, 256, 64))
    assert dims == (1024,) and "bge-m3 is not Matryoshka-trained" in notes[0] and "256, 64" in notes[0]
    assert dimensions_for(m3, (1024,)) == ((1024,), ())
    assert parse_dimensions("64, 1024,256,64") == (1024, 256, 64) and parse_dimensions(None) is None
    for bad in ("a,b", "0", "-8", ","):
        with pytest.raises(ValueError, match="--dimensions takes positive integers"):
            parse_dimensions(bad)


def test_model_view_reads_a_models_card() -> None:
    card = {"id": "m3-alias", "model": "bge-m3", "tasks": ["none"], "max_dimensions": 1024, "matryoshka": False}
    assert ModelView.from_card(card) == ModelView("m3-alias", "bge-m3", ("none",), 1024, False)


def test_bytes_per_vector() -> None:
    assert bytes_per_vector(1024, "float") == 4096 and bytes_per_vector(1024, "binary") == 128
    assert bytes_per_vector(12, "binary") == 2
    with pytest.raises(ValueError, match="unknown encoding"):
        bytes_per_vector(8, "int4")


def test_hamming_by_popcount_equals_counting_differing_bits() -> None:
    rng = np.random.default_rng(0)
    for d in (12, 64, 100):
        q, c = rng.standard_normal((5, d)).astype(np.float32), rng.standard_normal((9, d)).astype(np.float32)
        want = -((q[:, None, :] > 0) != (c[None, :, :] > 0)).sum(axis=2)
        np.testing.assert_array_equal(hamming_scores(pack_ubinary(q), pack_ubinary(c)), want)
        ranking = search(truncate(q, d), truncate(c, d), encoding="binary", k=4, ties=tie_order([str(i) for i in range(9)]))
        for row, (idx, scores) in zip(want, ranking, strict=True):
            np.testing.assert_array_equal(scores, row[idx])
            assert sorted(row, reverse=True)[:4] == list(scores)


def test_truncate_is_prefix_then_unit_length() -> None:
    v = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)
    np.testing.assert_allclose(truncate(v, 2), [[0.6, 0.8]])


@pytest.mark.parametrize("seed", range(5))
def test_the_cut_at_k_is_the_one_trec_eval_makes_even_with_ties(seed: int) -> None:
    """Scores with many ties: our top 10 scored by pytrec_eval equals pytrec_eval on every document."""
    rng = np.random.default_rng(seed)
    doc_ids = [f"d{i:02d}" if i % 3 else f"x{i}" for i in range(40)]
    scores = rng.integers(0, 4, size=(6, 40)).astype(np.float64)
    qids = [f"q{i}" for i in range(6)]
    qrels = {q: {d: int(rng.integers(0, 3)) for d in rng.choice(doc_ids, 8, replace=False)} for q in qids}
    full = {q: {d: float(s) for d, s in zip(doc_ids, row, strict=True)} for q, row in zip(qids, scores, strict=True)}
    cut = to_run(top_k(scores, 10, tie_order(doc_ids)), qids, doc_ids)
    measures = {"ndcg_cut.10", "P.10", "recip_rank"}
    want = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "P.10"}).evaluate(full)
    got = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(cut)
    for q in qids:
        assert got[q]["ndcg_cut_10"] == want[q]["ndcg_cut_10"] and got[q]["P_10"] == want[q]["P_10"]
        assert len(cut[q]) == 10


def _labelled_runs() -> tuple[dict[str, dict[str, int]], dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    docs, _, qrels = build()
    perfect, reversed_ = {}, {}
    for q, rel in qrels.items():
        order = sorted(docs, key=lambda d: -rel.get(d, 0))  # most relevant first, the rest after
        perfect[q] = {d: float(len(order) - i) for i, d in enumerate(order)}
        reversed_[q] = {d: float(i + 1) for i, d in enumerate(order)}
    return qrels, perfect, reversed_


def test_a_perfect_ranking_scores_one_and_a_reversed_one_less() -> None:
    qrels, perfect, reversed_ = _labelled_runs()
    best = evaluate(qrels, perfect).mean
    assert best == {"ndcg@10": 1.0, "recall@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}
    worst = evaluate(qrels, {q: dict(reversed(list(r.items()))) for q, r in reversed_.items()}).mean
    assert worst["ndcg@10"] < 1.0 and worst["recall@10"] < 1.0 and worst["mrr@10"] < 1.0
    assert worst["recall@100"] == 1.0  # all 24 documents are in the run


def test_a_query_the_run_misses_counts_as_zero() -> None:
    qrels, perfect, _ = _labelled_runs()
    some = dict(list(perfect.items())[: len(perfect) // 2])
    assert evaluate(qrels, some).mean["ndcg@10"] == pytest.approx(0.5)


def test_a_model_may_name_its_own_gateway() -> None:
    assert parse_model("bge-m3", "http://a:8080") == ModelRef("bge-m3", "bge-m3", "http://a:8080")
    assert parse_model("jina-int8@http://b:8081", "http://a:8080") == ModelRef(
        "jina-int8@http://b:8081", "jina-int8", "http://b:8081")
    assert parse_model("odd@name", "http://a:8080").name == "odd@name"
