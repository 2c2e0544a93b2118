"""Random-weight checkpoints in both published layouts, and a small XLM-R-style tokenizer.

Real weights cannot be downloaded everywhere (CI has no model hub), and speed does not depend on
weight values, so tests and benchmarks run on checkpoints written here:

* ``original`` layout exactly as ``jinaai/jina-embeddings-v3`` stores it (``roberta.*`` keys, LoRA
  as parametrizations stacked over the five tasks, fused ``Wqkv``), plus the sentence-transformers
  pooling files and a config class file that vLLM (and only vLLM) loads;
* ``hf`` layout as ``jinaai/jina-embeddings-v3-hf`` stores it (native base keys, one PEFT adapter per
  task in a subfolder), holding the SAME weights.

LoRA tensors get non-trivial random values (the published init has B = 0, which would hide every
adapter bug). ``embed-gateway make-checkpoint`` is the command-line entry.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from engine_hf.checkpoint import DEFAULT_INSTRUCTIONS, HF_ADAPTER_DIRS
from gateway.contract import TASKS

__all__ = ["FULL", "TINY", "Shape", "build_tokenizer", "make_state", "write_checkpoints"]

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


def _write_tokenizer(tok: Tokenizer, out: Path) -> None:
    tok.save(str(out / "tokenizer.json"))
    specials = {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
        "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>",
    }
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    (out / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 8194,
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
    _write_tokenizer(tok, out)
    return out


# --------------------------------------------------------------------------- converted (-hf) layout


def to_hf(state: dict[str, torch.Tensor], n_layers: int) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
    """Split original-layout tensors into native base weights and per-task PEFT tensors."""
    base: dict[str, torch.Tensor] = {}
    peft: dict[str, dict[str, torch.Tensor]] = {HF_ADAPTER_DIRS[t]: {} for t in TASKS}

    def w(key: str) -> torch.Tensor:
        return state[f"roberta.{key}.parametrizations.weight.original"]

    def lora_linear(src: str, dst: str, rows: slice | None = None) -> None:
        a = state[f"roberta.{src}.parametrizations.weight.0.lora_A"]
        b = state[f"roberta.{src}.parametrizations.weight.0.lora_B"]
        for t, task in enumerate(TASKS):
            d = peft[HF_ADAPTER_DIRS[task]]
            d[f"base_model.model.{dst}.lora_A.weight"] = a[t].clone()
            d[f"base_model.model.{dst}.lora_B.weight"] = (b[t] if rows is None else b[t][rows]).clone()

    def lora_embedding(src: str, dst: str) -> None:
        a = state[f"roberta.{src}.parametrizations.weight.0.lora_A"]
        b = state[f"roberta.{src}.parametrizations.weight.0.lora_B"]
        for t, task in enumerate(TASKS):
            d = peft[HF_ADAPTER_DIRS[task]]
            d[f"base_model.model.{dst}.lora_embedding_A"] = a[t].T.contiguous()
            d[f"base_model.model.{dst}.lora_embedding_B"] = b[t].T.contiguous()

    for name in ("word_embeddings", "token_type_embeddings"):
        base[f"embeddings.{name}.weight"] = w(f"embeddings.{name}")
        lora_embedding(f"embeddings.{name}", f"embeddings.{name}")
    base["embeddings.LayerNorm.weight"] = state["roberta.emb_ln.weight"]
    base["embeddings.LayerNorm.bias"] = state["roberta.emb_ln.bias"]
    for i in range(n_layers):
        src, dst = f"encoder.layers.{i}", f"layers.{i}"
        qkv_w, qkv_b = w(f"{src}.mixer.Wqkv"), state[f"roberta.{src}.mixer.Wqkv.bias"]
        h = qkv_w.shape[1]
        for j, p in enumerate("qkv"):
            rows = slice(j * h, (j + 1) * h)
            base[f"{dst}.self_attn.{p}_proj.weight"] = qkv_w[rows].clone()
            base[f"{dst}.self_attn.{p}_proj.bias"] = qkv_b[rows].clone()
            lora_linear(f"{src}.mixer.Wqkv", f"{dst}.self_attn.{p}_proj", rows)
        for s_name, d_name in (("mixer.out_proj", "self_attn.o_proj"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
            base[f"{dst}.{d_name}.weight"] = w(f"{src}.{s_name}")
            base[f"{dst}.{d_name}.bias"] = state[f"roberta.{src}.{s_name}.bias"]
            lora_linear(f"{src}.{s_name}", f"{dst}.{d_name}")
        for s_name, d_name in (("norm1", "post_attention_layernorm"), ("norm2", "post_mlp_layernorm")):
            base[f"{dst}.{d_name}.weight"] = state[f"roberta.{src}.{s_name}.weight"]
            base[f"{dst}.{d_name}.bias"] = state[f"roberta.{src}.{s_name}.bias"]
    base["pooler.dense.weight"] = w("pooler.dense")
    base["pooler.dense.bias"] = state["roberta.pooler.dense.bias"]
    lora_linear("pooler.dense", "pooler.dense")
    return base, peft


def write_hf(
    out: Path, state: dict[str, torch.Tensor], shape: Shape, vocab_size: int, tok: Tokenizer,
    *, rotary_base: float = 20000.0, dtype: torch.dtype = torch.float32,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    base, peft = to_hf(state, shape.num_hidden_layers)
    save_file({k: v.to(dtype).contiguous() for k, v in base.items()}, str(out / "model.safetensors"))
    config = {
        "architectures": ["JinaEmbeddingsV3Model"],
        "model_type": "jina_embeddings_v3",
        **_architecture(shape, vocab_size),
        "rope_parameters": {"rope_type": "default", "rope_theta": rotary_base},
        "dtype": str(dtype).removeprefix("torch."),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    modules = ["word_embeddings", "token_type_embeddings", "q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2", "dense"]
    for folder, tensors in peft.items():
        (out / folder).mkdir(exist_ok=True)
        save_file({k: v.to(dtype).contiguous() for k, v in tensors.items()}, str(out / folder / "adapter_model.safetensors"))
        (out / folder / "adapter_config.json").write_text(json.dumps({
            "peft_type": "LORA", "task_type": "FEATURE_EXTRACTION", "r": shape.rank, "lora_alpha": 1,
            "lora_dropout": 0.0, "bias": "none", "target_modules": modules, "base_model_name_or_path": None,
            "inference_mode": True, "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
        }, indent=2))
    _write_tokenizer(tok, out)
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
