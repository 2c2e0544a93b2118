"""``RayHFEngine``: the contract ``Engine`` over the Serve deployment's replicas.

The gateway stays its own process and sees one engine called ``hf``, so its routing, fallback,
breaker, parity guard, limits and metrics are unchanged; behind it Serve spreads jobs over the
replicas. At this boundary Ray's failures become the contract's: a replica that died under a job
(the job is idempotent) is retried on another up to ``engines.hf.ray.max_retries`` times, then
``EngineUnavailableError``; the handle's backpressure is ``EngineOverloadedError``; a job past its
deadline is cancelled in the replica and is ``EngineTimeoutError``; anything else a replica raises
is ``EngineError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt

from engine_hf.remote_errors import RemoteError, unpack_error
from gateway.contract import (
    NULL_OBSERVER,
    TASKS,
    EmbedJob,
    EmbedResult,
    EngineCapabilities,
    EngineError,
    EngineObserver,
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    Health,
    Task,
    Tokenized,
)

if TYPE_CHECKING:
    from engine_hf.settings import HFEngineSettings

__all__ = ["RayHFEngine", "relabel"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: which engine in this process deployed each Serve app: only that one deletes it on close
#: (a reload builds the new engine before it retires the old one, under the same app name)
_OWNERS: dict[str, object] = {}


class RayHFEngine:
    """The HF engine as N Ray Serve replicas (see docs/scale-out.md)."""

    def __init__(
        self, settings: HFEngineSettings, *, name: str = "hf", observer: EngineObserver = NULL_OBSERVER
    ) -> None:
        self.settings = settings
        self._name = name
        self._observer = observer  # replicas batch in their own processes; Ray's metrics show their batches
        self._handle: Any = None
        self._caps: EngineCapabilities | None = None
        self._started_ray = False
        self._started_cluster = False
        self._closed = False

    # ------------------------------------------------------------------ contract

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> EngineCapabilities:
        if self._caps is not None:
            return self._caps
        s = self.settings
        return EngineCapabilities(
            tasks=frozenset([*TASKS, None]), dimensions=1024, max_input_tokens=s.max_input_tokens,
            late_chunking=True, token_ids=True, token_embeddings=True, tokenizer=True,
        )

    async def start(self) -> None:
        r = self.settings.ray
        try:
            await asyncio.wait_for(asyncio.to_thread(self._connect), timeout=r.start_timeout_s)
        except TimeoutError:
            raise EngineUnavailableError(
                f"the Ray deployment {r.app_name}/{r.deployment_name} was not ready within {r.start_timeout_s:.0f} s",
                engine=self._name,
            ) from None
        except Exception as exc:  # no cluster, a deployment that failed to start (bad model path, no GPU)
            raise EngineUnavailableError(
                f"could not start the Ray deployment {r.app_name}/{r.deployment_name}: {type(exc).__name__}: {exc}",
                engine=self._name,
            ) from exc
        caps: EngineCapabilities = await self._call(lambda h: h.capabilities.remote(), deadline=None)
        self._caps = dataclasses.replace(caps, device=_replicas_label(caps.device, r), tokenization_workers=None)

    async def embed(self, job: EmbedJob) -> EmbedResult:
        result: EmbedResult = await self._call(lambda h: h.embed.remote(job), deadline=job.deadline)
        return dataclasses.replace(result, engine=relabel(self._name, result.engine))

    async def tokenize(self, texts: Sequence[str], task: Task | None, *, add_special_tokens: bool) -> list[Tokenized]:
        out: list[Tokenized] = await self._call(lambda h: h.tokenize.remote(list(texts), task, add_special_tokens))
        return out

    async def decode(self, ids: Sequence[Sequence[int]], *, skip_special_tokens: bool) -> list[str]:
        out: list[str] = await self._call(lambda h: h.decode.remote([list(x) for x in ids], skip_special_tokens))
        return out

    async def check_health(self) -> Health:
        if self._closed:
            return Health(False, "closed")
        if self._handle is None:
            return Health(False, "connecting to Ray")
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._status), timeout=10)
        except Exception as exc:  # a probe never raises
            return Health(False, f"Ray status unavailable: {type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        handle, self._handle = self._handle, None
        if handle is None and not self._started_ray:
            return
        await asyncio.to_thread(self._disconnect)

    # ------------------------------------------------------------------ the hop

    async def _call(self, send: Callable[[Any], Any], *, deadline: float | None = None) -> Any:
        """Send one request (``send(handle)`` -> DeploymentResponse) and map Ray's failures."""
        from ray import exceptions as rex
        from ray.serve import exceptions as sex

        r = self.settings.ray
        attempt = 0
        while True:
            handle = self._handle
            if handle is None:
                raise EngineUnavailableError(f"engine {self._name} is not connected to Ray", engine=self._name)
            response = send(handle)
            try:
                reply = await _within(response, deadline)
            except TimeoutError:
                raise EngineTimeoutError("the job's deadline passed in a Ray replica", engine=self._name) from None
            except sex.BackPressureError as exc:
                raise EngineOverloadedError(
                    f"every Ray replica is busy: {exc}", engine=self._name, retry_after=exc.retry_after_s or 1.0
                ) from None
            except sex.DeploymentUnavailableError as exc:
                raise EngineUnavailableError(f"the Ray deployment is unavailable: {exc.message}", engine=self._name) from None
            except (rex.RayActorError, rex.WorkerCrashedError, rex.NodeDiedError, rex.ObjectLostError,
                    sex.ReplicaUnavailableError, sex.RequestCancelledError) as exc:
                # the replica died (or was stopped) under the job: another replica can redo it
                attempt += 1
                if attempt > r.max_retries:
                    raise EngineUnavailableError(
                        f"Ray replicas failed {attempt} times in a row: {type(exc).__name__}", engine=self._name
                    ) from None
                log.warning("Ray replica lost (%s); retrying the job (%d/%d)", type(exc).__name__, attempt, r.max_retries)
                await asyncio.sleep(min(0.1 * 2**attempt, 1.0))
                continue
            except rex.RayError as exc:
                raise EngineError(f"a Ray replica failed: {type(exc).__name__}", engine=self._name) from exc
            if isinstance(reply, RemoteError):
                raise unpack_error(reply, engine=self._name)
            return reply

    # ------------------------------------------------------------------ Ray (worker thread)

    def _connect(self) -> None:
        import ray
        from ray import serve

        r = self.settings.ray
        if not ray.is_initialized():
            address = r.address or os.environ.get("RAY_ADDRESS")
            if address is None:  # a local cluster of our own, stopped on close
                ray.init(include_dashboard=False, log_to_driver=True)
                self._started_cluster = True
            else:
                ray.init(address=address, log_to_driver=True)
            self._started_ray = True  # we connected this process: we disconnect it on close
        if r.deploy:
            from engine_hf.ray.deployment import build_app

            # the gateway calls through handles: no Serve HTTP proxy (and no port 8000 taken)
            serve.start(proxy_location="Disabled")
            for attempt in Retrying(retry=retry_if_exception(_pickle_registry_race), stop=stop_after_attempt(3),
                                    reraise=True):
                with attempt:
                    serve.run(build_app(self.settings), name=r.app_name, route_prefix=None)
            _OWNERS[r.app_name] = self
        self._handle = serve.get_deployment_handle(r.deployment_name, app_name=r.app_name)

    def _status(self) -> Health:
        from ray import serve

        r = self.settings.ray
        app = serve.status().applications.get(r.app_name)
        if app is None:
            return Health(False, f"no Serve application {r.app_name!r} on the cluster")
        dep = app.deployments.get(r.deployment_name)
        if dep is None:
            return Health(False, f"no deployment {r.deployment_name!r} in {r.app_name!r}")
        running = int(dep.replica_states.get("RUNNING", 0))
        extra: dict[str, object] = {"replicas": running, "deployment_status": str(dep.status.value)}
        if running < 1:
            return Health(False, f"no running replica ({dep.status.value}: {dep.message})", extra)
        return Health(True, "ok", extra)

    def _disconnect(self) -> None:
        import ray
        from ray import serve

        r = self.settings.ray
        if _OWNERS.get(r.app_name) is self:
            del _OWNERS[r.app_name]
            try:
                serve.delete(r.app_name)
            except Exception as exc:  # the cluster may already be gone
                log.warning("could not delete the Serve application %s: %s", r.app_name, exc)
        if self._started_cluster:
            serve.shutdown()
        if self._started_ray:
            ray.shutdown()


async def _within(response: Awaitable[T], deadline: float | None) -> T:
    """Await a DeploymentResponse, cancelling it in the replica when the deadline passes or the
    caller is cancelled (the contract: a cancelled job withdraws its queued work)."""

    async def get() -> T:
        return await response

    try:
        if deadline is None:
            return await get()
        return await asyncio.wait_for(get(), timeout=max(deadline - time.monotonic(), 0.0))
    except (TimeoutError, asyncio.CancelledError):
        cancel = getattr(response, "cancel", None)
        if cancel is not None:
            cancel()
        raise


def _pickle_registry_race(exc: BaseException) -> bool:
    """Ray Serve builds a deployment's config by registering a module in cloudpickle's
    process-wide pickle-by-value registry, pickling, and unregistering it. A handle's own router
    thread does the same when the controller sends it a config, and the registry is not
    thread-safe: one side's unregister can find the module already gone ("... is not registered
    for pickle by value"). Nothing was deployed; building again succeeds (seen once in three full
    test runs, during the autoscaling test)."""
    return isinstance(exc, ValueError) and "registered for pickle by value" in str(exc)


def relabel(name: str, replica_label: str) -> str:
    """The replica's result label under this engine's name, keeping what it says of its numerics
    (``hf-replica:int8`` -> ``hf:int8``): lossy vectors are never taken for the exact engine's."""
    _, sep, numerics = replica_label.partition(":")
    return f"{name}{sep}{numerics}"


def _replicas_label(device: str | None, r: Any) -> str:
    """``device`` for /info: the replicas' device and how many (or their autoscaling range)."""
    count = f"{r.autoscaling.min_replicas}-{r.autoscaling.max_replicas}" if r.autoscaling.enabled else str(r.num_replicas)
    return f"ray:{count}x{device or '?'}"

