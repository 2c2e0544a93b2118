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
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from gateway.client.retry import RetryPolicy, RetryStats
from gateway.contract import parse_retry_after

__all__ = [
    "AsyncGatewayClient",
    "Embeddings",
    "GatewayClient",
    "GatewayRequestError",
    "build_body",
    "embeddings_url",
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


def embeddings_url(base_url: str) -> str:
    """Accept ``http://host:8080``, ``…/v1`` or the full ``…/v1/embeddings`` (as OpenAI clients are set up)."""
    url = base_url.rstrip("/")
    if url.endswith("/embeddings"):
        return url
    if url.endswith("/v1"):
        return url + "/embeddings"
    return url + "/v1/embeddings"


def build_body(
    texts: Sequence[str],
    *,
    model: str | None,
    task: str | None,
    dimensions: int | None,
    normalized: bool = True,
    truncate: bool = False,
) -> dict[str, Any]:
    """The JSON body; ``task`` None leaves the alias's task in force (``"none"`` = base weights)."""
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
    return body


def parse_embeddings(payload: Any, expected: int) -> Embeddings:
    """Vectors in input order (by ``index``) from an OpenAI-shaped response; strict about its shape."""
    try:
        data = sorted(payload["data"], key=lambda d: d["index"])
        vectors = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        tokens = int(payload.get("usage", {}).get("total_tokens", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise GatewayRequestError(f"the server's response is not an embeddings list: {exc}") from exc
    if vectors.ndim != 2 or vectors.shape[0] != expected:
        raise GatewayRequestError(f"the server returned {vectors.shape[0] if vectors.ndim else 0} vectors for {expected} inputs")
    return Embeddings(vectors=vectors, total_tokens=tokens)


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
        self, response: httpx.Response | httpx.TransportError, n_inputs: int, attempt: int
    ) -> Embeddings | float:
        """One attempt's outcome: the embeddings, or the seconds to wait before the next attempt;
        raises when the failure is final (not retryable, or out of retries)."""
        status, retry_after = None, None
        if isinstance(response, httpx.TransportError):
            if not self.policy.should_retry(None, attempt):
                raise GatewayRequestError(f"cannot reach the gateway at {self.url}: {response}") from response
        else:
            if response.is_success:
                parsed = parse_embeddings(response.json(), n_inputs)
                space = response.headers.get("x-embed-space")
                return Embeddings(parsed.vectors, parsed.total_tokens, space) if space else parsed
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
        attempt = 0
        while True:
            try:
                outcome = self._settle(self._http.post(self.url, json=body, headers=headers), len(body["input"]), attempt)
            except httpx.TransportError as exc:
                outcome = self._settle(exc, len(body["input"]), attempt)
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
        attempt = 0
        while True:
            try:
                response = await self._http.post(self.url, json=body, headers=headers)
                outcome = self._settle(response, len(body["input"]), attempt)
            except httpx.TransportError as exc:
                outcome = self._settle(exc, len(body["input"]), attempt)
            if isinstance(outcome, Embeddings):
                return self._remember(options, outcome)
            await self._sleep(outcome)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()
