"""A closed engine answers the contract's retryable "unavailable", never a bare RuntimeError (the
500 a request in flight across a shutdown or reload used to get)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.contract import EmbedJob, EngineUnavailableError, Task
from tests.engine_hf.conftest import start_engine
from tests.support.harness import LoopThread


@pytest.mark.parametrize("late", [False, True], ids=["plain", "late-chunking"])
def test_a_closed_engine_is_unavailable_not_an_internal_error(loop: LoopThread, original_dir: Path, late: bool) -> None:
    engine = start_engine(loop, original_dir)
    job = EmbedJob(inputs=("Berlin is big.", "It has parks."), task=Task.RETRIEVAL_PASSAGE, late_chunking=late)
    assert loop.run(engine.embed(job)).vectors.shape[0] == 2
    loop.run(engine.aclose())
    with pytest.raises(EngineUnavailableError, match="closed"):
        loop.run(engine.embed(job))
    with pytest.raises(EngineUnavailableError, match="closed"):
        loop.run(engine.tokenize(["Berlin"], None, add_special_tokens=True))
