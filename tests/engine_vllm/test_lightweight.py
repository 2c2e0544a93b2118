"""A gateway that only fronts vLLM installs and runs without torch or transformers (the [hf] extra)."""

from __future__ import annotations

import subprocess
import sys


def test_vllm_only_gateway_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import sys\n"
        "from gateway.app import create_app\n"
        "from gateway.engines import build_engine\n"
        "from gateway.config import load_settings\n"
        "s = load_settings(engines={'hf': {'enabled': False}, 'vllm': {'enabled': True}})\n"
        "create_app(s); build_engine('vllm', s)\n"
        "import gateway.pool, gateway.pool.supervisor, gateway.pool.parity, engine_vllm.managed\n"
        "bad = [m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
