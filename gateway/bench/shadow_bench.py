"""What a live shadow A/B costs the primary: ``python -m gateway.bench.shadow_bench``.

One gateway serves the primary model in process under two aliases of the same model and task,
``plain`` and ``shadowed``; every request of ``shadowed`` is also sent (``fraction``, default 1.0)
to a candidate model, served by a second gateway on CPUs of its own (``taskset``), which the
primary gateway reaches as an ``openai`` engine. Closed-loop clients hit the two aliases in
alternating rounds (the order swapped each round, the candidate's queue drained between rounds),
so the difference is the shadow's cost and not the machine's drift. Reported: each alias's p50,
p99 and tokens/s per round, the p50 ratio, failed requests (must be none) and the shadow's own
figures from ``GET /admin/shadow`` (shadowed, dropped, agreement).

A third arm, ``plain_candidate_busy``, separates the gateway's cost from the machine's: ``plain``
again, while the bench itself keeps the candidate gateway as busy as the shadow does (the same
texts, in requests of ``--batch`` texts, ``--shadow-concurrency`` at a time). Where two cores share
a physical core or memory bandwidth, a busy candidate slows the primary whoever sends it work; the
shadow's own cost is ``shadowed`` against this arm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from gateway.bench.loadgen import closed_loop
from gateway.bench.models import ServedModel, gateway_env, parse_serve
from gateway.bench.runner import token_counter
from gateway.bench.servers import Server, gateway_server
from gateway.bench.stats import summarize
from gateway.bench.workloads import WORKLOADS, make_workload

__all__ = ["main", "primary_env"]

_ADMIN_KEY = "shadow-bench"
_ALIASES = ("plain", "shadowed")
_ARMS = (*_ALIASES, "plain_candidate_busy")


def _cpus(spec: str) -> set[int]:
    """``0``, ``0-3`` or ``0,2``: the CPUs a process may run on."""
    out: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def _pinned(srv: Server, cpus: str) -> Server:
    srv.cmd = ["taskset", "-c", cpus, *srv.cmd]
    return srv


def primary_env(primary: ServedModel, candidate_url: str, *, fraction: float, queue: int, concurrency: int,
                batch: int, threads: int | None) -> dict[str, str]:
    """The primary gateway: ``primary`` in process under ``plain`` and ``shadowed``; the candidate
    as an OpenAI-compatible upstream (the candidate gateway), the shadow of ``shadowed``."""
    env = gateway_env([primary], device="cpu", dtype="float32", threads=threads, extra={})
    models = json.loads(env["EMBED_GATEWAY_MODELS"])
    models[primary.name]["aliases"] = {
        "plain": {"task": None},
        "shadowed": {"task": None, "shadow": {"model": "candidate", "fraction": fraction, "queue": queue,
                                              "concurrency": concurrency, "batch": batch}},
    }
    models["candidate"] = {"engines": {"candidate-upstream": {
        "kind": "openai", "url": candidate_url + "/v1", "model": "candidate", "read_timeout": 600}}}
    env["EMBED_GATEWAY_MODELS"] = json.dumps(models)
    env["EMBED_GATEWAY_AUTH__ADMIN_KEY"] = _ADMIN_KEY
    return env


def _shadow_view(url: str) -> dict[str, Any]:
    got = httpx.get(url + "/admin/shadow", headers={"authorization": f"Bearer {_ADMIN_KEY}"}, timeout=30).json()
    return next((p for p in got["shadows"] if p["candidate"] == "candidate"), {})


def _drained(url: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = _shadow_view(url)
        if not view.get("queued") or time.monotonic() > deadline:
            return view
        time.sleep(0.2)


class _BusyCandidate:
    """Keeps the candidate gateway busy from the bench, as the shadow would, while an arm runs."""

    def __init__(self, url: str, texts: list[str], batch: int, concurrency: int) -> None:
        self.url, self.batch, self.concurrency = url + "/v1/embeddings", batch, concurrency
        self.texts = texts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.sent = 0

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=600) as client:
            async def one(offset: int) -> None:
                i = offset
                while not self._stop.is_set():
                    chunk = [self.texts[(i + k) % len(self.texts)] for k in range(self.batch)]
                    await client.post(self.url, json={"model": "candidate", "input": chunk})
                    self.sent += 1
                    i += self.batch * self.concurrency

            await asyncio.gather(*(one(c * self.batch) for c in range(self.concurrency)))

    def __enter__(self) -> _BusyCandidate:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.bench.shadow_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--primary", required=True, type=parse_serve, metavar="NAME=KIND:PATH",
                    help="the model served, in process, e.g. e5=sentence-transformers:/models/e5-small")
    ap.add_argument("--candidate", required=True, type=parse_serve, metavar="NAME=KIND:PATH",
                    help="the candidate, served by a second gateway on --candidate-cpus")
    ap.add_argument("--primary-cpus", default="0", help="CPUs of the primary gateway (taskset; default 0)")
    ap.add_argument("--candidate-cpus", default="1", help="CPUs of the candidate gateway (default 1)")
    ap.add_argument("--client-cpus", help="CPUs of the load generator (default: the primary's)")
    ap.add_argument("--fraction", type=float, default=1.0)
    ap.add_argument("--queue", type=int, default=64, help="the shadow's queue bound")
    ap.add_argument("--shadow-concurrency", type=int, default=1, help="candidate requests in flight")
    ap.add_argument("--batch", type=int, default=64, help="texts per candidate request at most (shadow.batch)")
    ap.add_argument("--workload", default="facts", choices=sorted(WORKLOADS))
    ap.add_argument("--requests", type=int, default=256, help="requests per round and alias")
    ap.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("bench-shadow"))
    args = ap.parse_args(argv)
    if min(args.requests, args.concurrency, args.rounds) < 1 or not 0 <= args.fraction <= 1:
        ap.error("--requests, --concurrency and --rounds must be at least 1, --fraction within 0..1")

    from engine_hf.cpu_kernels import detect_cpu

    args.out.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, _cpus(args.client_cpus or args.primary_cpus))
    candidate = ServedModel("candidate", args.candidate.kind, args.candidate.path)
    cand_srv, cand_url = gateway_server(
        "candidate", gateway_env([candidate], device="cpu", dtype="float32",
                                 threads=len(_cpus(args.candidate_cpus)), extra={}), args.out)
    prim_srv, prim_url = gateway_server(
        "primary", primary_env(args.primary, cand_url, fraction=args.fraction, queue=args.queue,
                               concurrency=args.shadow_concurrency, batch=args.batch,
                               threads=len(_cpus(args.primary_cpus))),
        args.out)
    reqs = make_workload(args.workload, args.requests, token_counter(args.primary.path), seed=0)
    rounds: list[dict[str, Any]] = []
    started: list[Server] = []
    try:
        for srv, cpus in ((cand_srv, args.candidate_cpus), (prim_srv, args.primary_cpus)):
            _pinned(srv, cpus).start()
            started.append(srv)
        url = prim_url + "/v1/embeddings"
        for alias in _ALIASES:  # warm both: one wave of clients each
            asyncio.run(closed_loop(url, reqs[: args.concurrency], lambda r, a=alias: {"model": a, "input": list(r.texts)},
                                    concurrency=args.concurrency, max_seconds=600))
        _drained(prim_url)
        texts = [t for q in reqs for t in q.texts]
        for r in range(args.rounds):
            row: dict[str, Any] = {}
            for arm in (_ARMS if r % 2 == 0 else _ARMS[::-1]):
                alias = "shadowed" if arm == "shadowed" else "plain"
                busy = (_BusyCandidate(cand_url, texts, args.batch, args.shadow_concurrency)
                        if arm == "plain_candidate_busy" else contextlib.nullcontext())
                with busy:
                    samples, wall = asyncio.run(closed_loop(
                        url, reqs, lambda q, a=alias: {"model": a, "input": list(q.texts)},
                        concurrency=args.concurrency, max_seconds=600))
                sm = summarize(samples, wall)
                row[arm] = {"tokens_per_s": round(sm.tokens_per_second, 1), "p50_ms": sm.p50_ms,
                            "p99_ms": sm.p99_ms, "failed": sm.errors}
                _drained(prim_url)  # the candidate's backlog never spills into the next arm
            row["p50_shadowed_over_plain"] = round(row["shadowed"]["p50_ms"] / row["plain"]["p50_ms"], 3)
            row["p50_shadowed_over_busy"] = round(row["shadowed"]["p50_ms"] / row["plain_candidate_busy"]["p50_ms"], 3)
            rounds.append(row)
            print(json.dumps({"round": r, **row}), file=sys.stderr, flush=True)
        shadow = _shadow_view(prim_url)
    finally:
        for srv in reversed(started):
            srv.stop()
    ratios = [row["p50_shadowed_over_plain"] for row in rounds]
    busy_ratios = [row["p50_shadowed_over_busy"] for row in rounds]
    report = {
        "cpu": detect_cpu().summary(), "primary": args.primary.kind, "candidate": args.candidate.kind,
        "primary_cpus": args.primary_cpus, "candidate_cpus": args.candidate_cpus,
        "client_cpus": args.client_cpus or args.primary_cpus, "fraction": args.fraction,
        "workload": args.workload, "requests_per_round": args.requests, "concurrency": args.concurrency,
        "rounds": rounds,
        "failed_requests": sum(row[a]["failed"] for row in rounds for a in _ARMS),
        "p50_shadowed_over_plain_median": round(statistics.median(ratios), 3),
        "p50_shadowed_over_plain_range": [min(ratios), max(ratios)],
        "p50_shadowed_over_busy_median": round(statistics.median(busy_ratios), 3),
        "p50_shadowed_over_busy_range": [min(busy_ratios), max(busy_ratios)],
        **{f"{a}_{k}_median": round(statistics.median(row[a][k] for row in rounds), 1)
           for a in _ARMS for k in ("p50_ms", "p99_ms", "tokens_per_s")},
        "shadow": shadow,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
