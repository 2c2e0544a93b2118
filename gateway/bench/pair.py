"""Two served targets in alternating rounds: ``python -m gateway.bench.pair``.

A shared machine's speed drifts by tens of percent over minutes, so two targets timed one after
the other compare two machines. Here both servers stay up and take turns on the same requests,
round after round, and the answer is the median of the per-round ratios. While one is measured
the other's whole process tree is paused (SIGSTOP), so the idle one cannot take the cores.

``--task`` puts every request on one task (vLLM serves text-matching only; a race on passages
sends them as text-matching to both). A target is ``vllm`` or ``gateway-hf`` with optional
settings, ``gateway-hf:KEY=VALUE,...``, where each KEY is an ``EMBED_GATEWAY_...`` variable, e.g.
``gateway-hf:ENGINES__HF__BATCH_GATHER_MS=0``.
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

from gateway.bench.loadgen import closed_loop
from gateway.bench.runner import BenchSettings, gateway_body, gateway_env, vllm_body, token_counter
from gateway.bench.servers import Server, gateway_server, vllm_server
from gateway.bench.stats import summarize
from gateway.bench.workloads import WORKLOADS, BenchRequest, make_workload
from gateway.contract.tasks import TASKS

__all__ = ["Target", "main", "on_task", "parse_target"]


@dataclass(frozen=True, slots=True)
class Target:
    spec: str
    kind: str  # "gateway-hf" or "vllm"
    env: dict[str, str]


def parse_target(spec: str) -> Target:
    """``vllm`` | ``gateway-hf`` | ``gateway-hf:KEY=VALUE,...`` (KEY with or without ``EMBED_GATEWAY_``)."""
    kind, _, rest = spec.partition(":")
    if kind not in ("gateway-hf", "vllm"):
        raise ValueError(f"unknown target {kind!r}; use gateway-hf[:KEY=VALUE,...] or vllm")
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


def _server(t: Target, s: BenchSettings, vllm_python: str, out: Path) -> tuple[Server, str]:
    out.mkdir(parents=True, exist_ok=True)
    if t.kind == "vllm":
        return vllm_server(vllm_python, s.model, s.dtype, out)
    return gateway_server("gateway-hf", gateway_env(s, t.env), out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.bench.pair", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
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
    if any(t.kind == "vllm" for t in targets) and any(r.task != "text-matching" for r in reqs):
        ap.error(f"vLLM serves text-matching only: race it with --task text-matching (workload {args.workload})")
    servers = [_server(t, s, args.vllm_python, args.out / f"{'ab'[i]}") for i, t in enumerate(targets)]
    bodies = [vllm_body if t.kind == "vllm" else gateway_body for t in targets]
    rounds: list[dict[str, float]] = []
    try:
        for srv, _ in servers:
            srv.start()
        for (_, url), body in zip(servers, bodies, strict=True):  # warm both, one full wave of clients
            asyncio.run(closed_loop(url + "/v1/embeddings", reqs[: args.concurrency], body,
                                    concurrency=args.concurrency, max_seconds=600))
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
            row["b_over_a"] = round(row["b"] / row["a"], 3)
            rounds.append(row)
            print(json.dumps({"round": r, **row}), file=sys.stderr, flush=True)
    finally:
        for srv, _ in servers:
            srv.stop()
    ratios = [row["b_over_a"] for row in rounds]
    print(json.dumps({
        "cpu": detect_cpu().summary(), "a": args.a, "b": args.b, "workload": args.workload,
        "task": args.task or "the workload's", "requests_per_round": args.requests,
        "concurrency": args.concurrency, "rounds": rounds,
        "b_over_a_median": round(statistics.median(ratios), 3),
        "b_over_a_range": [min(ratios), max(ratios)],
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
