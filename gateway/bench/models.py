"""Several models behind one gateway: ``python -m gateway.bench.models``.

One gateway serves every model given with ``--serve NAME=KIND:PATH`` (in-process kinds: ``hf``
for jina-embeddings-v3, ``sentence-transformers``, ``bge-m3``), and closed-loop clients drive it
in phases: each model alone (only its requests), then all of them mixed (requests interleaved by
``model``, an equal share each). The phases alternate round after round (the order rotates), so a
shared machine's drift spreads over all of them; each phase's figures are the median over the
rounds, with their range. Memory: each engine's resident bytes (read in the gateway's process,
:mod:`gateway.bench.memory_server`) and the process's RSS idle after start-up and at its peak;
with ``--solo-memory`` also the RSS of a gateway serving each model alone.

Each model's requests are the workload's, sized by that model's own tokenizer (same seed), so
every model sees inputs of the intended lengths. ``hf`` requests carry the workload's task; the
other kinds get none (no prompt).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.bench.loadgen import BodyFn, closed_loop_tagged
from gateway.bench.servers import gateway_server
from gateway.bench.stats import summarize
from gateway.bench.workloads import WORKLOADS, BenchRequest, make_workload

__all__ = ["KINDS", "ServedModel", "gateway_env", "interleave", "main", "parse_serve", "phase_order", "report"]

#: the in-process kinds a bench gateway can serve
KINDS = ("hf", "sentence-transformers", "bge-m3")
_MEMORY_SERVER = "gateway.bench.memory_server"


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    kind: str
    path: str

    def body(self) -> BodyFn:
        """The request body for this model: ``hf`` with the workload's task, the others without."""
        if self.kind == "hf":
            return lambda r: {"model": self.name, "input": list(r.texts), "task": r.task}
        return lambda r: {"model": self.name, "input": list(r.texts)}


def parse_serve(spec: str) -> ServedModel:
    """``NAME=KIND:PATH``, e.g. ``bge-m3=bge-m3:/models/bge-m3``."""
    name, eq, rest = spec.partition("=")
    kind, colon, path = rest.partition(":")
    if not (eq and colon and name and path):
        raise ValueError(f"--serve {spec!r} is not NAME=KIND:PATH")
    if kind not in KINDS:
        raise ValueError(f"--serve {spec!r}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    return ServedModel(name, kind, path)


def gateway_env(models: Sequence[ServedModel], *, device: str, dtype: str, threads: int | None,
                extra: dict[str, str]) -> dict[str, str]:
    """The environment of one gateway serving ``models`` (the first is the default), cache off,
    the top-level jina engine off: every engine is a named one under ``models``."""
    section = {
        m.name: {
            "default": i == 0,
            "engines": {m.name: {"kind": m.kind, "model": m.path, "device": device, "dtype": dtype,
                                 **({"threads": threads} if threads else {})}},
        }
        for i, m in enumerate(models)
    }
    return {
        "EMBED_GATEWAY_MODELS": json.dumps(section),
        "EMBED_GATEWAY_API__DEFAULT_MODEL": models[0].name,
        "EMBED_GATEWAY_ENGINES__HF__ENABLED": "false",
        "EMBED_GATEWAY_CACHE__MEMORY_BYTES": "0",
        "EMBED_GATEWAY_SERVER__LOG_LEVEL": "warning",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        **extra,
    }


def interleave(per_model: dict[str, list[BenchRequest]], total: int) -> list[tuple[str, BenchRequest]]:
    """``total`` requests, the models taking turns (an equal share each, in the given order)."""
    names = list(per_model)
    return [(names[i % len(names)], per_model[names[i % len(names)]][i // len(names)]) for i in range(total)]


def phase_order(phases: Sequence[str], round_no: int) -> list[str]:
    """The phases of one round, rotated by the round's number: each takes every slot in turn."""
    k = round_no % len(phases)
    return [*phases[k:], *phases[:k]]


def _phase(url: str, reqs: list[tuple[str, BenchRequest]], bodies: dict[str, BodyFn], args: argparse.Namespace
           ) -> dict[str, Any]:
    tagged, wall = asyncio.run(closed_loop_tagged(url + "/v1/embeddings", reqs, bodies, concurrency=args.concurrency,
                                            max_seconds=args.max_seconds))
    models = sorted({m for m, _ in tagged})
    return {"all": summarize([s for _, s in tagged], wall).as_dict(),
            "models": {m: summarize([s for n, s in tagged if n == m], wall).as_dict() for m in models}}


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A phase over its rounds: median and range of tokens/s and of each latency percentile."""
    keys = ("tokens_per_second", "requests_per_second", "p50_ms", "p90_ms", "p99_ms")
    return {**{k: _spread([r[k] for r in rows]) for k in keys}, "errors": sum(r["errors"] for r in rows),
            "requests": sum(r["requests"] for r in rows)}


def _memory(url: str) -> dict[str, Any]:
    return dict(httpx.get(url + "/bench/memory", timeout=30).json())


def _solo_memory(m: ServedModel, reqs: list[tuple[str, BenchRequest]], args: argparse.Namespace,
                 env_extra: dict[str, str]) -> dict[str, Any]:
    """A gateway serving ``m`` alone: its RSS once started and after one phase of its traffic."""
    srv, url = gateway_server(f"gateway-solo-{m.name}", gateway_env([m], device=args.device, dtype=args.dtype,
                                                                    threads=args.threads, extra=env_extra),
                              args.out, module=_MEMORY_SERVER)
    srv.start()
    try:
        idle = _memory(url)["process"]
        _phase(url, reqs, {m.name: m.body()}, args)
        return {"idle": idle, "after": _memory(url)["process"]}
    finally:
        srv.stop()


def run(args: argparse.Namespace, models: list[ServedModel], env_extra: dict[str, str]) -> dict[str, Any]:
    from engine_hf.cpu_kernels import detect_cpu
    from gateway.bench.hardware import cpu_info, versions
    from gateway.bench.runner import token_counter

    args.out.mkdir(parents=True, exist_ok=True)
    per_model = {m.name: make_workload(args.workload, args.requests, token_counter(m.path), seed=args.seed)
                 for m in models}
    alone = {m.name: [(m.name, r) for r in per_model[m.name]] for m in models}
    phases: dict[str, list[tuple[str, BenchRequest]]] = {f"alone:{n}": reqs for n, reqs in alone.items()}
    if len(models) > 1:
        phases["mixed"] = interleave(per_model, args.requests)
    bodies = {m.name: m.body() for m in models}
    srv, url = gateway_server("gateway-models", gateway_env(models, device=args.device, dtype=args.dtype,
                                                            threads=args.threads, extra=env_extra),
                              args.out, module=_MEMORY_SERVER)
    rounds: list[dict[str, Any]] = []
    srv.start()
    try:
        for name, reqs in alone.items():  # warm each model: one wave of clients
            _phase(url, reqs[: args.concurrency], {name: bodies[name]}, args)
        idle = _memory(url)
        for r in range(args.rounds):
            row = {p: _phase(url, phases[p], bodies, args) for p in phase_order(list(phases), r)}
            rounds.append(row)
            brief = {p: v["all"]["tokens_per_second"] for p, v in row.items()}
            print(json.dumps({"round": r, "tokens_per_second": brief}), file=sys.stderr, flush=True)
        after = _memory(url)
        tree_peak = srv.peak_rss()
    finally:
        srv.stop()
    solo = {m.name: _solo_memory(m, alone[m.name], args, env_extra) for m in models} if args.solo_memory else None
    result: dict[str, Any] = {
        "tool": "gateway.bench.models",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m gateway.bench.models " + " ".join(args.argv),
        "cpu": detect_cpu().summary(),
        "hardware": {"cpu": cpu_info(), "versions": versions(("torch", "transformers", "embed-gateway")),
                     "threads": args.threads},
        "settings": {"workload": args.workload, "requests_per_phase": args.requests, "concurrency": args.concurrency,
                     "rounds": args.rounds, "device": args.device, "dtype": args.dtype, "env": env_extra},
        "models": {m.name: {"kind": m.kind, "path": m.path,
                            "requests": len(per_model[m.name]),
                            "tokens": sum(sum(q.tokens) for q in per_model[m.name]),
                            **idle["engines"].get(m.name, {})} for m in models},
        "memory": {"idle": idle["process"], "after": after["process"], "tree_peak_rss_mib": tree_peak,
                   **({"solo": solo} if solo is not None else {})},
        "rounds": rounds,
        "phases": {p: {**_aggregate([row[p]["all"] for row in rounds]),
                       "models": {n: _aggregate([row[p]["models"][n] for row in rounds])
                                  for n in rounds[0][p]["models"]}}
                   for p in phases} if rounds else {},
    }
    return result


def _fmt(x: float) -> str:
    return f"{x:,.1f}"


def _rss(m: dict[str, float]) -> str:
    split = f" (anonymous {_fmt(m['rss_anon_mib'])}, file-backed {_fmt(m['rss_file_mib'])})" if "rss_file_mib" in m else ""
    return f"{_fmt(m['rss_mib'])} MiB{split}"


def report(result: dict[str, Any]) -> str:
    """The run as markdown: the CPU line, memory per model and the process, one row per phase and model."""
    lines = [f"CPU: {result['cpu']}", "",
             f"Workload `{result['settings']['workload']}`, {result['settings']['requests_per_phase']} requests per "
             f"phase, {result['settings']['concurrency']} clients, {result['settings']['rounds']} rounds "
             f"({result['date']}).", "",
             "| model | kind | weights resident MiB | source |", "|---|---|---|---|"]
    for name, m in result["models"].items():
        rb = m.get("resident_bytes")
        lines.append(f"| {name} | {m['kind']} | {_fmt(rb / 2**20) if rb is not None else '–'} | {m.get('source', '–')} |")
    mem = result["memory"]
    lines += ["", f"Process RSS: {_rss(mem['idle'])} idle after start-up, "
                  f"{_fmt(mem['after']['peak_rss_mib'])} MiB at its peak."]
    for name, solo in (mem.get("solo") or {}).items():
        lines.append(f"- {name} alone in a gateway: {_rss(solo['idle'])} idle, "
                     f"{_fmt(solo['after']['peak_rss_mib'])} MiB peak")
    lines += ["", "| phase | model | tokens/s median (range) | p50 ms | p90 ms | p99 ms | errors |",
              "|---|---|---|---|---|---|---|"]
    for phase, agg in result["phases"].items():
        rows = [("all", agg)] if phase != "mixed" else [("all", agg), *agg["models"].items()]
        for model, a in rows:
            label = phase.removeprefix("alone:") if phase != "mixed" else model
            t = a["tokens_per_second"]
            lines.append(f"| {'alone' if phase != 'mixed' else 'mixed'} | {label} | {_fmt(t['median'])} "
                         f"({_fmt(t['min'])}–{_fmt(t['max'])}) | {_fmt(a['p50_ms']['median'])} | "
                         f"{_fmt(a['p90_ms']['median'])} | {_fmt(a['p99_ms']['median'])} | {a['errors']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m gateway.bench.models", description=__doc__.split("\n\n")[0])
    ap.add_argument("--serve", action="append", required=True, metavar="NAME=KIND:PATH",
                    help=f"a model to serve (repeat; the first is the default); KIND: {', '.join(KINDS)}")
    ap.add_argument("--workload", default="facts", choices=sorted(WORKLOADS))
    ap.add_argument("--requests", type=int, default=48, help="requests per phase (mixed: an equal share per model)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=300.0, help="bound on each phase")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=None, help="torch threads of each engine (default: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a gateway setting (an EMBED_GATEWAY_ variable, prefix optional)")
    ap.add_argument("--solo-memory", action="store_true",
                    help="also start a gateway per model alone and read its RSS (one more start-up per model)")
    ap.add_argument("--out", type=Path, default=Path("bench-models"), help="folder for models.json, models.md, logs")
    args = ap.parse_args(argv)
    args.argv = argv
    try:
        models = [parse_serve(s) for s in args.serve]
    except ValueError as exc:
        ap.error(str(exc))
    if len({m.name for m in models}) != len(models):
        ap.error("--serve names a model twice")
    missing = [m.path for m in models if not Path(m.path).is_dir()]
    if missing:
        ap.error(f"no checkpoint folder at {', '.join(missing)}")
    if min(args.requests, args.concurrency, args.rounds) < 1:
        ap.error("--requests, --concurrency and --rounds must be at least 1")
    env: dict[str, str] = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not (eq and key):
            ap.error(f"--set {item!r} is not KEY=VALUE")
        key = key.upper()
        env[key if key.startswith("EMBED_GATEWAY_") else "EMBED_GATEWAY_" + key] = value
    result = run(args, models, env)
    (args.out / "models.json").write_text(json.dumps(result, indent=1) + "\n")
    md = report(result)
    (args.out / "models.md").write_text(md)
    print(md, file=sys.stderr)
    print(json.dumps(result, indent=1))
    return 1 if any(p["errors"] for p in result["phases"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
