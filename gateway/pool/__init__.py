"""The engine pool: who runs, in which state, and what a request sees.

* :mod:`~gateway.pool.pool` — :class:`Pool`: open, reload, the snapshot swap, holding, close;
* :mod:`~gateway.pool.snapshot` — the immutable :class:`Snapshot` a request holds;
* :mod:`~gateway.pool.state` — each engine's live, mutable :class:`EngineState`;
* :mod:`~gateway.pool.supervisor` — the only writer of those states (health, probes, trips,
  parity runs, the monitor loop) and the router's view of them;
* :mod:`~gateway.pool.breaker`, :mod:`~gateway.pool.parity`, :mod:`~gateway.pool.readiness` — the
  circuit breaker, the parity guard and the ready rule;
* :mod:`~gateway.pool.reload` — SIGHUP and ``POST /admin/reload``.
"""

from gateway.pool.pool import EngineBuilder, Pool
from gateway.pool.snapshot import Member, Snapshot
from gateway.pool.state import EngineState
from gateway.pool.supervisor import EngineReport, Monitor, Supervisor

__all__ = ["EngineBuilder", "EngineReport", "EngineState", "Member", "Monitor", "Pool", "Snapshot", "Supervisor"]
