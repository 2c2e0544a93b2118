"""Managed mode's supervisor on a stand-in server process (real processes, real signals).

The real vLLM under the gateway's management is tested in tests/e2e/test_vllm_managed.py; here
the lifecycle rules: start and wait for health, restart after a kill, back off in a crash loop,
kill a process that never becomes healthy, and stop the whole process group.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from engine_vllm.managed import ProcessState, VLLMProcess, restart_delay
from engine_vllm.settings import ManagedVLLMSettings
from tests.support.server import free_port

TINY_HTTP = str(Path(__file__).resolve().parents[1] / "support" / "tiny_http.py")


def test_restart_delay_doubles_and_caps() -> None:
    assert [restart_delay(n, initial=1, maximum=10) for n in range(6)] == [0, 1, 2, 4, 8, 10]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def health_of(port: int) -> Callable[[], object]:
    async def ok() -> bool:
        async with httpx.AsyncClient() as c:
            try:
                return (await c.get(f"http://127.0.0.1:{port}/health", timeout=1)).status_code == 200
            except httpx.TransportError:
                return False

    return ok


def test_starts_restarts_after_kill_and_stops_the_whole_group(tmp_path: Path) -> None:
    port, child_file = free_port(), tmp_path / "child.pid"
    settings = ManagedVLLMSettings(
        enabled=True, command=[sys.executable, TINY_HTTP, str(port), str(child_file)],
        restart_initial_delay=0.1, stop_timeout=5, log_file=str(tmp_path / "vllm.log"),
    )

    async def go() -> None:
        proc = VLLMProcess(settings, health_of(port))  # type: ignore[arg-type]
        await proc.start()
        try:
            await until(lambda: proc.state is ProcessState.RUNNING)
            first = proc.pid
            assert first is not None and proc.describe()["restarts"] == 0
            os.kill(first, 9)  # a crash
            await until(lambda: proc.state is ProcessState.RUNNING and proc.pid not in (None, first))
            assert proc.describe()["restarts"] == 1 and proc.last_exit == -9
            second, child = proc.pid, int(child_file.read_text())
            assert second is not None and alive(child)
        finally:
            await proc.stop()
        assert not alive(second) and not alive(child)  # the group went, children included
        assert proc.state is ProcessState.STOPPED and proc.pid is None

    asyncio.run(go())


def test_crash_loop_backs_off_and_stop_interrupts_the_wait(tmp_path: Path) -> None:
    settings = ManagedVLLMSettings(
        enabled=True, command=[sys.executable, "-c", "raise SystemExit(3)"],
        restart_initial_delay=0.05, restart_max_delay=3600,
    )

    async def never() -> bool:
        return False

    async def go() -> None:
        proc = VLLMProcess(settings, never)
        await proc.start()
        await until(lambda: proc.starts >= 3 and proc.state is ProcessState.BACKOFF)
        assert proc.last_exit == 3
        await asyncio.wait_for(proc.stop(), timeout=10)  # not stuck in a long backoff
        assert proc.state is ProcessState.STOPPED

    asyncio.run(go())


def test_a_process_that_never_becomes_healthy_is_killed_and_started_again(tmp_path: Path) -> None:
    settings = ManagedVLLMSettings(
        enabled=True, command=[sys.executable, "-c", "import time; time.sleep(3600)"],
        startup_timeout=0.5, restart_initial_delay=0.05, stop_timeout=5,
    )

    async def never() -> bool:
        return False

    async def go() -> None:
        proc = VLLMProcess(settings, never)
        await proc.start()
        try:
            await until(lambda: proc.starts >= 2)
            assert proc.last_exit is not None and proc.last_exit < 0  # killed by a signal
        finally:
            await proc.stop()

    asyncio.run(go())


def test_managed_needs_a_command() -> None:
    with pytest.raises(ValueError, match="managed.command"):
        ManagedVLLMSettings(enabled=True)
