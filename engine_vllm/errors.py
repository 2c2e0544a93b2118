"""The boundary: every foreign failure of talking to vLLM becomes an error of the gateway's tree.

Nothing above this module sees an ``httpx`` exception or a vLLM error body; the router decides
from the class alone (retryable -> next engine). The mapping, and why:

| what happened                                   | gateway error            | why                                          |
|-------------------------------------------------|--------------------------|----------------------------------------------|
| connection refused/reset, DNS, protocol error   | EngineUnavailableError   | vLLM is down or restarting                   |
| connect timeout                                 | EngineUnavailableError   | nothing answers at the URL                   |
| read/write timeout, request deadline passed     | EngineTimeoutError       | vLLM is up but too slow for this request     |
| no free pooled connection in time               | EngineOverloadedError    | this gateway already has max_connections out |
| 429                                             | EngineOverloadedError    | with vLLM's Retry-After                      |
| 408                                             | EngineTimeoutError       |                                              |
| 5xx (incl. vLLM's dead-engine 500)              | EngineUnavailableError   | another engine can serve meanwhile           |
| 401 / 403                                       | EngineUnavailableError   | the gateway's vLLM api_key is wrong: an operator problem the client cannot fix; fall back |
| 404                                             | EngineUnavailableError   | vLLM does not serve the configured model (restarted with another?) |
| other 4xx (400, 413, 422)                       | EngineError (RefusedInput) | the engine first counts the input: over the limit -> the HF engine's 400 (InputTooLongError); otherwise vLLM refused input the gateway had validated, a version or configuration mismatch that retrying will not fix |
| 2xx that is not the promised shape              | EngineError              | a proxy page, an incompatible vLLM: never guess vectors |

vLLM's own message goes to the log, never to the client (it may name paths).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from gateway.contract import (
    EmbedGatewayError,
    EngineError,
    EngineOverloadedError,
    EngineTimeoutError,
    EngineUnavailableError,
    parse_retry_after,
)

__all__ = ["RefusedInput", "from_response", "from_transport", "vllm_message"]

log = logging.getLogger(__name__)


class RefusedInput(EngineError):
    """vLLM answered 400/413/422. Inside the engine this means "count this input" (vLLM refuses
    inputs over its --max-model-len); if it escapes, it is the EngineError of the table above."""


def from_transport(exc: httpx.TransportError, *, engine: str, url: str, peer: str = "vLLM") -> EmbedGatewayError:
    """An ``httpx`` transport failure (no usable HTTP response); ``peer`` names the server in messages."""
    if isinstance(exc, httpx.PoolTimeout):
        return EngineOverloadedError(
            f"engine {engine}: all connections to {peer} are busy", engine=engine, retry_after=1.0
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return EngineUnavailableError(f"engine {engine}: {peer} at {url} did not accept a connection in time", engine=engine)
    if isinstance(exc, httpx.TimeoutException):
        return EngineTimeoutError(f"engine {engine}: {peer} did not answer in time", engine=engine)
    return EngineUnavailableError(f"engine {engine}: {peer} at {url} is unreachable ({type(exc).__name__})", engine=engine)


def vllm_message(response: httpx.Response) -> str:
    """The server's error text (OpenAI's ``{"error": {"message"}}``, or the flat ``{"message"}`` of
    older vLLM, TEI and others), for the log."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:300]
    return str(body)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers.get("retry-after"))


def from_response(response: httpx.Response, *, engine: str, what: str, peer: str = "vLLM") -> EmbedGatewayError:
    """A non-2xx answer of vLLM (or another ``peer``) to ``what`` (e.g. ``"POST /v1/embeddings"``)."""
    status = response.status_code
    detail = vllm_message(response)
    log.warning("engine %s: %s answered %s with %d: %s", engine, peer, what, status, detail)
    prefix = f"engine {engine}: {peer} answered {what} with HTTP {status}"
    if status == 429:
        return EngineOverloadedError(f"{prefix} (overloaded)", engine=engine, retry_after=_retry_after(response) or 1.0)
    if status == 408:
        return EngineTimeoutError(prefix, engine=engine)
    if status >= 500 or status in (401, 403, 404):
        return EngineUnavailableError(prefix, engine=engine, retry_after=_retry_after(response))
    return RefusedInput(f"{prefix}, refusing input the gateway had validated (see the gateway log)", engine=engine)
