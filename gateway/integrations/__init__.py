"""Adapters that plug the gateway into other libraries (Mem0). Light: no torch, no FastAPI."""

__all__: list[str] = []
