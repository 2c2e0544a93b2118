"""Write the benchmark results as a markdown table and JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["markdown", "write"]

_COLUMNS = [
    ("target", "target"),
    ("tokens_per_second", "tokens/s"),
    ("requests_per_second", "req/s"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("p99_ms", "p99 ms"),
    ("errors", "errors"),
    ("hit_rate", "cache hit rate"),
    ("peak_rss_mib", "peak RSS MiB"),
    ("gpu_peak_mib", "peak GPU MiB"),
    ("busy_fraction", "engine busy"),
    ("spread", "ceiling spread"),
]
#: columns shown only where some row has them
_OPTIONAL = frozenset({"gpu_peak_mib", "busy_fraction", "spread", "hit_rate"})


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# embed-gateway bench — {results['machine']}", ""]
    lines.append("Settings: " + ", ".join(f"{k}={v}" for k, v in results["settings"].items()))
    lines.append("")
    rows_all = [row for rows in results["workloads"].values() for row in rows["targets"]]
    # the GPU column only where some target ran on a GPU; engine busy only for gateway-hf runs,
    # ceiling spread only for a ceiling timed before and after one
    columns = [(k, h) for k, h in _COLUMNS if k not in _OPTIONAL or any(k in row for row in rows_all)]
    for workload, rows in results["workloads"].items():
        if not rows["targets"]:  # a workload no asked-for target ran (e.g. only the cache target)
            continue
        lines.append(f"## {workload}: {rows['description']}")
        lines.append("")
        lines.append("| " + " | ".join(h for _, h in columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in rows["targets"]:
            lines.append("| " + " | ".join(_fmt(row.get(k)) for k, _ in columns) + " |")
        lines.append("")
    if results.get("idle_cache"):
        lines.append("## cache: one idle request, p50 ms")
        lines.append("")
        lines.append("| " + " | ".join(results["idle_cache"]) + " |")
        lines.append("|" + "---|" * len(results["idle_cache"]))
        lines.append("| " + " | ".join(_fmt(v) for v in results["idle_cache"].values()) + " |")
        lines.append("")
    if results.get("checks"):
        lines.append("## Targets")
        lines.append("")
        lines.append("| check | measured | target | met |")
        lines.append("|---|---|---|---|")
        for c in results["checks"]:
            lines.append(f"| {c['name']} | {c['measured']} | {c['target']} | {'yes' if c['met'] else 'NO'} |")
        lines.append("")
    return "\n".join(lines)


def write(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "bench.md", out_dir / "bench.json"
    md.write_text(markdown(results))
    js.write_text(json.dumps(results, indent=2))
    return md, js
