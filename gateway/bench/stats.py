"""Summaries of one load run: throughput and latency percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

__all__ = ["Sample", "Summary", "percentile", "summarize"]


@dataclass(frozen=True, slots=True)
class Sample:
    latency: float
    tokens: int
    texts: int
    ok: bool
    status: int = 200


@dataclass(frozen=True, slots=True)
class Summary:
    requests: int
    errors: int
    wall_seconds: float
    tokens_per_second: float
    requests_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    p90_ms: float | None = None

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(samples: Sequence[Sample], wall_seconds: float) -> Summary:
    ok = [s for s in samples if s.ok]
    lat = [s.latency * 1000 for s in ok]
    tokens = sum(s.tokens for s in ok)
    return Summary(
        requests=len(samples),
        errors=len(samples) - len(ok),
        wall_seconds=round(wall_seconds, 3),
        tokens_per_second=round(tokens / wall_seconds, 1) if wall_seconds > 0 else 0.0,
        requests_per_second=round(len(ok) / wall_seconds, 2) if wall_seconds > 0 else 0.0,
        p50_ms=round(percentile(lat, 50), 2),
        p95_ms=round(percentile(lat, 95), 2),
        p90_ms=round(percentile(lat, 90), 2),
        p99_ms=round(percentile(lat, 99), 2),
    )
