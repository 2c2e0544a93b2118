"""Engine that serves text-matching through a vLLM OpenAI-compatible server (see docs/engines.md).

vLLM merges only jina-embeddings-v3's text-matching adapter at load, so this engine declares that
task alone. It needs only httpx: a gateway that fronts vLLM installs without torch.
"""

from engine_vllm.engine import VLLMEngine

__all__ = ["VLLMEngine"]
