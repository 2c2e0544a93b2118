"""Every Prometheus metric of the gateway, declared in this one module.

Events are recorded where the decisions happen: the front door records each finished request
(route, model alias, task, engine, status), the service its tokens and engine timings and its
fallbacks, the batcher (through :class:`~gateway.contract.EngineObserver`) each forward pass and
its queue, the supervisor the breaker and parity decisions. States that are simply
*there* (engine health, breaker state, parity status, requests per engine) are read from the
supervisor when Prometheus scrapes (:class:`StateCollector`), so they can never go stale or drift.

Each app owns a :class:`GatewayMetrics` with its own registry, so several apps in one process
(tests) never collide and a test reads exactly its app's counts; ``GET /metrics`` exposes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.contract import EngineObserver
from gateway.obs.context import RequestContext

if TYPE_CHECKING:
    from gateway.cache import CacheStore
    from gateway.shadow import Shadow
    from gateway.pool import Snapshot, Supervisor

__all__ = ["CacheCollector", "CudaMemoryCollector", "GatewayMetrics", "ShadowCollector", "StateCollector"]

#: request and engine latencies: 1 ms .. 10 min
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_BATCH_SIZE = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_BATCH_TOKENS = (16, 64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # process_cpu_seconds_total, process_resident_memory_bytes, open fds... (Linux /proc)
        ProcessCollector(registry=r)
        # ------------------------------------------------------------ requests (front door, service)
        self.requests = Counter(
            "embed_gateway_requests_total",
            "Finished HTTP requests by route, model alias, task, serving engine and status code.",
            ["route", "model", "task", "engine", "status"],
            registry=r,
        )
        self.request_failures = Counter(
            "embed_gateway_request_failures_total",
            "Requests answered with an error (status >= 400), with the error code.",
            ["route", "model", "task", "engine", "status", "code"],
            registry=r,
        )
        self.request_duration = Histogram(
            "embed_gateway_request_duration_seconds",
            "Time from the request's arrival to its response, by route (all statuses).",
            ["route", "model", "task", "engine"],
            buckets=_LATENCY,
            registry=r,
        )
        self.in_flight = Gauge(
            "embed_gateway_requests_in_flight",
            "Embedding requests admitted and not finished (bounded by limits.max_concurrent_requests).",
            registry=r,
        )
        self.queue_duration = Histogram(
            "embed_gateway_queue_duration_seconds",
            "Time a served request's work waited in the engine's queue before its first forward pass.",
            ["engine", "task"],
            buckets=_LATENCY,
            registry=r,
        )
        self.inference_duration = Histogram(
            "embed_gateway_inference_duration_seconds",
            "Time a served request's work spent in forward passes (or in the remote engine's calls).",
            ["engine", "task"],
            buckets=_LATENCY,
            registry=r,
        )
        self.tokens = Counter(
            "embed_gateway_tokens_total",
            "Tokens embedded (what usage reports: instruction and special tokens included).",
            ["model", "task", "engine"],
            registry=r,
        )
        self.inputs = Counter(
            "embed_gateway_inputs_total",
            "Inputs (texts, token-id lists or chunks) embedded.",
            ["model", "task", "engine"],
            registry=r,
        )
        # ------------------------------------------------------------ the batcher (EngineObserver)
        self.batch_size = Histogram(
            "embed_gateway_batch_size",
            "Sequences per forward pass.",
            ["engine"],
            buckets=_BATCH_SIZE,
            registry=r,
        )
        self.batch_tokens = Histogram(
            "embed_gateway_batch_tokens",
            "Tokens per forward pass.",
            ["engine"],
            buckets=_BATCH_TOKENS,
            registry=r,
        )
        self.batch_duration = Histogram(
            "embed_gateway_batch_duration_seconds",
            "Duration of one forward pass.",
            ["engine"],
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_depth = Gauge(
            "embed_gateway_queue_depth",
            "Sequences (HF) or inputs (vLLM) waiting in an engine's queue.",
            ["engine"],
            registry=r,
        )
        self.queue_tokens = Gauge(
            "embed_gateway_queue_tokens",
            "Tokens waiting in an engine's queue (bounded by engines.hf.max_queued_tokens).",
            ["engine"],
            registry=r,
        )
        # ------------------------------------------------------------ routing decisions
        self.fallbacks = Counter(
            "embed_gateway_fallbacks_total",
            "Requests moved to the next engine of their route after a retryable failure.",
            ["task", "engine", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "embed_gateway_retries_total",
            "Retries of the last engine a request could go to (the retry policy).",
            ["task", "engine", "reason"],
            registry=r,
        )
        self.circuit_opened = Counter(
            "embed_gateway_circuit_opened_total",
            "Times an engine's circuit breaker took it out of its routes.",
            ["engine"],
            registry=r,
        )
        self.parity_failures = Counter(
            "embed_gateway_parity_failures_total",
            "Parity checks an engine failed (vectors differ from the reference engine's).",
            ["engine", "task"],
            registry=r,
        )
        self.parity_cosine = Gauge(
            "embed_gateway_parity_mean_cosine",
            "Mean cosine between an engine's and the reference engine's probe vectors at the last check.",
            ["engine", "task"],
            registry=r,
        )
        self.shadow_duration = Histogram(
            "embed_gateway_shadow_candidate_duration_seconds",
            "Time a shadow candidate took to embed a sampled request (live A/B; never on the primary's path).",
            ["primary", "candidate"],
            buckets=_LATENCY,
            registry=r,
        )
        self.observer: EngineObserver = _Observer(self)
        # Each request's metric children by label values: prometheus_client's labels() checks and
        # converts its arguments on every call, a cost paid here once per label combination (as
        # many as the series themselves, so as bounded).
        self._request_children: dict[tuple[str, str, str, str, int], tuple[Any, Any]] = {}
        self._served_children: dict[tuple[str, str, str], tuple[Any, Any, Any, Any]] = {}
        self._state: StateCollector | None = None
        self._cache: CacheCollector | None = None
        self._shadow: ShadowCollector | None = None

    # ------------------------------------------------------------------ recording

    def record_request(self, ctx: RequestContext, status: int, seconds: float) -> None:
        """One finished request (the front door calls this once per request)."""
        key = (ctx.route, ctx.model, ctx.task, ctx.engine, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(*key[:4], str(status)), self.request_duration.labels(*key[:4])
            )
        children[0].inc()
        children[1].observe(seconds)
        if status >= 400:
            self.request_failures.labels(*key[:4], str(status), ctx.error_code or str(status)).inc()

    def record_served(self, ctx: RequestContext) -> None:
        """A request an engine served: its tokens and the engine's timings (the service calls this)."""
        key = (ctx.model, ctx.task, ctx.engine)
        children = self._served_children.get(key)
        if children is None:
            children = self._served_children[key] = (
                self.tokens.labels(*key), self.inputs.labels(*key),
                self.queue_duration.labels(ctx.engine, ctx.task), self.inference_duration.labels(ctx.engine, ctx.task),
            )
        tokens, inputs, queue, inference = children
        tokens.inc(ctx.tokens)
        inputs.inc(ctx.inputs)
        queue.observe(ctx.queue_seconds)
        inference.observe(ctx.inference_seconds)

    # ------------------------------------------------------------------ the pool's events (gateway.pool.events)

    def engine_out(self, engine: str) -> None:
        self.circuit_opened.labels(engine=engine).inc()

    def parity_checked(self, engine: str, task: str, *, mean_cosine: float, ok: bool) -> None:
        self.parity_cosine.labels(engine=engine, task=task).set(mean_cosine)
        if not ok:
            self.parity_failures.labels(engine=engine, task=task).inc()

    def watch(
        self, supervisor: Supervisor, snapshot: Callable[[], Snapshot | None], draining: Callable[[], bool] = lambda: False
    ) -> None:
        """Export the engines' live state (see :class:`StateCollector`); once per app."""
        if self._state is None:
            self._state = StateCollector(supervisor, snapshot, draining)
            self.registry.register(self._state)
            self.registry.register(CudaMemoryCollector())

    def watch_cache(self, cache: CacheStore) -> None:
        """Export the embedding cache's counts and sizes (see :class:`CacheCollector`); once per app."""
        if self._cache is None:
            self._cache = CacheCollector(cache)
            self.registry.register(self._cache)

    def shadow_done(self, primary: str, candidate: str, seconds: float) -> None:
        """One shadow request the candidate served (its counts are read from the shadow at scrape time)."""
        self.shadow_duration.labels(primary, candidate).observe(seconds)

    def watch_shadow(self, shadow: Shadow) -> None:
        """Export the live shadow A/B's counts and agreement (see :class:`ShadowCollector`); once per app."""
        if self._shadow is None:
            self._shadow = ShadowCollector(shadow)
            self.registry.register(self._shadow)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent); for tests and the admin view."""
        got = self.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got


class _Observer:
    """:class:`~gateway.contract.EngineObserver` writing into one app's metrics (the queue gauges'
    children kept per engine: an engine reports its queue twice per job)."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics
        self._queue_gauges: dict[str, tuple[Any, Any]] = {}

    def batch(self, engine: str, *, sequences: int, tokens: int, seconds: float) -> None:
        self._m.batch_size.labels(engine=engine).observe(sequences)
        self._m.batch_tokens.labels(engine=engine).observe(tokens)
        self._m.batch_duration.labels(engine=engine).observe(seconds)

    def queue(self, engine: str, *, depth: int, tokens: int) -> None:
        gauges = self._queue_gauges.get(engine)
        if gauges is None:
            gauges = self._queue_gauges[engine] = (self._m.queue_depth.labels(engine), self._m.queue_tokens.labels(engine))
        gauges[0].set(depth)
        gauges[1].set(tokens)


class StateCollector(Collector):
    """Engine states read from the supervisor, for the current snapshot's engines, at scrape time.

    * ``embed_gateway_engine_healthy`` — 1 if the engine's last health check passed (the monitor
      checks every ``breaker.probe_interval``); absent before the first check;
    * ``embed_gateway_engine_ready`` — 1 if it can serve now: started, parity cleared, circuit
      closed, last health check passed (:func:`gateway.pool.readiness.availability`, as ``GET /ready``);
    * ``embed_gateway_circuit_open`` — 1 while its circuit breaker keeps it out of its routes;
    * ``embed_gateway_parity_status`` — 1 for its current parity-guard status (``not_required``,
      ``pending``, ``passed``, ``failed``), 0 for the others;
    * ``embed_gateway_engine_requests`` — requests calling the engine now;
    * ``embed_gateway_ready`` — 1 for the gateway's current readiness ``state`` (``ready``,
      ``degraded``, ``not_ready``, ``shutting_down``), 0 for the others: what ``GET /ready`` says
      (:func:`gateway.pool.readiness.assess`); alert on ``state="degraded"`` — the replica serves, an
      engine is out;
    * ``embed_gateway_task_engines_available`` — per task the configuration serves, how many
      engines can serve it now (0: requests for it fail; ``/ready`` is 503);
    * ``embed_gateway_model_resident_bytes{model}`` — bytes of weights the model's in-process
      engines hold (0 for a remote model);
    * ``embed_gateway_model_ready{model, state}`` — 1 for each model's readiness state.
    """

    def __init__(
        self, supervisor: Supervisor, snapshot: Callable[[], Snapshot | None], draining: Callable[[], bool]
    ) -> None:
        self._supervisor = supervisor
        self._snapshot = snapshot
        self._draining = draining

    def collect(self) -> Iterator[Metric]:
        from gateway.pool.parity import ParityStatus
        from gateway.pool.readiness import ReadyState

        healthy = GaugeMetricFamily("embed_gateway_engine_healthy", "Last health check passed (1) or failed (0).",
                                    labels=["engine"])
        ready = GaugeMetricFamily("embed_gateway_engine_ready", "Engine is in its routes now.", labels=["engine"])
        circuit = GaugeMetricFamily("embed_gateway_circuit_open", "Circuit breaker open (1) or closed (0).",
                                    labels=["engine"])
        parity = GaugeMetricFamily("embed_gateway_parity_status", "Parity-guard status (1 = current).",
                                   labels=["engine", "status"])
        held = GaugeMetricFamily("embed_gateway_engine_requests", "Requests in flight on the engine.",
                                 labels=["engine"])
        gateway = GaugeMetricFamily("embed_gateway_ready", "Readiness state as GET /ready says it (1 = current).",
                                    labels=["state"])
        tasks = GaugeMetricFamily("embed_gateway_task_engines_available",
                                  "Engines able to serve the task now (0 = the task cannot be served).",
                                  labels=["task"])
        resident = GaugeMetricFamily("embed_gateway_model_resident_bytes",
                                     "Bytes of weights the model's in-process engines hold.", labels=["model"])
        models = GaugeMetricFamily("embed_gateway_model_ready",
                                   "Readiness per model (1 = current state).", labels=["model", "state"])
        snap = self._snapshot()
        if snap is not None:
            readiness = self._supervisor.assess(snap, draining=self._draining())
            for name, member in snap.members.items():
                state = self._supervisor.state(member)
                if state.healthy is not None:
                    healthy.add_metric([name], 1.0 if state.healthy else 0.0)
                ready.add_metric([name], 1.0 if readiness.engines[name].available else 0.0)
                circuit.add_metric([name], 1.0 if state.breaker.is_open else 0.0)
                for status in ParityStatus:
                    parity.add_metric([name, status.value], 1.0 if state.parity is status else 0.0)
                held.add_metric([name], float(max(0, state.in_flight)))
            for ready_state in ReadyState:
                gateway.add_metric([ready_state.label], 1.0 if readiness.state is ready_state else 0.0)
            for key, able in readiness.tasks.items():
                tasks.add_metric([key], float(len(able)))
            for model in snap.models:
                held_bytes = sum(c.resident_bytes or 0 for c in snap.capabilities(model).values())
                resident.add_metric([model], float(held_bytes))
                for ready_state in ReadyState:
                    models.add_metric([model, ready_state.label],
                                      1.0 if readiness.models.get(model) == ready_state.value else 0.0)
        yield from (healthy, ready, circuit, parity, held, gateway, tasks, resident, models)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class CacheCollector(Collector):
    """The embedding cache (docs/cache.md), read from its store at scrape time:

    * ``embed_gateway_cache_hits_total{tier}`` / ``embed_gateway_cache_misses_total{tier}`` — keys
      found / not found in ``memory`` and in ``redis`` (Redis is asked only what memory lacked);
    * ``embed_gateway_cache_lookups_total`` — keys looked up (one per input, one per late-chunked document);
    * ``embed_gateway_cache_hit_rate{tier}`` — hits over lookups since start, per tier and ``all``;
    * ``embed_gateway_cache_coalesced_total`` — misses that waited for an identical one in flight;
    * ``embed_gateway_cache_stores_total`` — entries written after an engine computed them;
    * ``embed_gateway_cache_bytes`` / ``embed_gateway_cache_entries`` / ``embed_gateway_cache_max_bytes`` — the memory tier;
    * ``embed_gateway_cache_evictions_total`` — entries the memory tier dropped for room;
    * ``embed_gateway_cache_redis_errors_total`` — Redis calls that failed or timed out (each served by the engines);
    * ``embed_gateway_cache_redis_up`` — 0 from a Redis error until a call succeeds again.
    """

    def __init__(self, cache: CacheStore) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        c, st = self._cache, self._cache.stats
        hits = CounterMetricFamily("embed_gateway_cache_hits", "Cache keys found, per tier.", labels=["tier"])
        misses = CounterMetricFamily("embed_gateway_cache_misses", "Cache keys not found, per tier.", labels=["tier"])
        rate = GaugeMetricFamily("embed_gateway_cache_hit_rate", "Cache hits over lookups since start.", labels=["tier"])
        tiers = [t for t, on in (("memory", c.memory is not None), ("redis", c.redis is not None)) if on]
        for tier in tiers:
            hits.add_metric([tier], float(st.hits[tier]))
            misses.add_metric([tier], float(st.misses[tier]))
            rate.add_metric([tier], st.hit_rate(tier) or 0.0)
        rate.add_metric(["all"], st.hit_rate() or 0.0)
        yield from (hits, misses, rate)
        yield CounterMetricFamily("embed_gateway_cache_lookups", "Cache keys looked up.", value=float(st.lookups))
        yield CounterMetricFamily("embed_gateway_cache_coalesced", "Misses that waited for an identical one in flight.",
                                  value=float(st.coalesced))
        yield CounterMetricFamily("embed_gateway_cache_stores", "Cache entries written.", value=float(st.stores))
        if c.memory is not None:
            yield GaugeMetricFamily("embed_gateway_cache_bytes", "Bytes held by the memory tier.", value=float(c.memory.bytes))
            yield GaugeMetricFamily("embed_gateway_cache_max_bytes", "The memory tier's bound (cache.memory_bytes).",
                                    value=float(c.memory.max_bytes))
            yield GaugeMetricFamily("embed_gateway_cache_entries", "Entries in the memory tier.", value=float(c.memory.entries))
            yield CounterMetricFamily("embed_gateway_cache_evictions", "Entries evicted from the memory tier.",
                                      value=float(c.memory.evictions))
        if c.redis is not None:
            yield CounterMetricFamily("embed_gateway_cache_redis_errors", "Redis calls that failed or timed out.",
                                      value=float(c.redis.errors))
            yield GaugeMetricFamily("embed_gateway_cache_redis_up", "Redis answered the last call (1) or not (0).",
                                    value=1.0 if c.redis.healthy else 0.0)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class ShadowCollector(Collector):
    """The live shadow A/B (docs/ab-testing.md), read from it at scrape time, per primary model and
    candidate:

    * ``embed_gateway_shadow_requests_total{primary,candidate,outcome}`` — sampled requests by
      outcome: ``shadowed`` (the candidate answered), ``dropped`` (its queue was full), ``failed``;
    * ``embed_gateway_shadow_texts_total`` / ``embed_gateway_shadow_candidate_tokens_total`` — what
      the candidate embedded, and its token cost;
    * ``embed_gateway_shadow_queued`` — sampled requests waiting for the candidate;
    * ``embed_gateway_shadow_agreement{primary,candidate,task,dimensions,measure}`` — over the window
      of recent texts: ``top_k_overlap`` and ``rank_correlation`` (1.0 = the same neighbourhoods);
    * ``embed_gateway_shadow_window_texts{...,task,dimensions}`` — texts the agreement is computed over.
    """

    def __init__(self, shadow: Shadow) -> None:
        self._shadow = shadow

    def collect(self) -> Iterator[Metric]:
        pair_labels = ["primary", "candidate"]
        requests = CounterMetricFamily("embed_gateway_shadow_requests", "Requests sampled for a shadow candidate, by outcome.",
                                       labels=[*pair_labels, "outcome"])
        texts = CounterMetricFamily("embed_gateway_shadow_texts", "Texts a shadow candidate embedded.", labels=pair_labels)
        tokens = CounterMetricFamily("embed_gateway_shadow_candidate_tokens", "Tokens a shadow candidate embedded.",
                                     labels=pair_labels)
        queued = GaugeMetricFamily("embed_gateway_shadow_queued", "Sampled requests waiting for the candidate.",
                                   labels=pair_labels)
        lane_labels = [*pair_labels, "task", "dimensions"]
        agree = GaugeMetricFamily("embed_gateway_shadow_agreement",
                                  "Neighbourhood agreement of primary and candidate over the window of recent texts.",
                                  labels=[*lane_labels, "measure"])
        window = GaugeMetricFamily("embed_gateway_shadow_window_texts", "Texts the agreement is computed over.",
                                   labels=lane_labels)
        for pair in self._shadow.views():
            who = [pair.primary, pair.candidate]
            for outcome, n in (("shadowed", pair.shadowed), ("dropped", pair.dropped), ("failed", pair.failed)):
                requests.add_metric([*who, outcome], float(n))
            texts.add_metric(who, float(pair.texts))
            tokens.add_metric(who, float(pair.candidate_tokens))
            queued.add_metric(who, float(pair.queued))
            for lane in pair.lanes:
                where = [*who, lane.task, str(lane.dimensions)]
                window.add_metric(where, float(lane.texts))
                a = lane.agreement
                if a is not None:
                    agree.add_metric([*where, "top_k_overlap"], a.top_k_overlap)
                    if a.rank_correlation is not None:
                        agree.add_metric([*where, "rank_correlation"], a.rank_correlation)
        yield from (requests, texts, tokens, queued, agree, window)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class CudaMemoryCollector(Collector):
    """GPU memory of this process, read from torch at scrape time (nothing without CUDA in use):

    * ``embed_gateway_cuda_memory_bytes{device, kind}`` — ``allocated`` (tensors now), ``reserved``
      (held by torch's caching allocator), ``peak_allocated`` (most tensors at once since start).

    torch is never imported for this: a gateway without the HF engine has no GPU memory to show.
    """

    def collect(self) -> Iterator[Metric]:
        import sys

        torch = sys.modules.get("torch")
        if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return
        family = GaugeMetricFamily("embed_gateway_cuda_memory_bytes", "GPU memory of this process (torch's allocator).",
                                   labels=["device", "kind"])
        for index in range(torch.cuda.device_count()):
            device = f"cuda:{index}"
            family.add_metric([device, "allocated"], float(torch.cuda.memory_allocated(index)))
            family.add_metric([device, "reserved"], float(torch.cuda.memory_reserved(index)))
            family.add_metric([device, "peak_allocated"], float(torch.cuda.max_memory_allocated(index)))
        yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())
