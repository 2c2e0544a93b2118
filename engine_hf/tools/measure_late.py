"""Measure what late chunking costs, through the real engine (tokeniser, scheduler, windows).

``python -m engine_hf.tools.measure_late --model DIR --tokens 65536 [--window W --overlap O]``
builds a document of about ``--tokens`` tokens cut into chunks of about ``--chunk-tokens`` tokens, and times
(1) late chunking it (one pass, or windows when it is longer than ``--window``) and (2) embedding
the same chunks independently (classic chunking), each ``--repeats`` times, median reported.
docs/late-chunking.md quotes its output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any, Literal

from engine_hf.late_chunking import plan_windows
from engine_hf.settings import HFEngineSettings
from gateway.contract import EmbedJob, Task

__all__ = ["measure_late"]

_SENTENCE = "the user likes coffee in the morning and works at a company in paris on a project"


async def measure_late(
    model: str,
    *,
    tokens: int,
    window: int | None,
    overlap: int | None,
    chunk_tokens: int = 256,
    device: str = "auto",
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto",
    threads: int | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    from engine_hf.engine import HFEngine

    settings = HFEngineSettings(
        model=model, device=device, dtype=dtype, threads=threads, late_chunking_window_tokens=window,
        late_chunking_overlap_tokens=overlap, max_late_chunking_tokens=max(tokens * 2, 8),
    )
    engine = HFEngine(settings)
    await engine.start()
    try:
        assert engine.text is not None
        per_sentence = len(engine.text.encode([_SENTENCE], None, truncate=True)[0].ids) - 2
        per_chunk = max(1, chunk_tokens // per_sentence)
        n_chunks = max(1, tokens // (per_sentence * per_chunk))
        chunks = [" ".join([_SENTENCE] * per_chunk) + "." for _ in range(n_chunks)]
        late = EmbedJob(inputs=chunks, task=Task.RETRIEVAL_PASSAGE, late_chunking=True)
        naive = EmbedJob(inputs=chunks, task=Task.RETRIEVAL_PASSAGE)
        first = await engine.embed(late)  # warm-up, and the token count
        await engine.embed(naive)
        n_tokens = sum(first.token_counts)
        w, o = settings.late_chunking_windows()
        windows = plan_windows(n_tokens, w, o)
        times: dict[str, list[float]] = {"late_chunking": [], "independent_chunks": []}
        for _ in range(repeats):
            for name, job in (("late_chunking", late), ("independent_chunks", naive)):
                t0 = time.perf_counter()
                await engine.embed(job)
                times[name].append(time.perf_counter() - t0)
        return {
            "model": model,
            "device": engine.describe()["device"],
            "dtype": engine.describe()["dtype"],
            "document_tokens": n_tokens,
            "chunks": n_chunks,
            "window": w,
            "overlap": o,
            "windows": len(windows),
            "tokens_through_the_model": sum(x.end - x.start for x in windows),
            "seconds_median": {k: round(statistics.median(v), 3) for k, v in times.items()},
            "tokens_per_second": {k: round(n_tokens / statistics.median(v), 1) for k, v in times.items()},
        }
    finally:
        await engine.aclose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", type=int, default=65536)
    p.add_argument("--window", type=int)
    p.add_argument("--overlap", type=int)
    p.add_argument("--chunk-tokens", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--threads", type=int)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    out = asyncio.run(measure_late(
        a.model, tokens=a.tokens, window=a.window, overlap=a.overlap, chunk_tokens=a.chunk_tokens,
        device=a.device, dtype=a.dtype, threads=a.threads, repeats=a.repeats,
    ))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
