"""A bounded load: N client threads posting embeddings in a loop, every outcome recorded."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Outcome:
    at: float  # time.monotonic() when the response arrived
    status: int  # 0 = no HTTP response at all (connection error, client timeout)
    engine: str
    detail: str = ""


class Load:
    def __init__(self, url: str, clients: int, body: dict[str, object], *, pause: float = 0.0) -> None:
        """``pause``: each client's think time between requests (keeps the load bounded)."""
        self.url, self.body, self.pause = url, body, pause
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=120)
        return self.outcomes

    def served_by(self, engine: str, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for o in self.outcomes if o.engine == engine and o.at >= since)

    def failures(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.status != 200]

    def _client(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(self.url + "/v1/embeddings", json=self.body)
                    o = Outcome(time.monotonic(), r.status_code, r.headers.get("x-embed-engine", ""),
                                "" if r.status_code == 200 else r.text[:300])
                except httpx.HTTPError as exc:
                    o = Outcome(time.monotonic(), 0, "", f"{type(exc).__name__}: {exc}")
                with self._lock:
                    self.outcomes.append(o)
                if self.pause:
                    self._stop.wait(self.pause)
