"""``InProcessEngine``: the engine shell every in-process kind shares.

An in-process kind runs a checkpoint with torch under the gateway's control (no server of its own)
and its forward passes on the shared batching kit (:class:`engine_hf.scheduler.Scheduler`).
Everything around that is the same for every kind and lives here once, so a fix to it reaches them
all: loading off the event loop, where the passes run, the scheduler and its limits, tokenising on a
small thread pool, health, shutdown, and the names that results and /info show. A kind adds its
settings, what it loads without the weights (``_load_front``: the tokenizer, the checkpoint's
facts, the device and precision), the weights (``_load_model``), how it tokenises and plans a job
(``embed``), its forward pass (``_forward``) and what its model can do (``_describe_model``).

The passes run in a process of their own by default (``own_process``,
:mod:`engine_hf.process`): the kind loads its front here and its model there, and the scheduler's
worker hands each batch over and waits, without holding the interpreter the gateway's requests
need. Otherwise the model loads here and the worker runs the passes itself.
"""

from __future__ import annotations

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from engine_hf.batching import BatchLimits
from engine_hf.device import default_max_batch_tokens, numerics
from engine_hf.process import PassProcess
from engine_hf.scheduler import Scheduler
from engine_hf.settings import InProcessSettings
from gateway.contract import (
    NULL_OBSERVER,
    EmbedGatewayError,
    EngineCapabilities,
    EngineError,
    EngineObserver,
    EngineUnavailableError,
    Health,
    TooManyTokensError,
)

__all__ = ["TOKENIZE_WORKERS", "InProcessEngine", "Placement", "check_total", "display_name", "module_bytes"]

S = TypeVar("S", bound=InProcessSettings)
P = TypeVar("P")  # what one queued sequence carries to the forward pass
R = TypeVar("R")  # what the forward pass returns per sequence
_T = TypeVar("_T")

#: threads tokenising off the event loop
TOKENIZE_WORKERS = 2


@dataclass(frozen=True, slots=True)
class Placement:
    """Where and how the loaded weights compute: what /info, the identity and the result's engine
    name (``:int8``) follow."""

    device: torch.device
    dtype: torch.dtype
    #: the linear kernels (``torch``, ``onednn``, ``int8``)
    kernels: str


class InProcessEngine(ABC, Generic[S, P, R]):
    """The engine contract's shell around one kind's model (see the module docstring)."""

    def __init__(self, settings: S, *, name: str, observer: EngineObserver = NULL_OBSERVER) -> None:
        self.settings = settings
        self._name = name
        self._observer = observer
        #: the hub commit the weights came from (None for a local directory)
        self._revision: str | None = settings.revision
        #: what the weights are, for the cache's key: hub id@commit, or a local folder's content hash
        self._weights_id: str | None = None
        #: built once the model is loaded, since nothing in them changes after that
        self._caps: EngineCapabilities | None = None
        self._scheduler: Scheduler[P, R] | None = None
        #: where the loaded weights compute (set by ``_load_front``)
        self._placement: Placement | None = None
        #: bytes the loaded weights hold, wherever they are
        self._resident: int | None = None
        #: the passes' own process, when ``own_process``
        self._passes: PassProcess | None = None
        self._tokenize_pool = ThreadPoolExecutor(max_workers=TOKENIZE_WORKERS, thread_name_prefix=f"{name}-tokenize")
        self._load_error: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ what a kind adds

    @abstractmethod
    def _load_front(self) -> None:
        """Everything but the weights (in a thread, off the event loop): resolve the checkpoint, name
        its weights, read its facts, load the tokenizer, choose the device, dtype and kernels (set
        :attr:`_placement`). Runs where requests are tokenised, and where the passes run too."""

    @abstractmethod
    def _load_model(self) -> None:
        """The weights, after :meth:`_load_front`, where the passes run."""

    @abstractmethod
    def _model_bytes(self) -> int:
        """Bytes the loaded weights hold (after :meth:`_load_model`)."""

    @abstractmethod
    def _warm_up(self) -> None:
        """One small forward pass where the passes run, so the first request pays no first-call costs."""

    @abstractmethod
    def _forward(self, payloads: list[P]) -> list[R]:
        """One batch through the model (on the scheduler's worker thread, or in the passes' process)."""

    @abstractmethod
    def _describe_model(self) -> EngineCapabilities:
        """What the model can do (tasks, outputs, sizes, identity); the shell adds how it is served."""

    def _twin(self) -> Callable[[], InProcessEngine[S, P, R]]:
        """How to make this engine again where its passes run (picklable), its weights already named
        (the passes' process need not hash them again)."""
        make = functools.partial(type(self), self.settings, name=self._name, **self._twin_kwargs())
        return functools.partial(_named, make, self._weights_id, self._revision)

    def _twin_kwargs(self) -> dict[str, Any]:
        """What a kind was given beyond its settings (a CPU, not detected), for :meth:`_twin`."""
        return {}

    def _load_failure(self, exc: Exception) -> Exception | None:
        """The error a failed load raises instead of ``exc`` (``None``: ``exc`` itself)."""
        return None

    def _padded(self) -> bool:
        """Whether a batch costs its longest sequence times its rows (else its real tokens)."""
        return True

    # ------------------------------------------------------------------ contract

    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> EngineCapabilities:
        # read several times per request (routing, the dimensions check, the cache key)
        return self._caps or self._describe()

    def _load(self) -> None:
        """Front and weights in this process (what the passes' own process runs too)."""
        self._load_front()
        self._load_model()
        self._resident = self._model_bytes()

    async def start(self) -> None:
        s = self.settings
        try:
            if s.own_process:
                await asyncio.to_thread(self._load_front)
                self._passes = await PassProcess.start(self._twin(), self._name, self._placement)
                self._resident = self._passes.resident_bytes
            else:
                await asyncio.to_thread(self._load)
        except Exception as exc:
            # (a load error from the passes' process arrives as the contract's class, reason included)
            self._load_error = exc.message if isinstance(exc, EmbedGatewayError) else f"{type(exc).__name__}: {exc}"
            failure = self._load_failure(exc)
            if failure is None:
                raise
            raise failure from exc
        self._caps = self._describe()
        limits = BatchLimits(
            max_batch_tokens=self._max_batch_tokens, max_batch_requests=s.max_batch_requests, padded=self._padded()
        )
        self._scheduler = Scheduler(
            self._passes.forward if self._passes is not None else self._guarded_forward,
            limits,
            name=self._name,
            max_queued_tokens=s.max_queued_tokens,
            observer=self._observer,
            gather_seconds=s.batch_gather_ms / 1000,
        )
        self._scheduler.start()
        if self._passes is not None:
            return  # the passes' process set its threads and warmed up before it said it was ready
        if s.threads:  # torch's thread count is per thread: set it where the passes run
            await self._scheduler.run_in_worker(lambda: torch.set_num_threads(s.threads or 1))
        await self._scheduler.run_in_worker(self._warm_up)

    async def check_health(self) -> Health:
        if self._load_error:
            return Health(False, f"load failed: {self._load_error}")
        if self._scheduler is None:
            return Health(False, "loading")
        problem = self._scheduler.problem or (self._passes.problem if self._passes is not None else None)
        if problem is not None:
            return Health(False, problem)
        extra: dict[str, object] = {
            "queue_depth": self._scheduler.queue_depth, "queued_tokens": self._scheduler.queued_tokens,
        }
        if self._passes is not None:
            extra["passes_pid"] = self._passes.pid
        return Health(True, "ok", extra)

    async def aclose(self) -> None:
        if self._scheduler is not None:
            await self._scheduler.aclose()
        self._closed = True
        self._tokenize_pool.shutdown(wait=False, cancel_futures=True)
        if self._passes is not None:
            await asyncio.to_thread(self._passes.close)

    # ------------------------------------------------------------------ for the kinds

    @property
    def _max_batch_tokens(self) -> int:
        """``max_batch_tokens``, or the default of the device (CPU until it is loaded)."""
        placement = self._placement
        return self.settings.max_batch_tokens or default_max_batch_tokens(placement.device.type if placement else "cpu")

    @property
    def _served_by(self) -> str:
        """What results (and the ``x-embed-engine`` header) name: the engine, or ``name:int8`` for the
        lossy int8 engine, so its vectors are never taken for the exact engine's."""
        placement = self._placement
        return f"{self._name}:int8" if placement is not None and placement.kernels == "int8" else self._name

    def _not_loaded(self) -> EngineUnavailableError:
        """The retryable "unavailable" for work that arrives before the model is loaded."""
        return EngineUnavailableError(f"engine {self._name} is not loaded", engine=self._name)

    async def _off_loop(self, fn: Callable[[], _T]) -> _T:
        """``fn`` on the tokenizer threads. Once the engine is closed (shutdown, reload) that pool is
        gone: the request gets the retryable "unavailable" (503, or another engine), not a 500."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._tokenize_pool, fn)
        except RuntimeError as exc:
            if self._closed:
                raise EngineUnavailableError(f"engine {self._name} is closed", engine=self._name) from exc
            raise

    def _name_weights(self, path: Path, fingerprint: Callable[[Path], str]) -> None:
        """Name the weights at ``path`` (resolved from ``settings.model``): a hub snapshot
        (``.../snapshots/<commit>``) by id@commit, a local folder by the hash of its content."""
        if self._weights_id is not None:  # named by the gateway's side already (the passes' process)
            return
        model = self.settings.model
        if not Path(model).expanduser().is_dir():
            self._revision = path.name
            self._weights_id = f"{model}@{path.name}"
        else:
            self._weights_id = f"sha256:{fingerprint(path)}"

    # ------------------------------------------------------------------ internals

    def _describe(self) -> EngineCapabilities:
        s, placement = self.settings, self._placement
        dtype = None
        if placement is not None:
            dtype = "int8" if placement.kernels == "int8" else str(placement.dtype).removeprefix("torch.")
        return replace(
            self._describe_model(),
            model=display_name(s.model),
            revision=self._revision,
            dtype=dtype,
            device=str(placement.device) if placement else None,
            numerics=numerics(placement.dtype, placement.kernels) if placement else None,
            max_batch_tokens=self._max_batch_tokens,
            max_batch_requests=s.max_batch_requests,
            max_queued_tokens=s.max_queued_tokens,
            tokenization_workers=TOKENIZE_WORKERS,
        )

    def _guarded_forward(self, payloads: list[P]) -> list[R]:
        """``_forward``, with running out of GPU memory named as such (the batch fails, the worker lives)."""
        try:
            return self._forward(payloads)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise EngineError(
                f"out of GPU memory; lower max_batch_tokens of engine {self._name}", engine=self._name
            ) from exc


def _named(make: Callable[[], InProcessEngine[Any, Any, Any]], weights_id: str | None,
           revision: str | None) -> InProcessEngine[Any, Any, Any]:
    """``make()`` with its weights' name and revision given, not computed (for :meth:`_twin`)."""
    engine = make()
    engine._weights_id, engine._revision = weights_id, revision
    return engine


def check_total(n_tokens: int, limit: int | None) -> None:
    """``limits.max_tokens_per_request``, checked once the job is tokenised and before it is queued."""
    if limit is not None and n_tokens > limit:
        raise TooManyTokensError(n_tokens, limit)


def display_name(model: str) -> str:
    """The model as /info shows it: a hub id as is, a local directory by its name only (no paths)."""
    return Path(model).name if model.startswith((".", "/", "~")) else model


def module_bytes(module: Any) -> int:
    """Bytes of a torch module's parameters and buffers (each storage counted once): the weights'
    share of the engine's memory, for ``EngineCapabilities.resident_bytes``."""
    seen: set[int] = set()
    total = 0
    for t in (*module.parameters(), *module.buffers()):
        ptr = t.data_ptr()
        if ptr not in seen:
            seen.add(ptr)
            total += t.numel() * t.element_size()
    return total
