"""The processes a bench run races: this gateway and a vLLM server, started on free loopback ports.

Each runs in its own session so stopping it stops its children too (vLLM's engine core), and its
peak memory is read from /proc over the whole process tree.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

__all__ = ["SERVED_NAME", "Server", "gateway_server", "ort_server", "tree_peak_rss_mib", "vllm_server"]

#: the model name every target serves under (the gateway's default alias; vLLM's --served-model-name)
SERVED_NAME = "jina-embeddings-v3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def tree_peak_rss_mib(pid: int) -> float:
    """Sum of peak RSS (VmHWM) of a process and its descendants, MiB."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
        todo.extend(_children(p))
    return round(total, 1)


class Server:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], health: str, log: Path) -> None:
        self.name, self.cmd, self.env, self.health, self.log = name, cmd, env, health, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 600) -> None:
        self.proc = subprocess.Popen(
            self.cmd, env={**os.environ, **self.env}, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log}")
            try:
                if httpx.get(self.health, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} not healthy after {timeout}s; see {self.log}")

    def pause(self) -> None:
        """Stop the whole process tree (SIGSTOP): an idle server that is paused takes no CPU."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def peak_rss(self) -> float | None:
        return tree_peak_rss_mib(self.proc.pid) if self.proc else None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.resume()  # a paused tree would not act on the SIGTERM
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def gateway_server(name: str, env: dict[str, str], log_dir: Path, *, module: str = "gateway.cli serve"
                   ) -> tuple[Server, str]:
    """``embed-gateway serve`` configured by ``env``, healthy once /ready says so; and its base URL.
    ``module``: what runs it (``gateway.bench.memory_server`` adds a route that reads each engine's
    memory in process)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", *module.split(), "--port", str(port)]
    return Server(name, cmd, {"HF_HUB_OFFLINE": "1", **env}, url + "/ready", log_dir / f"{name}.log"), url


def vllm_server(python: str, model: str, dtype: str, log_dir: Path, *, served_name: str = SERVED_NAME,
                trust_remote_code: bool = True, max_model_len: int | None = 8192, extra: Sequence[str] = (),
                ) -> tuple[Server, str]:
    """vLLM's OpenAI server (CPU-friendly settings, as the tests start it); and its base URL.

    vLLM's CPU worker threads take every core unless ``VLLM_CPU_OMP_THREADS_BIND`` is set in the
    environment (e.g. ``1`` on a 2-core machine: its compute on core 1, core 0 left to the HTTP
    front ends: vLLM's API server, the gateway, the bench's clients).

    The defaults serve jina-embeddings-v3's original layout (its config class is the checkpoint's
    code, hence ``trust_remote_code``); another model passes ``trust_remote_code=False``, its own
    ``max_model_len`` (``None``: the checkpoint's) and ``extra`` flags (e.g. ``--hf-overrides``)."""
    port = _free_port()
    cores = os.cpu_count() or 1
    env = {
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND") or f"0-{cores - 1}",
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
           "--served-model-name", served_name, *(["--trust-remote-code"] if trust_remote_code else []),
           "--runner", "pooling", "--dtype", "float32" if dtype in ("auto", "float32") else dtype,
           *(["--max-model-len", str(max_model_len)] if max_model_len else []),
           "--host", "127.0.0.1", "--port", str(port), "--disable-log-stats",
           # a fixed KV budget instead of a fraction of (shared) memory; pooling models barely use it
           "--kv-cache-memory-bytes", str(1024 * 2**20), *extra]
    url = f"http://127.0.0.1:{port}"
    return Server("vllm", cmd, env, url + "/health", log_dir / "vllm.log"), url


def ort_server(onnx: Path, model: str, threads: int | None, log_dir: Path) -> tuple[Server, str]:
    """The ONNX Runtime peer (``gateway.bench.peers.ort_server``) over ``onnx``; and its base URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "gateway.bench.peers.ort_server", "--onnx", str(onnx), "--model", model,
           "--port", str(port), "--served-name", SERVED_NAME]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return Server("ort", cmd, env, url + "/health", log_dir / "ort.log"), url
