"""``embed-gateway embed --sparse``: BGE-M3's dense and sparse vectors into Milvus Lite, Qdrant
(local mode) and a real PostgreSQL with pgvector, then each store's own hybrid search.

A live gateway serves a tiny random-weight BGE-M3 in the published layout (and the tiny
jina-embeddings-v3, which has no sparse output). Every stored sparse vector is compared with the
gateway's own ``return_sparse`` answer for its text. The hybrid corpus is 40 documents of common
words, one of which starts with a keyword no other document has: the store's sparse search finds
it first while its dense search (random weights, no notion of words) ranks it far down, and the
store's own fusion (Milvus ``RRFRanker``, Qdrant ``Fusion.RRF``, RRF in SQL) puts it first. The
query code below is the code docs/ingestion.md shows.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from gateway.cli import main
from gateway.contract import SparseVector
from tests.e2e.test_embed_cli import write_jsonl
from tests.support.postgres import PostgresServer, postgres_server  # noqa: F401 - fixture
from tests.support.models import jina_and_bge_m3
from tests.support.server import LiveServer, live_server

KEYWORD = "vegetarian"  # one token of the tiny tokenizer; in the first document position it keeps a weight
COMMON = ("coffee tea morning evening meeting park music weekend project request response database search server "
          "language document retrieval semantic similarity deadline birthday password travel book dog city").split()
TARGET = "d17"
_db = itertools.count()


#: words that keep a sparse weight at a text's start in the tiny random model (most later tokens get
#: none): every document starts with one, so none has an empty sparse vector (Milvus refuses those)
LEAD = ("tea morning park music weekend project request search server language retrieval similarity deadline "
        "password book dog").split()


def hybrid_corpus() -> list[dict[str, str]]:
    """40 documents of 5 common words; ``d17`` alone starts with :data:`KEYWORD`."""
    rng = random.Random(7)
    docs = [" ".join([rng.choice(LEAD)] + [rng.choice(COMMON) for _ in range(4)]) for _ in range(40)]
    docs[17] = f"{KEYWORD} {docs[17]}"
    return [{"id": f"d{i}", "text": t} for i, t in enumerate(docs)]


@pytest.fixture(scope="module")
def gateway(original_dir: Path, m3_dir: Path) -> Iterator[LiveServer]:
    settings = jina_and_bge_m3(original_dir, m3_dir)
    with live_server(settings) as server:
        yield server


def served(url: str, texts: list[str]) -> tuple[np.ndarray, list[dict[int, float]]]:
    """The gateway's own dense vectors and sparse weights for ``texts`` (BGE-M3, ``return_sparse``)."""
    r = httpx.post(url + "/v1/embeddings", json={"model": "bge-m3", "input": texts, "return_sparse": True}, timeout=60)
    r.raise_for_status()
    data = sorted(r.json()["data"], key=lambda d: d["index"])
    dense = np.asarray([d["embedding"] for d in data], dtype=np.float32)
    sparse = [dict(zip(d["sparse_embedding"]["indices"], d["sparse_embedding"]["values"], strict=True)) for d in data]
    return dense, sparse


@pytest.fixture(scope="module")
def corpus(gateway: LiveServer) -> tuple[list[dict[str, str]], dict[str, dict[int, float]]]:
    rows = hybrid_corpus()
    _, sparse = served(gateway.url, [r["text"] for r in rows])
    return rows, {r["id"]: s for r, s in zip(rows, sparse, strict=True)}


@pytest.fixture(scope="module")
def query(gateway: LiveServer) -> tuple[list[float], SparseVector]:
    dense, sparse = served(gateway.url, [KEYWORD])
    weights = sparse[0]
    assert weights, "the keyword has no sparse weight as a query"
    idx = np.asarray(sorted(weights), dtype=np.int64)
    return dense[0].tolist(), SparseVector(idx, np.asarray([weights[int(i)] for i in idx], dtype=np.float32))


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer) -> tuple[str, str]:  # noqa: F811
    kind = request.param
    if kind == "milvus":
        return kind, str(tmp_path / "hybrid.db")
    if kind == "qdrant":
        return kind, str(tmp_path / "qdrant")
    return kind, postgres_server.database(f"hybrid{next(_db)}")


def flags(kind: str, where: str) -> list[str]:
    return {"milvus": ["--milvus", where, "--collection", "docs"], "qdrant": ["--qdrant", where, "--collection", "docs"],
            "pgvector": ["--pgvector", where, "--table", "docs"]}[kind]


# ------------------------------------------------------------------------ each store read by its own client


def stored_sparse(kind: str, where: str) -> tuple[dict[str, dict[int, float]], dict[str, Any]]:
    """Every row's stored sparse weights, and the store's stamp."""
    if kind == "milvus":
        from pymilvus import MilvusClient

        client = MilvusClient(where)
        try:
            rows = client.query("docs", filter='id != ""', output_fields=["id", "sparse"])
            stamp = json.loads(client.describe_collection("docs")["properties"]["embed_gateway.stamp"])
        finally:
            client.close()
        return {r["id"]: {int(k): float(v) for k, v in r["sparse"].items()} for r in rows}, stamp
    if kind == "qdrant":
        from qdrant_client import QdrantClient

        client = QdrantClient(path=where)
        try:
            points, _ = client.scroll("docs", limit=100, with_vectors=True)
            stamp = client.get_collection("docs").config.metadata["embed_gateway"]
        finally:
            client.close()
        return {p.payload["id"]: dict(zip(p.vector["sparse"].indices, p.vector["sparse"].values, strict=True))
                for p in points}, stamp
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(where) as conn:
        register_vector(conn)
        rows = conn.execute("SELECT id, sparse FROM docs").fetchall()
        comment = conn.execute("SELECT obj_description('docs'::regclass, 'pg_class')").fetchone()[0]
    return {i: {int(k): float(v) for k, v in zip(s.indices(), s.values(), strict=True)} for i, s in rows}, json.loads(comment)["embed_gateway"]


def milvus_searches(uri: str, dense: list[float], sparse: dict[int, float]) -> tuple[list[str], list[str], list[str]]:
    from pymilvus import AnnSearchRequest, MilvusClient, RRFRanker

    client = MilvusClient(uri)
    try:
        by_sparse = client.search("docs", data=[sparse], anns_field="sparse", limit=10,
                                  search_params={"metric_type": "IP"}, output_fields=["id"])[0]
        by_dense = client.search("docs", data=[dense], anns_field="vector", limit=40, output_fields=["id"])[0]
        hybrid = client.hybrid_search(
            "docs",
            [AnnSearchRequest(data=[dense], anns_field="vector", param={}, limit=20),
             AnnSearchRequest(data=[sparse], anns_field="sparse", param={"metric_type": "IP"}, limit=20)],
            ranker=RRFRanker(60), limit=5, output_fields=["id"],
        )[0]
    finally:
        client.close()
    return [h["id"] for h in by_sparse], [h["id"] for h in by_dense], [h["id"] for h in hybrid]


def qdrant_searches(path: str, dense: list[float], sparse: SparseVector) -> tuple[list[str], list[str], list[str]]:
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=path)
    try:
        query = models.SparseVector(indices=sparse.indices.tolist(), values=sparse.values.tolist())
        by_sparse = client.query_points("docs", query=query, using="sparse", limit=10).points
        by_dense = client.query_points("docs", query=dense, using="dense", limit=40).points
        hybrid = client.query_points(
            "docs",
            prefetch=[models.Prefetch(query=dense, using="dense", limit=20),
                      models.Prefetch(query=query, using="sparse", limit=20)],
            query=models.FusionQuery(fusion=models.Fusion.RRF), limit=5,
        ).points
    finally:
        client.close()
    return ([p.payload["id"] for p in by_sparse], [p.payload["id"] for p in by_dense],
            [p.payload["id"] for p in hybrid])


#: RRF over the 20 nearest by each vector; ``<=>`` is cosine distance, ``<#>`` the negative inner product
PG_HYBRID = """
WITH dense AS (
    SELECT id, row_number() OVER (ORDER BY vector <=> %(dense)s) AS r
    FROM docs ORDER BY vector <=> %(dense)s LIMIT 20
), sparse AS (
    SELECT id, row_number() OVER (ORDER BY sparse <#> %(sparse)s) AS r
    FROM docs WHERE (sparse <#> %(sparse)s) < 0 ORDER BY sparse <#> %(sparse)s LIMIT 20
)
SELECT id, sum(1.0 / (60 + r)) AS score
FROM (SELECT * FROM dense UNION ALL SELECT * FROM sparse) AS ranked
GROUP BY id ORDER BY score DESC LIMIT 5
"""


def pgvector_searches(dsn: str, dense: list[float], sparse: SparseVector, vocab: int) -> tuple[list[str], list[str], list[str]]:
    import psycopg
    from pgvector import SparseVector as PgSparse
    from pgvector.psycopg import register_vector

    q = {"dense": np.asarray(dense, dtype=np.float32), "sparse": PgSparse(sparse.as_dict(), vocab)}
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        by_sparse = conn.execute("SELECT id FROM docs WHERE (sparse <#> %(sparse)s) < 0 "
                                 "ORDER BY sparse <#> %(sparse)s LIMIT 10", q).fetchall()
        by_dense = conn.execute("SELECT id FROM docs ORDER BY vector <=> %(dense)s LIMIT 40", q).fetchall()
        hybrid = conn.execute(PG_HYBRID, q).fetchall()
    return [r[0] for r in by_sparse], [r[0] for r in by_dense], [r[0] for r in hybrid]


# ------------------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("store", ["milvus", "qdrant", "pgvector"], indirect=True)
def test_sparse_ingest_equals_the_gateway_and_hybrid_search_finds_the_keyword(  # type: ignore[no-untyped-def]
    gateway, corpus, query, store, tmp_path, capsys
) -> None:
    kind, where = store
    rows, want = corpus
    src = write_jsonl(tmp_path / "docs.jsonl", rows)
    args = ["embed", str(src), "--id-field", "id", "--gateway", gateway.url, "--model", "bge-m3", "--task", "none",
            "--sparse", "--batch-size", "8", "--no-progress", *flags(kind, where), "--create-collection"]
    assert main(args) == 0, capsys.readouterr().err
    capsys.readouterr()

    got, stamp = stored_sparse(kind, where)
    assert stamp["sparse"] is True and stamp["model"] == "bge-m3"
    assert set(got) == set(want) and all(want.values())
    for doc_id, weights in want.items():
        assert set(got[doc_id]) == set(weights), doc_id
        for k, v in weights.items():
            assert abs(got[doc_id][k] - v) <= 1e-5, (doc_id, k)
    assert sum(1 for w in want.values() if set(w) & set(query[1].indices.tolist())) == 1  # the keyword is rare

    dense, sparse = query
    if kind == "milvus":
        by_sparse, by_dense, hybrid = milvus_searches(where, dense, sparse.as_dict())
    elif kind == "qdrant":
        by_sparse, by_dense, hybrid = qdrant_searches(where, dense, sparse)
    else:
        vocab = httpx.get(gateway.url + "/v1/models").json()["data"]
        size = next(c["vocab_size"] for c in vocab if c["id"] == "bge-m3")
        by_sparse, by_dense, hybrid = pgvector_searches(where, dense, sparse, size)
    assert by_sparse[0] == TARGET
    assert len(by_dense) == 40 and by_dense.index(TARGET) + 1 > 1  # dense alone ranks it lower
    assert hybrid[0] == TARGET

    # a second run resumes: nothing embedded again, and the stamp (sparse) matches
    assert main(args) == 0
    assert "0 rows embedded, 40 already stored" in capsys.readouterr().err


def test_models_list_the_vocabulary_size(gateway, m3_dir) -> None:  # type: ignore[no-untyped-def]
    cards = {c["id"]: c for c in httpx.get(gateway.url + "/v1/models").json()["data"]}
    assert cards["bge-m3"]["vocab_size"] == json.loads((m3_dir / "config.json").read_text())["vocab_size"]
    assert "sparse" in cards["bge-m3"]["outputs"]


@pytest.mark.parametrize("store", ["qdrant", "pgvector"], indirect=True)
def test_sparse_from_a_model_without_it_is_refused_with_the_gateways_message(  # type: ignore[no-untyped-def]
    gateway, store, tmp_path, capsys
) -> None:
    kind, where = store
    src = write_jsonl(tmp_path / "docs.jsonl", hybrid_corpus()[:4])
    code = main(["embed", str(src), "--gateway", gateway.url, "--model", "jina-embeddings-v3", "--sparse",
                 "--no-progress", *flags(kind, where), "--create-collection"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "offers: dense" in err  # the gateway's 400, as it said it


def test_sparse_where_the_output_or_embedder_cannot_hold_it_is_refused(gateway, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    src = write_jsonl(tmp_path / "docs.jsonl", hybrid_corpus()[:4])
    base = ["embed", str(src), "--sparse", "--no-progress"]
    assert main([*base, "--gateway", gateway.url, "--model", "bge-m3", "--task", "none",
                 "--output", str(tmp_path / "o.parquet")]) == 2
    assert "Parquet and .npy outputs hold dense vectors only" in capsys.readouterr().err
    assert main([*base, "--gateway", gateway.url, "--qdrant", str(tmp_path / "q"), "--collection", "c"]) == 2
    assert "--sparse needs --model" in capsys.readouterr().err
    # a store made without sparse vectors is refused by its stamp before anything is embedded
    q = str(tmp_path / "dense-only")
    assert main(["embed", str(src), "--no-progress", "--gateway", gateway.url, "--model", "bge-m3", "--task", "none",
                 "--qdrant", q, "--collection", "c", "--create-collection"]) == 0
    capsys.readouterr()
    assert main([*base, "--gateway", gateway.url, "--model", "bge-m3", "--task", "none",
                 "--qdrant", q, "--collection", "c"]) == 2
    assert "differs in sparse" in capsys.readouterr().err


@pytest.mark.parametrize("store", ["milvus"], indirect=True)
def test_milvus_reports_a_text_without_sparse_weights_as_a_bad_row(gateway, store, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    kind, where = store
    _, weights = served(gateway.url, ["coffee", "tea"])
    assert not weights[0] and weights[1]  # the tiny model gives "coffee" alone no sparse weight
    src = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "coffee"}, {"id": "b", "text": "tea"}])
    assert main(["embed", str(src), "--id-field", "id", "--gateway", gateway.url, "--model", "bge-m3", "--task", "none",
                 "--sparse", "--skip-bad-rows", "--no-progress", *flags(kind, where), "--create-collection"]) == 0
    err = capsys.readouterr().err
    assert "1 rows embedded" in err and "cannot hold an empty vector" in err
    assert set(stored_sparse(kind, where)[0]) == {"b"}


def test_the_client_returns_the_gateways_sparse_vectors_and_keeps_pinning_spaces(gateway) -> None:  # type: ignore[no-untyped-def]
    from gateway.client import GatewayClient

    texts = [r["text"] for r in hybrid_corpus()[15:19]]
    dense, sparse = served(gateway.url, texts)
    client = GatewayClient(gateway.url)
    try:
        got = client.embed(texts, model="bge-m3", task=None, dimensions=None, sparse=True)
        plain = client.embed(texts, model="bge-m3", task=None, dimensions=None)
    finally:
        client.close()
    np.testing.assert_allclose(got.vectors, dense, atol=1e-6)
    assert got.sparse is not None and plain.sparse is None
    for mine, want in zip(got.sparse, sparse, strict=True):
        assert mine.indices.dtype == np.int64 and mine.values.dtype == np.float32
        assert mine.indices.tolist() == sorted(want)
        np.testing.assert_allclose(mine.values, [want[i] for i in sorted(want)], atol=1e-6)
    assert got.space is not None and plain.space == got.space
    assert client.spaces == {("bge-m3", None, None, True): got.space}
