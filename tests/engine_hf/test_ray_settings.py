"""``engines.hf.ray`` without a cluster: the environment, the CLI flag, Serve's options, the Serve
config file and the KubeRay example (both parsed by Ray's own schema and built into an app), and
contract errors across the hop by value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray", reason="the [ray] extra")

from engine_hf.ray.deployment import app_builder, deployment_options  # noqa: E402
from engine_hf.remote_errors import RemoteError, pack_error, unpack_error  # noqa: E402
from engine_hf.settings import HFEngineSettings  # noqa: E402
from gateway.cli import build_parser  # noqa: E402
from gateway.config import load_settings  # noqa: E402
from gateway.contract import EngineError, EngineOverloadedError, InputTooLongError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_the_environment_reaches_the_ray_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBED_GATEWAY_ENGINES__HF__RAY__NUM_REPLICAS", "2")
    monkeypatch.setenv("EMBED_GATEWAY_ENGINES__HF__RAY__AUTOSCALING__MAX_REPLICAS", "4")
    ray = load_settings().engines.hf.ray
    assert (ray.enabled, ray.num_replicas, ray.autoscaling.max_replicas) == (False, 2, 4)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="below min_replicas"):
        HFEngineSettings(ray={"autoscaling": {"min_replicas": 3, "max_replicas": 2}})  # type: ignore[arg-type]


def test_serve_dash_dash_ray_turns_it_on() -> None:
    from gateway.cli import serve_settings

    args = build_parser().parse_args(["serve", "--ray", "--ray-address", "ray://head:10001", "--port", "9000"])
    settings = serve_settings(args, None)
    assert settings.engines.hf.ray.enabled and settings.engines.hf.ray.address == "ray://head:10001"
    assert settings.server.port == 9000
    assert not serve_settings(build_parser().parse_args(["serve"]), None).engines.hf.ray.enabled  # the default


def test_deployment_options_map_the_settings() -> None:
    fixed = deployment_options(HFEngineSettings(ray={"num_replicas": 3, "num_gpus": 1}))  # type: ignore[arg-type]
    assert fixed["num_replicas"] == 3 and fixed["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1.0}
    auto = deployment_options(HFEngineSettings(ray={"autoscaling": {"enabled": True, "max_replicas": 4}}))  # type: ignore[arg-type]
    assert "num_replicas" not in auto
    assert auto["autoscaling_config"]["max_replicas"] == 4 and auto["autoscaling_config"]["min_replicas"] == 1


@pytest.mark.parametrize("source", ["configs/ray-serve.yaml", "compose/kuberay-rayservice.yaml"])
def test_the_shipped_serve_configs_are_valid_and_build(source: str) -> None:
    from ray.serve.schema import ServeDeploySchema

    doc = yaml.safe_load((ROOT / source).read_text())
    if doc.get("kind") == "RayService":
        doc = yaml.safe_load(doc["spec"]["serveConfigV2"])
    config = ServeDeploySchema.model_validate(doc) if hasattr(ServeDeploySchema, "model_validate") else ServeDeploySchema.parse_obj(doc)
    (app,) = config.applications
    assert app.import_path == "engine_hf.ray.deployment:app_builder"
    assert app.name == HFEngineSettings().ray.app_name
    built = app_builder(app.args)  # what Serve does with the import path and args
    assert built._bound_deployment.name == HFEngineSettings().ray.deployment_name
    assert HFEngineSettings.model_validate(app.args).ray.num_gpus == 1


def test_contract_errors_cross_the_hop_with_their_fields() -> None:
    import pickle

    err = unpack_error(pickle.loads(pickle.dumps(pack_error(InputTooLongError(3, 900, 512)))), engine="hf")
    assert type(err) is InputTooLongError and (err.index, err.n_tokens, err.limit, err.param) == (3, 900, 512, "input[3]")
    busy = unpack_error(pack_error(EngineOverloadedError("full", engine="hf-replica", retry_after=2.0)), engine="hf")
    assert isinstance(busy, EngineOverloadedError) and busy.retry_after == 2.0 and busy.engine == "hf"
    assert isinstance(unpack_error(RemoteError("SystemExit", "no"), engine="hf"), EngineError)


def test_results_from_a_replica_keep_its_numerics_under_the_engines_name() -> None:
    from engine_hf.ray.engine import relabel

    assert relabel("hf", "hf-replica") == "hf"  # the exact engine
    assert relabel("hf", "hf-replica:int8") == "hf:int8"  # an int8 replica is never labelled exact


def test_only_rays_pickle_registry_race_is_retried_at_deploy() -> None:
    from engine_hf.ray.engine import _pickle_registry_race

    race = ValueError("<module 'ray.serve._private.request_router' from '…'> is not registered for pickle by value")
    assert _pickle_registry_race(race)
    assert not _pickle_registry_race(ValueError("num_replicas must be positive"))
    assert not _pickle_registry_race(RuntimeError("is not registered for pickle by value"))
