"""Find a checkpoint (hub id or local directory) and describe it.

Two published layouts exist (see docs/engines.md):

* ``original`` — ``jinaai/jina-embeddings-v3``: ``roberta.*`` keys, LoRA stored as torch
  parametrizations with the five tasks stacked on dim 0, config with ``lora_adaptations``,
  ``task_instructions`` and ``rotary_emb_base``.
* ``hf`` — ``jinaai/jina-embeddings-v3-hf``: base weights for ``JinaEmbeddingsV3Model`` (under the
  native names or the original-style names ``save_pretrained`` writes) and one PEFT LoRA adapter per
  task in a subfolder (``retrieval_query``, ``text_matching``, ...). Its config has
  ``model_type: jina_embeddings_v3`` and may keep the original's extra keys (``lora_adaptations``, ...).

The layout is told by the files (stacked LoRA tensors, adapter folders, ``model_type``), not one key.

Nothing here executes code from the checkpoint: ``auto_map`` entries are ignored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from safetensors import safe_open

from gateway.contract import TASKS, Task

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "HF_ADAPTER_DIRS",
    "HF_MODEL_TYPE",
    "CheckpointInfo",
    "CheckpointError",
    "checkpoint_fingerprint",
    "describe_checkpoint",
    "resolve_model_dir",
]

Layout = Literal["original", "hf"]

#: The instructions of the published model (config ``task_instructions``); used when a
#: checkpoint carries them nowhere (a ``-hf`` config written without the original's extra keys).
DEFAULT_INSTRUCTIONS: dict[Task, str] = {
    Task.RETRIEVAL_QUERY: "Represent the query for retrieving evidence documents: ",
    Task.RETRIEVAL_PASSAGE: "Represent the document for retrieval: ",
}

#: PEFT adapter names may not contain "."; the converted layout uses these subfolders.
HF_ADAPTER_DIRS: dict[Task, str] = {t: t.value.replace(".", "_").replace("-", "_") for t in TASKS}

#: The model card's maximum; some tokenizer copies say 8194.
MODEL_MAX_TOKENS = 8192

#: ``model_type`` of transformers' native class, which the ``-hf`` layout's config names.
HF_MODEL_TYPE = "jina_embeddings_v3"
#: ``JinaEmbeddingsV3Config.default_theta``: the rotary base when the config names none.
HF_DEFAULT_ROPE_THETA = 20000.0
#: Present only in the original layout: the task adapters stacked inside the weights file.
_STACKED_LORA = ".parametrizations.weight.0.lora_A"

_ALLOW_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.model",
    "*/adapter_config.json",
    "*/adapter_model.safetensors",
    "1_Pooling/*",
]


class CheckpointError(RuntimeError):
    """The checkpoint cannot be found or is not a jina-embeddings-v3 checkpoint we understand."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    layout: Layout
    raw_config: dict[str, Any]
    #: adapter order: index i of the stacked LoRA tensors belongs to tasks[i]
    tasks: tuple[Task, ...]
    instructions: dict[Task, str] = field(default_factory=dict)
    rotary_base: float = 20000.0
    max_input_tokens: int = MODEL_MAX_TOKENS
    hidden_size: int = 1024
    lora_alpha: float = 1.0
    lora_rank: int = 4


#: what can change a checkpoint's vectors: configs, weights, adapters, tokenizer files
_FINGERPRINTED = (".json", ".safetensors", ".model", ".txt")


def checkpoint_fingerprint(path: Path, *, suffixes: tuple[str, ...] = _FINGERPRINTED) -> str:
    """SHA-256 over the relative names and contents of the files that make the vectors (configs,
    weights, adapters, tokenizer), at the top level and one folder down (PEFT adapters, pooling).
    ``suffixes``: which files those are (a layout with other weight files, such as BGE-M3's
    ``.pt`` heads, names its own).

    Why content and not a name: a local directory has no revision, and the embedding cache must
    never serve vectors of the checkpoint that was there before (docs/cache.md). Reads every byte
    once at load time (about a second per GB)."""
    files = sorted(
        p for p in [*path.iterdir(), *path.glob("*/*")]
        if p.is_file() and p.suffix in suffixes and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()


def resolve_model_dir(
    model: str,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    local_files_only: bool = False,
    allow_patterns: Sequence[str] | None = None,
) -> Path:
    """A local directory for ``model``: the path itself if it exists, else a hub snapshot.

    Hub downloads go through ``huggingface_hub`` and honour ``HF_HUB_OFFLINE=1`` (cache only) and
    ``HF_HOME``; only weights, configs, tokenizer files and adapters are fetched, never code
    (``allow_patterns``: the files a kind needs, by default jina-embeddings-v3's).
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists() or model.startswith((".", "/", "~")):
        raise CheckpointError(f"model path {model!r} is not a directory")
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id=model,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                allow_patterns=list(allow_patterns or _ALLOW_PATTERNS),
            )
        )
    except Exception as exc:  # huggingface_hub raises many types; all mean "not available"
        raise CheckpointError(
            f"cannot get model {model!r} (revision {revision or 'default'}): {exc}. "
            "Set engines.hf.model to a local directory, or fill the cache first "
            "(huggingface-cli download) when running with HF_HUB_OFFLINE=1."
        ) from exc


def describe_checkpoint(path: Path, *, max_input_tokens: int | None = None) -> CheckpointInfo:
    """Tell which layout ``path`` holds from what its files are, and read its settings.

    The layout is decided by where the adapters are: LoRA tensors stacked inside the weights file
    (``...parametrizations.weight.0.lora_A``) mean the original layout; PEFT adapter folders, or
    ``model_type: jina_embeddings_v3`` without stacked LoRA, mean the ``-hf`` layout. One config
    key alone decides nothing: the published ``-hf`` config keeps the original's ``lora_adaptations``.
    """
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path.name}: no config.json")
    raw = json.loads(config_file.read_text(encoding="utf-8"))
    model_type = raw.get("model_type")
    limit = max_input_tokens or MODEL_MAX_TOKENS
    adapter_tasks = tuple(t for t in TASKS if (path / HF_ADAPTER_DIRS[t] / "adapter_config.json").is_file())
    if model_type != HF_MODEL_TYPE and "lora_adaptations" not in raw and not adapter_tasks:
        raise CheckpointError(
            f"{path.name}: model_type {model_type!r} without lora_adaptations or adapter folders is not a "
            "jina-embeddings-v3 checkpoint (expected the original layout or the -hf layout)"
        )
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(f"{path.name}: no *.safetensors weights (pytorch .bin files are not loaded)")
    stacked_lora = any(_STACKED_LORA in key for key in _tensor_names(weights))

    if stacked_lora:
        if adapter_tasks:
            raise CheckpointError(
                f"{path.name}: LoRA tensors inside the weights file AND PEFT adapter folders "
                f"({', '.join(HF_ADAPTER_DIRS[t] for t in adapter_tasks)}): cannot tell which adapters to use"
            )
        return _original(path, raw, limit)
    if model_type == HF_MODEL_TYPE or adapter_tasks:
        return _hf(path, raw, limit, adapter_tasks)
    raise CheckpointError(
        f"{path.name}: config.json declares tasks (lora_adaptations) but the weights hold no LoRA tensors "
        f"and there are no adapter folders ({', '.join(HF_ADAPTER_DIRS.values())})"
    )


def _original(path: Path, raw: dict[str, Any], limit: int) -> CheckpointInfo:
    if "lora_adaptations" not in raw:
        raise CheckpointError(f"{path.name}: stacked LoRA tensors but no lora_adaptations in config.json to name them")
    tasks = tuple(_task(name) for name in raw["lora_adaptations"])
    instructions = _config_instructions(raw) if "task_instructions" in raw else dict(DEFAULT_INSTRUCTIONS)
    return CheckpointInfo(
        path=path,
        layout="original",
        raw_config=raw,
        tasks=tasks,
        instructions=instructions,
        # The original config class defaults to 10000 when the field is missing.
        rotary_base=float(raw.get("rotary_emb_base", 10000.0)),
        max_input_tokens=limit,
        hidden_size=int(raw["hidden_size"]),
        lora_alpha=float(raw.get("lora_alpha", 1)),
        lora_rank=int(raw.get("lora_rank", 4)),
    )


def _hf(path: Path, raw: dict[str, Any], limit: int, tasks: tuple[Task, ...]) -> CheckpointInfo:
    rank, alpha = 4, 1.0
    if tasks:
        adapter_cfg = json.loads((path / HF_ADAPTER_DIRS[tasks[0]] / "adapter_config.json").read_text(encoding="utf-8"))
        rank, alpha = int(adapter_cfg["r"]), float(adapter_cfg["lora_alpha"])
    instructions = (
        _config_instructions(raw)
        if "task_instructions" in raw
        else _instructions_from_sentence_transformers(path) or dict(DEFAULT_INSTRUCTIONS)
    )
    return CheckpointInfo(
        path=path,
        layout="hf",
        raw_config=raw,
        tasks=tasks,
        instructions=instructions,
        rotary_base=_hf_rotary_base(path, raw),
        max_input_tokens=limit,
        hidden_size=int(raw["hidden_size"]),
        lora_alpha=alpha,
        lora_rank=rank,
    )


def _hf_rotary_base(path: Path, raw: dict[str, Any]) -> float:
    """The native field (``rope_parameters.rope_theta``, older ``rope_theta``) that transformers reads;
    the original's ``rotary_emb_base``, which the published ``-hf`` config keeps, must agree with it."""
    native = (raw.get("rope_parameters") or {}).get("rope_theta", raw.get("rope_theta"))
    legacy = raw.get("rotary_emb_base")
    if native is not None and legacy is not None and float(native) != float(legacy):
        raise CheckpointError(
            f"{path.name}: config.json gives two rotary bases: rope_theta {native} and rotary_emb_base {legacy}"
        )
    chosen = native if native is not None else legacy
    return float(chosen) if chosen is not None else HF_DEFAULT_ROPE_THETA


def _tensor_names(files: list[Path]) -> set[str]:
    """Tensor names from the safetensors headers (no tensor is read)."""
    names: set[str] = set()
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            names.update(handle.keys())
    return names


def _task(name: str) -> Task:
    try:
        return Task(name)
    except ValueError:
        raise CheckpointError(f"unknown task {name!r} in lora_adaptations") from None


def _config_instructions(raw: dict[str, Any]) -> dict[Task, str]:
    """config ``task_instructions``: task name -> prefix ("" = none); names we do not serve are ignored."""
    given = raw.get("task_instructions") or {}
    return {Task(k): v for k, v in given.items() if k in Task._value2member_map_ and v}


def _instructions_from_sentence_transformers(path: Path) -> dict[Task, str]:
    """``config_sentence_transformers.json`` may carry the instructions as named prompts."""
    st_file = path / "config_sentence_transformers.json"
    if not st_file.is_file():
        return {}
    prompts = json.loads(st_file.read_text(encoding="utf-8")).get("prompts") or {}
    return {Task(k): v for k, v in prompts.items() if k in Task._value2member_map_ and v}
