"""embed-gateway: an OpenAI-compatible gateway for jina-embeddings-v3.

Importing this package is cheap: it pulls in neither FastAPI nor torch. The HTTP app lives in
:mod:`gateway.app`, the engine contract in :mod:`gateway.contract`.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
