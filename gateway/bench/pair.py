"""Two served targets in alternating rounds: ``python -m gateway.bench.pair``.

A shared machine's speed drifts by tens of percent over minutes, so two targets timed one after
the other compare two machines. Here both servers stay up and take turns on the same requests,
round after round, and the answer is the median of the per-round ratios. While one is measured
the other's whole process tree is paused (SIGSTOP), so the idle one cannot take the cores.

``--task`` puts every request on one task (vLLM serves text-matching only; a race on passages
sends them as text-matching to both). A target is ``vllm`` or ``gateway`` (``gateway-hf`` is the
same for ``--kind hf``) with optional settings, ``gateway:KEY=VALUE,...``, where each KEY is an
``EMBED_GATEWAY_...`` variable, e.g. ``gateway-hf:ENGINES__HF__BATCH_GATHER_MS=0``.

``--kind`` says what ``--model`` is and how both serve it: ``hf`` (jina-embeddings-v3, the
original layout; the gateway's top-level engine, vLLM with the checkpoint's config class and
text-matching only), ``sentence-transformers`` or ``bge-m3`` (the gateway's engine of that kind
under ``models``, requests without a task; vLLM without remote code, pooling as the checkpoint's
files say, BGE-M3 as ``BgeM3EmbeddingModel`` whose dense output is the normalised CLS row).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.bench.loadgen import BodyFn, closed_loop
from gateway.bench.models import ServedModel
from gateway.bench.models import gateway_env as models_env
from gateway.bench.runner import BenchSettings, gateway_body, gateway_env, vllm_body, token_counter
from gateway.bench.servers import Server, gateway_server, vllm_server
from gateway.bench.stats import summarize
from gateway.bench.workloads import WORKLOADS, BenchRequest, make_workload
from gateway.contract.tasks import TASKS

__all__ = ["MODEL_KINDS", "Target", "main", "on_task", "parse_target"]


@dataclass(frozen=True, slots=True)
class Target:
    spec: str
    kind: str  # "gateway", "gateway-hf" or "vllm"
    env: dict[str, str]


#: what ``--kind`` may name (in-process kinds of the gateway that vLLM can serve too)
MODEL_KINDS = ("hf", "sentence-transformers", "bge-m3")
#: the model name both servers use for a ``--kind`` other than hf
_BENCH_MODEL = "bench-model"


def parse_target(spec: str) -> Target:
    """``vllm`` | ``gateway[:KEY=VALUE,...]`` | ``gateway-hf[:...]`` (the same; KEY with or without
    ``EMBED_GATEWAY_``)."""
    kind, _, rest = spec.partition(":")
    if kind not in ("gateway", "gateway-hf", "vllm"):
        raise ValueError(f"unknown target {kind!r}; use gateway[:KEY=VALUE,...], gateway-hf[:...] or vllm")
    env: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"target setting {item!r} is not KEY=VALUE")
        if kind == "vllm":
            raise ValueError("vllm takes no settings here")
        key = key.upper()
        env[key if key.startswith("EMBED_GATEWAY_") else "EMBED_GATEWAY_" + key] = value
    return Target(spec, kind, env)


def on_task(reqs: list[BenchRequest], task: str) -> list[BenchRequest]:
    """The same requests (texts, token counts) all on ``task``."""
    return [dataclasses.replace(r, task=task) for r in reqs]


def _server(t: Target, s: BenchSettings, model_kind: str, vllm_python: str, out: Path) -> tuple[Server, str]:
    out.mkdir(parents=True, exist_ok=True)
    if t.kind == "vllm":
        if model_kind == "hf":
            return vllm_server(vllm_python, s.model, s.dtype, out)
        # BgeM3EmbeddingModel's default pooling task is "embed&token_classify", which leaves
        # /v1/embeddings unserved (501): ask for the dense task
        extra = ["--hf-overrides", json.dumps({"architectures": ["BgeM3EmbeddingModel"]}),
                 "--pooler-config", json.dumps({"task": "embed"})] if model_kind == "bge-m3" else []
        return vllm_server(vllm_python, s.model, s.dtype, out, served_name=_BENCH_MODEL, trust_remote_code=False,
                           max_model_len=8192 if model_kind == "bge-m3" else None, extra=extra)
    if model_kind == "hf":
        return gateway_server("gateway-hf", gateway_env(s, t.env), out)
    served = ServedModel(_BENCH_MODEL, model_kind, s.model)
    env = models_env([served], device=s.device, dtype=s.dtype, threads=s.threads, extra=t.env)
    return gateway_server(f"gateway-{model_kind}", env, out)


def _bodies(targets: list[Target], model_kind: str) -> list[BodyFn]:
    """What each target is sent: jina's task to the gateway, none to vLLM (text-matching is its
    merged adapter); another kind's requests carry no task to either."""
    if model_kind == "hf":
        return [vllm_body if t.kind == "vllm" else gateway_body for t in targets]
    return [lambda r: {"model": _BENCH_MODEL, "input": list(r.texts)} for _ in targets]


def _agreement(servers: list[tuple[Server, str]], bodies: list[BodyFn], req: BenchRequest) -> float:
    """The smallest cosine between the two targets' vectors of one request: whether they compute
    the same model (a race of two different computations says nothing)."""
    import numpy as np

    vecs = []
    for (_, url), body in zip(servers, bodies, strict=True):
        resp = httpx.post(url + "/v1/embeddings", json=body(req), timeout=600)
        resp.raise_for_status()
        rows = np.array([d["embedding"] for d in resp.json()["data"]], dtype=np.float64)
        vecs.append(rows / np.linalg.norm(rows, axis=1, keepdims=True))
    return round(float(np.min(np.sum(vecs[0] * vecs[1], axis=1))), 6)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.bench.pair", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--kind", default="hf", choices=MODEL_KINDS, help="what --model is (default: %(default)s)")
    ap.add_argument("--a", required=True, help="first target (the ratio's denominator)")
    ap.add_argument("--b", required=True, help="second target")
    ap.add_argument("--workload", default="facts", choices=sorted(WORKLOADS))
    ap.add_argument("--task", choices=[t.value for t in TASKS],
                    help="every request on this task (default: the workload's own)")
    ap.add_argument("--requests", type=int, default=192, help="requests per round")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--vllm-python", default=sys.executable)
    ap.add_argument("--out", type=Path, default=Path("bench-pair"))
    args = ap.parse_args(argv)
    try:
        targets = [parse_target(args.a), parse_target(args.b)]
    except ValueError as exc:
        ap.error(str(exc))
    if min(args.requests, args.concurrency, args.rounds) < 1:
        ap.error("--requests, --concurrency and --rounds must be at least 1")

    from engine_hf.cpu_kernels import detect_cpu

    s = BenchSettings(model=args.model, out_dir=args.out, device=args.device, dtype=args.dtype)
    reqs = make_workload(args.workload, args.requests, token_counter(args.model), seed=0)
    if args.task:
        reqs = on_task(reqs, args.task)
    if args.kind != "hf" and any(t.kind == "gateway-hf" for t in targets):
        ap.error(f"gateway-hf serves jina-embeddings-v3; race a {args.kind} checkpoint as target gateway")
    if args.kind == "hf" and any(t.kind == "vllm" for t in targets) and any(r.task != "text-matching" for r in reqs):
        ap.error(f"vLLM serves text-matching only: race it with --task text-matching (workload {args.workload})")
    servers = [_server(t, s, args.kind, args.vllm_python, args.out / f"{'ab'[i]}") for i, t in enumerate(targets)]
    bodies = _bodies(targets, args.kind)
    rounds: list[dict[str, float]] = []
    try:
        for srv, _ in servers:
            srv.start()
        for (_, url), body in zip(servers, bodies, strict=True):  # warm both, one full wave of clients
            asyncio.run(closed_loop(url + "/v1/embeddings", reqs[: args.concurrency], body,
                                    concurrency=args.concurrency, max_seconds=600))
        agreement = _agreement(servers, bodies, reqs[0])
        for r in range(args.rounds):
            row: dict[str, float] = {}
            for i, ((srv, url), body) in enumerate(zip(servers, bodies, strict=True)):
                other = servers[1 - i][0]
                other.pause()
                try:
                    samples, wall = asyncio.run(closed_loop(url + "/v1/embeddings", reqs, body,
                                                            concurrency=args.concurrency, max_seconds=600))
                finally:
                    other.resume()
                sm = summarize(samples, wall)
                if sm.errors:
                    raise RuntimeError(f"{targets[i].spec}: {sm.errors} failed requests in round {r}")
                row["ab"[i]] = round(sm.tokens_per_second, 1)
                row[f"{'ab'[i]}_p50_ms"], row[f"{'ab'[i]}_p99_ms"] = sm.p50_ms, sm.p99_ms
            row["b_over_a"] = round(row["b"] / row["a"], 3)
            rounds.append(row)
            print(json.dumps({"round": r, **row}), file=sys.stderr, flush=True)
    finally:
        for srv, _ in servers:
            srv.stop()
    ratios = [row["b_over_a"] for row in rounds]
    print(json.dumps({
        "cpu": detect_cpu().summary(), "kind": args.kind, "a": args.a, "b": args.b, "workload": args.workload,
        "task": args.task or "the workload's", "requests_per_round": args.requests,
        "concurrency": args.concurrency, "rounds": rounds,
        "min_cosine_a_b": agreement,
        "b_over_a_median": round(statistics.median(ratios), 3),
        "b_over_a_range": [min(ratios), max(ratios)],
        **{f"{k}_median": round(statistics.median(row[k] for row in rounds), 1)
           for k in ("a", "b", "a_p50_ms", "b_p50_ms", "a_p99_ms", "b_p99_ms")},
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
