"""``embed-gateway eval``: the command line of retrieval evaluation (docs/ab-testing.md)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "evaluate_folder", "main"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "eval",
        help="retrieval quality (nDCG@10, recall, MRR) of each model, task pairing, size and encoding on your data",
        description="Embed a labelled set (BEIR layout, or memories.jsonl + questions.jsonl) with each --model, "
        "search it exactly and score it with trec_eval: one row per model x task pairing x dimensions x encoding.",
    )
    p.add_argument("data", type=Path, metavar="DATA_DIR",
                   help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) or memories.jsonl + questions.jsonl")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running gateway, e.g. http://127.0.0.1:8080")
    where.add_argument("--config", type=Path,
                       help="a gateway configuration file: serve it in this process for the run (no server to start)")
    p.add_argument("--model", action="append", required=True, metavar="NAME",
                   help="a model id or alias the gateway serves (GET /v1/models), or NAME@URL for one on another "
                        "gateway (an int8 deployment); repeat to compare models")
    p.add_argument("--dimensions", metavar="D[,D...]",
                   help="sizes to evaluate, e.g. 1024,256,64 (default: each model's full width); sizes wider than "
                        "a model are left out, and a model not trained for truncation is evaluated at full width only")
    p.add_argument("--encodings", default="float,binary",
                   help="float (cosine), binary (1 bit a dimension, Hamming distance), or both (default)")
    p.add_argument("--split", default="test", help="BEIR: the qrels file qrels/SPLIT.tsv (default: test)")
    p.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON (one record per configuration)")
    p.add_argument("--png", type=Path, metavar="OUT", help="draw nDCG@10 against bytes per vector (needs matplotlib)")
    p.add_argument("--runs", type=Path, metavar="DIR", help="write each ranking as a TREC run file (top 100 per query)")
    p.add_argument("--api-key", default=os.environ.get("EMBED_GATEWAY_API_KEY"),
                   help="bearer token for the gateway (default: $EMBED_GATEWAY_API_KEY)")
    p.add_argument("--batch-size", type=int, default=32, help="texts per request (default 32)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    p.add_argument("--no-truncate", action="store_true",
                   help="refuse texts longer than a model's limit instead of cutting them (the default cuts)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request (default 120)")
    p.add_argument("--max-retries", type=int, default=8, help="retries per request on 429/503/504 (default 8)")
    p.set_defaults(func=main)
    return p


async def evaluate_folder(args: argparse.Namespace) -> Any:
    """Load the data, then run eval against ``--url`` or a gateway served from ``--config``."""
    from gateway.eval.data import load_dataset
    from gateway.eval.plan import parse_dimensions
    from gateway.eval.runner import Options, run_eval

    dataset = load_dataset(args.data, args.split)
    encodings = tuple(e.strip() for e in args.encodings.split(",") if e.strip())
    for name in ("batch_size", "concurrency"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def options(url: str) -> Options:
        return Options(
            url=url, models=tuple(args.model), dimensions=parse_dimensions(args.dimensions), encodings=encodings,
            api_key=args.api_key, batch_size=args.batch_size, concurrency=args.concurrency,
            truncate=not args.no_truncate, timeout=args.timeout, max_retries=args.max_retries,
        )

    say(f"{dataset.layout} set: {len(dataset.doc_ids)} documents, {len(dataset.query_ids)} queries")
    if args.url:
        return await run_eval(dataset, options(args.url), say)
    from gateway.eval.local import serve_config

    async with serve_config(args.config) as url:
        return await run_eval(dataset, options(url), say)


def main(args: argparse.Namespace) -> int:
    """Run ``eval``; exit status 0 done, 1 the gateway refused or failed, 2 bad data or flags."""
    from gateway.client import GatewayRequestError
    from gateway.eval.data import EvalDataError
    from gateway.eval.report import draw, table, write_json, write_runs

    try:
        report = asyncio.run(evaluate_folder(args))
    except (EvalDataError, ValueError, OSError) as exc:
        print(f"embed-gateway eval: error: {exc}", file=sys.stderr)
        return 2
    except (GatewayRequestError, RuntimeError) as exc:
        print(f"embed-gateway eval: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    notes = [*report.dataset["notes"], *(n for m in report.models for n in m["notes"])]
    print(table(report.records(), notes))
    if args.json:
        print(f"written: {write_json(report.as_dict(), args.json)}", file=sys.stderr)
    if args.runs:
        paths = write_runs(((r.record, r.run) for r in report.results), args.runs)
        print(f"written: {len(paths)} run files in {args.runs}", file=sys.stderr)
    if args.png:
        try:
            path = draw(report.records(), args.png, title=f"{args.data.name}: nDCG@10 against bytes per vector")
        except ImportError:
            print("embed-gateway eval: matplotlib is not installed: no chart drawn (pip install matplotlib)",
                  file=sys.stderr)
            return 1
        print(f"written: {path}", file=sys.stderr)
    return 0
