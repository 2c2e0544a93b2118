"""An independent, obviously-correct fp32 reference of jina-embeddings-v3's ``encode()``.

Written from ../shared/jina-v3-facts.md alone, on purpose without anything from engine_hf:
it reads the ORIGINAL layout's safetensors itself, merges ``W + 0.25 * B @ A`` per task, and runs
one text at a time (no batching, no padding) through plain tensor arithmetic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]


class Reference:
    def __init__(self, original_dir: Path) -> None:
        self.config = json.loads((original_dir / "config.json").read_text())
        self.raw = {k: v.float() for k, v in load_file(str(original_dir / "model.safetensors")).items()}
        self.tokenizer = AutoTokenizer.from_pretrained(str(original_dir))
        self.alpha_over_rank = self.config["lora_alpha"] / self.config["lora_rank"]
        self._merged: dict[int, dict[str, torch.Tensor]] = {}

    # weights ---------------------------------------------------------------------------------

    def weight(self, name: str, task: int) -> torch.Tensor:
        """``name`` without the ``roberta.`` prefix, e.g. ``encoder.layers.0.mixer.Wqkv``."""
        cache = self._merged.setdefault(task, {})
        if name not in cache:
            p = f"roberta.{name}.parametrizations.weight"
            w = self.raw[f"{p}.original"]
            if task >= 0:
                a, b = self.raw[f"{p}.0.lora_A"][task], self.raw[f"{p}.0.lora_B"][task]
                if "embeddings" in name:
                    w = w + self.alpha_over_rank * (a @ b)  # A [V, r] @ B [r, d]
                else:
                    w = w + self.alpha_over_rank * (b @ a)  # B [out, r] @ A [r, in]
            cache[name] = w
        return cache[name]

    def p(self, name: str) -> torch.Tensor:
        return self.raw[f"roberta.{name}"]

    # forward ---------------------------------------------------------------------------------

    def token_ids(self, text: str, task: str | None, max_length: int = 8192) -> list[int]:
        instr = (self.config.get("task_instructions") or {}).get(task or "", "") or ""
        return self.tokenizer(instr + text, truncation=True, max_length=max_length)["input_ids"]

    def hidden(self, ids: list[int], task: str | None) -> torch.Tensor:
        t = TASKS.index(task) if task else -1
        cfg = self.config
        eps = cfg["layer_norm_eps"]
        n_heads = cfg["num_attention_heads"]
        d = cfg["hidden_size"]
        hd = d // n_heads
        ids_t = torch.tensor(ids)
        x = self.weight("embeddings.word_embeddings", t)[ids_t] + self.weight("embeddings.token_type_embeddings", t)[0]
        x = torch.nn.functional.layer_norm(x, (d,), self.p("emb_ln.weight"), self.p("emb_ln.bias"), eps)
        L = len(ids)
        base = cfg.get("rotary_emb_base", 10000.0)
        inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        angles = torch.arange(L, dtype=torch.float32)[:, None] * inv_freq[None, :]
        cos = torch.cat([angles.cos(), angles.cos()], dim=-1)
        sin = torch.cat([angles.sin(), angles.sin()], dim=-1)

        def rope(v: torch.Tensor) -> torch.Tensor:  # v [heads, L, hd]; rotate_half, not interleaved
            v1, v2 = v[..., : hd // 2], v[..., hd // 2 :]
            return v * cos + torch.cat([-v2, v1], dim=-1) * sin

        for i in range(cfg["num_hidden_layers"]):
            pre = f"encoder.layers.{i}"
            qkv = x @ self.weight(f"{pre}.mixer.Wqkv", t).T + self.p(f"{pre}.mixer.Wqkv.bias")
            q, k, v = qkv.split(d, dim=-1)  # rows ordered [Q; K; V]
            q, k, v = (z.reshape(L, n_heads, hd).transpose(0, 1) for z in (q, k, v))
            q, k = rope(q), rope(k)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
            o = (att @ v).transpose(0, 1).reshape(L, d)
            o = o @ self.weight(f"{pre}.mixer.out_proj", t).T + self.p(f"{pre}.mixer.out_proj.bias")
            x = torch.nn.functional.layer_norm(x + o, (d,), self.p(f"{pre}.norm1.weight"), self.p(f"{pre}.norm1.bias"), eps)
            h = x @ self.weight(f"{pre}.mlp.fc1", t).T + self.p(f"{pre}.mlp.fc1.bias")
            h = torch.nn.functional.gelu(h)  # exact erf GELU
            h = h @ self.weight(f"{pre}.mlp.fc2", t).T + self.p(f"{pre}.mlp.fc2.bias")
            x = torch.nn.functional.layer_norm(x + h, (d,), self.p(f"{pre}.norm2.weight"), self.p(f"{pre}.norm2.bias"), eps)
        return x

    @torch.no_grad()
    def pooled(self, text: str, task: str | None) -> np.ndarray:
        return self.hidden(self.token_ids(text, task), task).mean(dim=0).numpy()

    def encode(self, texts: list[str], task: str | None, dimensions: int | None = None, normalize: bool = True) -> np.ndarray:
        out = np.stack([self.pooled(t, task) for t in texts])
        if dimensions is not None:
            out = out[:, :dimensions]  # Matryoshka truncation first ...
        if normalize:
            out = out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)  # ... then L2
        return out.astype(np.float32)


def _pooled_ids(self: Reference, ids: list[int], task: str | None) -> np.ndarray:
    with torch.no_grad():
        return self.hidden(ids, task).mean(dim=0).numpy()


Reference.pooled_ids = _pooled_ids  # type: ignore[attr-defined]
