"""eval is a tool beside the runtime: the server never imports it, and it reaches a gateway only
over HTTP (the gateway's own client), except ``local.py``, which starts one for ``--config``."""

from __future__ import annotations

import subprocess
import sys

from tests.test_architecture import ROOT, imported_modules

EVAL = ROOT / "gateway" / "eval"


def test_no_runtime_module_imports_eval() -> None:
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        if EVAL in path.parents or path.name == "cli.py":
            continue
        bad = {m for m in imported_modules(path.read_text(encoding="utf-8")) if m.startswith("gateway.eval")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_eval_talks_to_the_gateway_through_its_client() -> None:
    allowed = ("gateway.eval", "gateway.client", "gateway.serving.postprocess")
    for path in sorted(EVAL.glob("*.py")):
        gateway_imports = {m for m in imported_modules(path.read_text(encoding="utf-8")) if m.split(".")[0] == "gateway"}
        if path.name == "local.py":
            allowed_here = (*allowed, "gateway.app", "gateway.config", "gateway.lifecycle")
        else:
            allowed_here = allowed
        bad = {m for m in gateway_imports if m != "gateway" and not m.startswith(allowed_here)}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_loading_eval_pulls_in_neither_the_web_framework_nor_torch() -> None:
    code = ("import sys, gateway.eval.command, gateway.eval.runner, gateway.eval.report;"
            "bad = [m for m in ('fastapi', 'torch', 'gateway.app', 'matplotlib') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
