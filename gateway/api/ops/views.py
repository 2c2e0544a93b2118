"""Typed views of the live engine state for ``GET /ready`` and ``GET /admin/engines``.

The ready rule of :mod:`gateway.pool.readiness` decides every engine's state and the gateway's
status for both (and for the metrics); this module turns it into the wire models of
:mod:`gateway.api.ops.protocol`, so the endpoints cannot drift apart. ``/ready`` renders recorded
state only (no I/O); the admin view adds a live health check per engine
(:meth:`gateway.pool.Supervisor.report`). Each view is built from the internal type it shows by
:func:`~gateway.api.wire_view.wire_view` (shared fields by name; only what differs is written here).
"""

from __future__ import annotations

from gateway.api.ops.protocol import (
    AgreementView,
    CircuitView,
    EngineStatus,
    EnginesView,
    ParityResultView,
    ParityView,
    PlanError,
    ReadyEngine,
    ReadyResponse,
    ShadowLaneView,
    ShadowPairView,
    ShadowView,
)
from gateway.api.wire_view import wire_view
from gateway.contract import EmbedGatewayError, route_key, task_of_key
from gateway.pool import EngineReport, Pool, Snapshot
from gateway.pool.parity import ParityResult, ParityStatus
from gateway.pool.readiness import Readiness
from gateway.shadow import PairView

__all__ = ["engine_status", "engines_view", "ready_view", "shadow_view"]


def _parity(status: ParityStatus, results: dict[str, ParityResult]) -> ParityView:
    return ParityView(
        status=status.value,
        results={
            k: wire_view(ParityResultView, r, task=None if r.task is None else route_key(r.task))
            for k, r in results.items()
        },
    )


def engine_status(report: EngineReport) -> EngineStatus:
    """An engine's report; ``info`` only when the engine reports anything."""
    return wire_view(
        EngineStatus,
        report,
        omit=() if report.info else ("info",),
        circuit=wire_view(CircuitView, report.circuit, open_for_s=report.open_for_s),
        parity=_parity(report.parity, report.parity_results),
    )


def ready_view(pool: Pool, snap: Snapshot, *, draining: bool, detail: bool) -> tuple[Readiness, ReadyResponse]:
    """The readiness of ``snap`` and its body; ``detail=False``: the status only (a caller
    without a valid key when keys are configured: the detail names engines, URLs and errors)."""
    supervisor = pool.supervisor
    readiness = supervisor.assess(snap, draining=draining)
    body = ReadyResponse(status=readiness.state.value)
    if detail:
        engines: dict[str, ReadyEngine] = {}
        for name, now in readiness.engines.items():
            state = supervisor.state(snap.members[name])
            engines[name] = wire_view(
                ReadyEngine,
                now,
                ready=now.available,
                circuit=state.breaker.state.value,
                parity=_parity(state.parity, state.parity_results),
            )
        body.engines = engines
        body.not_ready = readiness.out
        body.tasks = readiness.tasks
        body.fast_path_lost = readiness.fast_path_lost
        body.unserved = readiness.unserved
        if len(readiness.models) > 1:
            body.models = readiness.models
    return readiness, body


async def engines_view(pool: Pool, snap: Snapshot) -> EnginesView:
    plans: dict[str, list[str] | PlanError] = {}
    for model in snap.models:
        for key in snap.model_routes(model):
            label = key if model == snap.first_model else f"{model}/{key}"
            try:
                plans[label] = pool.supervisor.plan(snap, task_of_key(key), model=model)
            except EmbedGatewayError as exc:
                plans[label] = PlanError(error=exc.message)
    return EnginesView(
        generation=snap.generation,
        routes=snap.routes,
        serving_now=plans,
        engines={n: engine_status(await pool.supervisor.report(snap, m)) for n, m in snap.members.items()},
    )


def shadow_view(pairs: list[PairView]) -> ShadowView:
    return ShadowView(shadows=[
        wire_view(ShadowPairView, pair, lanes=[
            wire_view(ShadowLaneView, lane,
                      agreement=None if lane.agreement is None else wire_view(AgreementView, lane.agreement))
            for lane in pair.lanes
        ])
        for pair in pairs
    ])
