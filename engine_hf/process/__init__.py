"""An in-process kind's forward passes, in a process of their own.

The gateway's process keeps HTTP, JSON, routing, the cache, tokenising and batching; the passes'
process keeps the weights and runs each batch the scheduler hands it. Under load the gateway's
Python runs all through a pass (answers going out, requests coming in); in one process every op the
pass dispatches would wait for the interpreter lock meanwhile, in its own process it never does.
:class:`PassProcess` is the gateway's side (:mod:`~engine_hf.process.passes`),
:mod:`~engine_hf.process.child` the passes' side. Chosen per engine by ``own_process`` (on by
default; docs/engines.md).
"""

from __future__ import annotations

from engine_hf.process.passes import PassProcess

__all__ = ["PassProcess"]
