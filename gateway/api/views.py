"""Typed views of the live engine state for ``GET /ready`` and ``GET /admin/engines``.

The supervisor describes each engine once (:class:`gateway.pool.EngineReport`); this module turns
that into the wire models of :mod:`gateway.api.schemas`, and the ready rule of
:mod:`gateway.pool.readiness` decides the status: the two endpoints cannot drift apart.
"""

from __future__ import annotations

from gateway.api.schemas import (
    CircuitView,
    EngineStatus,
    EnginesView,
    ParityResultView,
    ParityView,
    PlanError,
    ReadyEngine,
    ReadyResponse,
)
from gateway.contract import ROUTE_KEYS, EmbedGatewayError, parse_task, route_key
from gateway.pool import EngineReport, Pool, Snapshot
from gateway.pool.readiness import Readiness, gateway_readiness

__all__ = ["engine_status", "engines_view", "ready_view"]


def _parity(report: EngineReport) -> ParityView:
    return ParityView(
        status=report.parity.value,
        results={
            k: ParityResultView(
                ok=r.ok,
                task=None if r.task is None else route_key(r.task),
                mean_cosine=round(r.mean_cosine, 6),
                min_cosine=round(r.min_cosine, 6),
                norm_deviation=round(r.norm_deviation, 6),
                detail=r.detail,
                checked_at=r.checked_at,
            )
            for k, r in report.parity_results.items()
        },
    )


def engine_status(report: EngineReport) -> EngineStatus:
    b = report.circuit
    status = EngineStatus(
        ready=report.ready,
        detail=report.detail,
        healthy=report.healthy,
        tasks=report.tasks,
        routes=report.routes,
        circuit=CircuitView(
            state=b.state.value,
            consecutive_failures=b.consecutive_failures,
            times_opened=b.times_opened,
            open_for_s=report.open_for_s,
            last_reason=b.last_reason,
        ),
        parity=_parity(report),
        in_flight=report.in_flight,
    )
    if report.info:
        status.info = report.info
    return status


async def _reports(pool: Pool, snap: Snapshot) -> dict[str, EngineReport]:
    return {n: await pool.supervisor.report(snap, m) for n, m in snap.members.items()}


async def ready_view(pool: Pool, snap: Snapshot, *, draining: bool) -> tuple[Readiness, ReadyResponse]:
    reports = await _reports(pool, snap)
    readiness = gateway_readiness({n: r.ready for n, r in reports.items()}, draining=draining)
    body = ReadyResponse(
        status=readiness.status,
        engines={
            n: ReadyEngine(ready=r.ready, detail=r.detail, parity=_parity(r), circuit=r.circuit.state.value)
            for n, r in reports.items()
        },
    )
    if not readiness.ready:
        body.not_ready = list(readiness.not_ready)
    return readiness, body


async def engines_view(pool: Pool, snap: Snapshot) -> EnginesView:
    plans: dict[str, list[str] | PlanError] = {}
    for key in ROUTE_KEYS:
        try:
            plans[key] = pool.supervisor.plan(snap, parse_task(key))
        except EmbedGatewayError as exc:
            plans[key] = PlanError(error=exc.message)
    return EnginesView(
        generation=snap.generation,
        routes=snap.routes,
        serving_now=plans,
        engines={n: engine_status(r) for n, r in (await _reports(pool, snap)).items()},
    )
