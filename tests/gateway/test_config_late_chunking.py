"""The late-chunking settings: defaults resolved from the window, and invalid windows refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import HFEngineSettings, load_settings


def test_defaults_follow_the_model_maximum() -> None:
    assert HFEngineSettings().late_chunking_windows() == (8192, 512)
    assert HFEngineSettings(max_input_tokens=64).late_chunking_windows() == (64, 4)
    assert HFEngineSettings(late_chunking_window_tokens=1024).late_chunking_windows() == (1024, 64)
    assert HFEngineSettings(late_chunking_window_tokens=16, late_chunking_overlap_tokens=0).late_chunking_windows() == (16, 0)
    assert HFEngineSettings().max_late_chunking_tokens == 65536


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"late_chunking_window_tokens": 9000}, "exceeds max_input_tokens"),
        ({"late_chunking_window_tokens": 100, "late_chunking_overlap_tokens": 51}, "at most half"),
        ({"late_chunking_overlap_tokens": -1}, "greater than or equal"),
        ({"max_late_chunking_tokens": 0}, "greater than or equal"),
    ],
)
def test_invalid_windows_are_refused_at_start_up(values: dict, fragment: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationError, match=fragment):
        load_settings(engines={"hf": values})


def test_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBED_GATEWAY_ENGINES__HF__MAX_LATE_CHUNKING_TOKENS", "131072")
    monkeypatch.setenv("EMBED_GATEWAY_ENGINES__HF__LATE_CHUNKING_OVERLAP_TOKENS", "256")
    hf = load_settings().engines.hf
    assert hf.max_late_chunking_tokens == 131072 and hf.late_chunking_windows() == (8192, 256)
