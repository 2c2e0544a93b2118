"""The progress bar: rows/s from tqdm itself, tokens/s alongside (tokens are what cost time)."""

from __future__ import annotations

import time
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    """A tqdm bar counting rows, with the running token rate in its postfix; a no-op when disabled."""

    def __init__(self, total: int | None, *, enabled: bool = True, file: TextIO | None = None,
                 desc: str = "embedding", position: int | None = None) -> None:
        """``desc`` and ``position``: a run with several models draws one bar per model, one per line."""
        self.tokens = 0
        self.started = time.perf_counter()
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="rows", unit_scale=False, file=file, dynamic_ncols=True,
                             mininterval=0.5, smoothing=0.1, desc=desc, position=position)

    def update(self, rows: int, tokens: int = 0) -> None:
        self.tokens += tokens
        if self._bar is None:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self._bar.set_postfix_str(f"{self.tokens / elapsed:,.0f} tokens/s", refresh=False)
        self._bar.update(rows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
