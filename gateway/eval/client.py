"""The gateway's own HTTP client, plus what eval needs to record: the model list and who served.

:class:`EvalClient` is :class:`gateway.client.AsyncGatewayClient` (same body, retries on
429/503/504 with ``Retry-After``, same errors) that also reads ``GET /v1/models`` and remembers the
``x-embed-engine`` and ``x-embed-space`` headers of every answer, so a result says which engine
(and numerics) produced it.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx

from gateway.client import AsyncGatewayClient, GatewayRequestError
from gateway.client.http import request_error

__all__ = ["EvalClient", "models_url"]


def models_url(embeddings_url: str) -> str:
    """``…/v1/embeddings`` -> ``…/v1/models``."""
    return embeddings_url.removesuffix("/embeddings") + "/models"


class EvalClient(AsyncGatewayClient):
    """One client per (model, task): its :attr:`served_engines` and :attr:`served_spaces` (per
    ``dimensions`` asked for: a vector space includes the size) are that side's."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.served_engines: Counter[str] = Counter()
        self.served_spaces: dict[int | None, Counter[str]] = {}
        self._http.event_hooks["response"].append(self._seen)

    async def _seen(self, response: httpx.Response) -> None:
        if response.is_success and response.request.method == "POST":
            if engine := response.headers.get("x-embed-engine"):
                self.served_engines[engine] += 1
            if space := response.headers.get("x-embed-space"):
                try:
                    dimensions = json.loads(response.request.content).get("dimensions")
                except (ValueError, AttributeError):
                    dimensions = None
                self.served_spaces.setdefault(dimensions, Counter())[space] += 1

    async def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``' cards (retried like an embedding request)."""
        url, attempt = models_url(self.url), 0
        while True:
            try:
                response = await self._http.get(url)
            except httpx.TransportError as exc:
                if not self.policy.should_retry(None, attempt):
                    raise GatewayRequestError(f"cannot reach the gateway at {url}: {exc}") from exc
                await self._sleep(self.policy.delay(attempt, None))
            else:
                if response.is_success:
                    data = response.json().get("data")
                    if not isinstance(data, list):
                        raise GatewayRequestError(f"{url} did not answer a model list")
                    return data
                if not self.policy.should_retry(response.status_code, attempt):
                    raise request_error(response, retries=attempt)
                await self._sleep(self.policy.delay(attempt, None))
            attempt += 1
