"""The HF engine on a REAL local Ray cluster: Serve replicas behind the gateway, Ray Data for bulk.

One cluster for the module (started on loopback, stopped at the end): Ray processes are costly on
2 cores. Its 4 CPUs are logical (what replicas and actors reserve), not threads: every replica and
actor runs torch on one thread. Nothing is mocked: the gateway is the real app over HTTP, the
replicas are real Serve replicas of the tiny checkpoint, a replica is killed with ``ray.kill`` as a
crash would, and replica counts are read from Serve's own controller (``serve.status()``) and the
cluster's actor table (``ray.util.list_named_actors``). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("ray", reason="the [ray] extra (tests/run.sh installs it with the test extra)")

from gateway.cli import main  # noqa: E402
from gateway.config import Settings, load_settings  # noqa: E402
from tests.support.server import LiveServer  # noqa: E402

pytestmark = pytest.mark.slow

WORDS = "the user likes coffee tea morning evening works at company lives in city music dog cat park".split()


def texts(n: int, start: int = 0) -> list[str]:
    return [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 9)) + f" {i}" for i in range(start, start + n)]


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local Ray on 127.0.0.1 for this module (workers inherit PYTHONPATH, so they import this tree)."""
    import ray
    from ray import serve

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level=logging.WARNING)
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


def ray_settings(model: Path, **ray: Any) -> Settings:
    # the cache off: these tests count and kill what reaches the replicas
    return load_settings(api={"token_ids": "accept"}, cache={"memory_bytes": 0}, engines={"hf": {
        "model": str(model), "device": "cpu", "max_input_tokens": 64,
        "ray": {"enabled": True, "threads": 1, "num_cpus": 1, "start_timeout_s": 240, **ray},
    }})


def replicas(app: str, state: str = "RUNNING") -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None:
        return 0
    return sum(int(d.replica_states.get(state, 0)) for d in status.deployments.values())


def replica_actor_names(app: str) -> list[str]:
    import ray

    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a["name"].startswith(f"SERVE_REPLICA::{app}#"))


@pytest.fixture(scope="module")
def single(original_dir: Path) -> Iterator[LiveServer]:
    """The single-process server every Ray vector is compared with (one torch thread, like a replica)."""
    server = LiveServer(load_settings(api={"token_ids": "accept"}, engines={"hf": {
        "model": str(original_dir), "device": "cpu", "max_input_tokens": 64, "threads": 1}})).start(timeout=120)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def on_ray(ray_cluster: None, original_dir: Path) -> Iterator[LiveServer]:
    """The gateway (its own process's app) over two Serve replicas of the same checkpoint."""
    server = LiveServer(ray_settings(original_dir, num_replicas=2, app_name="t-fixed")).start(timeout=300)
    try:
        yield server
    finally:
        server.stop(timeout=60)


BODIES: list[dict[str, Any]] = [
    {"input": texts(5), "task": "retrieval.query"},
    {"input": texts(4, 5), "task": "retrieval.passage", "dimensions": 16},
    {"input": texts(3, 9), "task": "separation"},
    {"input": texts(3, 12), "task": "classification"},
    {"input": texts(6, 15)},  # the default alias: text-matching
    {"input": texts(2, 21), "task": "none", "normalized": False},
    {"input": texts(3, 23), "task": "retrieval.passage", "late_chunking": True},
    {"input": [[5, 6, 7, 8], [9, 10]], "task": "text-matching"},
]


def vectors(url: str, body: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    r = httpx.post(f"{url}/v1/embeddings", json=body, timeout=60)
    assert r.status_code == 200, r.text
    data = r.json()
    return np.array([d["embedding"] for d in data["data"]], dtype=np.float32), data["usage"]


def test_two_replicas_give_every_vector_of_the_single_process_server(on_ray: LiveServer, single: LiveServer) -> None:
    assert replicas("t-fixed") == 2
    assert len(replica_actor_names("t-fixed")) == 2
    for body in BODIES:
        got, got_usage = vectors(on_ray.url, body)
        want, want_usage = vectors(single.url, body)
        assert got.shape == want.shape and got_usage == want_usage, body
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=json.dumps(body)[:80])
    # errors cross the hop with their class and fields: the same 400 as the single-process server
    long = {"input": ["short", "word " * 80], "task": "retrieval.query"}
    a = httpx.post(f"{on_ray.url}/v1/embeddings", json=long, timeout=60)
    b = httpx.post(f"{single.url}/v1/embeddings", json=long, timeout=60)
    assert a.status_code == b.status_code == 400
    assert a.json() == b.json() and a.json()["error"]["param"] == "input[1]"
    # TEI's tokenizer routes go through the replicas too
    tok = {"inputs": "the user likes coffee", "add_special_tokens": True}
    assert httpx.post(f"{on_ray.url}/tokenize", json=tok).json() == httpx.post(f"{single.url}/tokenize", json=tok).json()
    info = httpx.get(f"{on_ray.url}/info").json()
    assert "ray:2x" in json.dumps(info), info


def test_a_replica_killed_mid_load_loses_no_request(on_ray: LiveServer, single: LiveServer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    import ray

    # jobs big enough (~1.5k tokens, several passes) that one is still on the victim when it dies
    bodies = [{"input": texts(96, 100 * i), "task": "retrieval.passage"} for i in range(24)]
    want = [vectors(single.url, b)[0] for b in bodies]
    victim = replica_actor_names("t-fixed")[0]
    results: dict[int, np.ndarray] = {}
    failures: list[str] = []

    async def load() -> None:
        sem = asyncio.Semaphore(8)
        async with httpx.AsyncClient(timeout=120) as client:
            async def one(i: int) -> None:
                async with sem:
                    r = await client.post(f"{on_ray.url}/v1/embeddings", json=bodies[i])
                    if r.status_code != 200:
                        failures.append(f"{i}: {r.status_code} {r.text[:200]}")
                    else:
                        results[i] = np.array([d["embedding"] for d in r.json()["data"]], dtype=np.float32)
            await asyncio.gather(*(one(i) for i in range(len(bodies))))

    caplog.set_level(logging.WARNING, logger="engine_hf.ray.engine")
    runner = threading.Thread(target=lambda: asyncio.run(load()))
    runner.start()
    wait_for("the load to be under way", lambda: len(results) >= 4, timeout=120, every=0.01)
    actor = ray.get_actor(victim, namespace="serve")
    # kill it while it holds a job (Serve's own queue-length probe), so the retry path is always taken
    wait_for("a job on the victim replica", lambda: ray.get(actor.get_num_ongoing_requests.remote()) > 0,
             timeout=120, every=0.001)
    ray.kill(actor, no_restart=True)  # as a crash (OOM, lost node) would
    runner.join(timeout=300)
    assert not runner.is_alive()
    assert failures == []
    assert sorted(results) == list(range(len(bodies)))
    for i, got in results.items():
        np.testing.assert_allclose(got, want[i], rtol=0, atol=1e-6)
    # Serve replaced the dead replica by itself
    wait_for("Serve to replace the killed replica", lambda: replicas("t-fixed") == 2
             and victim not in replica_actor_names("t-fixed"), timeout=240)
    # the proof that jobs were in flight on the killed replica and the engine redid them elsewhere
    lost = [r for r in caplog.records if "Ray replica lost" in r.getMessage()]
    assert lost, "no job was in flight on the killed replica"


def test_autoscaling_adds_a_replica_under_load_and_removes_it_after(ray_cluster: None, original_dir: Path) -> None:
    from engine_hf.ray import RayHFEngine
    from gateway.contract import EmbedJob, Task

    app = "t-auto"
    settings = ray_settings(original_dir, app_name=app, autoscaling={
        "enabled": True, "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
        "upscale_delay_s": 0.5, "downscale_delay_s": 2, "metrics_interval_s": 0.5, "look_back_period_s": 1,
    }).engines.hf
    engine = RayHFEngine(settings)
    stop = threading.Event()
    seen: list[int] = []

    async def run() -> None:
        await engine.start()
        seen.append(replicas(app))
        job = EmbedJob(inputs=texts(32), task=Task.RETRIEVAL_PASSAGE)

        async def worker() -> None:
            while not stop.is_set():
                await engine.embed(job)

        workers = [asyncio.create_task(worker()) for _ in range(6)]
        try:
            await asyncio.to_thread(wait_for, "a second replica under load", lambda: replicas(app) == 2, 240)
            seen.append(replicas(app))
        finally:
            stop.set()
            await asyncio.gather(*workers)
        await asyncio.to_thread(wait_for, "the scale-down when idle", lambda: replicas(app) == 1, 120)
        seen.append(replicas(app))
        # and the stopped replica's actor is gone from the cluster, not just out of Serve's count
        await asyncio.to_thread(wait_for, "the idle replica's actor to end", lambda: len(replica_actor_names(app)) == 1, 60)
        await engine.aclose()

    asyncio.run(asyncio.wait_for(run(), timeout=480))
    assert seen == [1, 2, 1]
    wait_for("the app to be deleted on close", lambda: replicas(app) == 0 and not replica_actor_names(app), 60)


def test_embed_on_ray_data_equals_local_and_resumes(ray_cluster: None, original_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    docs = texts(50)
    docs[41] = "x " * 5000  # over the model's 8192 tokens: refused by the engine in its actor
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"doc": f"d{i}", "text": t, "n": i}) + "\n" for i, t in enumerate(docs)))
    common = [str(src), "--id-field", "doc", "--metadata-fields", "n", "--dimensions", "32", "--batch-size", "4",
              "--threads", "1", "--device", "cpu"]
    ray_args = ["--ray", str(original_dir), "--ray-actors", "2", "--output", str(tmp_path / "ray.parquet")]

    # a run that stops at the bad row: what was stored before it stays stored
    assert main(["embed", *common, *ray_args, "--no-progress"]) == 1
    assert "in.jsonl line 42" in capsys.readouterr().err
    # the same command again (skipping bad rows) resumes: nothing stored twice, nothing lost
    assert main(["embed", *common, *ray_args, "--skip-bad-rows"]) == 0
    err = capsys.readouterr().err
    assert "1 bad rows skipped" in err and "rows/s" in err, err
    stored = int(err.split(" already stored")[0].rsplit(", ", 1)[-1].split()[-1])
    assert 0 < stored < 49, err
    assert f"{49 - stored} rows embedded" in err, err

    assert main(["embed", *common, "--local", str(original_dir), "--output", str(tmp_path / "local.parquet"),
                 "--skip-bad-rows", "--no-progress"]) == 0
    got, want = pq.read_table(tmp_path / "ray.parquet"), pq.read_table(tmp_path / "local.parquet")
    assert got.column("id").to_pylist() == want.column("id").to_pylist() == [f"d{i}" for i in range(50) if i != 41]
    assert got.column("metadata").to_pylist() == want.column("metadata").to_pylist()
    np.testing.assert_allclose(np.array(got.column("vector").to_pylist()), np.array(want.column("vector").to_pylist()),
                               rtol=0, atol=1e-6)


def test_serve_dash_dash_ray_joins_the_cluster_ray_address_names(ray_cluster: None, original_dir: Path,
                                                                  single: LiveServer, tmp_path: Path) -> None:
    """The command a user runs: ``embed-gateway serve --ray`` as its own process, joining this
    module's cluster through ``RAY_ADDRESS``, configured by the environment; SIGTERM removes its app."""
    import shutil
    import signal
    import subprocess
    import sys

    import ray

    from tests.support.server import free_port

    port, app = free_port(), "t-cli"
    exe = shutil.which("embed-gateway", path=str(Path(sys.executable).parent)) or "embed-gateway"
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "EMBED_GATEWAY_ENGINES__HF__MODEL": str(original_dir), "EMBED_GATEWAY_ENGINES__HF__DEVICE": "cpu",
           "EMBED_GATEWAY_ENGINES__HF__MAX_INPUT_TOKENS": "64", "EMBED_GATEWAY_ENGINES__HF__RAY__APP_NAME": app,
           "EMBED_GATEWAY_ENGINES__HF__RAY__NUM_REPLICAS": "1", "EMBED_GATEWAY_ENGINES__HF__RAY__THREADS": "1"}
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([exe, "serve", "--ray", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        try:
            return httpx.get(url + "/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for("embed-gateway serve --ray to be ready", ready, timeout=300)
        assert replicas(app) == 1  # on the cluster RAY_ADDRESS names, not a cluster of its own
        body = {"input": texts(3), "task": "retrieval.query"}
        np.testing.assert_allclose(vectors(url, body)[0], vectors(single.url, body)[0], rtol=0, atol=1e-6)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    out = (tmp_path / "serve.log").read_text()
    # the gateway drained and its engine deleted the app it had deployed. KNOWN ISSUE: the exit
    # status is not checked: after the drain, Ray's core worker (its C++ SIGTERM handler in a
    # driver connected to a cluster) may end the process with SIGABRT instead of SIGTERM's status
    assert proc.returncode is not None and "Waiting for application shutdown" in out, out[-3000:]
    assert f"Deleting app ['{app}']" in out, out[-3000:]
    wait_for("the app to be deleted on SIGTERM", lambda: replicas(app) == 0, 60)
