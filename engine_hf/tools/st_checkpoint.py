"""Random-weight sentence-transformers checkpoints, written by sentence-transformers' own ``save()``.

Tests, benchmarks and other tools need checkpoints in the format real embedding models ship in,
without a model hub: a tiny random ``transformers`` model (BERT or XLM-RoBERTa) with an offline-built
tokenizer, wrapped in ``SentenceTransformer(modules=[Transformer, Pooling, (Dense), (Normalize)])``
and saved with ``.save(dir)`` (so the files are exactly what sentence-transformers writes).
sentence-transformers is needed to WRITE them (a test dependency), never to serve them.

    python -m engine_hf.tools.st_checkpoint OUT [--arch bert|xlm-roberta] [--size tiny|e5-small]
        [--pooling mean] [--dense 32] [--no-normalize] [--prompts e5] [--no-include-prompt]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from engine_hf.tools.synthetic import build_tokenizer, corpus

__all__ = ["E5_PROMPTS", "SIZES", "StShape", "build_wordpiece", "write_st_checkpoint"]

Arch = Literal["bert", "xlm-roberta"]

#: the prompts multilingual-e5 documents ("query: " / "passage: ")
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}


@dataclass(frozen=True)
class StShape:
    arch: Arch
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    #: what the tokenizer is: a WordPiece vocabulary (BERT's) or a Unigram one shaped like XLM-R's
    tokenizer: Literal["wordpiece", "unigram"]
    tokenizer_vocab: int = 1200
    #: the model's vocabulary; None = the tokenizer's size
    vocab_size: int | None = None
    max_seq_length: int = 64
    #: weight init std: bigger than BERT's 0.02 for tiny models, so a random model's outputs depend
    #: on positions and attention (errors there show in the vectors)
    initializer_range: float = 0.2


#: head_dim 32 so vLLM's CPU attention can serve them too
SIZES: dict[str, StShape] = {
    "tiny": StShape("bert", 64, 2, 2, 128, "wordpiece"),
    "tiny-xlm-roberta": StShape("xlm-roberta", 64, 2, 2, 128, "unigram"),
    #: intfloat/multilingual-e5-small's shape: a BERT encoder over an XLM-R (SentencePiece) vocabulary
    "e5-small": StShape(
        "bert", 384, 12, 12, 1536, "unigram", tokenizer_vocab=8000, vocab_size=250037, max_seq_length=512,
        initializer_range=0.02,
    ),
}

_WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_wordpiece(vocab_size: int = 1200, seed: int = 0) -> Tokenizer:
    """A BERT-style WordPiece tokenizer trained on the synthetic multilingual corpus (offline)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=_WORDPIECE_SPECIALS, show_progress=False)
    tok.train_from_iterator(corpus(seed=seed) + ["query: passage: document:"], trainer=trainer)
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]")))
    return tok


def _write_tokenizer(shape: StShape, out: Path, seed: int) -> int:
    """Tokenizer files transformers' ``AutoTokenizer`` loads; returns the vocabulary size."""
    if shape.tokenizer == "wordpiece":
        from transformers import BertTokenizerFast

        vocab = build_wordpiece(shape.tokenizer_vocab, seed=seed).get_vocab()
        BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=shape.max_seq_length).save_pretrained(str(out))
        return len(vocab)
    uni = build_tokenizer(shape.tokenizer_vocab, seed=seed)
    uni.save(str(out / "tokenizer.json"))
    specials = {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
        "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>",
    }
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": shape.max_seq_length, **specials}, indent=2
    ))
    return uni.get_vocab_size()


def _model(shape: StShape, vocab: int, seed: int):  # type: ignore[no-untyped-def]
    import torch
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    common = dict(
        vocab_size=shape.vocab_size or vocab,
        hidden_size=shape.hidden_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        intermediate_size=shape.intermediate_size,
        initializer_range=shape.initializer_range,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if shape.arch == "bert":
            return BertModel(BertConfig(**common, max_position_embeddings=shape.max_seq_length, pad_token_id=0))
        # XLM-R counts positions from padding_idx + 1
        return XLMRobertaModel(XLMRobertaConfig(
            **common, max_position_embeddings=shape.max_seq_length + 2, type_vocab_size=1,
            pad_token_id=1, bos_token_id=0, eos_token_id=2,
        ))


def write_st_checkpoint(
    out: Path,
    *,
    size: str = "tiny",
    arch: Arch | None = None,
    pooling: str | tuple[str, ...] = "mean",
    include_prompt: bool = True,
    dense: int | None = None,
    dense_activation: Literal["tanh", "identity"] = "tanh",
    dense_bias: bool = True,
    normalize: bool = True,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    max_seq_length: int | None = None,
    seed: int = 0,
) -> Path:
    """Write a random-weight checkpoint to ``out`` with ``SentenceTransformer(modules=...).save``.

    ``size``: a key of :data:`SIZES`; ``arch`` switches the encoder (``xlm-roberta`` also takes
    the Unigram tokenizer). ``dense``: a Dense layer to that many features after pooling."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    shape = SIZES[size]
    if arch is not None and arch != shape.arch:
        shape = replace(shape, arch=arch, tokenizer="unigram" if arch == "xlm-roberta" else shape.tokenizer)
    if max_seq_length is not None:
        shape = replace(shape, max_seq_length=max_seq_length)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="st-src-") as tmp:
        src = Path(tmp)
        vocab = _write_tokenizer(shape, src, seed)
        _model(shape, vocab, seed).save_pretrained(str(src))
        modules: list[torch.nn.Module] = [
            Transformer(str(src), max_seq_length=shape.max_seq_length),
            Pooling(shape.hidden_size, pooling_mode=pooling, include_prompt=include_prompt),
        ]
        width = modules[1].get_embedding_dimension()  # type: ignore[operator]
        if dense is not None:
            activation = torch.nn.Tanh() if dense_activation == "tanh" else torch.nn.Identity()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 1)
                modules.append(Dense(width, dense, bias=dense_bias, activation_function=activation))
        if normalize:
            modules.append(Normalize())
        model = SentenceTransformer(
            modules=modules, prompts=prompts, default_prompt_name=default_prompt_name, device="cpu"
        )
        model.save(str(out))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--arch", choices=["bert", "xlm-roberta"], default=None)
    parser.add_argument("--pooling", default="mean", help="a mode, or several joined by '+' (concatenated)")
    parser.add_argument("--no-include-prompt", action="store_true", help="pool without the prompt's tokens")
    parser.add_argument("--dense", type=int, default=None, help="add a Dense layer to this many features")
    parser.add_argument("--dense-activation", choices=["tanh", "identity"], default="tanh")
    parser.add_argument("--no-normalize", action="store_true")
    parser.add_argument("--prompts", choices=["none", "e5"], default="none")
    parser.add_argument("--default-prompt-name", default=None)
    parser.add_argument("--max-seq-length", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    modes = tuple(args.pooling.split("+"))
    path = write_st_checkpoint(
        args.out, size=args.size, arch=args.arch, pooling=modes[0] if len(modes) == 1 else modes,
        include_prompt=not args.no_include_prompt, dense=args.dense, dense_activation=args.dense_activation,
        normalize=not args.no_normalize, prompts=E5_PROMPTS if args.prompts == "e5" else None,
        default_prompt_name=args.default_prompt_name, max_seq_length=args.max_seq_length, seed=args.seed,
    )
    print(path)


if __name__ == "__main__":
    main()
