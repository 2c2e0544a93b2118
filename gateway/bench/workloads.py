"""Reproducible workloads: lists of requests (texts, task) with target token lengths.

Texts are drawn from a fixed multilingual word list with a seeded RNG and grown word by word until
the model's own tokenizer says they have the target number of tokens (``<s>``/``</s>`` included,
instruction excluded), so every target sees the same token counts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["WORKLOADS", "BenchRequest", "Workload", "make_workload", "text_of_length"]

_WORDS = (
    "memory user likes coffee morning evening works company lives city prefers dark mode meeting "
    "project deadline friday weekend travel paris tokyo book reading music jazz piano dog cat walks "
    "park allergic peanuts vegetarian birthday march doctor appointment database server embedding "
    "vector search query document retrieval model language multilingual semantic similarity gateway "
    "Benutzer Kaffee arbeitet Stadt Projekt utilisateur café travaille ville usuario prefiere ciudad "
    "người dùng thích cà phê làm việc thành phố 用户 喜欢 咖啡 工作 城市 пользователь любит кофе"
).split()

TASKS = ("retrieval.query", "retrieval.passage", "separation", "classification", "text-matching")


@dataclass(frozen=True, slots=True)
class BenchRequest:
    texts: tuple[str, ...]
    task: str
    #: tokens of each text as the tokenizer counts them (specials included, instruction not)
    tokens: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    description: str
    lengths: tuple[int, int]
    texts_per_request: tuple[int, int]
    tasks: tuple[str, ...]


WORKLOADS: dict[str, Workload] = {
    "facts": Workload("facts", "Mem0-like facts, 10-40 tokens, text-matching, 1 per request", (10, 40), (1, 1), ("text-matching",)),
    "passages": Workload("passages", "RAG passages, 150-500 tokens, retrieval.passage, 4 per request", (150, 500), (4, 4), ("retrieval.passage",)),
    "mixed": Workload("mixed", "all five tasks interleaved, 10-500 tokens, 1-4 per request", (10, 500), (1, 4), TASKS),
    "long": Workload("long", "long documents, 2k-8k tokens, retrieval.passage, 1 per request", (2000, 8000), (1, 1), ("retrieval.passage",)),
}


def text_of_length(rng: random.Random, target: int, count_tokens: Callable[[str], int]) -> tuple[str, int]:
    words: list[str] = []
    n = count_tokens("")
    while n < target:
        # grow in steps proportional to the remaining gap, then finish word by word
        step = max(1, (target - n) // 3)
        words.extend(rng.choice(_WORDS) for _ in range(step))
        n = count_tokens(" ".join(words))
    while n > target and len(words) > 1:
        words.pop()
        n = count_tokens(" ".join(words))
    return " ".join(words), n


def make_workload(
    name: str, n_requests: int, count_tokens: Callable[[str], int], *, seed: int = 0
) -> list[BenchRequest]:
    """``n_requests`` requests of workload ``name``; same seed and tokenizer → same requests."""
    w = WORKLOADS[name]
    rng = random.Random(f"{name}:{seed}")
    out = []
    for i in range(n_requests):
        k = rng.randint(*w.texts_per_request)
        texts, tokens = [], []
        for _ in range(k):
            text, n = text_of_length(rng, rng.randint(*w.lengths), count_tokens)
            texts.append(text)
            tokens.append(n)
        out.append(BenchRequest(tuple(texts), w.tasks[i % len(w.tasks)], tuple(tokens)))
    return out
