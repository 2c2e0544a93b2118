"""A random-weight BGE-M3 checkpoint in the published repo's layout (``BAAI/bge-m3``).

Why random weights: no model hub is reachable in CI, and what the engine must get right (the CLS
row, the lexical weights, the ColBERT rows, padding, truncation) does not depend on trained values.
The layout is the one FlagEmbedding reads and writes:

* ``config.json`` + ``model.safetensors``: the XLM-RoBERTa encoder, written by transformers'
  ``XLMRobertaModel.save_pretrained`` (pooler included, as the published weights have it);
* ``sparse_linear.pt`` (``Linear(hidden -> 1)``) and ``colbert_linear.pt``
  (``Linear(hidden -> hidden)``): ``torch.save`` of each layer's ``state_dict``, exactly as
  FlagEmbedding's ``EncoderOnlyEmbedderM3Model.save`` writes them (it loads them back with
  ``torch.load(..., weights_only=True)``);
* the tokenizer files, built offline (:func:`engine_hf.tools.synthetic.build_tokenizer`: XLM-R's
  shape, ids 0-3 = ``<s> <pad> </s> <unk>``).

Weights are drawn so that every sub-layer matters (linear std ``1/sqrt(fan_in)``, sharper
query/key rows) and the sparse head's ReLU zeroes about half of the tokens: a test then sees both
kept and dropped lexical weights. Command line::

    python -m engine_hf.tools.bge_m3_checkpoint OUT [--size tiny|full] [--seed N] [--dtype float32]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from engine_hf.tools.synthetic import FULL, TINY, Shape, build_tokenizer, write_tokenizer

__all__ = ["COLBERT_FILE", "SIZES", "SPARSE_FILE", "main", "write_bge_m3_checkpoint"]

#: the two heads' file names in the published repo
SPARSE_FILE = "sparse_linear.pt"
COLBERT_FILE = "colbert_linear.pt"
#: ``tiny``: hidden 64, 2 heads, 2 layers (tests); ``full``: the real architecture, 24 layers,
#: 1024 hidden, 16 heads, 250002 ids (~568M parameters; benchmarks and memory figures)
SIZES: dict[str, Shape] = {"tiny": TINY, "full": FULL}
#: the published config's positions: 8192 tokens + XLM-R's offset of ``pad_token_id + 1``
MAX_POSITIONS = 8194


def write_bge_m3_checkpoint(
    out: Path, shape: Shape = TINY, *, seed: int = 0, dtype: torch.dtype = torch.float32, qk_gain: float = 2.0
) -> Path:
    """Write a random BGE-M3 checkpoint under ``out`` (created) and return ``out``."""
    from transformers import XLMRobertaConfig, XLMRobertaModel

    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(shape.tokenizer_vocab, seed=seed)
    vocab = shape.vocab_size or tok.get_vocab_size()
    config = XLMRobertaConfig(
        vocab_size=vocab,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        intermediate_size=shape.intermediate_size,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        max_position_embeddings=MAX_POSITIONS,
        type_vocab_size=1,
        layer_norm_eps=1e-5,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        architectures=["XLMRobertaModel"],
    )
    g = torch.Generator().manual_seed(seed)
    model = XLMRobertaModel(config)
    sparse = nn.Linear(shape.hidden_size, 1)
    colbert = nn.Linear(shape.hidden_size, shape.hidden_size)
    with torch.no_grad():
        _randomise(model, g, qk_gain=qk_gain)
        _randomise(sparse, g)
        sparse.bias.fill_(0.3)  # logits ~ N(0.3, 1): about 60 % of the tokens get a weight, the rest 0
        _randomise(colbert, g)
    model.to(dtype).save_pretrained(out)
    for head, name in ((sparse, SPARSE_FILE), (colbert, COLBERT_FILE)):
        # as FlagEmbedding saves them: the state_dict, tensors cloned to the CPU
        state = {k: v.to(dtype).clone().cpu() for k, v in head.state_dict().items()}
        torch.save(state, out / name)
    write_tokenizer(tok, out, model_max_length=MAX_POSITIONS - 2)
    return out


def _randomise(module: nn.Module, g: torch.Generator, *, qk_gain: float = 1.0, bias_std: float = 0.1) -> None:
    """Strong random weights: linear ``std = 1/sqrt(fan_in)`` (query/key ``qk_gain`` times that, so
    attention is far from uniform and positions matter), embeddings ``std 0.5``, LayerNorm ``1 +- 0.1``."""
    for name, p in module.named_parameters():
        if name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=g) * (0.1 if "LayerNorm" in name else bias_std))
        elif "LayerNorm" in name:
            p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.1)
        elif "embeddings" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        else:
            gain = qk_gain if name.endswith(("query.weight", "key.weight")) else 1.0
            p.copy_(torch.randn(p.shape, generator=g) * (gain / p.shape[1] ** 0.5))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a random-weight BGE-M3 checkpoint in the published layout.")
    parser.add_argument("out", type=Path, help="directory to write (created)")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    args = parser.parse_args(argv)
    path = write_bge_m3_checkpoint(args.out, SIZES[args.size], seed=args.seed, dtype=getattr(torch, args.dtype))
    print(path)


if __name__ == "__main__":
    main()
