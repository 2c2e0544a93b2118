"""The Ray Serve deployment: one :class:`~engine_hf.HFEngine` per replica.

Each replica loads the model once and keeps the engine's own scheduler, so the jobs that Serve
routes to it (of any task) share token-budget forward passes exactly as in the single-process
server. Contract errors come back as :class:`~engine_hf.remote_errors.RemoteError` values (see there).

``build_app(settings)`` is what ``embed-gateway serve --ray`` deploys; ``app_builder`` is the same
for ``serve deploy configs/ray-serve.yaml`` (Serve calls it with the config's ``args``: the
``engines.hf`` keys).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine_hf.remote_errors import RemoteError, pack_error
from engine_hf.settings import HFEngineSettings, RaySettings
from gateway.contract import (
    EmbedGatewayError,
    EmbedJob,
    EmbedResult,
    EngineCapabilities,
    Health,
    Task,
    Tokenized,
)

if TYPE_CHECKING:
    from ray.serve import Application

__all__ = ["HFReplica", "app_builder", "build_app", "deployment_options"]

log = logging.getLogger(__name__)


class HFReplica:
    """One replica: the in-process engine, started in Serve's (async) constructor."""

    async def __init__(self, settings: dict[str, Any]) -> None:  # type: ignore[misc]  # Ray actors allow it
        from engine_hf.engine import HFEngine

        parsed = HFEngineSettings.model_validate(settings)
        # the replica is an ordinary in-process engine: its own threads, no nested Ray, and its passes
        # in this worker process (Ray already gave it a process of its own)
        own = parsed.model_copy(
            update={"threads": parsed.ray.threads or parsed.threads, "ray": RaySettings(), "own_process": False}
        )
        self.engine = HFEngine(own, name="hf-replica")
        await self.engine.start()

    async def embed(self, job: EmbedJob) -> EmbedResult | RemoteError:
        try:
            return await self.engine.embed(job)
        except EmbedGatewayError as err:
            return pack_error(err)

    async def tokenize(
        self, texts: Sequence[str], task: Task | None, add_special_tokens: bool
    ) -> list[Tokenized] | RemoteError:
        try:
            return await self.engine.tokenize(texts, task, add_special_tokens=add_special_tokens)
        except EmbedGatewayError as err:
            return pack_error(err)

    async def decode(self, ids: Sequence[Sequence[int]], skip_special_tokens: bool) -> list[str] | RemoteError:
        try:
            return await self.engine.decode(ids, skip_special_tokens=skip_special_tokens)
        except EmbedGatewayError as err:
            return pack_error(err)

    def capabilities(self) -> EngineCapabilities:
        return self.engine.capabilities

    async def health(self) -> Health:
        return await self.engine.check_health()

    async def check_health(self) -> None:
        """Serve's own probe: a replica whose engine is broken is replaced."""
        health = await self.engine.check_health()
        if not health.ok:
            raise RuntimeError(f"engine unhealthy: {health.detail}")


def deployment_options(settings: HFEngineSettings) -> dict[str, Any]:
    """``engines.hf.ray`` as Serve's deployment options."""
    r = settings.ray
    options: dict[str, Any] = {
        "name": r.deployment_name,
        "ray_actor_options": {"num_cpus": r.num_cpus, "num_gpus": r.num_gpus},
        "max_ongoing_requests": r.max_ongoing_requests,
        "max_queued_requests": r.max_queued_requests,
    }
    a = r.autoscaling
    if a.enabled:
        options["autoscaling_config"] = {
            "min_replicas": a.min_replicas,
            "max_replicas": a.max_replicas,
            "initial_replicas": a.min_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
            "upscale_delay_s": a.upscale_delay_s,
            "downscale_delay_s": a.downscale_delay_s,
            "metrics_interval_s": a.metrics_interval_s,
            "look_back_period_s": a.look_back_period_s,
        }
    else:
        options["num_replicas"] = r.num_replicas
    return options


def build_app(settings: HFEngineSettings) -> Application:
    """The Serve application of ``settings``: the deployment, bound to the engine's own keys."""
    from ray import serve

    deployment = serve.deployment(HFReplica).options(**deployment_options(settings))
    return deployment.bind(settings.model_dump(mode="json"))


def app_builder(args: dict[str, Any]) -> Application:
    """For ``serve deploy``/``serve run``: ``args`` are ``engines.hf`` keys (``ray`` included)."""
    return build_app(HFEngineSettings.model_validate(args))
