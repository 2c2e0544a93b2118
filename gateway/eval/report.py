"""What eval shows: an aligned table, the JSON records, the quality-vs-bytes chart, TREC run files.

All drawn from the records alone (the chart from the JSON too), so a stored run can be shown again.
matplotlib is needed only for the chart (the ``bench`` extra has it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.eval.metrics import METRICS, Run

__all__ = ["draw", "run_name", "table", "write_json", "write_runs"]

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("model", "model"), ("pairing", "query -> passage"), ("dimensions", "dims"), ("encoding", "encoding"),
    ("bytes_per_vector", "bytes"), *((m, m) for m in METRICS), ("engine", "engine"),
)


def _cell(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if key == "pairing":
        q, p = record.get("query_task"), record.get("passage_task")
        return f"{q} -> {p}" if q != p else f"{q} (both)"
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def table(records: Sequence[Mapping[str, Any]], notes: Iterable[str] = ()) -> str:
    """Plain aligned text, one row per configuration, numbers right-aligned; notes below."""
    rows = [[head for _, head in _COLUMNS]] + [[_cell(r, k) for k, _ in _COLUMNS] for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    numeric = {i for i, (k, _) in enumerate(_COLUMNS) if k in ("dimensions", "bytes_per_vector", *METRICS)}
    lines = []
    for n, row in enumerate(rows):
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.extend(f"note: {note}" for note in notes)
    return "\n".join(lines)


def write_json(report: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def run_name(record: Mapping[str, Any]) -> str:
    """A file-name-safe tag for one configuration: ``model__query__passage__dims__encoding``."""
    parts = (record["model"], record["query_task"], record["passage_task"], str(record["dimensions"]), record["encoding"])
    return "__".join("".join(ch if ch.isalnum() or ch in "-." else "_" for ch in p) for p in parts)


def write_runs(results: Iterable[tuple[Mapping[str, Any], Run]], folder: Path) -> list[Path]:
    """Each ranking as a TREC run file (``qid Q0 docid rank score tag``), readable by trec_eval."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for record, run in results:
        tag = run_name(record)
        lines = [f"{q} Q0 {d} {rank} {score!r} {tag}"
                 for q, docs in run.items() for rank, (d, score) in enumerate(docs.items(), 1)]
        path = folder / f"{tag}.run"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def draw(records: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> Path:
    """nDCG@10 against bytes per stored vector (log scale), one line per model x pairing x
    encoding, each point labelled with its dimensions: the size/quality trade-off at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    lines: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        lines.setdefault((f"{r['model']} · {_cell(r, 'pairing')}", r["encoding"]), []).append(r)
    colors = {series: plt.get_cmap("tab10")(i % 10)
              for i, series in enumerate(dict.fromkeys(series for series, _ in lines))}
    fig, ax = plt.subplots(figsize=(9, 6))
    for (series, encoding), rows in lines.items():
        rows = sorted(rows, key=lambda r: r["bytes_per_vector"])
        xs, ys = [r["bytes_per_vector"] for r in rows], [r["ndcg@10"] for r in rows]
        ax.plot(xs, ys, "--" if encoding == "binary" else "-", marker="s" if encoding == "binary" else "o",
                color=colors[series], label=f"{series} · {encoding}")
        for r in rows:
            ax.annotate(str(r["dimensions"]), (r["bytes_per_vector"], r["ndcg@10"]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.set_xlabel("bytes per stored vector (log scale; point labels: dimensions; dashed: binary)")
    ax.set_ylabel("nDCG@10")
    ax.set_title(title or "retrieval quality against storage", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
