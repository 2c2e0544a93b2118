"""What a bench run measured, typed; ``as_dict()`` gives the JSON the bench writes.

The JSON's keys are a published format (docs/bench-results/*.json, docs/benchmarks.md): a row's
optional keys are left out when not measured, so the report shows a column only where some row
has it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.bench.checks import CheckResult
from gateway.bench.stats import Summary

__all__ = ["BaselineRow", "BenchResults", "Busy", "CeilingRow", "Row", "ServedRow", "WorkloadResult"]

#: one in-process baseline run's output (``python -m engine_hf.tools.baselines``), as it printed it
BaselineOutput = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Busy:
    """How busy the HF engine's worker was during a served run: the share of the wall time spent in
    forward passes (1.0 = never idle), and the tokens/s of those passes alone."""

    fraction: float
    forward_tokens_per_second: float

    @classmethod
    def of(cls, summary: Summary, forward_seconds: float) -> Busy | None:
        if forward_seconds <= 0 or not summary.wall_seconds:
            return None
        return cls(round(forward_seconds / summary.wall_seconds, 3),
                   round(summary.tokens_per_second * summary.wall_seconds / forward_seconds, 1))


@dataclass(frozen=True, slots=True)
class ServedRow:
    """A load run against a server over HTTP."""

    target: str
    summary: Summary
    peak_rss_mib: float | None
    busy: Busy | None = None
    gpu_peak_mib: float | None = None
    #: the cache target's rows: the gateway's own hit rate over the run (its /info)
    hit_rate: float | None = None

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"target": self.target, **self.summary.as_dict()}
        if self.hit_rate is not None:
            row["hit_rate"] = self.hit_rate
        if self.busy is not None:
            row["busy_fraction"] = self.busy.fraction
            row["forward_tokens_per_second"] = self.busy.forward_tokens_per_second
        row["peak_rss_mib"] = self.peak_rss_mib
        if self.gpu_peak_mib is not None:
            row["gpu_peak_mib"] = self.gpu_peak_mib
        return row


@dataclass(frozen=True, slots=True)
class BaselineRow:
    """The naive in-process baseline on a workload."""

    target: str
    tokens_per_second: float
    peak_rss_mib: float | None
    wall_seconds: float

    @classmethod
    def of(cls, target: str, out: BaselineOutput) -> BaselineRow:
        return cls(target, round(out["tokens_per_second"], 1), out.get("peak_rss_mib"), round(out["seconds"], 2))

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "tokens_per_second": self.tokens_per_second,
                "peak_rss_mib": self.peak_rss_mib, "wall_seconds": self.wall_seconds}


@dataclass(frozen=True, slots=True)
class CeilingRow:
    """The ceiling of one or more timings (one before and one after the served run): mean seconds,
    and how far apart they were — the machine's drift while the served run was measured. Each
    timing is of several forward paths; the row is the path fastest on the mean of the timings,
    every path's mean tokens/s under ``paths``."""

    tokens_per_second: float
    wall_seconds: float
    peak_rss_mib: float
    best_tokens_per_second: float
    runs_tokens_per_second: tuple[float, ...] | None = None
    spread: float | None = None
    target: str = "ceiling"
    #: the fastest forward path, and each path's tokens/s (mean over the timings)
    path: str | None = None
    paths: dict[str, float] | None = None

    @classmethod
    def of(cls, runs: Sequence[BaselineOutput]) -> CeilingRow:
        names = [n for n in runs[0]["paths"] if all(n in r["paths"] for r in runs)]
        mean_seconds = {n: sum(r["paths"][n]["seconds"] for r in runs) / len(runs) for n in names}
        path = min(mean_seconds, key=lambda n: mean_seconds[n])
        paths = {n: round(runs[0]["tokens"] / mean_seconds[n], 1) for n in names}
        fastest = [{**r, **r["paths"][path]} for r in runs]  # the fastest path's figures
        return replace(cls._of(fastest), path=path, paths=paths)

    @classmethod
    def _of(cls, runs: Sequence[BaselineOutput]) -> CeilingRow:
        seconds = sum(r["seconds"] for r in runs) / len(runs)
        tps = [r["tokens_per_second"] for r in runs]
        several = len(runs) > 1
        return cls(
            tokens_per_second=round(runs[0]["tokens"] / seconds, 1),
            wall_seconds=round(seconds, 2),
            peak_rss_mib=max(r.get("peak_rss_mib") or 0 for r in runs),
            best_tokens_per_second=round(max(r["best_tokens_per_second"] for r in runs), 1),
            runs_tokens_per_second=tuple(round(x, 1) for x in tps) if several else None,
            spread=round((max(tps) - min(tps)) / (sum(tps) / len(tps)), 3) if several else None,
        )

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"target": self.target, "tokens_per_second": self.tokens_per_second,
                               "wall_seconds": self.wall_seconds, "peak_rss_mib": self.peak_rss_mib,
                               "best_tokens_per_second": self.best_tokens_per_second}
        if self.runs_tokens_per_second is not None:
            row["runs_tokens_per_second"] = list(self.runs_tokens_per_second)
        if self.spread is not None:
            row["spread"] = self.spread
        if self.paths is not None:
            row["path"] = self.path
            row["paths"] = dict(self.paths)
        return row


Row = ServedRow | BaselineRow | CeilingRow


@dataclass
class WorkloadResult:
    description: str
    requests: int
    tokens: int
    rows: list[Row] = field(default_factory=list)
    #: tokens/s of this workload if every FLOP ran at the machine's measured GEMM peak
    gemm_bound_tokens_per_second: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"description": self.description, "requests": self.requests, "tokens": self.tokens,
                               "targets": [row.as_dict() for row in self.rows]}
        if self.gemm_bound_tokens_per_second is not None:
            out["gemm_bound_tokens_per_second"] = self.gemm_bound_tokens_per_second
        return out


@dataclass
class BenchResults:
    """A whole run: rows per workload, the idle (one request at a time) measurements, the checks."""

    machine: str
    settings: dict[str, Any]
    workloads: dict[str, WorkloadResult]
    #: one short request at a time through the HF gateway
    idle_gateway_hf: Summary | None = None
    #: the bare forward pass of that request (``baselines single``)
    idle_forward: BaselineOutput | None = None
    #: ``measure-overhead``'s result in front of vLLM, or ``{"error": …}`` when it could not run
    idle_overhead_vllm: dict[str, Any] | None = None
    #: the cache target: p50 ms of one idle request served by the engine, a memory hit, a Redis hit
    idle_cache: dict[str, Any] | None = None
    checks: list[CheckResult] = field(default_factory=list)
    #: the CPU (model, flags), library versions, threads, and the measured GEMM peak
    hardware: dict[str, Any] | None = None

    def add(self, workload: str, row: Row) -> None:
        self.workloads[workload].rows.append(row)
        tps = row.summary.tokens_per_second if isinstance(row, ServedRow) else row.tokens_per_second
        print(f"[bench] {workload:18s} {row.target:13s} {tps:>9.1f} tok/s", flush=True)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"machine": self.machine, "settings": self.settings,
                               "workloads": {name: w.as_dict() for name, w in self.workloads.items()}}
        if self.hardware is not None:
            out["hardware"] = self.hardware
        if self.idle_gateway_hf is not None:
            out["idle_gateway_hf"] = self.idle_gateway_hf.as_dict()
        if self.idle_forward is not None:
            out["idle_forward"] = self.idle_forward
        if self.idle_overhead_vllm is not None:
            out["idle_overhead_vllm"] = self.idle_overhead_vllm
        if self.idle_cache is not None:
            out["idle_cache"] = self.idle_cache
        out["checks"] = [c.as_dict() for c in self.checks]
        return out
