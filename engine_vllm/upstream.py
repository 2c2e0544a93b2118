"""``UpstreamHTTP``: pooled connections to one OpenAI-compatible server, shared by the HTTP engines.

Both the vLLM engine and the ``openai`` kind talk to a server of the same family: JSON over
pooled keep-alive connections, a request's deadline shortening that call's timeouts, every
failure translated into the gateway's error tree right here (:mod:`engine_vllm.errors`), so
nothing above sees an ``httpx`` exception. Health probes have a pool of their own: a pool full of
slow embedding calls must not make a healthy server look dead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from engine_vllm.errors import from_response, from_transport
from gateway.contract import EmbedGatewayError, EngineError, EngineTimeoutError, EngineUnavailableError

__all__ = ["StatusMapper", "UpstreamHTTP"]

#: ``(response, what)`` -> the error a non-2xx answer to ``what`` (e.g. "POST /embeddings") is
StatusMapper = Callable[[httpx.Response, str], EmbedGatewayError]


class UpstreamHTTP:
    """Two connection pools to ``url`` (calls, probes), opened by :meth:`open`, closed by :meth:`aclose`."""

    def __init__(
        self,
        url: str,
        *,
        engine: str,
        peer: str,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float,
        read_timeout: float,
        health_timeout: float,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
        on_status: StatusMapper | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        #: the URL for messages and health: without any ``user:password@`` part
        self.shown_url = str(httpx.URL(self.url).copy_with(username=None, password=None))
        self.engine = engine
        #: how messages name the server ("vLLM", "upstream")
        self.peer = peer
        self._headers = dict(headers or {})
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._health_timeout, self._max_connections = health_timeout, max_connections
        self._transport = transport
        self._on_status: StatusMapper = on_status or (
            lambda response, what: from_response(response, engine=engine, what=what, peer=peer)
        )
        self._client: httpx.AsyncClient | None = None
        self._probe_client: httpx.AsyncClient | None = None

    @property
    def is_open(self) -> bool:
        return self._client is not None

    def open(self) -> None:
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            base_url=self.url,
            headers=self._headers,
            timeout=httpx.Timeout(self._read_timeout, connect=self._connect_timeout, pool=self._read_timeout),
            limits=httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=self._max_connections),
            transport=self._transport,
        )
        self._probe_client = httpx.AsyncClient(
            base_url=self.url,
            headers=self._headers,
            timeout=httpx.Timeout(self._health_timeout, connect=min(self._connect_timeout, self._health_timeout)),
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=2),
            transport=self._transport,
        )

    async def call(self, method: str, path: str, body: dict[str, Any] | None, deadline: float | None) -> Any:
        """One HTTP call, its parsed JSON; every failure leaves here as an error of the gateway's tree."""
        client = self._client
        if client is None:
            raise EngineUnavailableError(f"engine {self.engine} is not started", engine=self.engine)
        timeout: httpx.Timeout | None = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise EngineTimeoutError(f"engine {self.engine}: the request's deadline passed", engine=self.engine)
            timeout = httpx.Timeout(min(self._read_timeout, left), connect=min(self._connect_timeout, left), pool=left)
        try:
            if timeout is None:
                response = await client.request(method, path, json=body)
            else:
                response = await client.request(method, path, json=body, timeout=timeout)
        except httpx.TransportError as exc:
            raise from_transport(exc, engine=self.engine, url=self.shown_url, peer=self.peer) from exc
        if not response.is_success:
            raise self._on_status(response, f"{method} {path}")
        try:
            return response.json()
        except ValueError as exc:
            raise EngineError(f"engine {self.engine}: {method} {path} answered non-JSON", engine=self.engine) from exc

    async def probe(self, path: str) -> httpx.Response:
        """``GET path`` on the probe pool. Raises ``httpx.TransportError`` (the caller words the
        health detail) or ``EngineUnavailableError`` before :meth:`open`."""
        client = self._probe_client
        if client is None:
            raise EngineUnavailableError(f"engine {self.engine} is not started", engine=self.engine)
        return await client.get(path)

    async def aclose(self) -> None:
        """Close both pools; calls after this are "not started" errors, never httpx's RuntimeError."""
        clients, self._client, self._probe_client = (self._client, self._probe_client), None, None
        for client in clients:
            if client is not None:
                await client.aclose()
