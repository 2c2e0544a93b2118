"""API keys, the admin key and CORS, through the real app over HTTP (and the real OpenAI SDK)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import SecretStr, ValidationError

from gateway.api.auth import bearer_token, key_matches
from gateway.config import load_settings
from tests.support.fakes import FakeEngine
from tests.support.server import LiveServer, live_server

KEYS = ["sk-first-0123456789", "sk-second-abcdefghij"]
ADMIN = "admin-key-xyz"


def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and r.json()["detail"] == err["message"]
    assert err["type"] == "authentication_error" and err["code"] == "invalid_api_key"
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.headers["x-request-id"]
    for key in (*KEYS, ADMIN):
        assert key not in r.text


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    settings = load_settings(auth={"api_keys": KEYS, "admin_key": ADMIN})
    with live_server(settings, {"fake": FakeEngine("fake")}) as s:
        yield s


def get(server: LiveServer, path: str, key: str | None = None, **kw: object) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(server.url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


def post(server: LiveServer, key: str | None = None, **body: object) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + "/v1/embeddings", json={"input": "x", **body}, headers=headers, timeout=10)


def test_every_route_but_the_probes_needs_a_key(server: LiveServer) -> None:
    # /ready joined /health on purpose: a kubelet or load-balancer probe sends no key
    assert get(server, "/health").status_code == 200
    assert get(server, "/ready").status_code == 200
    for path in ("/metrics", "/info", "/v1/models", "/v1/models/jina-embeddings-v3", "/openapi.json",
                 "/docs", "/v1/nowhere"):
        assert_401(get(server, path))
        assert_401(get(server, path, key="wrong"))
    assert_401(post(server))
    assert_401(post(server, key="sk-first-012345678"))  # a prefix of a real key
    assert_401(httpx.post(server.url + "/v1/chunk-embeddings", json={"input": "a. b."}, timeout=10))
    for key in KEYS:
        assert post(server, key=key).status_code == 200
        assert get(server, "/info", key=key).status_code == 200
    assert get(server, "/v1/nowhere", key=KEYS[0]).status_code == 404  # with a key, routes behave as usual


def test_other_schemes_and_malformed_headers_are_401(server: LiveServer) -> None:
    for header in (f"Basic {KEYS[0]}", KEYS[0], "Bearer", f"Token {KEYS[0]}", f"Bearer{KEYS[0]}"):
        assert_401(httpx.post(server.url + "/v1/embeddings", json={"input": "x"}, headers={"authorization": header}))
    r = httpx.post(server.url + "/v1/embeddings", json={"input": "x"}, headers={"authorization": f"bearer  {KEYS[1]}"})
    assert r.status_code == 200  # the scheme is case-insensitive, whitespace around the key ignored


def test_openai_sdk_with_and_without_the_key(server: LiveServer) -> None:
    ok = openai.OpenAI(base_url=server.url + "/v1", api_key=KEYS[0], max_retries=0)
    assert len(ok.embeddings.create(model="jina-embeddings-v3", input=["a", "b"]).data) == 2
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.embeddings.create(model="jina-embeddings-v3", input="a")
    assert info.value.status_code == 401


def test_admin_key_guards_admin_and_also_opens_the_api(server: LiveServer) -> None:
    assert get(server, "/admin/engines", key=ADMIN).status_code == 200
    assert post(server, key=ADMIN).status_code == 200  # the stronger credential works everywhere
    assert_401(get(server, "/admin/engines"))
    assert_401(get(server, "/admin/engines", key="wrong"))
    r = get(server, "/admin/engines", key=KEYS[0])  # a valid client key is authenticated but not allowed
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"


def test_admin_without_admin_key_is_403_even_with_a_client_key() -> None:
    with live_server(load_settings(auth={"api_keys": KEYS}), {"fake": FakeEngine("fake")}) as s:
        r = get(s, "/admin/engines", key=KEYS[0])
        assert r.status_code == 403 and "auth.admin_key" in r.json()["error"]["message"]


def test_ready_without_a_key_shows_the_status_only(server: LiveServer) -> None:
    """Probes need the status code; the per-engine detail (errors, URLs) is for key holders."""
    assert get(server, "/ready").json() == {"status": "ready"}
    assert get(server, "/ready", key="wrong").json() == {"status": "ready"}
    for key in (KEYS[0], ADMIN):
        body = get(server, "/ready", key=key).json()
        assert body["status"] == "ready" and body["engines"]["fake"]["ready"] is True
        assert body["tasks"]["text-matching"] == ["fake"]


def test_metrics_stay_closed_by_default_and_open_when_configured(server: LiveServer) -> None:
    assert_401(get(server, "/metrics"))
    assert "embed_gateway_ready" in get(server, "/metrics", key=KEYS[0]).text
    settings = load_settings(auth={"api_keys": KEYS, "metrics_open": True})
    with live_server(settings, {"fake": FakeEngine("fake")}) as s:
        r = get(s, "/metrics")
        assert r.status_code == 200 and 'embed_gateway_ready{state="ready"} 1.0' in r.text
        assert_401(get(s, "/info"))  # only /metrics opened
        assert_401(post(s))


def test_probes_need_a_key_when_configured_closed() -> None:
    settings = load_settings(auth={"api_keys": KEYS, "probes_open": False})
    with live_server(settings, {"fake": FakeEngine("fake")}) as s:
        for path in ("/health", "/ready", "/metrics"):
            assert_401(get(s, path))
        assert get(s, "/health", key=KEYS[0]).json() == {"status": "ok"}
        assert get(s, "/ready", key=KEYS[0]).json()["engines"]["fake"]["ready"] is True
        schema = get(s, "/openapi.json", key=KEYS[0]).json()
        assert schema["paths"]["/ready"]["get"]["security"] == [{"bearer": []}, {}]


def test_probe_settings_from_the_environment_and_the_schema(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBED_GATEWAY_AUTH__PROBES_OPEN", "false")
    monkeypatch.setenv("EMBED_GATEWAY_AUTH__METRICS_OPEN", "true")
    auth = load_settings().auth
    assert auth.open_paths() == frozenset({"/metrics"})
    monkeypatch.delenv("EMBED_GATEWAY_AUTH__PROBES_OPEN")
    monkeypatch.delenv("EMBED_GATEWAY_AUTH__METRICS_OPEN")
    assert load_settings().auth.open_paths() == frozenset({"/health", "/ready"})
    paths = get(server, "/openapi.json", key=KEYS[0]).json()["paths"]
    assert "security" not in paths["/ready"]["get"] and "security" not in paths["/health"]["get"]
    assert paths["/metrics"]["get"]["security"] == [{"bearer": []}, {}]


def test_no_keys_configured_means_an_open_api() -> None:
    with live_server(load_settings(), {"fake": FakeEngine("fake")}) as s:
        assert post(s).status_code == 200
        assert get(s, "/metrics").status_code == 200
        assert get(s, "/info").json()["api_keys_required"] is False
        assert get(s, "/ready").json()["engines"]["fake"]["ready"] is True  # no keys: the full body


def test_keys_from_env_json_list_and_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBED_GATEWAY_AUTH__API_KEYS", json.dumps(KEYS))
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("# rotated 2026-01\nsk-from-file-1\n\n  sk-from-file-2  \n")
    settings = load_settings(auth={"api_keys_file": str(keys_file)})
    assert [k.get_secret_value() for k in settings.auth.client_keys()] == [*KEYS, "sk-from-file-1", "sk-from-file-2"]
    assert "sk-" not in repr(settings.auth)  # never printed
    monkeypatch.delenv("EMBED_GATEWAY_AUTH__API_KEYS")
    with pytest.raises(ValidationError, match="empty key"):
        load_settings(auth={"api_keys": ["good", " "]})
    with pytest.raises(ValidationError, match="cannot be read"):
        load_settings(auth={"api_keys_file": str(tmp_path / "missing")})
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(ValidationError, match="holds no key"):
        load_settings(auth={"api_keys_file": str(tmp_path / "empty")})


def test_a_rotated_keys_file_applies_on_reload(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("old-key\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(f"engines:\n  hf: {{enabled: false}}\nauth:\n  api_keys_file: {keys_file}\n  admin_key: {ADMIN}\n")
    with live_server(load_settings(config), {"fake": FakeEngine("fake")},
                     reload_settings=lambda: load_settings(config)) as s:
        assert post(s, key="old-key").status_code == 200
        keys_file.write_text("new-key\n")
        r = httpx.post(s.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"}, timeout=30)
        assert r.status_code == 200, r.text
        assert_401(post(s, key="old-key"))
        assert post(s, key="new-key").status_code == 200


def test_key_comparison_checks_every_key() -> None:
    keys = [SecretStr(k) for k in KEYS]
    assert key_matches(KEYS[1], keys) and key_matches(KEYS[0], keys)
    assert not key_matches(KEYS[0][:-1], keys) and not key_matches(KEYS[0] + "x", keys)
    assert not key_matches("", keys) and not key_matches(KEYS[0], [])
    assert bearer_token("Bearer abc") == "abc" and bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token(None) is None and bearer_token("Bearer ") is None


def test_cors_is_off_by_default(server: LiveServer) -> None:
    r = httpx.options(server.url + "/v1/embeddings", headers={
        "origin": "https://app.example.com", "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in r.headers
    r = post(server, key=KEYS[0])
    assert "access-control-allow-origin" not in r.headers


def test_cors_when_configured_answers_preflights_before_the_key_check() -> None:
    settings = load_settings(auth={"api_keys": KEYS},
                             server={"cors": {"allow_origins": ["https://app.example.com"]}})
    with live_server(settings, {"fake": FakeEngine("fake")}) as s:
        pre = {"origin": "https://app.example.com", "access-control-request-method": "POST",
               "access-control-request-headers": "authorization, content-type"}
        r = httpx.options(s.url + "/v1/embeddings", headers=pre)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.com"
        r = httpx.options(s.url + "/v1/embeddings", headers={**pre, "origin": "https://evil.example.com"})
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
        r = httpx.post(s.url + "/v1/embeddings", json={"input": "x"},
                       headers={"origin": "https://app.example.com", "authorization": f"Bearer {KEYS[0]}"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "x-embed-engine" in r.headers["access-control-expose-headers"]
        unauth = httpx.post(s.url + "/v1/embeddings", json={"input": "x"}, headers={"origin": "https://app.example.com"})
        assert_401(unauth)  # a browser can read why
        assert unauth.headers["access-control-allow-origin"] == "https://app.example.com"
    with pytest.raises(ValidationError, match="allow_credentials"):
        load_settings(server={"cors": {"allow_origins": ["*"], "allow_credentials": True}})
