"""The tokenizer use case (TEI's ``/tokenize`` and ``/decode``): which engine tokenises, and the limits.

Why through an engine: the tokenizer (and each task's instruction) belongs to the checkpoint an
engine loaded; the gateway itself never loads model files. Engines whose capabilities say
``tokenizer`` implement :class:`gateway.contract.Tokenizer`; the task's own route is tried first
(so ``/tokenize`` shows what ``/embed`` embeds), then any other such engine.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from gateway.contract import (
    EngineError,
    InvalidRequestError,
    RetryableError,
    Task,
    Tokenized,
    Tokenizer,
    UnsupportedTaskError,
    route_key,
)
from gateway.pool import Pool, Snapshot
from gateway.serving.service import held_request, resolve_model

__all__ = ["TokenService"]


class TokenService:
    """Tokenise and decode on the first able engine of the request's snapshot."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    @contextmanager
    def _snapshot(self) -> Iterator[Snapshot]:
        """The snapshot the front door put on the request (it holds it); outside a server, the
        pool's current one, held here."""
        with held_request(self.pool) as ctx:
            assert ctx.snapshot is not None
            yield ctx.snapshot

    async def tokenize(
        self, texts: Sequence[str], task: str | None, *, task_given: bool, add_special_tokens: bool,
        model: str | None = None,
    ) -> list[Tokenized]:
        """``task_given=False``: the default alias's (or ``model``'s) task, as ``/embed`` without ``prompt_name``."""
        with self._snapshot() as snap:
            _check_count(snap, len(texts))
            default = resolve_model(snap, model)
            if not task_given:
                task = default.task
            last: RetryableError | None = None
            for engine in _tokenizers(snap, task, model=default.model):
                try:
                    return await engine.tokenize(texts, task, add_special_tokens=add_special_tokens)
                except RetryableError as err:
                    last = err
            raise last or _none_able(task)

    async def decode(self, ids: Sequence[Sequence[int]], *, skip_special_tokens: bool, model: str | None = None) -> list[str]:
        with self._snapshot() as snap:
            _check_count(snap, len(ids))
            last: RetryableError | None = None
            for engine in _tokenizers(snap, None, any_task=True, model=resolve_model(snap, model).model):
                try:
                    return await engine.decode(ids, skip_special_tokens=skip_special_tokens)
                except RetryableError as err:
                    last = err
            raise last or _none_able(None)


def _check_count(snap: Snapshot, n: int) -> None:
    limit = snap.settings.limits.max_inputs_per_request
    if n > limit:
        raise InvalidRequestError(
            f"batch size {n} > maximum allowed batch size {limit} (limits.max_inputs_per_request); split the request",
            param="inputs",
            code="too_many_inputs",
        )


def _tokenizers(snap: Snapshot, task: str | None, *, model: str, any_task: bool = False) -> list[Tokenizer]:
    """Engines of ``model`` able to tokenise for ``task``: its route's first, then the others, in table order."""
    caps = snap.capabilities(model)
    route = snap.model_routes(model).get(route_key(task), [])
    names = [*route, *(n for n in caps if n not in route)]
    out: list[Tokenizer] = []
    for name in names:
        c = caps.get(name)
        if c is None or not c.tokenizer or not (any_task or task in c.tasks):
            continue
        engine = snap.members[name].engine
        if not isinstance(engine, Tokenizer):
            raise EngineError(f"engine {name} declares a tokenizer but does not implement one", engine=name)
        out.append(engine)
    return out


def _none_able(task: str | None) -> UnsupportedTaskError:
    return UnsupportedTaskError(
        f"no enabled engine can tokenise for task {route_key(task)!r} (the HF engine can)", param="prompt_name"
    )
