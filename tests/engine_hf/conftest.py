from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine_hf.cpu_kernels import CpuFeatures
from engine_hf.settings import HFEngineSettings
from tests.support.harness import LoopThread


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def start_engine(loop: LoopThread, path: Path, cpu: CpuFeatures | None = None, **overrides: object):  # type: ignore[no-untyped-def]
    """A started CPU engine on ``path``; ``cpu``: the CPU its kernel choice follows (None: this one)."""
    from engine_hf import HFEngine

    engine = HFEngine(HFEngineSettings(model=str(path), device="cpu", **overrides), cpu=cpu)  # type: ignore[arg-type]
    loop.run(engine.start())
    return engine


#: The ``-hf`` variants users may meet: base weight names x config with/without the original's extra keys.
HF_VARIANTS = ("saved-by-transformers", "native-names", "plain-config", "native-names-plain-config")


@pytest.fixture(scope="session")
def hf_variants(hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One hand-written copy of the transformers/PEFT-written ``-hf`` checkpoint per variant.

    ``hf_dir`` itself is the published shape: base weights under the original-style names that
    ``save_pretrained`` writes, config with ``lora_adaptations``, ``task_instructions``, ... The copies
    rewrite the weights under the native names (as transformers holds them after ``from_pretrained``)
    and/or drop the extra config keys; the PEFT adapter folders are left as PEFT wrote them.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import JinaEmbeddingsV3Model

    from engine_hf.tools.synthetic import HF_EXTRA_KEYS

    native = JinaEmbeddingsV3Model.from_pretrained(str(hf_dir), dtype=torch.float32).state_dict()
    root = tmp_path_factory.mktemp("hf-variants")
    out = {"saved-by-transformers": hf_dir}
    for name in HF_VARIANTS[1:]:
        path = Path(shutil.copytree(hf_dir, root / name))
        if name.startswith("native-names"):
            save_file({k: v.contiguous() for k, v in native.items()}, str(path / "model.safetensors"))
        if name.endswith("plain-config"):
            config = json.loads((path / "config.json").read_text())
            (path / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in HF_EXTRA_KEYS}))
        out[name] = path
    return out
