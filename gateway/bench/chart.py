"""The bench's results drawn: what people would rather look at than read.

One PNG next to ``bench.json``: per workload, tokens/s of every target (the ceiling's bar marked
with the forward path it came from, the workload's GEMM bound as a line), and the latency
percentiles (p50/p90/p99) of every target served over HTTP. Drawn from the JSON alone, so a stored
run (docs/bench-results/*.json) can be drawn again. matplotlib is in the ``bench`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["draw"]

_PERCENTILES = (("p50_ms", "p50"), ("p90_ms", "p90"), ("p95_ms", "p95"), ("p99_ms", "p99"))


def _latency_keys(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """p50/p90/p99 where the run has p90 (newer runs), else the p50/p95/p99 it has."""
    have = {k for r in rows for k, _ in _PERCENTILES if r.get(k) is not None}
    wanted = ("p50_ms", "p90_ms", "p99_ms") if "p90_ms" in have else ("p50_ms", "p95_ms", "p99_ms")
    return [(k, label) for k, label in _PERCENTILES if k in wanted and k in have]


def draw(results: dict[str, Any], path: Path) -> Path:
    """Write the chart of ``results`` (a ``bench.json``) to ``path``; returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = results["workloads"]
    names = list(workloads)
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 8.5), squeeze=False)
    cpu = (results.get("hardware") or {}).get("cpu", {})
    title = f"embed-gateway bench — {cpu.get('model') or results.get('machine', '')}"
    settings = results.get("settings", {})
    fig.suptitle(f"{title}\ndevice={settings.get('device')} dtype={settings.get('dtype')} "
                 f"threads={(results.get('hardware') or {}).get('threads', settings.get('threads'))}", fontsize=10)
    for col, name in enumerate(names):
        rows = workloads[name]["targets"]
        ax = axes[0][col]
        labels = [r["target"] + (f"\n({r['path']})" if r.get("path") else "") for r in rows]
        values = [r.get("tokens_per_second") or 0.0 for r in rows]
        colors = ["tab:gray" if r["target"] == "ceiling" else "tab:blue" if r["target"].startswith("gateway")
                  else "tab:orange" for r in rows]
        bars = ax.bar(range(len(rows)), values, color=colors)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
        bound = workloads[name].get("gemm_bound_tokens_per_second")
        if bound:
            ax.axhline(bound, color="tab:red", linestyle="--", linewidth=1)
            ax.text(len(rows) - 0.5, bound, f"GEMM bound {bound:.0f}", color="tab:red", fontsize=7,
                    ha="right", va="bottom")
        ax.set_xticks(range(len(rows)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_title(name, fontsize=9)
        if col == 0:
            ax.set_ylabel("tokens/s")
        lat = axes[1][col]
        served = [r for r in rows if r.get("p50_ms") is not None]
        keys = _latency_keys(served)
        width = 0.8 / max(len(keys), 1)
        for i, (key, label) in enumerate(keys):
            lat.bar([j + i * width for j in range(len(served))], [r[key] / 1000 for r in served], width, label=label)
        lat.set_xticks([j + width * (len(keys) - 1) / 2 for j in range(len(served))], [r["target"] for r in served],
                       rotation=45, ha="right", fontsize=7)
        if col == 0:
            lat.set_ylabel("latency, s")
        if keys:
            lat.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
