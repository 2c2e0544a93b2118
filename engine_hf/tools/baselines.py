"""In-process reference points for ``embed-gateway bench`` (no HTTP, no scheduler).

* ``ceiling`` — the bare forward pass on uniform-length batches: mean time per token measured on
  batches of identical-length sequences at grid lengths spanning the workload, interpolated at each
  sequence's length and summed. No padding, no queueing, no tokenisation, no HTTP: what the
  workload costs with perfect batching. It is timed on every forward path asked for
  (``--paths``, :data:`FORWARD_PATHS`: the engine's own forward pass, packed on CPU and padded on
  CUDA as ``--attention`` says; ONNX Runtime on our export) and is the **fastest** of them: the
  ratio to it is what serving costs against the best this machine does, not against our own path.
* ``single`` — median latency of one forward pass of one short text (the idle-latency yardstick).
* ``naive`` — what a straightforward Transformers server does (sentence-transformers style):
  fixed batches of 32 texts in arrival order, padded to the longest, tokenisation included.

Run as ``python -m engine_hf.tools.baselines MODE --model DIR --requests FILE`` (the bench runner
does), each in its own process so its peak memory is its own; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine_hf.checkpoint import describe_checkpoint, resolve_model_dir
from engine_hf.device import resolve_device, resolve_dtype, use_packed
from engine_hf.model import JinaEncoder
from engine_hf.tokenization import TextEncoder, load_tokenizer
from engine_hf.tools.measure import rss_mib
from gateway.contract import Task, parse_task

__all__ = ["FORWARD_PATHS", "Forward", "PathContext", "ceiling", "load_encoder", "naive"]

#: one forward pass of ``seqs`` (token ids), every row on adapter ``adapter``; its output is discarded
Forward = Callable[[list[list[int]], int], object]


@dataclass(frozen=True, slots=True)
class PathContext:
    """What a forward path is built from: the loaded engine encoder and the run's options."""

    enc: JinaEncoder
    packed: bool
    onnx: Path | None
    threads: int | None


def _engine_path(ctx: PathContext) -> Forward:
    """The engine's own forward pass, as it serves (dtype, attention mode)."""
    return lambda seqs, adapter: ctx.enc.pooled_batch(seqs, [adapter] * len(seqs), packed=ctx.packed)


def _ort_path(ctx: PathContext) -> Forward:
    """ONNX Runtime on the fp32 export of the same weights (``engine_hf.tools.onnx_export``)."""
    from engine_hf.tools.onnx_export import ort_session, pooled

    if ctx.onnx is None:
        raise SystemExit("the ort forward path needs --onnx DIR (an export of this checkpoint)")
    session = ort_session(ctx.onnx, ctx.threads)
    return lambda seqs, adapter: pooled(session, seqs, adapter)


#: the forward paths the ceiling can be timed on, by name. A new CPU path of the engine (other
#: kernels, dtypes) plugs in here: the ceiling reports each path asked for and takes the fastest.
FORWARD_PATHS: dict[str, Callable[[PathContext], Forward]] = {"engine": _engine_path, "ort": _ort_path}


def load_encoder(model: str, device: str, dtype: str) -> tuple[JinaEncoder, TextEncoder]:
    """The encoder on ``device``/``dtype`` and the text encoder of its checkpoint."""
    path = resolve_model_dir(model)
    info = describe_checkpoint(path)
    dev = resolve_device(device)
    enc = JinaEncoder(info, device=dev, dtype=resolve_dtype(dtype, dev))
    text = TextEncoder(load_tokenizer(path), instructions=info.instructions, max_tokens=info.max_input_tokens,
                       vocab_size=enc.config.vocab_size)
    return enc, text


def _adapter(enc: JinaEncoder, task: Task | None) -> int:
    return -1 if task is None else enc.task_index[task]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _uniform_timing(forward: Forward, vocab_size: int, adapter: int, length: int, max_batch_tokens: int,
                    on_gpu: bool) -> tuple[float, float]:
    """Time per token of a forward pass on a batch of identical-length sequences: ``(mean, best)``
    over the repeats. The mean is the ceiling: the served figures it is compared with are means too
    (all tokens over all the time), and the best of a few noisy repeats would flatter the ceiling."""
    batch = max(1, min(64, max_batch_tokens // length))
    g = torch.Generator().manual_seed(length)
    seqs = torch.randint(5, min(vocab_size, 8000), (batch, length), generator=g).tolist()
    if on_gpu:
        forward(seqs, adapter)  # warm-up at this shape (kernel selection)
    # long sequences on a CPU take minutes each: one timing is enough there
    repeats = 3 if on_gpu or batch * length < 2048 else 1
    times = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        forward(seqs, adapter)
        _sync()
        times.append(time.perf_counter() - t0)
    tokens = batch * length
    return sum(times) / (repeats * tokens), min(times) / tokens


def _interpolated(grid: list[int], timed: Mapping[int, tuple[float, float]], lengths: Sequence[int]) -> tuple[float, float]:
    """Seconds (mean, best) of all ``lengths``, per-token time interpolated between grid lengths."""

    def at(n: int, which: int) -> float:
        for a, b in zip(grid, grid[1:]):
            if a <= n <= b:
                w = (n - a) / (b - a) if b > a else 0.0
                return timed[a][which] * (1 - w) + timed[b][which] * w
        return timed[grid[0]][which]

    return sum(n * at(n, 0) for n in lengths), sum(n * at(n, 1) for n in lengths)


def ceiling(
    enc: JinaEncoder, text: TextEncoder, requests: list[dict[str, Any]], max_batch_tokens: int, *, packed: bool = False,
    paths: Mapping[str, Forward] | None = None,
) -> dict[str, Any]:
    """Time per token measured on uniform-length batches at grid lengths spanning the workload,
    interpolated at each sequence's length: what the workload would cost with perfect batching.
    ``packed``: the attention mode the engine serves with. ``paths``: the forward paths to time
    (default: the engine's alone); the result is the fastest, each path's figures under ``paths``."""
    lengths = []
    for r in requests:
        task = parse_task(r["task"])
        lengths += [len(e.ids) for e in text.encode(r["texts"], task, truncate=True)]
    lo, hi = min(lengths), max(lengths)
    grid = sorted({lo, hi, *(2**k for k in range(3, 14) if lo < 2**k < hi)})
    paths = paths or {"engine": _engine_path(PathContext(enc, packed, None, None))}
    adapter = len(enc.task_index) - 1
    tokens = sum(lengths)
    per_path: dict[str, dict[str, Any]] = {}
    for name, forward in paths.items():
        forward([[0, 5, 2]], adapter)  # first-call costs out of the timings
        timed = {n: _uniform_timing(forward, enc.config.vocab_size, adapter, n, max_batch_tokens,
                                    enc.device.type == "cuda") for n in grid}
        seconds, best_seconds = _interpolated(grid, timed, lengths)
        per_path[name] = {"seconds": seconds, "tokens_per_second": tokens / seconds,
                          "best_tokens_per_second": tokens / best_seconds,
                          "grid": {str(n): round(1 / timed[n][0], 1) for n in grid}}
    fastest = max(per_path, key=lambda k: per_path[k]["tokens_per_second"])
    top = per_path[fastest]
    return {"tokens": tokens, "seconds": top["seconds"], "tokens_per_second": top["tokens_per_second"],
            "best_tokens_per_second": top["best_tokens_per_second"], "attention": "packed" if packed else "padded",
            "grid": top["grid"], "path": fastest,
            "paths": {k: {"tokens_per_second": round(v["tokens_per_second"], 1), "seconds": v["seconds"],
                          "best_tokens_per_second": round(v["best_tokens_per_second"], 1)} for k, v in per_path.items()}}


def single(
    enc: JinaEncoder,
    text: TextEncoder,
    requests: list[dict[str, Any]],
    repeats: int = 30,
    *,
    packed: bool = False,
    url: str | None = None,
    served_model: str | None = None,
    rounds: int = 6,
) -> dict[str, Any]:
    """Median latency of one forward pass of the first request's first text, alone.

    With ``url`` (a server's ``/v1/embeddings`` that serves the same model): the same text also
    goes to the server one request at a time, **alternating** with the bare passes (``rounds``
    rounds of ``repeats // rounds`` passes, then as many requests), so both see the same machine:
    a 20-token pass mostly reads the weights, and its time follows the memory bandwidth other work
    leaves. Adds ``served_p50_ms`` and ``served_over_bare`` (served p50 / bare p50)."""
    r = requests[0]
    task = parse_task(r["task"])
    ids = text.encode(r["texts"][:1], task, truncate=True)[0].ids
    row = _adapter(enc, task)

    def bare() -> float:
        _sync()
        t0 = time.perf_counter()
        enc.pooled_batch([ids], [row], packed=packed)
        _sync()
        return time.perf_counter() - t0

    bare()
    out: dict[str, Any] = {"tokens": len(ids)}
    if url is None:
        times = sorted(bare() for _ in range(repeats))
    else:
        import httpx  # the bench's extra; only this mode talks HTTP

        body = {"input": r["texts"][:1], "task": r["task"], **({"model": served_model} if served_model else {})}
        times, served = [], []
        with httpx.Client(timeout=120) as client:
            client.post(url, json=body).raise_for_status()  # warm the connection
            per_round = max(1, repeats // rounds)
            for _ in range(rounds):
                times += [bare() for _ in range(per_round)]
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    client.post(url, json=body).raise_for_status()
                    served.append(time.perf_counter() - t0)
        times.sort()
        served.sort()
        out["served_p50_ms"] = served[len(served) // 2] * 1000
        out["served_over_bare"] = served[len(served) // 2] / times[len(times) // 2]
    out["seconds"] = times[len(times) // 2]
    out["tokens_per_second"] = len(ids) / out["seconds"]
    return out


def naive(enc: JinaEncoder, text: TextEncoder, requests: list[dict[str, Any]], batch_size: int = 32) -> dict[str, Any]:
    items = [(t, parse_task(r["task"])) for r in requests for t in r["texts"]]
    enc.pooled_batch([[0, 5, 2]], [-1], packed=False)  # warm-up
    _sync()
    t0 = time.perf_counter()
    tokens = padded = 0
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        encoded = [text.encode([t], task, truncate=True)[0].ids for t, task in chunk]
        tokens += sum(len(ids) for ids in encoded)
        padded += len(encoded) * max(len(ids) for ids in encoded)
        enc.pooled_batch(encoded, [_adapter(enc, task) for _, task in chunk], packed=False)
    _sync()
    seconds = time.perf_counter() - t0
    return {"tokens": tokens, "padded_tokens": padded, "seconds": seconds, "tokens_per_second": tokens / seconds}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m engine_hf.tools.baselines")
    p.add_argument("mode", choices=["ceiling", "naive", "single"])
    p.add_argument("--model", required=True)
    p.add_argument("--requests", required=True, help="JSON list of {texts, task}")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int)
    p.add_argument("--max-batch-tokens", type=int, default=16384)
    p.add_argument("--attention", default="auto", choices=["auto", "packed", "padded"],
                   help="the engine's engines.hf.attention (ceiling and single use the same forward pass)")
    p.add_argument("--paths", default="engine", help=f"ceiling: comma-separated forward paths of {sorted(FORWARD_PATHS)}")
    p.add_argument("--onnx", type=Path, help="the ONNX export the ort path runs (engine_hf.tools.onnx_export)")
    p.add_argument("--url", help="single: a server's /v1/embeddings to time alternately with the bare passes")
    p.add_argument("--served-model", help="single: the model name to send to --url")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    enc, text = load_encoder(args.model, args.device, args.dtype)
    requests = json.loads(Path(args.requests).read_text())
    packed = use_packed(args.attention, enc.device)
    if args.mode == "ceiling":
        names = [n for n in args.paths.split(",") if n]
        unknown = sorted(set(names) - set(FORWARD_PATHS))
        if unknown:
            raise SystemExit(f"unknown forward paths {unknown}; known: {sorted(FORWARD_PATHS)}")
        ctx = PathContext(enc, packed, args.onnx, args.threads)
        result = ceiling(enc, text, requests, args.max_batch_tokens, packed=packed,
                         paths={n: FORWARD_PATHS[n](ctx) for n in names})
    elif args.mode == "single":
        result = single(enc, text, requests, packed=packed, url=args.url, served_model=args.served_model)
    else:
        result = naive(enc, text, requests)
    result["peak_rss_mib"] = round(rss_mib()[1], 1)
    if torch.cuda.is_available():
        result["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
