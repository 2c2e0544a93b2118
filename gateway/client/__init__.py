"""A small client for the gateway's own HTTP API, used by the Mem0 embedder and ``embed-gateway embed``.

Why not the OpenAI SDK: both callers need the gateway's ``task`` extension, the server's error
``param`` (``input[3]`` names the row at fault) and their own retry bookkeeping (how often and how
long a 429 made them wait). It needs only httpx and numpy, never FastAPI or torch.
"""

from gateway.client.http import AsyncGatewayClient, Embeddings, GatewayClient, GatewayRequestError, fetch_model_card
from gateway.client.retry import RETRY_STATUSES, RetryPolicy, RetryStats
from gateway.contract import parse_retry_after

__all__ = [
    "RETRY_STATUSES",
    "AsyncGatewayClient",
    "Embeddings",
    "GatewayClient",
    "GatewayRequestError",
    "RetryPolicy",
    "RetryStats",
    "fetch_model_card",
    "parse_retry_after",
]
