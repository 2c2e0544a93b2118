"""Device defaults: dtype and the forward-pass size follow the device unless configured."""

from __future__ import annotations

import torch

from engine_hf.device import default_max_batch_tokens, resolve_dtype
from engine_hf.engine import HFEngine
from gateway.config import HFEngineSettings


def test_auto_dtype_is_fp32_on_cpu() -> None:
    assert resolve_dtype("auto", torch.device("cpu")) is torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) is torch.bfloat16


def test_forward_pass_size_defaults_per_device_and_a_setting_wins() -> None:
    assert default_max_batch_tokens("cpu") == 1024 and default_max_batch_tokens("cuda") == 16384
    assert HFEngine(HFEngineSettings(device="cpu")).capabilities.max_batch_tokens == 1024
    assert HFEngine(HFEngineSettings(device="cpu", max_batch_tokens=5000)).capabilities.max_batch_tokens == 5000
