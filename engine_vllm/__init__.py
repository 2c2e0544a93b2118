"""Engine that forwards text-matching to a vLLM server (see docs/deployment.md)."""
