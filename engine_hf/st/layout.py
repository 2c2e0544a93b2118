"""Read a sentence-transformers checkpoint's files into a plain description of its pipeline.

What is read, as sentence-transformers 6 reads it (``SentenceTransformer(path)``):

* ``modules.json``: the modules in order, each a ``type`` (a class path) and a folder ``path``;
* the Transformer's folder: ``config.json`` (transformers), the tokenizer files, and
  ``sentence_bert_config.json`` (or a legacy ``sentence_<arch>_config.json``): ``max_seq_length``,
  ``do_lower_case``, the tokenizer and config keyword arguments, the modality settings;
* ``<n>_Pooling/config.json``: ``pooling_mode`` (or the legacy ``pooling_mode_*_tokens`` flags),
  ``include_prompt``;
* ``<n>_Dense/config.json`` and its ``model.safetensors`` (or ``pytorch_model.bin``);
* ``config_sentence_transformers.json``: ``prompts``, ``default_prompt_name``, ``truncate_dim``.

Nothing here imports torch or executes checkpoint code: a module type we do not implement, a
Dense activation outside ``torch.nn``, and a transformers config that asks for remote code
(``auto_map``) are refused by name.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from engine_hf.checkpoint import CheckpointError

__all__ = [
    "ACTIVATIONS",
    "POOLING_MODES",
    "DenseSpec",
    "NormalizeSpec",
    "PoolingSpec",
    "StLayout",
    "TransformerSpec",
    "module_kind",
    "read_layout",
]

log = logging.getLogger(__name__)

ModuleKind = Literal["Transformer", "Pooling", "Dense", "Normalize"]
_KINDS: tuple[ModuleKind, ...] = ("Transformer", "Pooling", "Dense", "Normalize")
#: where sentence-transformers has kept these classes: before v3 (``models``), v5 and v6
_PACKAGES = (
    "sentence_transformers.models",
    "sentence_transformers.sentence_transformer.modules",
    "sentence_transformers.base.modules",
)

#: sentence-transformers' pooling modes, in the order its legacy flags concatenate them
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
_LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}

#: Dense activations served: element-wise ``torch.nn`` modules built without arguments, as
#: sentence-transformers builds them (``activation_function`` names the class)
ACTIVATIONS = frozenset({
    "Identity", "Tanh", "ReLU", "GELU", "Sigmoid", "SiLU", "LeakyReLU", "ELU", "SELU", "CELU", "Softplus",
    "Mish", "ReLU6", "Hardtanh", "Hardswish", "Hardsigmoid", "Softsign", "Tanhshrink", "LogSigmoid",
})

#: the Transformer's config files, newest first (sentence-transformers tries them in this order)
_TRANSFORMER_CONFIGS = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
#: the text modality as a plain encoder declares it (the only one served)
_TEXT_MODALITY = {"method": "forward", "method_output_name": "last_hidden_state"}
#: prompts every SentenceTransformer has (empty unless the checkpoint or the operator sets them):
#: ``encode_query`` / ``encode_document`` use them
_DEFAULT_PROMPTS = {"query": "", "document": ""}


@dataclass(frozen=True)
class TransformerSpec:
    """The Transformer module: where the transformers model and tokenizer are, and how to call them."""

    path: Path
    #: ``max_seq_length`` of a legacy config (newer saves keep it as the tokenizer's ``model_max_length``)
    max_seq_length: int | None
    do_lower_case: bool
    #: keyword arguments for ``AutoTokenizer.from_pretrained`` / ``AutoConfig.from_pretrained``
    processor_kwargs: dict[str, Any]
    config_kwargs: dict[str, Any]
    #: the transformers ``config.json``
    config: dict[str, Any]


@dataclass(frozen=True)
class PoolingSpec:
    modes: tuple[str, ...]
    include_prompt: bool
    embedding_dimension: int | None


@dataclass(frozen=True)
class DenseSpec:
    path: Path
    in_features: int
    out_features: int
    bias: bool
    #: a name in :data:`ACTIVATIONS`
    activation: str
    use_residual: bool
    weights: Path


@dataclass(frozen=True)
class NormalizeSpec:
    """L2 normalisation of the sentence embedding."""


@dataclass(frozen=True)
class StLayout:
    path: Path
    transformer: TransformerSpec
    pooling: PoolingSpec
    #: what follows pooling, in order
    steps: tuple[DenseSpec | NormalizeSpec, ...]
    #: the checkpoint's prompts, over sentence-transformers' empty ``query`` and ``document``
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    truncate_dim: int | None = None


def module_kind(type_ref: str) -> ModuleKind | None:
    """The module a ``modules.json`` ``type`` names, if it is one we implement: ``Transformer``,
    ``Pooling``, ``Dense`` or ``Normalize`` under any package path sentence-transformers has used
    (``sentence_transformers.models.Pooling``, ``...sentence_transformer.modules.pooling.Pooling``,
    ``...base.modules.dense.Dense``); anything else (custom code, other modules) is None."""
    for package in _PACKAGES:
        if not type_ref.startswith(package + "."):
            continue
        rest = type_ref[len(package) + 1 :].split(".")
        name = rest[-1]
        if name in _KINDS and (len(rest) == 1 or (len(rest) == 2 and rest[0] in (name, name.lower()))):
            return name  # type: ignore[return-value]
    return None


def read_layout(path: Path) -> StLayout:
    """Describe the checkpoint at ``path``; :class:`CheckpointError` says why one cannot be served."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        raise CheckpointError(
            f"{path.name}: no modules.json, so not a sentence-transformers checkpoint "
            "(a plain transformers model needs its pooling stated by a modules.json)"
        )
    entries = _json(modules_file)
    if not isinstance(entries, list) or not entries:
        raise CheckpointError(f"{path.name}: modules.json must be a non-empty list of modules")
    kinds: list[tuple[ModuleKind, Path]] = []
    for entry in entries:
        type_ref = str(entry.get("type", ""))
        kind = module_kind(type_ref)
        if kind is None:
            raise CheckpointError(
                f"{path.name}: modules.json lists module {type_ref!r}, which this engine does not implement "
                "(it serves Transformer -> Pooling -> Dense -> Normalize, and never runs a checkpoint's own code)"
            )
        kinds.append((kind, _module_dir(path, str(entry.get("path", "")))))
    if len(kinds) < 2 or kinds[0][0] != "Transformer" or kinds[1][0] != "Pooling":
        order = " -> ".join(k for k, _ in kinds)
        raise CheckpointError(f"{path.name}: modules.json lists {order}; a Transformer then a Pooling must come first")
    transformer = _transformer(kinds[0][1])
    pooling = _pooling(kinds[1][1])
    steps: list[DenseSpec | NormalizeSpec] = []
    for kind, folder in kinds[2:]:
        if kind == "Dense":
            steps.append(_dense(folder))
        elif kind == "Normalize":
            _check_io(folder, "Normalize", _json(folder / "config.json") if (folder / "config.json").is_file() else {})
            steps.append(NormalizeSpec())
        else:
            raise CheckpointError(f"{path.name}: a second {kind} module after pooling is not served")
    st_config = _json(path / "config_sentence_transformers.json") if (path / "config_sentence_transformers.json").is_file() else {}
    model_type = st_config.get("model_type", "SentenceTransformer")
    if model_type != "SentenceTransformer":
        raise CheckpointError(
            f"{path.name}: config_sentence_transformers.json says model_type {model_type!r}; this kind serves "
            "SentenceTransformer (dense) checkpoints only"
        )
    prompts = dict(_DEFAULT_PROMPTS)
    prompts.update({str(k): "" if v is None else str(v) for k, v in (st_config.get("prompts") or {}).items()})
    truncate_dim = st_config.get("truncate_dim")
    return StLayout(
        path=path,
        transformer=transformer,
        pooling=pooling,
        steps=tuple(steps),
        prompts=prompts,
        default_prompt_name=st_config.get("default_prompt_name"),
        truncate_dim=int(truncate_dim) if truncate_dim is not None else None,
    )


# --------------------------------------------------------------------------- modules


def _transformer(folder: Path) -> TransformerSpec:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder.name or 'checkpoint'}: the Transformer module's folder has no config.json")
    config = _json(config_file)
    if config.get("auto_map"):
        raise CheckpointError(
            f"config.json names custom model code (auto_map: {sorted(config['auto_map'])}); "
            "this engine never executes code from a checkpoint: serve it with a kind that implements the model"
        )
    tok_config = folder / "tokenizer_config.json"
    if tok_config.is_file() and _json(tok_config).get("auto_map"):
        raise CheckpointError("tokenizer_config.json names custom tokenizer code (auto_map); it is never executed")
    st = next((_json(folder / n) for n in _TRANSFORMER_CONFIGS if (folder / n).is_file()), {})
    st = {**st}
    for old, new in (("model_args", "model_kwargs"), ("tokenizer_args", "processor_kwargs"), ("config_args", "config_kwargs")):
        if old in st:
            st.setdefault(new, st.pop(old))
    task = st.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise CheckpointError(f"the Transformer module runs transformers task {task!r}; only feature-extraction is served")
    modality = st.get("modality_config")
    if modality is not None and modality != {"text": _TEXT_MODALITY}:
        raise CheckpointError(f"the Transformer module's modality_config {modality!r} is not plain text; not served")
    if st.get("module_output_name", "token_embeddings") != "token_embeddings":
        raise CheckpointError(f"the Transformer module outputs {st['module_output_name']!r}, not token embeddings")
    for key in ("processing_kwargs", "query_length", "document_length", "query_expansion"):
        if st.get(key):
            raise CheckpointError(f"sentence_bert_config.json sets {key}, which this engine does not implement")
    known = {
        "max_seq_length", "do_lower_case", "transformer_task", "modality_config", "module_output_name",
        "processing_kwargs", "unpad_inputs", "query_length", "document_length", "query_expansion",
        "model_kwargs", "processor_kwargs", "config_kwargs", "backend",
    }
    if unknown := sorted(set(st) - known):
        log.warning("ignoring sentence_bert_config.json keys %s", unknown)

    def kwargs(name: str) -> dict[str, Any]:
        given = st.get(name) or {}
        return {k: v for k, v in given.items() if k not in ("trust_remote_code", "cache_dir", "revision", "token")}

    max_len = st.get("max_seq_length")
    return TransformerSpec(
        path=folder,
        max_seq_length=int(max_len) if max_len is not None else None,
        do_lower_case=bool(st.get("do_lower_case", False)),
        processor_kwargs=kwargs("processor_kwargs"),
        config_kwargs=kwargs("config_kwargs"),
        config=config,
    )


def _pooling(folder: Path) -> PoolingSpec:
    config = _json(folder / "config.json") if (folder / "config.json").is_file() else {}
    mode = config.get("pooling_mode")
    if mode is None:
        mode = tuple(m for key, m in _LEGACY_POOLING_FLAGS.items() if config.get(key)) or ("mean",)
    modes = (mode,) if isinstance(mode, str) else tuple(mode)
    bad = [m for m in modes if m not in POOLING_MODES]
    if bad or not modes:
        raise CheckpointError(f"pooling mode {bad or modes!r} is not one of {', '.join(POOLING_MODES)}")
    dim = config.get("embedding_dimension", config.get("word_embedding_dimension"))
    return PoolingSpec(modes, bool(config.get("include_prompt", True)), int(dim) if dim is not None else None)


def _dense(folder: Path) -> DenseSpec:
    config = _json(folder / "config.json")
    _check_io(folder, "Dense", config)
    activation = str(config.get("activation_function", "torch.nn.modules.activation.Tanh"))
    name = activation.rsplit(".", 1)[-1]
    if not activation.startswith("torch.") or name not in ACTIVATIONS:
        raise CheckpointError(
            f"Dense activation {activation!r} is not served (torch.nn activations only: {', '.join(sorted(ACTIVATIONS))})"
        )
    weights = next((folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{folder.name}: no model.safetensors or pytorch_model.bin for the Dense module")
    return DenseSpec(
        path=folder,
        in_features=int(config["in_features"]),
        out_features=int(config["out_features"]),
        bias=bool(config.get("bias", True)),
        activation=name,
        use_residual=bool(config.get("use_residual", False)),
        weights=weights,
    )


def _check_io(folder: Path, kind: str, config: dict[str, Any]) -> None:
    """Dense and Normalize may act on token embeddings (multi-vector models): not a dense pipeline."""
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, "sentence_embedding") not in ("sentence_embedding", None):
            raise CheckpointError(
                f"{folder.name}: the {kind} module works on {config[key]!r}, not the sentence embedding; not served"
            )


def _module_dir(root: Path, rel: str) -> Path:
    """A module's folder; like sentence-transformers, a path leaving the checkpoint is refused."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or "\\" in rel:
        raise CheckpointError(f"modules.json path {rel!r} leaves the checkpoint folder")
    return root / pure  # may be missing: git keeps no empty folder (a Normalize has no files)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path.name}: {exc}") from None
