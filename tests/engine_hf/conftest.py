from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine_hf.settings import HFEngineSettings
from tests.support.harness import LoopThread


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def start_engine(loop: LoopThread, path: Path, **overrides: object):  # type: ignore[no-untyped-def]
    from engine_hf import HFEngine

    engine = HFEngine(HFEngineSettings(model=str(path), device="cpu", **overrides))  # type: ignore[arg-type]
    loop.run(engine.start())
    return engine
