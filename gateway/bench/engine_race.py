"""An in-process engine against its reference library, same process, same threads, same texts:
``python -m gateway.bench.engine_race``.

* ``--kind sentence-transformers``: the engine's ``embed()`` against
  ``SentenceTransformer(dir).encode(texts, batch_size=len(texts))``;
* ``--kind bge-m3``: the engine's ``embed()`` (dense only, and dense + sparse + multi-vector)
  against ``BGEM3FlagModel(dir).encode(...)`` with the same outputs. FlagEmbedding's ``encode``
  first runs its first batch once to find a batch size that fits memory (its "adjust batch size"
  probe), so the batch is computed twice; ``flag-forward`` is FlagEmbedding's own model on the
  same padded batch once, tokenisation excluded: the reference's computation without that probe.

Each batch is a workload's first texts (``facts:32`` = 32 facts), token counts by the model's own
tokenizer (specials included; no prompt: no task). The contestants take turns, round after round,
the order flipping each round (a shared machine drifts); the result is each one's median tokens/s
with its range, and the median of the per-round ratios, with the CPU's flags. A sanity line says
how close the dense vectors are (cosine, after normalisation).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.bench.workloads import WORKLOADS, make_workload
from gateway.contract import Engine

__all__ = ["Batch", "main", "parse_batches", "race"]

#: one contestant: embeds the batch's texts, returns the dense vectors (for the sanity line)
Contestant = Callable[[list[str]], Awaitable[npt.NDArray[np.float32]]]


@dataclass(frozen=True, slots=True)
class Batch:
    name: str
    texts: list[str]
    tokens: int


def parse_batches(spec: str) -> list[tuple[str, int]]:
    """``facts:32,passages:8`` -> ``[("facts", 32), ("passages", 8)]``."""
    out = []
    for item in filter(None, spec.split(",")):
        workload, colon, n = item.partition(":")
        if workload not in WORKLOADS or not colon or not n.isdigit() or int(n) < 1:
            raise ValueError(f"batch {item!r} is not WORKLOAD:N (workloads: {', '.join(WORKLOADS)})")
        out.append((workload, int(n)))
    if not out:
        raise ValueError("no batches")
    return out


def _batches(spec: list[tuple[str, int]], model: str) -> list[Batch]:
    from gateway.bench.runner import token_counter

    count = token_counter(model)
    out = []
    for workload, n in spec:
        reqs = make_workload(workload, n, count, seed=0)  # at least one text per request: n requests suffice
        pairs = [(t, k) for r in reqs for t, k in zip(r.texts, r.tokens, strict=True)][:n]
        out.append(Batch(f"{workload}:{n}", [t for t, _ in pairs], sum(k for _, k in pairs)))
    return out


def _unit(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


async def race(contestants: dict[str, Contestant], batch: Batch, rounds: int) -> dict[str, Any]:
    """The contestants in turns on ``batch``; the first is the engine (the ratios' numerator)."""
    names = list(contestants)
    vectors = {n: _unit(await contestants[n](batch.texts)) for n in names}  # warm-up, and the sanity line
    tps: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            await contestants[n](batch.texts)
            tps[n].append(round(batch.tokens / (time.perf_counter() - t0), 1))
    ours = names[0]
    ratios = {n: [round(a / b, 3) for a, b in zip(tps[ours], tps[n], strict=True)] for n in names[1:]}
    return {
        "batch": batch.name, "texts": len(batch.texts), "tokens": batch.tokens,
        "tokens_per_second": {n: {"median": round(statistics.median(v), 1), "min": min(v), "max": max(v),
                                  "rounds": v} for n, v in tps.items()},
        "ours_over": {n: {"median": round(statistics.median(v), 3), "min": min(v), "max": max(v)}
                      for n, v in ratios.items()},
        "min_cosine_vs_engine": {n: round(float(np.min(np.sum(vectors[ours] * vectors[n], axis=1))), 6)
                                 for n in names[1:]},
    }


async def _st(args: argparse.Namespace) -> tuple[Engine, list[tuple[str, dict[str, Contestant]]]]:
    from sentence_transformers import SentenceTransformer

    from engine_hf.st import SentenceTransformersSettings, build
    from gateway.contract import EmbedJob

    engine = build(SentenceTransformersSettings(model=args.model, device="cpu", dtype="float32",
                                                threads=args.threads), name="st")
    await engine.start()
    ref = SentenceTransformer(args.model, device="cpu")

    async def ours(texts: list[str]) -> npt.NDArray[np.float32]:
        return (await engine.embed(EmbedJob(texts, None, truncate=True))).vectors

    async def theirs(texts: list[str]) -> npt.NDArray[np.float32]:
        return np.asarray(ref.encode(texts, batch_size=len(texts), convert_to_numpy=True))

    return engine, [("dense", {"engine": ours, "sentence-transformers": theirs})]


async def _bge_m3(args: argparse.Namespace) -> tuple[Engine, list[tuple[str, dict[str, Contestant]]]]:
    import torch
    from FlagEmbedding import BGEM3FlagModel

    from engine_hf.bge_m3 import BGEM3Settings, build
    from gateway.contract import OUTPUTS, EmbedJob

    engine = build(BGEM3Settings(model=args.model, device="cpu", dtype="float32", threads=args.threads), name="m3")
    await engine.start()
    flag = BGEM3FlagModel(args.model, use_fp16=False, devices="cpu")
    out = []
    sets = {"dense": frozenset({"dense"}), "dense+sparse+colbert": frozenset(OUTPUTS)}
    for label, outputs in sets.items():
        if args.dense_only and label != "dense":
            continue
        every = len(outputs) > 1

        async def ours(texts: list[str], outputs: frozenset[Any] = outputs) -> npt.NDArray[np.float32]:
            return (await engine.embed(EmbedJob(texts, None, truncate=True, outputs=outputs))).vectors

        async def encode(texts: list[str], every: bool = every) -> npt.NDArray[np.float32]:
            res = flag.encode(texts, batch_size=len(texts), max_length=8192, return_dense=True,
                              return_sparse=every, return_colbert_vecs=every)
            return np.asarray(res["dense_vecs"])

        async def forward(texts: list[str], every: bool = every) -> npt.NDArray[np.float32]:
            # FlagEmbedding's own model, one padded pass, inputs tokenised beforehand (as its encode pads them)
            batch = _flag_inputs(flag, texts)
            with torch.inference_mode():
                res = flag.model(batch, return_dense=True, return_sparse=every, return_colbert_vecs=every)
            return np.asarray(res["dense_vecs"].float().numpy())

        out.append((label, {"engine": ours, "flag-encode": encode, "flag-forward": forward}))
    return engine, out


def _flag_inputs(flag: Any, texts: list[str]) -> Any:
    """The padded batch FlagEmbedding's encode builds (cached per text list: tokenising is not the forward)."""
    key = tuple(texts)
    cache = _flag_inputs.__dict__.setdefault("cache", {})
    if key not in cache:
        cache[key] = flag.tokenizer(texts, padding=True, truncation=True, max_length=8192, return_tensors="pt")
    return cache[key]


#: kind -> (the started engine, its races: output set -> contestants)
_KINDS: dict[str, Callable[[argparse.Namespace], Awaitable[tuple[Engine, list[tuple[str, dict[str, Contestant]]]]]]] = {
    "sentence-transformers": _st,
    "bge-m3": _bge_m3,
}


async def _run(args: argparse.Namespace, batches: list[Batch]) -> list[dict[str, Any]]:
    import torch

    torch.set_num_threads(args.threads)
    results = []
    engine, races = await _KINDS[args.kind](args)
    try:
        for label, contestants in races:
            for batch in batches:
                row = {"outputs": label, **await race(contestants, batch, args.rounds)}
                print(json.dumps({k: row[k] for k in ("outputs", "batch", "ours_over")}), file=sys.stderr, flush=True)
                results.append(row)
    finally:
        await engine.aclose()
    return results


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m gateway.bench.engine_race", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", required=True, choices=sorted(_KINDS))
    ap.add_argument("--model", required=True, help="checkpoint folder")
    ap.add_argument("--batches", default="facts:32,passages:8", help="WORKLOAD:TEXTS,... (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of both (default: all)")
    ap.add_argument("--dense-only", action="store_true", help="bge-m3: race the dense output only")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    try:
        spec = parse_batches(args.batches)
    except ValueError as exc:
        ap.error(str(exc))
    if args.rounds < 1 or args.threads < 1:
        ap.error("--rounds and --threads must be at least 1")
    if not os.path.isdir(args.model):
        ap.error(f"no checkpoint folder at {args.model}")

    from engine_hf.cpu_kernels import detect_cpu
    from gateway.bench.hardware import versions

    batches = _batches(spec, args.model)
    results = asyncio.run(_run(args, batches))
    out = {
        "tool": "gateway.bench.engine_race",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m gateway.bench.engine_race " + " ".join(argv),
        "cpu": detect_cpu().summary(), "threads": args.threads, "kind": args.kind, "model": args.model,
        "versions": versions(("torch", "transformers", "sentence-transformers", "FlagEmbedding")),
        "rounds": args.rounds, "results": results,
    }
    text = json.dumps(out, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
