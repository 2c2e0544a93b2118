"""The shared tier: Redis (redis-py's asyncio client), entries under a prefix with a TTL.

Never fails a request: every call is bounded by ``cache.redis_timeout``; an error (refused,
reset, timeout, a corrupt entry) is counted, logged once per outage (and once when Redis is back),
and answered as a miss / a skipped write. After an error the tier stays out for
``cache.redis_retry_interval`` seconds, so while Redis is down no request waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from gateway.cache.entry import CacheEntry, EntryFormatError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisTier", "redact_url"]

log = logging.getLogger(__name__)


def redact_url(url: str) -> str:
    """The URL without its password (for /info and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisTier:
    def __init__(self, url: str, *, prefix: str, ttl: int | None, timeout: float, retry_interval: float) -> None:
        try:
            from redis.asyncio import Redis
        except ImportError as exc:  # the optional extra
            raise RuntimeError("cache.redis_url needs the redis client: pip install 'embed-gateway[redis]'") from exc

        self.url = redact_url(url)
        self.prefix, self.ttl, self.timeout, self.retry_interval = prefix, ttl, timeout, retry_interval
        self._client: Redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False,
            health_check_interval=0,
        )
        self.errors = 0
        #: ``time.monotonic()`` before which the tier is skipped (after an error)
        self._down_until = 0.0
        self._failing = False
        #: ``time.monotonic()`` of the last failure: only a call started after it proves Redis is back
        self._failed_at = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    @property
    def healthy(self) -> bool:
        """False from an error until the next call that succeeds."""
        return not self._failing

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        self._failed_at = time.monotonic()
        self._down_until = self._failed_at + self.retry_interval
        if not self._failing:
            self._failing = True
            log.warning("redis cache %s failed (%s: %s); serving from the engines, retrying in %gs",
                        what, type(exc).__name__, exc, self.retry_interval)

    def _ok(self, started: float) -> None:
        # a call sent before the outage can still come back after it was seen: that says nothing
        # about now (counting it flapped "back"/"failed" and logged one outage twice)
        if self._failing and started >= self._failed_at:
            self._failing = False
            log.warning("redis cache %s is back", self.url)

    async def get_many(self, keys: Sequence[str]) -> list[CacheEntry | None]:
        """One ``MGET``; all misses when Redis is out or fails."""
        if not keys or not self.available:
            return [None] * len(keys)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                blobs = await self._client.mget([self.prefix + k for k in keys])
        except Exception as exc:  # noqa: BLE001 - any Redis failure is a miss, never the request's error
            self._failed("read", exc)
            return [None] * len(keys)
        self._ok(started)
        out: list[CacheEntry | None] = []
        for blob in blobs:
            try:
                out.append(CacheEntry.from_bytes(blob) if blob is not None else None)
            except EntryFormatError as exc:
                self._failed("entry", exc)
                out.append(None)
        return out

    async def put_many(self, items: Sequence[tuple[str, CacheEntry]]) -> None:
        """One pipelined ``SET … EX ttl`` per entry; skipped when Redis is out or fails."""
        if not items or not self.available:
            return
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.pipeline(transaction=False) as pipe:
                    for key, entry in items:
                        pipe.set(self.prefix + key, entry.to_bytes(), ex=self.ttl)
                    await pipe.execute()
        except Exception as exc:  # noqa: BLE001
            self._failed("write", exc)
            return
        self._ok(started)

    async def flush(self) -> int:
        """Delete every key under the prefix (never the rest of a shared Redis); keys deleted.
        Unlike reads and writes, a failure here is the caller's error (an admin asked for it)."""
        started = time.monotonic()
        deleted = 0
        batch: list[bytes] = []
        async for key in self._client.scan_iter(match=self.prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(await self._client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(await self._client.unlink(*batch))
        self._ok(started)
        self._down_until = 0.0
        return deleted

    async def aclose(self) -> None:
        try:
            await self._client.aclose()
        except Exception as exc:  # noqa: BLE001 - closing a dead connection is not an error worth raising
            log.debug("closing the redis client: %s", exc)
