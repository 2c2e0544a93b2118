"""Device defaults: dtype and the forward-pass size follow the device unless configured."""

from __future__ import annotations

import pytest
import torch

from engine_hf.device import default_max_batch_tokens, resolve_dtype, use_packed
from engine_hf.engine import HFEngine
from engine_hf.settings import HFEngineSettings


def test_auto_dtype_is_fp32_on_cpu() -> None:
    assert resolve_dtype("auto", torch.device("cpu")) is torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) is torch.bfloat16


def test_forward_pass_size_defaults_per_device_and_a_setting_wins() -> None:
    assert default_max_batch_tokens("cpu") == 1024 and default_max_batch_tokens("cuda") == 16384
    assert HFEngine(HFEngineSettings(device="cpu")).capabilities.max_batch_tokens == 1024
    assert HFEngine(HFEngineSettings(device="cpu", max_batch_tokens=5000)).capabilities.max_batch_tokens == 5000


def test_attention_auto_packs_on_cpu_and_pads_on_cuda_and_a_setting_wins() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_packed("auto", cpu) and not use_packed("auto", cuda)
    assert use_packed("packed", cuda) and not use_packed("padded", cpu)
    with pytest.raises(ValueError, match="unknown attention"):
        use_packed("flash", cpu)
