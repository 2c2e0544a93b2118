"""Servers the bench races that are not this gateway nor vLLM (``ort_server``: ONNX Runtime, as FastEmbed runs)."""
