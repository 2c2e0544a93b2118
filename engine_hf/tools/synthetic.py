"""Random-weight checkpoints in both published layouts, and a small XLM-R-style tokenizer.

Real weights cannot be downloaded everywhere (CI has no model hub), and speed does not depend on
weight values, so tests and benchmarks run on checkpoints written here:

* ``original`` layout exactly as ``jinaai/jina-embeddings-v3`` stores it (``roberta.*`` keys, LoRA
  as parametrizations stacked over the five tasks, fused ``Wqkv``), plus the sentence-transformers
  pooling files and a config class file that vLLM (and only vLLM) loads;
* ``hf`` layout as ``jinaai/jina-embeddings-v3-hf`` was made: written by transformers'
  ``JinaEmbeddingsV3Model.save_pretrained`` and PEFT's ``save_pretrained`` (one adapter per task in a
  subfolder), config with the original's extra keys, holding the SAME weights.

LoRA tensors get non-trivial random values (the published init has B = 0, which would hide every
adapter bug). ``embed-gateway make-checkpoint`` is the command-line entry.
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from engine_hf.checkpoint import DEFAULT_INSTRUCTIONS, HF_ADAPTER_DIRS
from gateway.contract import TASKS

__all__ = [
    "FULL", "HF_EXTRA_KEYS", "HF_TARGET_MODULES", "TINY", "Shape", "build_tokenizer", "make_state", "write_checkpoints",
    "write_tokenizer",
]

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]


@dataclass(frozen=True)
class Shape:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    #: model vocabulary; None = the tokenizer's size
    vocab_size: int | None = None
    tokenizer_vocab: int = 1200
    rank: int = 4


#: head_dim 32 so a real vLLM on CPU can serve it too
TINY = Shape(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
#: the real architecture (~570M parameters)
FULL = Shape(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    vocab_size=250002, tokenizer_vocab=8000,
)

# --------------------------------------------------------------------------- tokenizer

_WORDS = {
    "en": "the a memory user likes coffee tea morning evening works at company lives in city prefers "
          "dark mode meeting project deadline friday weekend travel paris tokyo book reading music "
          "jazz piano dog cat walks park allergic peanuts vegetarian birthday march doctor appointment "
          "password reset database server embedding vector search query document retrieval model "
          "language multilingual semantic similarity gateway request response fast exact".split(),
    "de": "der die das Benutzer mag Kaffee arbeitet wohnt Stadt bevorzugt Projekt Frist Wochenende "
          "Reise Buch Musik Hund Katze Spaziergang Arzt Termin Datenbank Suche Dokument".split(),
    "fr": "le la utilisateur aime café travaille habite ville préfère projet semaine voyage livre "
          "musique chien chat promenade médecin rendez-vous recherche document".split(),
    "es": "el la usuario prefiere café trabaja vive ciudad proyecto semana viaje libro música perro "
          "gato paseo médico cita búsqueda documento".split(),
    "vi": "người dùng thích cà phê làm việc sống thành phố dự án cuối tuần du lịch sách âm nhạc "
          "chó mèo đi dạo bác sĩ cuộc hẹn tìm kiếm tài liệu tiếng Việt".split(),
    "zh": list("用户喜欢咖啡工作住在城市项目周末旅行书音乐狗猫散步医生预约搜索文档语言模型向量"),
    "ja": list("ユーザーはコーヒーが好きです仕事都市週末旅行本音楽犬猫散歩医者予約検索文書"),
    "ru": "пользователь любит кофе работает живёт город проект выходные путешествие книга музыка "
          "собака кошка прогулка врач поиск документ".split(),
}


def corpus(n_sentences: int = 3000, seed: int = 0) -> list[str]:
    """Deterministic multilingual sentences, enough to train a small Unigram vocabulary."""
    rng = random.Random(seed)
    out = []
    langs = sorted(_WORDS)
    for i in range(n_sentences):
        words = _WORDS[langs[i % len(langs)]]
        joiner = "" if langs[i % len(langs)] in ("zh", "ja") else " "
        out.append(joiner.join(rng.choice(words) for _ in range(rng.randint(4, 14))) + rng.choice([".", "?", "!", ""]))
    out.extend(DEFAULT_INSTRUCTIONS.values())
    return out


def build_tokenizer(vocab_size: int = 1200, seed: int = 0) -> Tokenizer:
    """A Unigram tokenizer shaped like XLM-R's: Metaspace, ``<s> … </s>``, ids 0-3 special."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, unk_token="<unk>", show_progress=False
    )
    tok.train_from_iterator(corpus(seed=seed), trainer=trainer)
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, f"special token {t} must have id {i}"
    return tok


def write_tokenizer(tok: Tokenizer, out: Path, *, model_max_length: int = 8194) -> None:
    """The tokenizer files an XLM-R repo ships: ``tokenizer.json``, ``special_tokens_map.json``,
    ``tokenizer_config.json`` (what ``AutoTokenizer.from_pretrained`` reads)."""
    tok.save(str(out / "tokenizer.json"))
    specials = {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
        "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>",
    }
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    (out / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": model_max_length,
                    "clean_up_tokenization_spaces": True, **specials}, indent=2)
    )


# --------------------------------------------------------------------------- weights (original layout)


def make_state(
    shape: Shape, vocab_size: int, *, seed: int = 0, lora_strength: float = 0.3, qk_gain: float = 2.0
) -> dict[str, torch.Tensor]:
    """Random weights in the ORIGINAL layout's keys and shapes (fp32).

    Linear weights are drawn with std ``1/sqrt(fan_in)`` so every sub-layer contributes to the
    residual stream at full strength, and query/key rows get ``qk_gain`` more so attention is far
    from uniform: with tiny weights a random model ignores positions, and RoPE or masking errors
    would not show in its outputs. Each task's LoRA update ``s * B @ A`` is about
    ``lora_strength`` of the weight it adapts.
    """
    g = torch.Generator().manual_seed(seed)
    h, inter, n_tasks, r = shape.hidden_size, shape.intermediate_size, len(TASKS), shape.rank
    emb_std = 0.5

    def rnd(*size: int, std: float) -> torch.Tensor:
        return torch.randn(*size, generator=g) * std

    def ln(prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1.0 + rnd(h, std=0.1), f"{prefix}.bias": rnd(h, std=0.1)}

    def linear(prefix: str, fan_out: int, fan_in: int, gain: float = 1.0) -> dict[str, torch.Tensor]:
        p = f"{prefix}.parametrizations.weight"
        w_std = gain / fan_in**0.5
        # element std of 0.25 * B @ A is 0.25 * sqrt(r) * std_A * std_B
        a_std = 1.0 / fan_in**0.5
        b_std = lora_strength * w_std / (0.25 * r**0.5 * a_std)
        return {
            f"{p}.original": rnd(fan_out, fan_in, std=w_std),
            f"{p}.0.lora_A": rnd(n_tasks, r, fan_in, std=a_std),
            f"{p}.0.lora_B": rnd(n_tasks, fan_out, r, std=b_std),
            f"{prefix}.bias": rnd(fan_out, std=0.1),
        }

    def embedding(prefix: str, rows: int) -> dict[str, torch.Tensor]:
        p = f"{prefix}.parametrizations.weight"
        a_std = 0.5
        b_std = lora_strength * emb_std / (0.25 * r**0.5 * a_std)
        return {
            f"{p}.original": rnd(rows, h, std=emb_std),
            f"{p}.0.lora_A": rnd(n_tasks, rows, r, std=a_std),
            f"{p}.0.lora_B": rnd(n_tasks, r, h, std=b_std),
        }

    state: dict[str, torch.Tensor] = {}
    state |= embedding("roberta.embeddings.word_embeddings", vocab_size)
    state |= embedding("roberta.embeddings.token_type_embeddings", 1)
    state |= ln("roberta.emb_ln")
    for i in range(shape.num_hidden_layers):
        p = f"roberta.encoder.layers.{i}"
        state |= linear(f"{p}.mixer.Wqkv", 3 * h, h)
        wqkv = state[f"{p}.mixer.Wqkv.parametrizations.weight.original"]
        wqkv[: 2 * h] *= qk_gain  # Q and K rows
        state |= linear(f"{p}.mixer.out_proj", h, h)
        state |= linear(f"{p}.mlp.fc1", inter, h)
        state |= linear(f"{p}.mlp.fc2", h, inter)
        state |= ln(f"{p}.norm1")
        state |= ln(f"{p}.norm2")
    state |= linear("roberta.pooler.dense", h, h)
    return state


def _architecture(shape: Shape, vocab_size: int) -> dict[str, object]:
    """The XLM-R fields both layouts' config.json share."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": shape.hidden_size,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_attention_heads": shape.num_attention_heads,
        "intermediate_size": shape.intermediate_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "layer_norm_eps": 1e-5,
        "max_position_embeddings": 8194,
        "type_vocab_size": 1,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }


def _original_config(shape: Shape, vocab_size: int, rotary_base: float, dtype: str) -> dict[str, object]:
    return {
        "architectures": ["XLMRobertaModel"],
        "auto_map": {"AutoConfig": "configuration_xlm_roberta.XLMRobertaFlashConfig"},
        "model_type": "xlm-roberta",
        "position_embedding_type": "rotary",
        "rotary_emb_base": rotary_base,
        **_architecture(shape, vocab_size),
        "lora_adaptations": [t.value for t in TASKS],
        "lora_rank": shape.rank,
        "lora_alpha": 1,
        "lora_dropout_p": 0.0,
        "lora_main_params_trainable": False,
        "task_instructions": {t.value: DEFAULT_INSTRUCTIONS.get(t, "") for t in TASKS},
        "matryoshka_dimensions": [d for d in (32, 64, 128, 256, 512, 768, 1024) if d <= shape.hidden_size],
        "truncate_dim": None,
        "use_flash_attn": False,
        "torch_dtype": dtype,
    }


# A config class for vLLM's JinaRobertaModel, which checks the class name. Written as text into the
# checkpoint; embed-gateway itself never imports it (trust_remote_code stays off).
_VLLM_CONFIG_CLASS = '''\
from transformers import PretrainedConfig


class XLMRobertaFlashConfig(PretrainedConfig):
    model_type = "xlm-roberta"

    def __init__(self, vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                 intermediate_size=4096, hidden_act="gelu", hidden_dropout_prob=0.1,
                 attention_probs_dropout_prob=0.1, max_position_embeddings=8194, type_vocab_size=1,
                 initializer_range=0.02, layer_norm_eps=1e-05, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                 position_embedding_type="rotary", rotary_emb_base=10000.0, use_cache=True,
                 classifier_dropout=None, lora_adaptations=None, task_instructions=None, lora_rank=4,
                 lora_dropout_p=0.0, lora_alpha=1, lora_main_params_trainable=False, load_trained_adapters=False,
                 use_flash_attn=True, torch_dtype=None, emb_pooler=None, matryoshka_dimensions=None,
                 truncate_dim=None, **kwargs):
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.max_position_embeddings = max_position_embeddings
        self.type_vocab_size = type_vocab_size
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.position_embedding_type = position_embedding_type
        self.rotary_emb_base = rotary_emb_base
        self.use_cache = use_cache
        self.classifier_dropout = classifier_dropout
        self.lora_adaptations = lora_adaptations
        self.task_instructions = task_instructions
        self.lora_rank = lora_rank
        self.lora_dropout_p = lora_dropout_p
        self.lora_alpha = lora_alpha
        self.lora_main_params_trainable = lora_main_params_trainable
        self.load_trained_adapters = load_trained_adapters
        self.use_flash_attn = use_flash_attn
        self.emb_pooler = emb_pooler
        self.matryoshka_dimensions = matryoshka_dimensions
        self.truncate_dim = truncate_dim
        if torch_dtype is not None:
            self.torch_dtype = torch_dtype
'''


def _write_sentence_transformers(out: Path, *, normalize: bool = True) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (out / "modules.json").write_text(json.dumps(modules, indent=2))
    (out / "1_Pooling").mkdir(exist_ok=True)
    (out / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": None, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    }, indent=2))
    if normalize:
        (out / "2_Normalize").mkdir(exist_ok=True)


def write_original(
    out: Path, state: dict[str, torch.Tensor], shape: Shape, vocab_size: int, tok: Tokenizer,
    *, rotary_base: float = 20000.0, dtype: torch.dtype = torch.float32, sentence_transformers: bool = True,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    dname = str(dtype).removeprefix("torch.")
    save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(_original_config(shape, vocab_size, rotary_base, dname), indent=2))
    (out / "configuration_xlm_roberta.py").write_text(_VLLM_CONFIG_CLASS)
    if sentence_transformers:
        _write_sentence_transformers(out)
    write_tokenizer(tok, out)
    return out


# --------------------------------------------------------------------------- converted (-hf) layout

#: The modules each published ``-hf`` adapter targets (its adapter_config.json).
HF_TARGET_MODULES = [
    "word_embeddings", "token_type_embeddings", "q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2", "dense",
]
#: The original's config keys the published ``-hf`` config.json still carries.
HF_EXTRA_KEYS = ("lora_adaptations", "task_instructions", "matryoshka_dimensions", "rotary_emb_base", "torch_dtype")


def write_hf(
    out: Path, state: dict[str, torch.Tensor], shape: Shape, vocab_size: int, tok: Tokenizer,
    *, rotary_base: float = 20000.0, dtype: torch.dtype = torch.float32,
) -> Path:
    """The ``-hf`` layout made as the published repo was: ``JinaEmbeddingsV3Model.save_pretrained``
    for the base (transformers writes it under the original-style names) and PEFT's
    ``save_pretrained`` for one adapter per task, holding the same weights as ``state``.

    The base goes in through transformers' own ``from_pretrained`` conversion of the original names;
    the stacked LoRA tensors are copied into PEFT's modules (per task ``t``: Linear
    ``lora_A = A[t]``, ``lora_B = B[t]`` with the fused ``Wqkv``'s ``B`` split by rows into q/k/v;
    Embedding ``lora_embedding_A = A[t]^T``, ``lora_embedding_B = B[t]^T``).
    """
    try:
        from peft import LoraConfig, get_peft_model
        from peft.tuners.lora import Embedding as PeftEmbedding
        from peft.tuners.lora import Linear as PeftLinear
        from peft.tuners.lora import LoraLayer
    except ImportError as exc:  # peft is a test/dev dependency, not needed to serve
        raise RuntimeError(
            "writing the -hf layout needs PEFT (pip install peft), as the published repo was made with it; "
            "or write --layout original"
        ) from exc
    from transformers import JinaEmbeddingsV3Config, JinaEmbeddingsV3Model

    from engine_hf.layouts import EmbeddingLora, split_original

    out.mkdir(parents=True, exist_ok=True)
    original = _original_config(shape, vocab_size, rotary_base, str(dtype).removeprefix("torch."))
    config = JinaEmbeddingsV3Config(
        **_architecture(shape, vocab_size),
        rope_parameters={"rope_type": "default", "rope_theta": rotary_base},
        **{k: original[k] for k in HF_EXTRA_KEYS if k != "torch_dtype"},
    )
    base, lora = split_original(state)
    model = JinaEmbeddingsV3Model.from_pretrained(None, config=config, state_dict=base, dtype=torch.float32)
    model.to(dtype).save_pretrained(out)
    # transformers >= 5 writes the dtype as "dtype"; the published config (an older writer) says torch_dtype.
    written = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**written, "torch_dtype": original["torch_dtype"]}, indent=2))

    names = [HF_ADAPTER_DIRS[t] for t in TASKS]
    lora_config = LoraConfig(r=shape.rank, lora_alpha=1, lora_dropout=0.0, target_modules=HF_TARGET_MODULES)
    model.name_or_path = str(out)  # what PEFT records as base_model_name_or_path
    with warnings.catch_warnings():  # PEFT 0.21 calls transformers' deprecated is_gradient_checkpointing
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model.float(), lora_config, adapter_name=names[0])
    for name in names[1:]:
        peft_model.add_adapter(name, lora_config)
    modules = dict(peft_model.base_model.model.named_modules())
    adapted = {path for path, module in modules.items() if isinstance(module, LoraLayer)}
    if adapted != set(lora):  # a module left at PEFT's init (B = 0) would hide an adapter bug
        raise RuntimeError(f"PEFT adapted {sorted(adapted ^ set(lora))[:5]} differently from the original's LoRA")
    with torch.no_grad():
        for path, factors in lora.items():
            module = modules[path]
            for t, name in enumerate(names):
                if isinstance(factors, EmbeddingLora):
                    assert isinstance(module, PeftEmbedding), path
                    module.lora_embedding_A[name].copy_(factors.A[t].T)
                    module.lora_embedding_B[name].copy_(factors.B[t].T)
                else:
                    assert isinstance(module, PeftLinear), path
                    module.lora_A[name].weight.copy_(factors.A[t])
                    module.lora_B[name].weight.copy_(factors.B[t])
    # One folder per adapter name (out/retrieval_query/, ...); only the LoRA factors, not the embedding tables.
    peft_model.to(dtype).save_pretrained(str(out), save_embedding_layers=False)
    write_tokenizer(tok, out)
    return out


def write_checkpoints(
    out: Path, shape: Shape = TINY, *, layouts: tuple[str, ...] = ("original", "hf"), seed: int = 0,
    rotary_base: float = 20000.0, dtype: torch.dtype = torch.float32,
) -> dict[str, Path]:
    """Write the same random weights in each requested layout under ``out/<layout>``."""
    tok = build_tokenizer(shape.tokenizer_vocab, seed=seed)
    vocab = shape.vocab_size or tok.get_vocab_size()
    state = make_state(shape, vocab, seed=seed)
    paths: dict[str, Path] = {}
    if "original" in layouts:
        paths["original"] = write_original(out / "original", state, shape, vocab, tok, rotary_base=rotary_base, dtype=dtype)
    if "hf" in layouts:
        paths["hf"] = write_hf(out / "hf", state, shape, vocab, tok, rotary_base=rotary_base, dtype=dtype)
    return paths
