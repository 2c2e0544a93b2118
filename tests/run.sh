#!/usr/bin/env bash
# Install everything the test suite needs into ./.venv, then run the whole suite.
# Usage: bash tests/run.sh [pytest args...]      (the README's test command)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${EMBED_GATEWAY_TEST_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first and pinned: 2.13.0 has a CPU build; an open range would pull a multi-GB CUDA build.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[hf,test]"
# Milvus Lite 3.x (the venv's, what Mem0 runs on) has no BINARY_VECTOR type; the binary-embedding
# round trip (tests/gateway/test_milvus_binary.py) runs Milvus Lite 2.5 from this side directory,
# which only that test puts on PYTHONPATH. setuptools < 80 provides the pkg_resources it imports.
MILVUS_LITE_25="$VENV/milvus-lite-2.5"
if [ ! -f "$MILVUS_LITE_25/.installed" ]; then
  "$VENV/bin/python" -m pip install -q --no-deps --target "$MILVUS_LITE_25" "milvus-lite==2.5.1" "setuptools<80"
  touch "$MILVUS_LITE_25/.installed"
fi

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" -m pytest "$@"
