"""Settings: YAML file, environment overrides with __ nesting, validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import load_settings
from gateway.contract import Task

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_file_loads_and_matches_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("EMBED_GATEWAY_"):
            monkeypatch.delenv(key)
    shipped = load_settings(REPO / "configs" / "gateway.yaml")
    assert shipped.model_dump() == load_settings().model_dump()


def test_env_overrides_yaml_with_nested_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text(
        "engines:\n  hf:\n    model: /models/from-yaml\n    dtype: float32\n"
        "aliases:\n  mem:\n    task: retrieval.passage\n    dimensions: 256\n"
        "api:\n  default_model: mem\n"
    )
    monkeypatch.setenv("EMBED_GATEWAY_ENGINES__HF__MODEL", "/models/from-env")
    monkeypatch.setenv("EMBED_GATEWAY_SERVER__PORT", "9999")
    s = load_settings(cfg)
    assert s.engines.hf.model == "/models/from-env"  # env wins over YAML
    assert s.engines.hf.dtype == "float32"  # YAML sibling key kept
    assert s.server.port == 9999
    assert s.aliases["mem"].task is Task.RETRIEVAL_PASSAGE and s.aliases["mem"].dimensions == 256


def test_unknown_keys_and_bad_values_are_rejected(tmp_path: Path) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text("engines:\n  hf:\n    modle: typo\n")
    with pytest.raises(ValidationError, match="modle"):
        load_settings(cfg)
    cfg.write_text("aliases:\n  x:\n    task: nope\n")
    with pytest.raises(ValidationError, match="unknown task"):
        load_settings(cfg)
    cfg.write_text("api:\n  default_model: missing\n")
    with pytest.raises(ValidationError, match="default_model"):
        load_settings(cfg)


def test_alias_task_none_means_base_weights(tmp_path: Path) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text("aliases:\n  raw:\n    task: none\n  jina-embeddings-v3:\n    task: text-matching\n")
    assert load_settings(cfg).aliases["raw"].task is None


def test_vllm_engine_is_configured_like_the_others_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBED_GATEWAY_ENGINES__VLLM__ENABLED", "true")
    monkeypatch.setenv("EMBED_GATEWAY_ENGINES__VLLM__URL", "http://vllm:8000")
    monkeypatch.setenv("EMBED_GATEWAY_ENGINES__VLLM__API_KEY", "sk-vllm-123")
    monkeypatch.setenv("EMBED_GATEWAY_ROUTES", '{"text-matching": ["hf", "vllm"]}')
    monkeypatch.setenv("EMBED_GATEWAY_AUTH__ADMIN_KEY", "admin-456")
    s = load_settings()
    assert s.engines.vllm.enabled and s.engines.vllm.url == "http://vllm:8000"
    assert s.engines.vllm.api_key is not None and s.engines.vllm.api_key.get_secret_value() == "sk-vllm-123"
    assert "sk-vllm-123" not in repr(s.engines.vllm) and "admin-456" not in repr(s.auth)  # secrets stay out of logs
    assert s.routes == {"text-matching": ["hf", "vllm"]}


def test_defaults_keep_vllm_off_and_routes_to_built_in() -> None:
    s = load_settings()
    assert not s.engines.vllm.enabled and not s.engines.vllm.managed.enabled
    assert s.routes == {} and s.auth.admin_key is None
    assert s.parity.enabled and s.parity.threshold == 0.999 and s.parity.reference == "hf"


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("routes:\n  text_matching: [hf]\n", "unknown task 'text_matching'"),
        ("routes:\n  none: []\n", "routes.none is empty"),
        ("routes:\n  separation: [hf, hf]\n", "names an engine twice"),
        ("engines:\n  vllm:\n    managed:\n      enabled: true\n", "managed.command"),
        ("parity:\n  threshold: 1.5\n", "threshold"),
    ],
)
def test_bad_routing_and_vllm_settings_are_rejected(tmp_path: Path, yaml_text: str, fragment: str) -> None:
    cfg = tmp_path / "g.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ValidationError, match=fragment):
        load_settings(cfg)


def test_empty_admin_key_means_admin_endpoints_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBED_GATEWAY_AUTH__ADMIN_KEY", "")  # an unset compose variable
    assert load_settings().auth.admin_key is None


def _leaves(model: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    from pydantic import BaseModel

    out: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _leaves(ann, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def test_every_key_is_in_the_shipped_yaml_and_documented() -> None:
    import yaml

    from gateway.config import Settings

    shipped = yaml.safe_load((REPO / "configs" / "gateway.yaml").read_text())
    docs = (REPO / "docs" / "configuration.md").read_text()
    for path in _leaves(Settings):
        node = shipped
        for part in path:
            assert isinstance(node, dict) and part in node, f"{'.'.join(path)} missing from configs/gateway.yaml"
            node = node[part]
        assert f"`{path[-1]}`" in docs, f"{'.'.join(path)} is not documented in docs/configuration.md"


def test_server_keep_alive_reaches_uvicorn() -> None:
    from gateway.lifecycle import GatewayServer

    from gateway.config import ServerSettings

    config = GatewayServer.make_config(object(), host="127.0.0.1", port=8080, log_level="info", grace=1.0,
                                       keep_alive=ServerSettings(keep_alive=90).keep_alive)
    assert config.timeout_keep_alive == 90
    assert ServerSettings().keep_alive > 60  # longer than common load balancers' idle timeout
