"""The cache key: a fingerprint of everything that can change an engine's vectors. Pure.

A key is the SHA-256 of an unambiguous serialisation (a JSON array) of:

* ``KEY_VERSION`` — bumped whenever the entry format or the meaning of a field changes;
* the engine's numeric identity (:attr:`gateway.contract.EngineCapabilities.identity`: engine kind,
  checkpoint revision or content hash, adapters, dtype, device kind, attention kernel, input and
  late-chunking limits) — so a changed checkpoint or dtype never meets an old entry, and two
  engines never share entries even when the parity guard passes them (docs/cache.md says why);
* the task (its LoRA adapter and its instruction: the instruction is a function of checkpoint and
  task, so "task + exact text" determines "instruction + text");
* ``truncate`` and, when truncating, its direction (a truncated input is a different token sequence);
* the input, exactly: the text as sent (no normalisation of whitespace or case), or token ids
  (their own kind, so ids never collide with a text);
* late chunking: the whole document — every chunk in order (each chunk's vector depends on all
  of them), or the document and the chunking rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from gateway.contract import ChunkingRule, Task, TokenIds, route_key

__all__ = ["KEY_VERSION", "KeyScope", "chunked_key", "input_key", "late_key"]

#: part of every key: a new entry format or key meaning starts a fresh keyspace
KEY_VERSION = 2


@dataclass(frozen=True, slots=True)
class KeyScope:
    """What every key of one job shares: who computes, with which adapter, truncated or not."""

    identity: str
    task: Task | None
    truncate: bool
    #: with ``truncate``, which end of an over-long input is dropped (TEI's ``truncation_direction``)
    direction: str = "right"

    def _digest(self, kind: str, payload: object) -> str:
        cut = self.direction if self.truncate else None
        blob = orjson.dumps([KEY_VERSION, self.identity, route_key(self.task), self.truncate, cut, kind, payload])
        return hashlib.sha256(blob).hexdigest()


def input_key(scope: KeyScope, item: str | TokenIds) -> str:
    """One input of a plain job (its own vector)."""
    if isinstance(item, str):
        return scope._digest("text", item)
    return scope._digest("ids", list(item))


def late_key(scope: KeyScope, chunks: Sequence[str | TokenIds]) -> str:
    """A late-chunking job given as its chunks: one entry for the whole document."""
    return scope._digest("late", [c if isinstance(c, str) else list(c) for c in chunks])


def chunked_key(scope: KeyScope, rule: ChunkingRule, document: str) -> str:
    """A late-chunking job with a chunking rule: the document and how it is cut."""
    return scope._digest("chunked", [rule.kind, rule.size, rule.overlap, document])
