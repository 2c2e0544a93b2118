"""The run: embed once per (model, task), derive every size and encoding, search, score.

The only I/O is embedding over HTTP (a thin async shell around :class:`EvalClient`); planning,
search and scoring are the pure functions of :mod:`~gateway.eval.plan`,
:mod:`~gateway.eval.search` and :mod:`~gateway.eval.metrics`.

Efficiency: each text set is embedded once per (model, task) at the model's full width, batched,
with a few requests in flight. Smaller sizes of a Matryoshka model are the full vectors truncated
and re-normalised, which is what the gateway computes for ``dimensions`` (it truncates, then
normalises); a few texts are asked for at each size to check it, and if the gateway answers
otherwise the whole set is asked for at that size. Binary vectors are the float vectors packed as
the gateway packs ``ubinary``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.client import GatewayRequestError, RetryPolicy
from gateway.eval.client import EvalClient
from gateway.eval.data import Dataset
from gateway.eval.metrics import METRICS, Run, evaluate
from gateway.eval.plan import ENCODINGS, ModelRef, ModelView, bytes_per_vector, dimensions_for, pairings, parse_model
from gateway.eval.search import Ranking, search, tie_order, truncate

__all__ = ["EvalReport", "EvalResult", "Options", "run_eval", "to_run"]

#: texts asked for at each smaller size to check that truncating equals the gateway's answer
_PROBE = 8
_SAME = 0.999  # lowest cosine between the gateway's vector and ours that counts as the same


@dataclass(frozen=True)
class Options:
    url: str
    #: names on the gateway at ``url``, or ``NAME@URL`` for a model on another gateway
    models: tuple[str, ...]
    dimensions: tuple[int, ...] | None = None
    encodings: tuple[str, ...] = ENCODINGS
    api_key: str | None = None
    batch_size: int = 32
    concurrency: int = 4
    truncate: bool = True
    top_k: int = 100
    timeout: float = 120.0
    max_retries: int = 8


@dataclass
class EvalResult:
    #: the JSON record (``model``, ``query_task``, ``passage_task``, ``dimensions``, ``encoding``,
    #: ``bytes_per_vector``, the four metrics, ``engine``, ...)
    record: dict[str, Any]
    #: the ranking that was scored: query id -> document id -> score, best first (top ``top_k``)
    run: Run


@dataclass
class EvalReport:
    dataset: dict[str, Any]
    models: list[dict[str, Any]] = field(default_factory=list)
    results: list[EvalResult] = field(default_factory=list)

    def records(self) -> list[dict[str, Any]]:
        return [r.record for r in self.results]

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "models": self.models, "results": self.records()}


def to_run(ranking: Ranking, query_ids: Sequence[str], doc_ids: Sequence[str]) -> Run:
    """A ranking by index as pytrec_eval's run (ids and float scores), best first."""
    return {q: {doc_ids[i]: float(s) for i, s in zip(idx.tolist(), scores.tolist(), strict=True)}
            for q, (idx, scores) in zip(query_ids, ranking, strict=True)}


class _Embedder:
    """Batches with a bounded number of requests in flight; one :class:`EvalClient` per (model, task)."""

    def __init__(self, options: Options, say: Callable[[str], None]) -> None:
        self.options, self.say = options, say
        self.gate = asyncio.Semaphore(options.concurrency)
        self.clients: dict[tuple[str, str, str], EvalClient] = {}

    def client(self, url: str, model: str = "", task: str = "") -> EvalClient:
        key = (url, model, task)
        if key not in self.clients:
            o = self.options
            self.clients[key] = EvalClient(url, api_key=o.api_key, timeout=o.timeout,
                                           policy=RetryPolicy(max_retries=o.max_retries))
        return self.clients[key]

    async def embed(self, texts: Sequence[str], *, ref: ModelRef, task: str, dimensions: int) -> npt.NDArray[np.float32]:
        client, size = self.client(ref.url, ref.name, task), self.options.batch_size

        async def one(batch: Sequence[str]) -> npt.NDArray[np.float32]:
            async with self.gate:
                got = await client.embed(batch, model=ref.name, task=task, dimensions=dimensions,
                                         truncate=self.options.truncate)
            return got.vectors

        parts = await asyncio.gather(*(one(texts[i:i + size]) for i in range(0, len(texts), size)))
        return np.concatenate(parts).astype(np.float32, copy=False)

    async def aclose(self) -> None:
        for c in self.clients.values():
            await c.aclose()


def _same(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> bool:
    if a.shape != b.shape:
        return False
    cos = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return bool((cos >= _SAME).all())


async def _vectors(
    emb: _Embedder, ref: ModelRef, view: ModelView, task: str, texts: Sequence[str], dims: Sequence[int], label: str
) -> tuple[dict[int, npt.NDArray[np.float32]], dict[int, str]]:
    """Every size of ``texts`` embedded with ``task``, and how each size was obtained."""
    emb.say(f"{ref.label}: embedding {len(texts)} {label} with task {task} at {view.width} dimensions")
    full = await emb.embed(texts, ref=ref, task=task, dimensions=view.width)
    out, how = {view.width: full}, {view.width: "full"}
    smaller = [d for d in dims if d != view.width]
    probe = texts[:_PROBE]
    reference = await emb.embed(probe, ref=ref, task=task, dimensions=view.width) if smaller else None
    for d in smaller:
        assert reference is not None
        asked = await emb.embed(probe, ref=ref, task=task, dimensions=d)
        if _same(asked, truncate(reference, d)):
            out[d], how[d] = truncate(full, d), "truncated"
        else:
            emb.say(f"{ref.label}: the gateway's {d}-dimension vectors are not the truncated ones: asking for them")
            out[d], how[d] = await emb.embed(texts, ref=ref, task=task, dimensions=d), "requested"
    return out, how


def _served(query: EvalClient, passage: EvalClient, dimensions: int) -> tuple[str, str | None]:
    """The engines that answered either side, and the vector space(s) the gateway named for this
    size (``x-embed-space``; one value when both sides share it, else ``query:… passage:…``)."""
    engines = ",".join(sorted({*query.served_engines, *passage.served_engines}))
    q = ",".join(sorted(query.served_spaces.get(dimensions, ())))
    p = ",".join(sorted(passage.served_spaces.get(dimensions, ())))
    if not (q or p):
        return engines, None
    return engines, q if q == p else f"query:{q or '?'} passage:{p or '?'}"


async def _cards(emb: _Embedder, refs: Sequence[ModelRef]) -> dict[str, dict[str, Any]]:
    """Each model's card from its gateway's ``GET /v1/models``; an unknown name lists the known ones."""
    cards: dict[str, dict[str, Any]] = {}
    for url in dict.fromkeys(r.url for r in refs):
        listed = {c.get("id"): c for c in await emb.client(url).models()}
        for ref in (r for r in refs if r.url == url):
            if ref.name not in listed:
                raise GatewayRequestError(
                    f"the gateway at {url} has no model {ref.name!r}; it serves: {', '.join(sorted(listed))}")
            cards[ref.label] = listed[ref.name]
    return cards


async def _evaluate_model(
    emb: _Embedder, ref: ModelRef, view: ModelView, dataset: Dataset, report: EvalReport,
) -> None:
    """Every configuration of one model: each text set embedded once per task, then searched and
    scored at every size and encoding."""
    options, ties = emb.options, tie_order(dataset.doc_ids)
    dims, notes = dimensions_for(view, options.dimensions)
    pairs = pairings(view.tasks)
    report.models.append({
        "model": ref.label, "model_id": view.model, "gateway": ref.url, "tasks": list(view.tasks),
        "width": view.width, "matryoshka": view.matryoshka, "dimensions": list(dims),
        "pairings": [p.name for p in pairs], "notes": list(notes),
    })
    for note in notes:
        emb.say(note)
    sides: dict[tuple[str, str], tuple[dict[int, npt.NDArray[np.float32]], dict[int, str]]] = {}
    for p in pairs:
        for side, task, texts in (("queries", p.query_task, dataset.query_texts),
                                  ("documents", p.passage_task, dataset.doc_texts)):
            if (side, task) not in sides:
                sides[(side, task)] = await _vectors(emb, ref, view, task, texts, dims, side)
    for p in pairs:
        (qv, qhow), (dv, dhow) = sides[("queries", p.query_task)], sides[("documents", p.passage_task)]
        for d in dims:
            engine, space = _served(emb.client(ref.url, ref.name, p.query_task),
                                    emb.client(ref.url, ref.name, p.passage_task), d)
            for encoding in options.encodings:
                ranking = search(qv[d], dv[d], encoding=encoding, k=options.top_k, ties=ties)
                run = to_run(ranking, dataset.query_ids, dataset.doc_ids)
                scores = evaluate(dataset.qrels, run)
                record = {
                    "model": ref.label, "model_id": view.model, "gateway": ref.url, "pairing": p.name,
                    "query_task": p.query_task, "passage_task": p.passage_task,
                    "dimensions": d, "encoding": encoding, "bytes_per_vector": bytes_per_vector(d, encoding),
                    **{m: scores.mean[m] for m in METRICS},
                    "engine": engine, "space": space, "matryoshka": view.matryoshka,
                    "vectors": qhow[d] if qhow[d] == dhow[d] else f"{qhow[d]}/{dhow[d]}",
                    "queries": len(dataset.query_ids), "documents": len(dataset.doc_ids),
                }
                report.results.append(EvalResult(record=record, run=run))


async def run_eval(dataset: Dataset, options: Options, say: Callable[[str], None] = lambda _: None) -> EvalReport:
    """Evaluate every configuration of every model named in ``options`` on ``dataset``."""
    for encoding in options.encodings:
        bytes_per_vector(1, encoding)  # an unknown encoding fails before any request
    report = EvalReport(dataset=dataset.summary())
    emb = _Embedder(options, say)
    try:
        refs = [parse_model(m, options.url) for m in dict.fromkeys(options.models)]
        cards = await _cards(emb, refs)
        for ref in refs:
            await _evaluate_model(emb, ref, ModelView.from_card(cards[ref.label]), dataset, report)
    finally:
        await emb.aclose()
    return report
