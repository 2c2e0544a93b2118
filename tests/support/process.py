"""``embed-gateway serve`` as a real process (signals, managed children, shutdown), for e2e tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import free_port


class GatewayProcess:
    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.config, self.log_path = config, log_path
        exe = shutil.which("embed-gateway", path=str(Path(sys.executable).parent)) or "embed-gateway"
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [exe, "serve", "--config", str(config), "--port", str(self.port)],
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def admin(self, key: str = "k") -> dict[str, Any]:
        r = httpx.get(self.url + "/admin/engines", headers={"authorization": f"Bearer {key}"}, timeout=30)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 300, poll: float = 0.2) -> float:
        """Poll until ``condition()``; returns the time.monotonic() it first held."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"gateway exited ({self.proc.returncode}):\n{self.log()[-4000:]}"
            try:
                if condition():
                    return time.monotonic()
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.log()[-4000:]}"
            time.sleep(poll)

    def sighup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
