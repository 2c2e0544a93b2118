"""The arrows point one way: an engine knows of the gateway only its contract.

Proved by reading every engine module's imports (``ast``, so imports under ``TYPE_CHECKING`` and
inside functions count too), and in a fresh interpreter for the settings the gateway composes.
The engines' ``tools/`` (checkpoints, baselines, measurements) are not part of an engine and are
not scanned.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("engine_hf", "engine_vllm")


def imported_modules(source: str) -> set[str]:
    """Every absolute module a source file imports, wherever the import statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from gateway import config` imports gateway.config
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def forbidden(modules: set[str], engine: str) -> set[str]:
    """What an engine module may not import: the gateway beyond its contract, or the other engine."""
    other = next(e for e in ENGINES if e != engine)
    bad = set()
    for m in modules:
        top = m.split(".")[0]
        if top == "gateway" and m not in ("gateway", "gateway.contract") and not m.startswith("gateway.contract."):
            bad.add(m)
        if top == other:
            bad.add(m)
    return bad


def engine_modules(engine: str) -> list[Path]:
    return sorted(p for p in (ROOT / engine).rglob("*.py") if "tools" not in p.relative_to(ROOT / engine).parts)


def test_the_scan_sees_imports_and_flags_a_wrong_arrow() -> None:
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gateway.config import X\n" \
          "def f():\n    from gateway import routing\n    import engine_vllm.wire\n"
    assert {"gateway.config", "gateway.routing", "engine_vllm.wire"} <= forbidden(imported_modules(src), "engine_hf")
    assert forbidden(imported_modules("from gateway.contract.chunking import x\nfrom gateway.contract import T"),
                     "engine_hf") == set()


@pytest.mark.parametrize("engine", ENGINES)
def test_an_engine_imports_only_the_gateways_contract(engine: str) -> None:
    files = engine_modules(engine)
    assert {p.name for p in files} >= {"__init__.py", "engine.py", "settings.py"}
    seen: set[str] = set()
    for path in files:
        modules = imported_modules(path.read_text(encoding="utf-8"))
        seen |= modules
        assert not forbidden(modules, engine), f"{path.relative_to(ROOT)} imports {sorted(forbidden(modules, engine))}"
    assert "gateway.contract" in seen  # the scan read real imports


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_settings_are_pydantic_only(engine: str) -> None:
    modules = imported_modules((ROOT / engine / "settings.py").read_text(encoding="utf-8"))
    assert {m.split(".")[0] for m in modules} <= {"__future__", "typing", "pydantic"}, modules


def test_the_gateways_config_composes_engine_settings_without_loading_an_engine() -> None:
    code = (
        "import sys, gateway.config as c, engine_hf.settings as h, engine_vllm.settings as v;"
        "assert c.HFEngineSettings is h.HFEngineSettings and c.VLLMEngineSettings is v.VLLMEngineSettings;"
        "assert c.Settings().engines.vllm.managed.__class__ is v.ManagedVLLMSettings;"
        "bad = [m for m in ('engine_hf.engine', 'engine_vllm.engine', 'torch', 'httpx') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_pool_imports_neither_the_serving_layer_nor_the_metrics() -> None:
    """Routing belongs to the pool (``gateway.pool.routing``) and the pool reports through the
    collector the app registers (``gateway.pool.events``): no circle between pool/ and serving/ or obs/."""
    for path in sorted((ROOT / "gateway" / "pool").rglob("*.py")):
        modules = imported_modules(path.read_text(encoding="utf-8"))
        bad = {m for m in modules if m.startswith(("gateway.serving", "gateway.obs", "gateway.api"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


API = ROOT / "gateway" / "api"


def api_slices() -> list[str]:
    """The HTTP layer's vertical slices: its subpackages (one per API dialect, and the operational API)."""
    return sorted(p.parent.name for p in API.glob("*/__init__.py"))


def other_slices(modules: set[str], own: str, slices: list[str]) -> set[str]:
    """What a module of slice ``own`` may not import: another slice of ``gateway.api``."""
    return {m for m in modules if m.startswith("gateway.api.") and m.split(".")[2] in slices and m.split(".")[2] != own}


def test_the_slice_scan_flags_an_import_of_another_dialect() -> None:
    src = "from gateway.api import tei\nfrom gateway.api.openai.protocol import X\nfrom gateway.api.errors import Y\n" \
          "def f():\n    import gateway.api.ops.views\n"
    assert other_slices(imported_modules(src), "openai", ["openai", "ops", "tei"]) == {"gateway.api.tei", "gateway.api.ops.views"}


def test_a_dialect_slice_imports_no_other_slice() -> None:
    """Each dialect's slice (protocol, render, routes, errors) stands on the shared pieces of
    ``gateway.api`` (error table, front door, policy, services) only, so a dialect can be read,
    changed or removed alone."""
    slices = api_slices()
    assert {"openai", "tei", "ops"} <= set(slices)
    seen: set[str] = set()
    for name in slices:
        for path in sorted((API / name).rglob("*.py")):
            modules = imported_modules(path.read_text(encoding="utf-8"))
            seen |= modules
            bad = other_slices(modules, name, slices)
            assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    assert "gateway.api.errors" in seen and "gateway.api.tei.protocol" in seen  # the scan read real imports
