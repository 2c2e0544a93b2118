"""Write the benchmark results as markdown, JSON and a chart (PNG).

The markdown names the machine first (CPU model, the SIMD flags that decide which kernels run,
library versions, threads, the measured GEMM peak), then per workload every target with its
ratio to the ceiling: the fastest forward path the machine ran, not our own eager pass.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

__all__ = ["CHART", "markdown", "write"]

#: the chart's file name, next to bench.json
CHART = "bench.png"

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
    ("path", "ceiling path"),
    ("vs_ceiling", "vs ceiling"),
]
#: columns shown only where some row has them
_OPTIONAL = frozenset({"gpu_peak_mib", "busy_fraction", "spread", "hit_rate", "path", "vs_ceiling"})


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def _with_ratios(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each workload's rows, with ``vs_ceiling`` (tokens/s over the ceiling's) where it ran."""
    out = {}
    for name, w in results["workloads"].items():
        ceiling = next((r["tokens_per_second"] for r in w["targets"] if r["target"] == "ceiling"), None)
        out[name] = [{**r, "vs_ceiling": round(r["tokens_per_second"] / ceiling, 3)}
                     if ceiling and r.get("tokens_per_second") is not None else r for r in w["targets"]]
    return out


def _hardware(hw: dict[str, Any]) -> list[str]:
    cpu = hw.get("cpu", {})
    lines = ["## Machine", "",
             f"- CPU: {cpu.get('model', '?')}, {cpu.get('cpus', '?')} logical CPUs; {hw.get('threads', '?')} threads",
             f"- SIMD flags: {' '.join(cpu.get('simd', [])) or 'none of AVX2/AVX-512/AMX'} (all flags: bench.json)",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in hw.get("versions", {}).items())]
    gemm = hw.get("gemm_peak")
    if gemm:
        m, k, n = gemm["shape"]
        peaks = ", ".join(f"{name} {v['gflops']:,.1f}" if "gflops" in v else f"{name} ({v.get('error', 'n/a')[:60]})"
                          for name, v in gemm["paths"].items())
        lines.append(f"- GEMM peak, GFLOP/s (mean of {gemm['repeats']}, [{m}x{k}] x [{k}x{n}]): {peaks}")
        if "used" in gemm:
            lines.append(f"- GEMM bound below = tokens/s of each workload at {gemm['used']['path']} "
                         f"({gemm['used']['gflops']:,.1f} GFLOP/s) and the model's FLOPs per token")
    return [*lines, ""]


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# embed-gateway bench — {results['machine']}", ""]
    lines.append("Settings: " + ", ".join(f"{k}={v}" for k, v in results["settings"].items()))
    lines.append("")
    if results.get("hardware"):
        lines += _hardware(results["hardware"])
    table = _with_ratios(results)
    rows_all = [row for rows in table.values() for row in rows]
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
        for row in table[workload]:
            lines.append("| " + " | ".join(_fmt(row.get(k)) for k, _ in columns) + " |")
        lines.append("")
        ceiling = next((r for r in rows["targets"] if r["target"] == "ceiling" and "paths" in r), None)
        if ceiling:
            lines.append("Ceiling by forward path, tokens/s: "
                         + ", ".join(f"{k} {v:,.1f}" for k, v in ceiling["paths"].items()))
        bound = rows.get("gemm_bound_tokens_per_second")
        if bound:
            ratio = f" (the ceiling reaches {ceiling['tokens_per_second'] / bound:.0%} of it)" if ceiling else ""
            lines.append(f"GEMM bound: {bound:,.1f} tokens/s{ratio}")
        if ceiling or bound:
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
    """bench.md, bench.json and (with matplotlib installed) the chart bench.png, in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "bench.md", out_dir / "bench.json"
    text = markdown(results)
    try:
        from gateway.bench.chart import draw

        chart = draw(results, out_dir / CHART)
        text += f"\n![tokens/s and latency per target]({chart.name})\n"
    except ImportError:
        warnings.warn("matplotlib is not installed (the bench extra): no chart drawn", stacklevel=2)
    md.write_text(text)
    js.write_text(json.dumps(results, indent=2))
    return md, js
