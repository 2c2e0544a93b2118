"""Live reload: re-read the configuration and apply it without a restart.

Two triggers share this one path: SIGHUP (``kill -HUP <pid>``, what systemd's ``reload`` sends)
and ``POST /admin/reload``. A configuration that does not load or cannot work (a typo, a route
naming a disabled engine, an engine that fails to start) is refused as a whole and the running
one stays: a reload never leaves the gateway half-configured.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pydantic import ValidationError

from gateway.config import Settings
from gateway.errors import ReloadError
from gateway.pool.pool import Pool
from gateway.pool.snapshot import Snapshot

__all__ = ["Reloader"]

log = logging.getLogger(__name__)


class Reloader:
    def __init__(self, pool: Pool, load: Callable[[], Settings] | None) -> None:
        self.pool = pool
        self._load = load
        self._background: set[asyncio.Task[None]] = set()
        self.reloads = 0

    @property
    def available(self) -> bool:
        return self._load is not None

    async def reload(self) -> Snapshot:
        """Re-read and apply; ``ReloadError`` (configuration unchanged) if that is impossible."""
        if self._load is None:
            raise ReloadError("this gateway was not started from a configuration it can re-read")
        try:
            settings = await asyncio.to_thread(self._load)
        except ValidationError as exc:
            raise ReloadError(f"the configuration is invalid: {_errors(exc)}") from exc
        except Exception as exc:  # unreadable file, YAML syntax: details (with the path) go to the log only
            log.error("reload: cannot read the configuration: %s", exc)
            raise ReloadError(f"the configuration cannot be read ({type(exc).__name__}; see the gateway log)") from exc
        snap = await self.pool.reload(settings)
        self.reloads += 1
        return snap

    def reload_in_background(self) -> None:
        """For the SIGHUP handler: start a reload and log its outcome."""
        log.info("SIGHUP: reloading the configuration")
        task = asyncio.get_running_loop().create_task(self._logged())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _logged(self) -> None:
        try:
            snap = await self.reload()
        except ReloadError as exc:
            log.error("reload refused, previous configuration kept: %s", exc)
        except Exception:
            log.exception("reload failed, previous configuration kept")
        else:
            log.info("reload applied (generation %d)", snap.generation)

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()
    )
