"""The batching policy, as a pure function: which queued sequences form the next forward pass.

Rules, in order:

1. The oldest queued sequence is always in the next batch (progress, and no starvation: a long
   input cannot be overtaken forever by a stream of short ones).
2. Other sequences join by closeness of length to it (least padding first), only from the same
   group (the task, when adapters are pre-merged and a batch must be single-task).
3. The batch stops growing when its cost would exceed ``max_batch_tokens`` — the padded size
   ``len(batch) * max(length)`` when sequences are padded, the plain sum of lengths when they are
   packed — when it holds ``max_batch_requests`` sequences, or (padded only) when padding would
   exceed ``max_padding`` of the padded tokens.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["GATHER_SHARE", "BatchLimits", "Queued", "next_batch", "padded_tokens", "worth_gathering"]


@dataclass(frozen=True, slots=True)
class Queued:
    length: int
    group: Hashable = None


@dataclass(frozen=True, slots=True)
class BatchLimits:
    max_batch_tokens: int = 16384
    max_batch_requests: int = 64
    max_padding: float = 0.25
    #: how many queued sequences one decision looks at (bounds the scheduler's own cost)
    scan: int = 4096
    #: sequences are padded to the longest (else packed: no padding, cost = real tokens)
    padded: bool = True


def padded_tokens(lengths: Sequence[int]) -> int:
    return len(lengths) * max(lengths, default=0)


def next_batch(pending: Sequence[Queued], limits: BatchLimits) -> list[int]:
    """Indices into ``pending`` (arrival order) of the next batch; empty only if ``pending`` is."""
    if not pending:
        return []
    anchor = pending[0]
    chosen = [0]
    longest = real = anchor.length
    candidates = sorted(
        (i for i in range(1, min(len(pending), limits.scan)) if pending[i].group == anchor.group),
        key=lambda i: (abs(pending[i].length - anchor.length), i),
    )
    for i in candidates:
        if len(chosen) >= limits.max_batch_requests:
            break
        length = pending[i].length
        new_longest = max(longest, length)
        if limits.padded:
            cost = (len(chosen) + 1) * new_longest
            if cost > limits.max_batch_tokens or (real + length) < (1.0 - limits.max_padding) * cost:
                continue
        elif real + length > limits.max_batch_tokens:
            continue
        chosen.append(i)
        longest, real = new_longest, real + length
    chosen.sort()
    return chosen


def worth_gathering(
    queued_tokens: int, queued_sequences: int, arriving: int, expected_sequences: int, limits: BatchLimits
) -> bool:
    """Whether a free engine should hold its next pass a moment for more work (the scheduler bounds
    the moment: :data:`GATHER_SHARE` of the last pass, at most ``batch_gather_ms``, from its end).

    ``expected_sequences``: what was queued when the last pass ended plus what that pass carried —
    the clients it just answered are likely sending their next requests. Worth waiting while the
    queue is short of a full pass and of that, or while requests the engine has accepted are still
    being tokenised (``arriving``). Without it, N clients in a closed loop (a bulk ingester, agents
    in a loop) settle into two groups whose passes alternate, each half full, and on a CPU a half
    pass costs much of a full one (every weight is read once per pass). A lone client's request
    never waits (the last pass carried it alone, and nothing else is arriving).
    """
    if queued_tokens >= limits.max_batch_tokens or queued_sequences >= limits.max_batch_requests:
        return False
    return arriving > 0 or queued_sequences < expected_sequences


#: the longest hold, as a share of the last pass's duration (a hold costs at most this much throughput)
GATHER_SHARE = 0.1
