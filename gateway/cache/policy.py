"""A request's use of the cache, read from its headers (pure: no HTTP import).

* ``x-embed-cache: off`` or ``Cache-Control: no-store`` — neither read nor write (``off``);
* ``Cache-Control: no-cache`` — compute afresh, then store (``refresh``);
* anything else — read and write (``use``). ``x-embed-cache: use`` / ``refresh`` say so explicitly.
"""

from __future__ import annotations

from typing import Literal

from gateway.contract import InvalidRequestError

__all__ = ["CACHE_MODES", "CacheMode", "cache_mode"]

CacheMode = Literal["use", "refresh", "off"]
CACHE_MODES: tuple[CacheMode, ...] = ("use", "refresh", "off")


def cache_mode(x_embed_cache: str | None, cache_control: str | None) -> CacheMode:
    """The mode a request asked for; an unknown ``x-embed-cache`` value is a 400."""
    if x_embed_cache is not None and x_embed_cache.strip():
        value = x_embed_cache.strip().lower()
        for mode in CACHE_MODES:
            if value == mode:
                return mode
        raise InvalidRequestError(
            f"x-embed-cache must be one of {', '.join(CACHE_MODES)}, not {x_embed_cache!r}",
            param="x-embed-cache", code="invalid_cache_header",
        )
    directives = {d.strip().split("=", 1)[0].lower() for d in (cache_control or "").split(",")}
    if "no-store" in directives:
        return "off"
    if "no-cache" in directives:
        return "refresh"
    return "use"
