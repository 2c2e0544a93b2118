"""The compose files and images, checked without a Docker engine (none on CI): parsed, and every
cross-reference between them, the Dockerfiles and the gateway configuration verified."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import load_settings
from gateway.contract import ROUTE_KEYS, EngineCapabilities, Task
from gateway.serving.routing import resolve_routes

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
REPO = COMPOSE.parent
FILES = ["docker-compose.yml", "docker-compose.driver535.yml", "docker-compose.cpu.yml"]
CAPS = {
    "hf": EngineCapabilities(tasks=frozenset([*Task, None]), dimensions=1024, max_input_tokens=8192),
    "vllm": EngineCapabilities(tasks=frozenset([Task.TEXT_MATCHING]), dimensions=1024, max_input_tokens=8192),
}


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((COMPOSE / name).read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def flags(command: list[str]) -> dict[str, str]:
    out = {}
    for arg in command:
        key, _, value = arg.partition("=")
        out[key] = value
    return out


def gateway_config(doc: dict[str, Any]) -> Path:
    mounts = [v for v in doc["services"]["gateway"]["volumes"] if v.endswith(":/etc/embed-gateway/gateway.yaml:ro")]
    assert len(mounts) == 1
    return COMPOSE / mounts[0].split(":")[0]


def uses_gpu(service: dict[str, Any]) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


@pytest.mark.parametrize("name", FILES)
def test_every_service_has_a_health_check_restart_policy_and_the_shared_model_cache(name: str) -> None:
    doc = load(name)
    assert "model-cache" in doc["volumes"]
    for service in doc["services"].values():
        check = service["healthcheck"]
        assert check["test"][0] == "CMD" and "/health" in " ".join(check["test"])
        assert service["restart"] == "unless-stopped"
        assert "model-cache:/models" in service["volumes"]
        assert service.get("environment", {}).get("HF_HOME", "/models/huggingface").startswith("/models")


@pytest.mark.parametrize("name", FILES)
def test_the_gateway_image_builds_from_this_repository_and_reads_the_mounted_config(name: str) -> None:
    gateway = load(name)["services"]["gateway"]
    assert (COMPOSE / gateway["build"]["context"]).resolve() == REPO
    dockerfile = REPO / gateway["build"]["dockerfile"]
    text = dockerfile.read_text()
    for src in re.findall(r"^COPY (\S+)", text, flags=re.M):
        assert (REPO / src).exists(), f"{dockerfile.name} copies missing {src}"
    assert 'ENTRYPOINT ["embed-gateway", "serve"]' in text and "/etc/embed-gateway/gateway.yaml" in text
    assert "ENV" in text and "HF_HOME=/models/huggingface" in text
    assert gateway["ports"] == ["8080:8080"]
    settings = load_settings(gateway_config(load(name)))
    assert settings.server.host == "0.0.0.0"  # reachable from outside the container


def test_gpu_host_vllm_is_pinned_pooling_remote_code_mean_and_normalised() -> None:
    doc = load("docker-compose.yml")
    vllm = doc["services"]["vllm"]
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+", vllm["image"]), "pin the vLLM image version"
    f = flags(vllm["command"])
    assert f["--runner"] == "pooling" and "--trust-remote-code" in f
    pooler = json.loads(f["--pooler-config"])
    assert pooler == {"pooling_type": "MEAN", "use_activation": True}
    assert f["--model"] == "jinaai/jina-embeddings-v3"
    assert uses_gpu(vllm) and uses_gpu(doc["services"]["gateway"])

    settings = load_settings(gateway_config(doc))
    v = settings.engines.vllm
    assert v.enabled and v.model == f["--served-model-name"]
    assert v.url == f"http://vllm:{f['--port']}" and f["--host"] == "0.0.0.0"
    assert int(f["--max-model-len"]) >= v.max_input_tokens
    assert f["--dtype"] == settings.engines.hf.dtype  # both engines in one dtype: comparable vectors
    routes = resolve_routes(settings.routes, CAPS)
    assert routes["text-matching"] == ["vllm", "hf"]
    assert all(routes[k] == ["hf"] for k in ROUTE_KEYS if k != "text-matching")
    assert doc["services"]["gateway"]["depends_on"]["vllm"]["condition"] == "service_started"


def test_driver_535_host_runs_the_gateway_alone_on_a_torch_its_driver_runs() -> None:
    doc = load("docker-compose.driver535.yml")
    assert set(doc["services"]) == {"gateway"}
    gateway = doc["services"]["gateway"]
    assert uses_gpu(gateway) and gateway["build"]["args"]["TORCH_CUDA"] == "cu118"  # CUDA 11.8 <= 12.2
    dockerfile = (REPO / gateway["build"]["dockerfile"]).read_text()
    torch_version = re.search(r"ARG TORCH_VERSION=(\d+)\.(\d+)", dockerfile)
    assert torch_version and (int(torch_version[1]), int(torch_version[2])) >= (2, 6)  # transformers 5 needs >= 2.6
    settings = load_settings(gateway_config(doc))
    assert not settings.engines.vllm.enabled and settings.engines.hf.device == "cuda"
    assert all(r == ["hf"] for r in resolve_routes(settings.routes, {"hf": CAPS["hf"]}, disabled=["vllm"]).values())


def test_cpu_host_uses_no_gpu_and_the_cpu_image() -> None:
    doc = load("docker-compose.cpu.yml")
    gateway = doc["services"]["gateway"]
    assert set(doc["services"]) == {"gateway"} and not uses_gpu(gateway)
    assert gateway["build"]["dockerfile"] == "compose/Dockerfile.cpu"
    assert "download.pytorch.org/whl/cpu" in (REPO / "compose" / "Dockerfile.cpu").read_text()
    settings = load_settings(gateway_config(doc))
    assert settings.engines.hf.device == "cpu" and settings.engines.hf.dtype == "float32"
    assert not settings.engines.vllm.enabled
