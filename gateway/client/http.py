"""Sync and async clients for ``POST /v1/embeddings``: build the body, retry, parse, raise clearly.

They pin vector spaces: the first answer for a (model, task, dimensions, normalisation) names its
space (``x-embed-space``), and every later request for the same sends it back as
``x-embed-expect-space``, so a gateway that would now answer in another space (its weights changed
on a reload, a fallback engine outside parity) refuses with a 409 instead of returning vectors that
do not belong with the ones already stored (``GatewayRequestError.code == "space_mismatch"``).

The request/response handling is pure (:func:`build_body`, :func:`parse_embeddings`,
:func:`request_error`); :class:`GatewayClient` and :class:`AsyncGatewayClient` are thin shells that
add the transport and the retry loop of :class:`~gateway.client.retry.RetryPolicy`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from gateway.client.retry import RetryPolicy, RetryStats
from gateway.contract import SparseVector, parse_retry_after

__all__ = [
    "AsyncGatewayClient",
    "Embeddings",
    "GatewayClient",
    "GatewayRequestError",
    "build_body",
    "embeddings_url",
    "fetch_model_card",
    "parse_embeddings",
    "request_error",
]


class GatewayRequestError(Exception):
    """The gateway refused a request for good (or retries ran out); carries the server's error fields."""

    def __init__(
        self, message: str, *, status: int | None = None, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code

    @property
    def input_index(self) -> int | None:
        """The input at fault when the server named one (``param == "input[3]"`` -> 3)."""
        p = self.param or ""
        if p.startswith("input[") and p.endswith("]") and p[6:-1].isdigit():
            return int(p[6:-1])
        return None


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: npt.NDArray[np.float32]
    #: the gateway's ``usage.total_tokens`` (this model's tokens, instruction included)
    total_tokens: int
    #: the vector space of these vectors (``x-embed-space``); None from a server that does not say
    space: str | None = None
    #: one sparse vector per input (vocabulary ids ascending -> weights), when asked with ``sparse=True``
    sparse: tuple[SparseVector, ...] | None = None


def embeddings_url(base_url: str) -> str:
    """Accept ``http://host:8080``, ``…/v1`` or the full ``…/v1/embeddings`` (as OpenAI clients are set up)."""
    url = base_url.rstrip("/")
    if url.endswith("/embeddings"):
        return url
    if url.endswith("/v1"):
        return url + "/embeddings"
    return url + "/v1/embeddings"


def fetch_model_card(
    base_url: str, model: str, *, api_key: str | None = None, timeout: float = 30.0
) -> dict[str, Any]:
    """The ``GET /v1/models`` card of ``model`` (its outputs, ``vocab_size``, spaces): what a caller
    must know before it writes anything, e.g. the width of a sparse column."""
    url = embeddings_url(base_url).removesuffix("/embeddings") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.TransportError as exc:
        raise GatewayRequestError(f"cannot reach the gateway at {url}: {exc}") from exc
    if not response.is_success:
        raise request_error(response)
    cards = {c.get("id"): c for c in response.json().get("data", []) if isinstance(c, dict)}
    if model not in cards:
        raise GatewayRequestError(f"the gateway serves no model {model!r} (it lists: {', '.join(map(str, cards))})",
                                  status=404, param="model")
    return cards[model]  # type: ignore[no-any-return]


def build_body(
    texts: Sequence[str],
    *,
    model: str | None,
    task: str | None,
    dimensions: int | None,
    normalized: bool = True,
    truncate: bool = False,
    sparse: bool = False,
) -> dict[str, Any]:
    """The JSON body; ``task`` None leaves the alias's task in force (``"none"`` = base weights);
    ``sparse`` asks for each input's sparse vector too (``return_sparse``, models with a sparse output)."""
    body: dict[str, Any] = {"input": list(texts), "encoding_format": "float"}
    if model is not None:
        body["model"] = model
    if task is not None:
        body["task"] = task
    if dimensions is not None:
        body["dimensions"] = dimensions
    if not normalized:
        body["normalized"] = False
    if truncate:
        body["truncate"] = True
    if sparse:
        body["return_sparse"] = True
    return body


def _sparse(item: Any) -> SparseVector:
    """One ``sparse_embedding`` object as the contract's type: ids ascending, float32 weights."""
    indices = np.asarray(item["indices"], dtype=np.int64)
    values = np.asarray(item["values"], dtype=np.float32)
    if indices.ndim != 1 or indices.shape != values.shape:
        raise ValueError("sparse_embedding indices and values differ in length")
    order = np.argsort(indices, kind="stable")
    return SparseVector(indices=indices[order], values=values[order])


def parse_embeddings(payload: Any, expected: int, *, sparse: bool = False) -> Embeddings:
    """Vectors in input order (by ``index``) from an OpenAI-shaped response; strict about its shape.
    ``sparse``: each item must carry its ``sparse_embedding`` (the request sent ``return_sparse``)."""
    try:
        data = sorted(payload["data"], key=lambda d: d["index"])
        vectors = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        tokens = int(payload.get("usage", {}).get("total_tokens", 0))
        sparse_vectors = tuple(_sparse(d["sparse_embedding"]) for d in data) if sparse else None
    except (KeyError, TypeError, ValueError) as exc:
        raise GatewayRequestError(f"the server's response is not an embeddings list: {exc}") from exc
    if vectors.ndim != 2 or vectors.shape[0] != expected:
        raise GatewayRequestError(f"the server returned {vectors.shape[0] if vectors.ndim else 0} vectors for {expected} inputs")
    return Embeddings(vectors=vectors, total_tokens=tokens, sparse=sparse_vectors)


def request_error(response: httpx.Response, *, retries: int = 0) -> GatewayRequestError:
    """A final error from a non-2xx response, with the server's OpenAI-shaped error if it sent one."""
    message, param, code = response.text[:300] or response.reason_phrase, None, None
    try:
        err = response.json()["error"]
        message, param, code = err.get("message") or message, err.get("param"), err.get("code")
    except (ValueError, KeyError, TypeError):
        pass
    after = f" (after {retries} retries)" if retries else ""
    return GatewayRequestError(f"HTTP {response.status_code}{after}: {message}", status=response.status_code, param=param, code=code)


#: what a space is pinned for: (model, task, dimensions, normalized)
SpaceKey = tuple[Any, Any, Any, Any]


class _Base:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 120.0,
        policy: RetryPolicy | None = None,
        pin_spaces: bool = True,
    ) -> None:
        self.url = embeddings_url(base_url)
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.policy = policy or RetryPolicy()
        self.stats = RetryStats()
        #: the space first seen per (model, task, dimensions, normalized); sent back on later requests
        self.spaces: dict[SpaceKey, str] = {}
        self.pin_spaces = pin_spaces

    @staticmethod
    def _space_key(options: dict[str, Any]) -> SpaceKey:
        return (options.get("model"), options.get("task"), options.get("dimensions"), options.get("normalized", True))

    def _pin_headers(self, options: dict[str, Any]) -> dict[str, str]:
        expected = self.spaces.get(self._space_key(options)) if self.pin_spaces else None
        return {"x-embed-expect-space": expected} if expected else {}

    def _remember(self, options: dict[str, Any], got: Embeddings) -> Embeddings:
        if self.pin_spaces and got.space is not None:
            self.spaces.setdefault(self._space_key(options), got.space)
        return got

    def _settle(
        self, response: httpx.Response | httpx.TransportError, n_inputs: int, attempt: int, sparse: bool = False
    ) -> Embeddings | float:
        """One attempt's outcome: the embeddings, or the seconds to wait before the next attempt;
        raises when the failure is final (not retryable, or out of retries)."""
        status, retry_after = None, None
        if isinstance(response, httpx.TransportError):
            if not self.policy.should_retry(None, attempt):
                raise GatewayRequestError(f"cannot reach the gateway at {self.url}: {response}") from response
        else:
            if response.is_success:
                parsed = parse_embeddings(response.json(), n_inputs, sparse=sparse)
                space = response.headers.get("x-embed-space")
                return dataclasses.replace(parsed, space=space) if space else parsed
            status = response.status_code
            if not self.policy.should_retry(status, attempt):
                raise request_error(response, retries=attempt)
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        wait = self.policy.delay(attempt, retry_after)
        self.stats.record(status, wait)
        return wait


class GatewayClient(_Base):
    """Blocking client (Mem0 calls its embedder synchronously)."""

    def __init__(self, base_url: str, *, sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._sleep = sleep
        self._http = httpx.Client(timeout=self.timeout, headers=self.headers)

    def embed(self, texts: Sequence[str], **options: Any) -> Embeddings:
        body = build_body(texts, **options)
        headers = self._pin_headers(options)
        n, sparse = len(body["input"]), "return_sparse" in body
        attempt = 0
        while True:
            try:
                outcome = self._settle(self._http.post(self.url, json=body, headers=headers), n, attempt, sparse)
            except httpx.TransportError as exc:
                outcome = self._settle(exc, n, attempt, sparse)
            if isinstance(outcome, Embeddings):
                return self._remember(options, outcome)
            self._sleep(outcome)
            attempt += 1

    def close(self) -> None:
        self._http.close()


class AsyncGatewayClient(_Base):
    """Asyncio client for concurrent bulk work (one connection pool, many requests in flight)."""

    def __init__(
        self, base_url: str, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, **kwargs: Any
    ) -> None:
        super().__init__(base_url, **kwargs)
        self._sleep = sleep
        self._http = httpx.AsyncClient(timeout=self.timeout, headers=self.headers)

    async def embed(self, texts: Sequence[str], **options: Any) -> Embeddings:
        body = build_body(texts, **options)
        headers = self._pin_headers(options)
        n, sparse = len(body["input"]), "return_sparse" in body
        attempt = 0
        while True:
            try:
                response = await self._http.post(self.url, json=body, headers=headers)
                outcome = self._settle(response, n, attempt, sparse)
            except httpx.TransportError as exc:
                outcome = self._settle(exc, n, attempt, sparse)
            if isinstance(outcome, Embeddings):
                return self._remember(options, outcome)
            await self._sleep(outcome)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()
