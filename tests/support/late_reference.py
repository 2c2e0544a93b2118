"""Late chunking written from the published algorithm (arXiv 2409.04701, jina-v3 facts), on the
independent fp32 reference's token states — nothing from engine_hf.

* Chunk spans by **incremental tokenisation**: the tokens of ``instruction + " ".join(chunks[:i+1])``
  end chunk ``i`` (XLM-R splits words at whitespace, so a prefix of the document tokenises to a
  prefix of its tokens — asserted, not assumed). The first span starts at ``<s>``, the last ends
  after ``</s>``.
* Token states: one pass, or windows of ``window`` tokens with stride ``window - overlap``, the first
  ``overlap`` outputs of every later window dropped, concatenated.
* Chunk vector: the plain mean of the token states over its span.
* :func:`rule_reference`: the chunk-embeddings rules (sentences, token ranges) from transformers'
  offset mapping, for a document embedded as sent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gateway.contract import ChunkingRule
from gateway.contract.chunking import group_sentences, split_sentences, token_chunks
from tests.support.reference import Reference


def instruction(ref: Reference, task: str | None) -> str:
    return (ref.config.get("task_instructions") or {}).get(task or "", "") or ""


def content_ids(ref: Reference, text: str) -> list[int]:
    return list(ref.tokenizer(text, add_special_tokens=False)["input_ids"])


def document_ids(ref: Reference, chunks: Sequence[str], task: str | None) -> list[int]:
    bos, eos = ref.config.get("bos_token_id", 0), ref.config.get("eos_token_id", 2)
    return [bos, *content_ids(ref, instruction(ref, task) + " ".join(chunks)), eos]


def chunk_spans(ref: Reference, chunks: Sequence[str], task: str | None) -> list[tuple[int, int]]:
    prefix = instruction(ref, task)
    full = content_ids(ref, prefix + " ".join(chunks))
    ends = []
    for i in range(len(chunks)):
        part = content_ids(ref, prefix + " ".join(chunks[: i + 1]))
        assert full[: len(part)] == part, "tokenisation of a document prefix is not a prefix of its tokens"
        ends.append(1 + len(part))
    starts = [0, *ends[:-1]]
    ends[-1] = len(full) + 2
    return list(zip(starts, ends, strict=True))


@torch.no_grad()
def token_states(ref: Reference, ids: Sequence[int], task: str | None, window: int | None = None, overlap: int = 0) -> torch.Tensor:
    ids = list(ids)
    if window is None or len(ids) <= window:
        return ref.hidden(ids, task)
    parts, start = [], 0
    while True:
        end = min(start + window, len(ids))
        h = ref.hidden(ids[start:end], task)
        parts.append(h if start == 0 else h[overlap:])
        if end == len(ids):
            break
        start += window - overlap
    out = torch.cat(parts)
    assert len(out) == len(ids)
    return out


def pool_spans(states: torch.Tensor, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    return torch.stack([states[a:b].mean(dim=0) for a, b in spans]).numpy()


def late_chunk(
    ref: Reference, chunks: Sequence[str], task: str | None, window: int | None = None, overlap: int = 0
) -> np.ndarray:
    """Un-normalised fp32 chunk vectors, one per chunk."""
    states = token_states(ref, document_ids(ref, chunks, task), task, window, overlap)
    return pool_spans(states, chunk_spans(ref, chunks, task))


def offsets(ref: Reference, text: str) -> list[tuple[int, int]]:
    """Character ranges of the content tokens of ``text`` (transformers' offset mapping)."""
    return [tuple(o) for o in ref.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]  # type: ignore[misc]


def rule_reference(
    reference: Reference, text: str, task: str | None, rule: ChunkingRule, window: int | None = None, overlap: int = 0
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Chunk character ranges and vectors for ``rule``, from transformers' offset mapping."""
    prefix = instruction(reference, task)
    offs = offsets(reference, prefix + text)
    n = len(offs) + 2
    n_instr = sum(1 for a, _ in offs if a < len(prefix))
    if rule.kind == "sentences":
        ranges = group_sentences(split_sentences(text), rule.size)
        owner = []
        for a, _ in offs:
            inside = [j for j, (s, _) in enumerate(ranges) if len(prefix) + s <= a]
            owner.append(inside[-1] if inside else 0)
        spans = []
        for j in range(len(ranges)):
            idx = [k + 1 for k, o in enumerate(owner) if o == j]
            spans.append((idx[0], idx[-1] + 1))
    else:
        own = [(a - len(prefix), b - len(prefix)) for a, b in offs[n_instr:]]
        token_ranges = token_chunks(len(own), rule.size, rule.overlap)
        ranges = [(own[a][0], own[b - 1][1]) for a, b in token_ranges]
        spans = [(1 + n_instr + a, 1 + n_instr + b) for a, b in token_ranges]
    spans[0] = (0, spans[0][1])
    spans[-1] = (spans[-1][0], n)
    ids = [0, *reference.tokenizer(prefix + text, add_special_tokens=False)["input_ids"], 2]
    return ranges, pool_spans(token_states(reference, ids, task, window, overlap), spans)
