"""Live reload through the admin endpoint (SIGHUP is exercised on a real process in tests/e2e), the
admin key, start-up route errors, and in-flight requests finishing on the engine they started on.

Engines are scripted fakes named like the real ones, so `engines.<name>.enabled` toggles them; a
builder stands in for building a real engine when a reload enables one.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.config import Settings, load_settings
from gateway.contract import EmbedJob, EmbedResult, Engine, Task
from gateway.obs.metrics import GatewayMetrics
from gateway.serving.routing import RouteConfigError
from gateway.pool import Pool
from tests.support.fakes import FakeEngine
from tests.support.server import LiveServer, live_server

ADMIN = {"authorization": "Bearer s3cret"}
TM = frozenset([Task.TEXT_MATCHING])


HELD = "held until released"


class HoldingVLLM(FakeEngine):
    """A fake vLLM that holds the request whose input is ``HELD`` until ``release`` is set (the parity
    probes and every other request pass)."""

    def __init__(self) -> None:
        super().__init__("vllm", tasks=TM)
        self.release = asyncio.Event()
        self.entered = 0

    async def embed(self, job: EmbedJob) -> EmbedResult:
        if tuple(job.inputs) == (HELD,):
            self.entered += 1
            await self.release.wait()
        return await super().embed(job)


class Builder:
    """Builds fakes named like the real engines and remembers every one it built."""

    def __init__(self, vllm_delay: float = 0.0, hold_vllm: bool = False) -> None:
        self.built: list[FakeEngine] = []
        self.vllm_delay = vllm_delay
        self.hold_vllm = hold_vllm

    def __call__(self, name: str, settings: Settings) -> Engine:
        engine: FakeEngine
        if name == "vllm" and self.hold_vllm:  # holds each request until the test releases it
            engine = HoldingVLLM()
        else:
            engine = FakeEngine(name, tasks=TM if name == "vllm" else None,
                                delay=self.vllm_delay if name == "vllm" else 0.0)
        self.built.append(engine)
        return engine

    def latest(self, name: str) -> FakeEngine:
        return [e for e in self.built if e.name == name][-1]


def write_config(path: Path, *, vllm: bool, extra: str = "") -> None:
    path.write_text(
        "engines:\n"
        f"  vllm:\n    enabled: {str(vllm).lower()}\n"
        "auth:\n  admin_key: s3cret\n"
        "breaker:\n  probe_interval: 3600\n" + extra
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    write_config(path, vllm=True)
    return path


def serve(config: Path, builder: Builder) -> LiveServer:
    settings = load_settings(config)
    engines = {n: builder(n, settings) for n in ("vllm", "hf")}
    return LiveServer(settings, engines, reload_settings=lambda: load_settings(config), builder=builder).start()


@pytest.fixture
def server(config: Path) -> Iterator[tuple[LiveServer, Builder]]:
    builder = Builder()
    s = serve(config, builder)
    try:
        yield s, builder
    finally:
        s.stop()


def engine_of(s: LiveServer, task: str = "text-matching") -> str:
    r = httpx.post(s.url + "/v1/embeddings", json={"input": "x", "task": task}, timeout=30)
    assert r.status_code == 200, r.text
    return r.headers["x-embed-engine"]


def reload(s: LiveServer) -> httpx.Response:
    return httpx.post(s.url + "/admin/reload", headers=ADMIN, timeout=30)


def test_admin_endpoints_need_the_admin_key(server: tuple[LiveServer, Builder]) -> None:
    s, _ = server
    for headers, status in [({}, 401), ({"authorization": "Bearer wrong"}, 401), ({"authorization": "s3cret"}, 401), (ADMIN, 200)]:
        r = httpx.get(s.url + "/admin/engines", headers=headers)
        assert r.status_code == status, r.text
        if status == 401:
            assert r.json()["error"]["type"] == "authentication_error"


def test_admin_endpoints_are_off_without_an_admin_key(original_dir: Path) -> None:
    with live_server(load_settings(), {"hf": FakeEngine("hf")}) as s:
        r = httpx.post(s.url + "/admin/reload", headers=ADMIN)
    assert r.status_code == 403 and "auth.admin_key" in r.json()["error"]["message"]


def test_disable_and_enable_vllm_in_the_file(server: tuple[LiveServer, Builder], config: Path) -> None:
    s, builder = server
    assert engine_of(s) == "vllm" and engine_of(s, "separation") == "hf"
    first_vllm = builder.latest("vllm")

    write_config(config, vllm=False)
    r = reload(s)
    assert r.status_code == 200, r.text
    assert r.json()["routes"]["text-matching"] == ["hf"]
    assert engine_of(s) == "hf"
    s.call(asyncio.sleep(0.05))  # let the drain task run: nothing was in flight
    assert first_vllm.closed

    write_config(config, vllm=True)
    assert reload(s).status_code == 200
    assert engine_of(s) == "vllm"
    assert builder.latest("vllm") is not first_vllm and builder.latest("vllm").started
    hf_instances = [e for e in builder.built if e.name == "hf"]
    assert len(hf_instances) == 1 and not hf_instances[0].closed  # an unchanged engine is kept as is


def test_changed_routes_apply_without_touching_engines(server: tuple[LiveServer, Builder], config: Path) -> None:
    s, builder = server
    write_config(config, vllm=True, extra="routes:\n  text-matching: [hf, vllm]\n")
    assert reload(s).status_code == 200
    assert engine_of(s) == "hf"
    assert len(builder.built) == 2  # nothing rebuilt


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("engines:\n  vllm:\n    enabeld: false\n", "enabeld"),
        ("engines:\n  vllm:\n    enabled: false\nroutes:\n  text-matching: [vllm, hf]\n",
         "names engine 'vllm', which is disabled"),
        ("engines:\n  vllm:\n    enabled: true\nroutes:\n  separation: [vllm]\n", "cannot serve 'separation'"),
        ("engines: [", "cannot be read"),
    ],
)
def test_a_bad_configuration_is_refused_and_the_old_one_stays(
    server: tuple[LiveServer, Builder], config: Path, text: str, fragment: str
) -> None:
    s, _ = server
    config.write_text(text if text.endswith("[") else text + "auth:\n  admin_key: s3cret\n")
    r = reload(s)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_config" and fragment in err["message"]
    assert engine_of(s) == "vllm"  # unchanged


def test_in_flight_request_finishes_on_the_engine_it_started_on(config: Path) -> None:
    # vLLM holds the request until the test lets it go: the reload lands while it is inside, however
    # slow the machine (a fixed delay raced the reload on a busy 2-core box)
    builder = Builder(hold_vllm=True)
    s = serve(config, builder)
    try:
        slow_vllm = builder.latest("vllm")
        assert isinstance(slow_vllm, HoldingVLLM)
        result: dict[str, httpx.Response] = {}
        started = threading.Event()

        def request() -> None:
            started.set()
            result["r"] = httpx.post(s.url + "/v1/embeddings", json={"input": HELD}, timeout=30)

        t = threading.Thread(target=request)
        t.start()
        started.wait()
        s.call(_until(lambda: slow_vllm.entered == 1))  # the request is inside vllm now
        write_config(config, vllm=False)
        assert reload(s).status_code == 200
        assert not slow_vllm.closed  # still serving the request that started on it
        assert engine_of(s) == "hf"  # new requests go elsewhere at once
        s.call(_release(slow_vllm))
        t.join(timeout=30)
        assert result["r"].status_code == 200 and result["r"].headers["x-embed-engine"] == "vllm"
        s.call(_until(lambda: slow_vllm.closed))  # closed once drained
    finally:
        s.stop()


async def _release(engine: HoldingVLLM) -> None:
    engine.release.set()


async def _until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_a_route_naming_a_disabled_engine_stops_start_up() -> None:
    settings = load_settings(routes={"text-matching": ["vllm", "hf"]})  # vllm is disabled by default
    runtime = Pool(GatewayMetrics(), builder=Builder())
    with pytest.raises(RouteConfigError, match=r"routes.text-matching names engine 'vllm', which is disabled"):
        asyncio.run(runtime.open(settings))


def test_default_routes_with_vllm_disabled_start_fine() -> None:
    builder = Builder()
    runtime = Pool(GatewayMetrics(), builder=builder)

    async def go() -> dict[str, list[str]]:
        await runtime.open(load_settings())
        try:
            return dict(runtime.current.routes)
        finally:
            await runtime.aclose()

    routes = asyncio.run(go())
    assert [e.name for e in builder.built] == ["hf"]
    assert all(v == ["hf"] for v in routes.values())
