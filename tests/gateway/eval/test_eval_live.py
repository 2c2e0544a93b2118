"""eval against the real app over HTTP (jina-embeddings-v3 tiny + BGE-M3 tiny behind one gateway):
every figure equals pytrec_eval's, computed here from the rankings eval produced; the rankings
equal exact search on the vectors the gateway itself returns (``dimensions``, ``ubinary``); and the
command line end to end (``--url`` and ``--config`` in process, ``--json``, ``--png``, ``--runs``)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytrec_eval

from gateway.cli import main
from gateway.eval import Options, load_dataset, run_eval
from gateway.eval.runner import EvalReport
from tests.gateway.eval.labelled import write_beir, write_memories
from tests.support.models import jina_and_bge_m3
from tests.support.server import LiveServer, live_server

RECORD_KEYS = {
    "model", "model_id", "pairing", "query_task", "passage_task", "dimensions", "encoding", "bytes_per_vector",
    "ndcg@10", "recall@10", "recall@100", "mrr@10", "engine", "space", "matryoshka", "vectors", "queries", "documents",
    "gateway",
}


@pytest.fixture(scope="module")
def server(original_dir: Path, m3_dir: Path) -> Iterator[LiveServer]:
    settings = jina_and_bge_m3(original_dir, m3_dir)
    with live_server(settings) as s:
        yield s


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_beir(tmp_path_factory.mktemp("beir"))


@pytest.fixture(scope="module")
def report(server: LiveServer, beir_dir: Path) -> EvalReport:
    options = Options(url=server.url, models=("jina-embeddings-v3", "bge-m3"), dimensions=(1024, 64, 32, 12),
                      batch_size=5)
    return asyncio.run(run_eval(load_dataset(beir_dir), options))


def _trec_order(docs: dict[str, float]) -> list[str]:
    """trec_eval's ranking: score descending, ties by document id descending."""
    by_id = sorted(docs, reverse=True)
    return sorted(by_id, key=lambda d: -docs[d])


def test_every_figure_equals_pytrec_eval_on_the_rankings_eval_produced(report: EvalReport, beir_dir: Path) -> None:
    qrels = load_dataset(beir_dir).qrels
    assert len(report.results) == 2 * 3 * 2 + 2
    for result in report.results:
        run = result.run
        assert set(run) == set(qrels) and all(len(docs) == 24 for docs in run.values())  # 24 documents < top 100
        for docs in run.values():
            assert list(docs) == _trec_order(docs)  # kept best first, in trec_eval's order
        per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10", "recall.100"}).evaluate(run)
        top10 = {q: {d: docs[d] for d in _trec_order(docs)[:10]} for q, docs in run.items()}
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
        want = {
            "ndcg@10": np.mean([per_query[q]["ndcg_cut_10"] for q in qrels]),
            "recall@10": np.mean([per_query[q]["recall_10"] for q in qrels]),
            "recall@100": np.mean([per_query[q]["recall_100"] for q in qrels]),
            "mrr@10": np.mean([rr[q]["recip_rank"] for q in qrels]),
        }
        for metric, value in want.items():
            assert result.record[metric] == pytest.approx(value, abs=1e-12), (result.record, metric)
        assert result.record["recall@100"] == 1.0


def test_configurations_follow_each_models_tasks_width_and_matryoshka_flag(report: EvalReport) -> None:
    got = {(r["model"], r["query_task"], r["passage_task"], r["dimensions"], r["encoding"]) for r in report.records()}
    jina = {("jina-embeddings-v3", q, p, d, e) for q, p in (("retrieval.query", "retrieval.passage"),
                                                            ("text-matching", "text-matching"))
            for d in (64, 32, 12) for e in ("float", "binary")}
    assert got == jina | {("bge-m3", "none", "none", 64, "float"), ("bge-m3", "none", "none", 64, "binary")}
    for r in report.records():
        assert set(r) == RECORD_KEYS
        assert r["bytes_per_vector"] == (4 * r["dimensions"] if r["encoding"] == "float" else -(-r["dimensions"] // 8))
        assert r["engine"] == ("hf" if r["model"] == "jina-embeddings-v3" else "bge")
        assert r["vectors"] == ("full" if r["dimensions"] == 64 else "truncated")  # checked against the gateway
    models = {m["model"]: m for m in report.models}
    assert models["bge-m3"]["matryoshka"] is False and models["bge-m3"]["dimensions"] == [64]
    assert "bge-m3 is not Matryoshka-trained: only its full width 64" in models["bge-m3"]["notes"][0]
    assert models["jina-embeddings-v3"]["notes"] == ["jina-embeddings-v3 is 64 wide: 1024 left out"]


def _gateway_vectors(url: str, texts: tuple[str, ...], *, model: str, task: str, dims: int, kind: str,
                     headers: dict[str, str | None] | None = None) -> Any:
    body = {"model": model, "input": list(texts), "task": task, "dimensions": dims, "embedding_type": kind,
            "truncate": True}
    got = httpx.post(f"{url}/v1/embeddings", json=body, timeout=60)
    assert got.status_code == 200, got.text
    if headers is not None:
        headers["space"] = got.headers.get("x-embed-space")
    rows = [d["embedding"] for d in sorted(got.json()["data"], key=lambda d: d["index"])]
    if kind == "ubinary":
        packed = np.array([np.frombuffer(base64.b64decode(r), dtype=np.uint8) for r in rows])
        return np.unpackbits(packed, axis=1)[:, :dims]
    return np.asarray(rows, dtype=np.float64)


@pytest.mark.parametrize(("model", "task", "dims"), [
    ("jina-embeddings-v3", ("retrieval.query", "retrieval.passage"), 12),
    ("jina-embeddings-v3", ("text-matching", "text-matching"), 32),
    ("bge-m3", ("none", "none"), 64),
])
def test_rankings_are_exact_search_on_the_vectors_the_gateway_returns(
    report: EvalReport, server: LiveServer, beir_dir: Path, model: str, task: tuple[str, str], dims: int
) -> None:
    data = load_dataset(beir_dir)
    qt, pt = task
    results = {r.record["encoding"]: r for r in report.results
               if (r.record["model"], r.record["query_task"], r.record["dimensions"]) == (model, qt, dims)}
    qh: dict[str, str | None] = {}
    dh: dict[str, str | None] = {}
    q = _gateway_vectors(server.url, data.query_texts, model=model, task=qt, dims=dims, kind="float", headers=qh)
    d = _gateway_vectors(server.url, data.doc_texts, model=model, task=pt, dims=dims, kind="float", headers=dh)
    # the vector space each side was served in, as the gateway names it (when it does)
    space = None if not (qh["space"] or dh["space"]) else (
        qh["space"] if qh["space"] == dh["space"] else f"query:{qh['space']} passage:{dh['space']}")
    assert results["float"].record["space"] == results["binary"].record["space"] == space
    cosine = q @ d.T
    qb = _gateway_vectors(server.url, data.query_texts, model=model, task=qt, dims=dims, kind="ubinary")
    db = _gateway_vectors(server.url, data.doc_texts, model=model, task=pt, dims=dims, kind="ubinary")
    hamming = (qb[:, None, :] != db[None, :, :]).sum(axis=2)
    for i, qid in enumerate(data.query_ids):
        for j, did in enumerate(data.doc_ids):
            assert results["float"].run[qid][did] == pytest.approx(cosine[i, j], abs=1e-5)
            assert results["binary"].run[qid][did] == -hamming[i, j]


def test_the_command_line_writes_the_table_json_chart_and_runs(
    server: LiveServer, beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png, runs = tmp_path / "eval.json", tmp_path / "eval.png", tmp_path / "runs"
    code = main(["eval", str(beir_dir), "--url", server.url, "--model", "jina-embeddings-v3", "--model", "bge-m3",
                 "--dimensions", "64,16", "--json", str(out), "--png", str(png), "--runs", str(runs)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "ndcg@10" in printed.out and "retrieval.query -> retrieval.passage" in printed.out
    assert "note: bge-m3 is not Matryoshka-trained" in printed.out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    body = json.loads(out.read_text())
    assert set(body) == {"dataset", "models", "results"} and body["dataset"]["documents"] == 24
    assert len(body["results"]) == 2 * 2 * 2 + 2
    assert all(set(r) == RECORD_KEYS for r in body["results"])
    qrels = load_dataset(beir_dir).qrels
    for record in body["results"]:  # each run file, read by pytrec_eval, gives the record's nDCG@10
        name = "__".join([record["model"], record["query_task"], record["passage_task"], str(record["dimensions"]),
                          record["encoding"]])
        with (runs / f"{name}.run").open() as f:
            run = pytrec_eval.parse_run(f)
        values = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
        assert record["ndcg@10"] == pytest.approx(np.mean([v["ndcg_cut_10"] for v in values.values()]), abs=1e-12)


def test_the_command_line_serves_a_configuration_in_process_on_memories(
    original_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"engines:\n  hf: {{model: {original_dir}, device: cpu, max_input_tokens: 64}}\n"
                      "cache: {memory_bytes: 0}\n")
    out = tmp_path / "eval.json"
    code = main(["eval", str(write_memories(tmp_path / "mem")), "--config", str(config),
                 "--model", "jina-embeddings-v3-query", "--encodings", "float", "--json", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    records = json.loads(out.read_text())["results"]
    assert [(r["model"], r["pairing"], r["encoding"]) for r in records] == [
        ("jina-embeddings-v3-query", "query/passage", "float"), ("jina-embeddings-v3-query", "symmetric", "float")]
    assert all(r["engine"] == "hf" and r["dimensions"] == 64 for r in records)


def test_an_unknown_model_and_a_bad_folder_are_clear_errors(
    server: LiveServer, beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(beir_dir), "--url", server.url, "--model", "bge-m4"]) == 1
    err = capsys.readouterr().err
    assert f"the gateway at {server.url} has no model 'bge-m4'; it serves:" in err and "bge-m3" in err
    assert main(["eval", str(tmp_path), "--url", server.url, "--model", "bge-m3"]) == 2
    assert "neither a BEIR set" in capsys.readouterr().err
    assert main(["eval", str(beir_dir), "--url", server.url, "--model", "bge-m3", "--encodings", "int4"]) == 2
    assert "unknown encoding 'int4'" in capsys.readouterr().err


def test_a_model_on_another_gateway_is_reached_at_its_own_url(
    server: LiveServer, beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    nowhere = "http://127.0.0.1:9"  # never contacted: every model names its own gateway
    code = main(["eval", str(beir_dir), "--url", nowhere, "--model", f"bge-m3@{server.url}",
                 "--encodings", "float", "--json", str(out), "--max-retries", "0"])
    assert code == 0, capsys.readouterr().err
    (record,) = json.loads(out.read_text())["results"]
    assert record["model"] == f"bge-m3@{server.url}" and record["gateway"] == server.url
    assert record["model_id"] == "bge-m3" and record["engine"] == "bge"
