"""``Retry-After`` read once: the gateway's client and the vLLM engine both read this header.

It lives in the contract because an engine that talks HTTP (``engine_vllm``) turns a server's
``Retry-After`` into :attr:`RetryableError.retry_after <gateway.contract.RetryableError>`, and
engines import nothing of the gateway but the contract. Standard library only.
"""

from __future__ import annotations

import email.utils
import math
from datetime import datetime, timezone

__all__ = ["parse_retry_after"]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)
