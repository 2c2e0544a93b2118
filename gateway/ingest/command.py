"""``embed-gateway embed``: the command line of bulk ingestion (flags documented in docs/ingestion.md)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from gateway.ingest.interrupts import CtrlC

__all__ = ["add_parser", "build_embedder", "build_sink", "main", "run_stamp", "sparse_vocab"]

T = TypeVar("T")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "embed",
        help="embed a JSONL/CSV/Parquet/text file in bulk into Parquet, .npy, Milvus, Qdrant or pgvector (resumable)",
        description="Embed every row of INPUT and store the vectors. Re-running the same command "
        "after an interruption resumes: rows already stored are skipped, never duplicated. With --model "
        "given several times (--gateway), the input is read once and each model fills its own collection, "
        "table or file (an A/B test's indexes from one pass).",
    )
    p.add_argument("input", type=Path, help="input file (.jsonl/.ndjson, .csv, .tsv, .parquet, .txt)")
    src = p.add_argument_group("input")
    src.add_argument("--format", default="auto", choices=["auto", "jsonl", "csv", "tsv", "parquet", "text"])
    src.add_argument("--text-field", default="text", help="field/column holding the text (default: text)")
    src.add_argument("--id-field", help="field/column holding a unique id (default: the line/row number)")
    src.add_argument("--metadata-fields", default="",
                     help="comma-separated fields to keep as JSON metadata, or '*' for every other field")
    emb = p.add_argument_group("embedding")
    how = emb.add_mutually_exclusive_group(required=True)
    how.add_argument("--gateway", metavar="URL", help="a running gateway, e.g. http://127.0.0.1:8080")
    how.add_argument("--local", metavar="MODEL", help="run the HF engine in-process on this checkpoint/hub id")
    how.add_argument("--ray", metavar="MODEL",
                     help="run HF engines on Ray Data, an actor pool over a Ray cluster (docs/scale-out.md)")
    emb.add_argument("--task", action="append", metavar="TASK",
                     help="retrieval.passage (default), retrieval.query, separation, classification, text-matching, "
                          "none; with several --model: once for all, or once per --model in order (e.g. none for bge-m3)")
    emb.add_argument("--dimensions", type=int, help="Matryoshka size (default: the model's full width, 1024)")
    emb.add_argument("--truncate", action="store_true", help="cut over-long texts instead of reporting them as bad rows")
    emb.add_argument("--model", action="append", metavar="MODEL",
                     help="gateway model alias to send (default: the server's default); repeat it to embed the "
                          "input with several models in one pass, each into its own output (--collection/--table)")
    emb.add_argument("--sparse", action="store_true",
                     help="also store each text's sparse vector for hybrid search (--gateway with a --model that "
                          "has a sparse output, e.g. bge-m3; into --milvus, --qdrant or --pgvector)")
    emb.add_argument("--api-key", default=os.environ.get("EMBED_GATEWAY_API_KEY"),
                     help="bearer token for the gateway (default: $EMBED_GATEWAY_API_KEY)")
    emb.add_argument("--batch-size", type=int, default=32, help="rows per request (default 32)")
    emb.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    emb.add_argument("--max-retries", type=int, default=8, help="retries per request on 429/503/504 (default 8)")
    emb.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request (default 120)")
    emb.add_argument("--device", default="auto", help="--local: auto, cpu, cuda, cuda:1")
    emb.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"], help="--local")
    emb.add_argument("--threads", type=int, help="--local/--ray: CPU threads (per actor with --ray)")
    emb.add_argument("--ray-address", default=None,
                     help="--ray: the cluster (default: $RAY_ADDRESS, else a local Ray for this run)")
    emb.add_argument("--ray-actors", type=int, default=1, help="--ray: encoder actors, one model each (default 1)")
    emb.add_argument("--ray-gpus-per-actor", type=float,
                     help="--ray: GPUs per actor (default: 1 when the cluster has GPUs, else 0)")
    emb.add_argument("--ray-cpus-per-actor", type=float, default=1.0, help="--ray: CPUs each actor reserves (default 1)")
    emb.add_argument("--max-batch-tokens", type=int,
                     help="--ray: tokens per forward pass in each actor (default: the device's best)")
    out = p.add_argument_group("output")
    where = out.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", type=Path, help="OUTPUT.parquet or OUTPUT.npy (+ OUTPUT.ids.json); with several "
                       "--model, OUTPUT.<model>.parquet (or .npy) per model")
    where.add_argument("--milvus", metavar="URI", help="Milvus Lite file (./vectors.db) or server (http://host:19530)")
    where.add_argument("--qdrant", metavar="URL|PATH",
                       help="Qdrant server (http://host:6333), or a folder for qdrant-client's local mode")
    where.add_argument("--pgvector", metavar="DSN", help="Postgres with pgvector (postgresql://user:pw@host:5432/db)")
    out.add_argument("--collection", action="append", metavar="NAME",
                     help="Milvus/Qdrant collection (required with --milvus and --qdrant); with several --model: "
                          "once per --model in order, or once as a PREFIX: each model writes PREFIX_<model>, the "
                          "model's name in lower case with every character but a-z, 0-9 and _ made _")
    out.add_argument("--table", action="append", metavar="NAME",
                     help="Postgres table, NAME or SCHEMA.NAME (required with --pgvector); with several --model "
                          "as --collection")
    out.add_argument("--create-collection", action="store_true",
                     help="create the collection/table if missing (and pgvector's extension)")
    out.add_argument("--metric", default="COSINE", choices=["COSINE", "IP", "L2"], help="index metric (default COSINE)")
    out.add_argument("--encoding", default="float", choices=["float", "ubinary"],
                     help="ubinary: store 1 bit per dimension, searched by Hamming distance (--qdrant, --pgvector)")
    out.add_argument("--qdrant-api-key", default=os.environ.get("QDRANT_API_KEY"),
                     help="Qdrant API key (default: $QDRANT_API_KEY)")
    out.add_argument("--index-type", default="AUTOINDEX", help="Milvus index type (default AUTOINDEX; HNSW, FLAT, IVF_FLAT, ...)")
    out.add_argument("--milvus-token", default=os.environ.get("MILVUS_TOKEN"), help="Milvus token (default: $MILVUS_TOKEN)")
    out.add_argument("--milvus-db", default="", help="Milvus database name")
    out.add_argument("--store-text", action="store_true", help="store the text next to its vector")
    out.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT file (and any unfinished run)")
    run = p.add_argument_group("run")
    run.add_argument("--skip-bad-rows", action="store_true", help="skip rows that cannot be embedded and report them")
    run.add_argument("--bad-rows", type=Path, metavar="PATH", help="write skipped rows as JSONL (line, id, reason)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar (it goes to stderr)")
    p.set_defaults(func=main)
    return p


def _fields(args: argparse.Namespace) -> Any:
    from gateway.ingest.records import FieldSpec

    meta = tuple(f.strip() for f in args.metadata_fields.split(",") if f.strip())
    return FieldSpec(text=args.text_field, id=args.id_field, metadata=meta)


def build_embedder(args: argparse.Namespace) -> Any:
    from gateway.client import RetryPolicy
    from gateway.ingest.embedders import HttpEmbedder, LocalEmbedder

    if args.gateway:
        return HttpEmbedder(
            args.gateway, task=args.task, dimensions=args.dimensions, model=args.model, truncate=args.truncate,
            api_key=args.api_key, timeout=args.timeout, policy=RetryPolicy(max_retries=args.max_retries),
            sparse=args.sparse,
        )
    return LocalEmbedder(
        args.local, task=args.task, dimensions=args.dimensions, truncate=args.truncate,
        device=args.device, dtype=args.dtype, threads=args.threads,
    )


def _ray_options(args: argparse.Namespace) -> Any:
    from gateway.ingest.ray_runner import RayOptions

    return RayOptions(
        model=args.ray, task=args.task, dimensions=args.dimensions, truncate=args.truncate,
        address=args.ray_address, actors=args.ray_actors, gpus_per_actor=args.ray_gpus_per_actor,
        cpus_per_actor=args.ray_cpus_per_actor, device=args.device, dtype=args.dtype, threads=args.threads,
        max_batch_tokens=args.max_batch_tokens,
    )


def run_stamp(args: argparse.Namespace) -> Any:
    """The vector space this run writes (:mod:`gateway.ingest.stamp`), from its flags."""
    from gateway.contract import parse_task
    from gateway.ingest.stamp import Stamp

    task = parse_task(args.task)
    return Stamp(model=args.model or args.local or args.ray, task=task.value if task is not None else "none",
                 dimensions=args.dimensions, encoding=args.encoding, sparse=args.sparse)


def sparse_vocab(args: argparse.Namespace) -> int:
    """The width of the model's sparse vectors (its ``vocab_size`` on ``GET /v1/models``), read once
    before anything is written. A model without a sparse output is refused with the gateway's own
    answer to such a request (which names the outputs it offers)."""
    from gateway.client import GatewayClient, GatewayRequestError, fetch_model_card
    from gateway.ingest.embedders import SparseUnsupportedError

    try:
        card = fetch_model_card(args.gateway, args.model, api_key=args.api_key, timeout=args.timeout)
        if "sparse" not in (card.get("outputs") or ["sparse"]):
            client = GatewayClient(args.gateway, api_key=args.api_key, timeout=args.timeout)
            try:  # ask once, for the gateway's words
                client.embed(["."], model=args.model, task=args.task, dimensions=None, sparse=True)
            finally:
                client.close()
    except GatewayRequestError as exc:
        if exc.param == "return_sparse":
            raise SparseUnsupportedError(exc.message) from exc
        raise ValueError(str(exc)) from exc
    vocab = card.get("vocab_size")
    if not isinstance(vocab, int) or vocab < 1:
        raise SparseUnsupportedError(f"the gateway does not say model {args.model!r}'s vocabulary size (vocab_size on "
                                     "GET /v1/models), which --pgvector --sparse needs for its sparsevec column")
    return vocab


def _check_sparse(args: argparse.Namespace) -> None:
    from gateway.ingest.embedders import SparseUnsupportedError

    if not args.gateway:
        raise SparseUnsupportedError("--sparse needs --gateway (a gateway serving a model with a sparse output, "
                                     "e.g. bge-m3); --local and --ray make dense vectors only")
    if not args.model:
        raise SparseUnsupportedError("--sparse needs --model (the gateway's model with a sparse output, e.g. bge-m3)")
    if not (args.milvus or args.qdrant or args.pgvector):
        raise SparseUnsupportedError("--sparse needs --milvus, --qdrant or --pgvector; Parquet and .npy outputs "
                                     "hold dense vectors only")


def build_sink(args: argparse.Namespace, with_metadata: bool, qdrant_client: Any = None) -> Any:
    """The sink of one model's vectors (``args``: one model's flags, :func:`gateway.ingest.targets.per_model`).
    ``qdrant_client``: an open client the sinks of one run share (one per local-mode folder)."""
    from gateway.ingest.sinks import MilvusSink, NpySink, ParquetSink

    if args.encoding != "float" and not (args.qdrant or args.pgvector):
        raise ValueError("--encoding ubinary needs --qdrant or --pgvector")
    if args.qdrant:
        from gateway.ingest.qdrant_sink import QdrantSink

        if not args.collection:
            raise ValueError("--qdrant needs --collection NAME")
        return QdrantSink(
            args.qdrant, args.collection, api_key=args.qdrant_api_key, create=args.create_collection,
            metric=args.metric, encoding=args.encoding, store_text=args.store_text, with_metadata=with_metadata,
            stamp=run_stamp(args), sparse=args.sparse, client=qdrant_client,
        )
    if args.pgvector:
        from gateway.ingest.pgvector_sink import PgvectorSink

        if not args.table:
            raise ValueError("--pgvector needs --table NAME")
        return PgvectorSink(
            args.pgvector, args.table, create=args.create_collection, metric=args.metric, encoding=args.encoding,
            store_text=args.store_text, with_metadata=with_metadata, stamp=run_stamp(args),
            sparse_vocab=sparse_vocab(args) if args.sparse else None,
        )
    if args.milvus:
        if not args.collection:
            raise ValueError("--milvus needs --collection NAME")
        if "://" not in args.milvus:
            # Milvus Lite answers pymilvus 3's AllocTimestamp probe with "not implemented", which its
            # in-process gRPC server logs as an ERROR traceback; harmless, and confusing on a terminal.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        return MilvusSink(
            args.milvus, args.collection, token=args.milvus_token, db_name=args.milvus_db,
            create=args.create_collection, metric=args.metric, index_type=args.index_type,
            store_text=args.store_text, with_metadata=with_metadata, stamp=run_stamp(args), sparse=args.sparse,
        )
    suffix = args.output.suffix.lower()
    if suffix == ".parquet":
        return ParquetSink(args.output, overwrite=args.overwrite, store_text=args.store_text, with_metadata=with_metadata)
    if suffix == ".npy":
        if args.store_text or with_metadata:
            raise ValueError(".npy holds vectors only; use .parquet or a store for --store-text / --metadata-fields")
        return NpySink(args.output, overwrite=args.overwrite)
    raise ValueError(f"--output must end in .parquet or .npy, not {args.output.name!r}")


def _validate(args: argparse.Namespace) -> None:
    from gateway.contract import parse_task

    for task in args.task or ():
        parse_task(task)
    if not args.input.is_file():
        raise ValueError(f"input file {args.input} does not exist")
    if args.ray and importlib.util.find_spec("ray") is None:
        raise ValueError("--ray needs the ray extra: pip install 'embed-gateway[ray]'")
    for name in ("batch_size", "concurrency", "ray_actors"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if args.dimensions is not None and args.dimensions < 1:
        raise ValueError("--dimensions must be >= 1")


_INTERRUPTED = "interrupted: what was stored stays stored; run the same command again to resume"


def _run(run: Coroutine[Any, Any, T], ctrl_c: CtrlC) -> T:
    """``asyncio.run``; a run that Ctrl-C cancelled ends in ``KeyboardInterrupt`` (as asyncio's own
    handler makes it), any other cancellation propagates."""
    try:
        return asyncio.run(run)
    except asyncio.CancelledError:
        if ctrl_c.pressed:
            raise KeyboardInterrupt from None
        raise


def _open_sinks(lanes: list[argparse.Namespace], with_metadata: bool, closing: ExitStack) -> list[Any]:
    """One sink per model, each closed by ``closing``; the sinks of one run in one Qdrant share its client."""
    client = None
    if len(lanes) > 1 and lanes[0].qdrant:
        from gateway.ingest.qdrant_sink import open_client

        client = open_client(lanes[0].qdrant, lanes[0].qdrant_api_key)
        closing.callback(client.close)  # after every sink (an ExitStack unwinds last in, first out)
    sinks = []
    for lane in lanes:
        sink = build_sink(lane, with_metadata=with_metadata, qdrant_client=client)
        closing.callback(sink.close)
        sinks.append(sink)
    return sinks


def _print_plan(args: argparse.Namespace, lanes: list[argparse.Namespace]) -> None:
    from gateway.ingest.targets import describe

    print(f"reading {args.input} once for {len(lanes)} models:", file=sys.stderr)
    width = max(len(lane.model) for lane in lanes)
    for lane in lanes:
        print(f"  {lane.model:<{width}}  task {lane.task:<17}  -> {describe(lane)}", file=sys.stderr)


def _print_report(args: argparse.Namespace, fmt: str, lanes: list[argparse.Namespace], done: list[str],
                  reports: list[Any]) -> None:
    from gateway.ingest.sources import location

    several = len(lanes) > 1
    for lane, where, report in zip(lanes, done, reports, strict=True):
        head = f"{lane.model}: " if several else ""
        print(head + where, file=sys.stderr)
        print(head + report.summary(), file=sys.stderr)
        for item in report.bad[:20]:
            print(f"  skipped {location(args.input, fmt, item.line)}: {item.reason}", file=sys.stderr)
        if len(report.bad) > 20:
            print(f"  ... and {len(report.bad) - 20} more", file=sys.stderr)
    if args.bad_rows and any(report.bad for report in reports):
        with args.bad_rows.open("w", encoding="utf-8") as f:
            for lane, report in zip(lanes, reports, strict=True):
                for item in report.bad:
                    row = {"line": item.line, "id": item.id, "reason": item.reason}
                    f.write(json.dumps({**row, "model": lane.model} if several else row) + "\n")
        print(f"bad rows written to {args.bad_rows}", file=sys.stderr)


def main(args: argparse.Namespace) -> int:
    """Run ``embed``; exit status 0 done, 1 error (bad row, refused batch, bad flag), 2 a store holds
    another vector space, or ``--sparse`` where a model or store has no sparse vectors (nothing
    written), 130 interrupted. With several ``--model``, one lane per model over one read of the input
    (:mod:`gateway.ingest.targets` names each model's output)."""
    from gateway.ingest.embedders import SparseUnsupportedError
    from gateway.ingest.plan import BadRowError
    from gateway.ingest.runner import IngestError, IngestOptions, Lane, ingest_lanes
    from gateway.ingest.sources import detect_format
    from gateway.ingest.stamp import StampMismatchError
    from gateway.ingest.targets import per_model

    with ExitStack() as closing:
        try:
            _validate(args)
            lanes = per_model(args)
            if args.sparse:
                for lane in lanes:
                    _check_sparse(lane)
            fmt = detect_format(args.input, args.format)
            fields = _fields(args)
            if len(lanes) > 1:
                _print_plan(args, lanes)
            sinks = _open_sinks(lanes, bool(fields.metadata), closing)
            embedders = None if args.ray else [build_embedder(lane) for lane in lanes]
        except (StampMismatchError, SparseUnsupportedError) as exc:
            print(f"embed-gateway embed: error: {exc}", file=sys.stderr)
            return 2
        except (ValueError, FileExistsError, RuntimeError) as exc:
            print(f"embed-gateway embed: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # e.g. while connecting to a Milvus server that does not answer
            print(f"\n{_INTERRUPTED}", file=sys.stderr)
            return 130
        options = IngestOptions(
            input=args.input, fmt=fmt, fields=fields, batch_size=args.batch_size, concurrency=args.concurrency,
            skip_bad_rows=args.skip_bad_rows, progress=not args.no_progress,
        )
        ctrl_c = CtrlC()
        try:
            if embedders is None:  # [ray]: Ray Data's actor pool instead of one process
                from gateway.ingest.ray_runner import ingest_on_ray

                reports = [ingest_on_ray(options, _ray_options(lanes[0]), sinks[0])]
            else:
                run = [Lane(e, s, lane.model) for e, s, lane in zip(embedders, sinks, lanes, strict=True)]
                with ctrl_c.installed():
                    reports = _run(ingest_lanes(options, run, ctrl_c), ctrl_c)
            done = [sink.finish() for sink in sinks]
        except KeyboardInterrupt:
            print(f"\n{_INTERRUPTED}", file=sys.stderr)
            return 130
        except (StampMismatchError, SparseUnsupportedError) as exc:  # known only at the first write / request
            print(f"embed-gateway embed: error: {exc}", file=sys.stderr)
            return 2
        except (BadRowError, IngestError, ValueError, RuntimeError) as exc:
            print(f"embed-gateway embed: error: {exc}", file=sys.stderr)
            print("nothing is lost: run the same command again (after fixing the cause) to resume", file=sys.stderr)
            return 1
    _print_report(args, fmt, lanes, done, reports)
    return 0
