"""The sentence-transformers kind against sentence-transformers itself.

Every checkpoint here is written by sentence-transformers' own ``SentenceTransformer(modules=...)
.save()`` (engine_hf/tools/st_checkpoint.py) from a tiny random BERT or XLM-RoBERTa, and every
vector is compared with ``SentenceTransformer(dir, device="cpu").encode(texts, prompt_name=...)``
on the same files: each pooling mode, with and without Dense and Normalize, with prompts (by name
and by the well-known retrieval names) and without, the prompt left out of pooling, mixed lengths
and tasks in one batch, truncation at ``max_seq_length``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine_hf.st import SentenceTransformersSettings, build
from engine_hf.st.layout import module_kind
from engine_hf.st.prompts import PromptTable
from engine_hf.tools.st_checkpoint import E5_PROMPTS, write_st_checkpoint
from gateway.contract import (
    EmbedJob,
    EngineError,
    InputTooLongError,
    InvalidRequestError,
    Task,
    TooManyTokensError,
    UnsupportedTaskError,
)
from tests.support.harness import LoopThread

#: mixed lengths and scripts; the last is longer than the tiny checkpoints' max_seq_length (64)
TEXTS = [
    "the user likes coffee in the morning",
    "a",
    "Der Benutzer mag Kaffee am Wochenende und liest ein Buch über Musik.",
    "用户喜欢咖啡",
    "memory " * 12,
]
LONG = "the user prefers dark mode and works at a company in the city " * 6

#: id -> write_st_checkpoint arguments: together they cover every pooling mode, Dense (Tanh with
#: bias, Identity without), Normalize on and off, prompts and none, include_prompt false
CASES: dict[str, dict[str, Any]] = {
    "bert-mean-e5-normalize": dict(pooling="mean", prompts=E5_PROMPTS),
    "bert-cls-dense-tanh": dict(pooling="cls", dense=32),
    "bert-max-raw": dict(pooling="max", normalize=False),
    "bert-cls+mean-prompt-excluded": dict(pooling=("cls", "mean"), prompts=E5_PROMPTS, include_prompt=False),
    "xlmr-mean-sqrt-dense-identity": dict(
        arch="xlm-roberta", pooling="mean_sqrt_len_tokens", dense=48, dense_activation="identity", dense_bias=False
    ),
    "xlmr-weightedmean-prompt-excluded-default": dict(
        arch="xlm-roberta", pooling="weightedmean", prompts=E5_PROMPTS, include_prompt=False, default_prompt_name="query"
    ),
    "xlmr-lasttoken-e5-raw": dict(arch="xlm-roberta", pooling="lasttoken", prompts=E5_PROMPTS, normalize=False),
}


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="module")
def st_dirs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The checkpoint of a case, written once per module."""
    root, made = tmp_path_factory.mktemp("st"), {}

    def get(case: str) -> Path:
        if case not in made:
            made[case] = write_st_checkpoint(root / case, seed=len(made), **CASES[case])
        return made[case]

    return get


def reference(path: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def started(loop: LoopThread, path: Path, **overrides: Any):  # type: ignore[no-untyped-def]
    engine = build(SentenceTransformersSettings(model=str(path), device="cpu", **overrides), name="st")
    loop.run(engine.start())
    return engine


def embed(loop: LoopThread, engine: Any, inputs: list[Any], task: str | None, **job: Any) -> np.ndarray:
    return loop.run(engine.embed(EmbedJob(inputs=inputs, task=task, **job))).vectors


def assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    for a, b in zip(ours.astype(np.float64), theirs.astype(np.float64), strict=True):
        cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        assert cos >= 0.99999, cos
        assert np.allclose(np.linalg.norm(a), np.linalg.norm(b), rtol=1e-4)  # Normalize (or not) as the reference


def prompt_name(task: str | None, prompts: dict[str, str]) -> str | None:
    """What a task means in sentence-transformers' terms (the mapping the docs promise)."""
    if task == Task.RETRIEVAL_QUERY:
        return "query"
    if task == Task.RETRIEVAL_PASSAGE:
        return "passage" if "passage" in prompts else "document"
    return task


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("case", list(CASES))
def test_every_task_matches_sentence_transformers_encode(case: str, st_dirs: Callable[[str], Path], loop: LoopThread) -> None:
    path = st_dirs(case)
    ref = reference(path)
    engine = started(loop, path)
    try:
        caps = engine.capabilities
        assert caps.dimensions == ref.get_embedding_dimension()
        assert caps.max_input_tokens == ref.max_seq_length == 64
        expected_tasks = {*ref.prompts, None, Task.RETRIEVAL_QUERY, Task.RETRIEVAL_PASSAGE}
        assert caps.tasks == expected_tasks
        for task in sorted(caps.tasks, key=str):
            texts = [*TEXTS, LONG]
            ours = embed(loop, engine, texts, task, truncate=True)
            assert_same(ours, ref.encode(texts, prompt_name=prompt_name(task, ref.prompts)))
    finally:
        loop.run(engine.aclose())


def test_prompts_change_vectors_and_the_well_known_names_follow_them(st_dirs: Callable[[str], Path], loop: LoopThread) -> None:
    """Not vacuous: the e5 prompts move the vectors, and retrieval.passage means "passage" (not
    the empty "document" every SentenceTransformer also has)."""
    engine = started(loop, st_dirs("bert-mean-e5-normalize"))
    try:
        plain = embed(loop, engine, TEXTS, None)
        query = embed(loop, engine, TEXTS, "query")
        passage = embed(loop, engine, TEXTS, Task.RETRIEVAL_PASSAGE)
        assert not np.allclose(plain, query, atol=1e-3)
        assert not np.allclose(query, passage, atol=1e-3)
        assert np.array_equal(passage, embed(loop, engine, TEXTS, "passage"))
        assert np.array_equal(plain, embed(loop, engine, TEXTS, "document"))
    finally:
        loop.run(engine.aclose())


def test_mixed_tasks_and_lengths_in_one_batch(st_dirs: Callable[[str], Path], loop: LoopThread) -> None:
    """Concurrent jobs of different prompts share padded batches; each row still equals the reference
    (the prompt exclusion of include_prompt false is per row)."""
    path = st_dirs("xlmr-weightedmean-prompt-excluded-default")
    ref = reference(path)
    engine = started(loop, path, batch_gather_ms=50)
    tasks: list[str | None] = [None, "query", "passage", "document", None, "passage"]
    try:
        async def all_at_once() -> list[np.ndarray]:
            jobs = [engine.embed(EmbedJob(inputs=TEXTS[i % len(TEXTS) :] + TEXTS[: i % 3], task=t)) for i, t in enumerate(tasks)]
            return [r.vectors for r in await asyncio.gather(*jobs)]

        batches_before = engine._scheduler.batches
        results = loop.run(all_at_once())
        assert engine._scheduler.batches - batches_before < len(tasks)  # some jobs did share a pass
        for i, (task, ours) in enumerate(zip(tasks, results, strict=True)):
            texts = TEXTS[i % len(TEXTS) :] + TEXTS[: i % 3]
            assert_same(ours, ref.encode(texts, prompt_name=task))
    finally:
        loop.run(engine.aclose())


def test_token_id_inputs_are_the_tokenizers_ids(st_dirs: Callable[[str], Path], loop: LoopThread) -> None:
    path = st_dirs("bert-cls-dense-tanh")
    ref = reference(path)
    engine = started(loop, path)
    try:
        ids = [tuple(ref.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in TEXTS]
        assert_same(embed(loop, engine, ids, None), ref.encode(TEXTS))
        with pytest.raises(InvalidRequestError, match="outside this model's vocabulary"):
            embed(loop, engine, [(1, 10**7)], None)
    finally:
        loop.run(engine.aclose())


# --------------------------------------------------------------------------- limits


def test_over_long_input_is_an_error_unless_truncated(st_dirs: Callable[[str], Path], loop: LoopThread) -> None:
    path = st_dirs("bert-mean-e5-normalize")
    ref = reference(path)
    engine = started(loop, path)
    try:
        with pytest.raises(InputTooLongError) as err:
            embed(loop, engine, ["short", LONG], "query")
        assert err.value.index == 1 and err.value.limit == 64 and err.value.n_tokens > 64
        # truncate: the first tokens kept, as sentence-transformers truncates at max_seq_length
        assert_same(embed(loop, engine, [LONG], "query", truncate=True), ref.encode([LONG], prompt_name="query"))
        # the other end kept: a different vector, same width
        left = embed(loop, engine, [LONG + " coffee tea"], "query", truncate=True, truncation_direction="left")
        assert not np.allclose(left, embed(loop, engine, [LONG + " coffee tea"], "query", truncate=True), atol=1e-4)
        with pytest.raises(TooManyTokensError):
            embed(loop, engine, TEXTS, None, max_total_tokens=10)
        with pytest.raises(UnsupportedTaskError, match="no prompt for task 'classification'"):
            embed(loop, engine, TEXTS, Task.CLASSIFICATION)
    finally:
        loop.run(engine.aclose())


def test_max_input_tokens_below_the_models_limit(st_dirs: Callable[[str], Path], loop: LoopThread) -> None:
    engine = started(loop, st_dirs("bert-max-raw"), max_input_tokens=16)
    try:
        assert engine.capabilities.max_input_tokens == 16
        with pytest.raises(InputTooLongError):
            embed(loop, engine, [LONG], None)
        assert embed(loop, engine, [LONG], None, truncate=True).shape == (1, 64)
    finally:
        loop.run(engine.aclose())


# --------------------------------------------------------------------------- settings and identity


def test_operator_prompts_override_the_checkpoints(st_dirs: Callable[[str], Path], loop: LoopThread) -> None:
    path = st_dirs("bert-mean-e5-normalize")
    from sentence_transformers import SentenceTransformer

    prompts = {"query": "search query: ", "sts": "similar: "}
    ref = SentenceTransformer(str(path), device="cpu", prompts=prompts, default_prompt_name="sts")
    engine = started(loop, path, prompts=prompts, default_prompt_name="sts", matryoshka=True)
    try:
        caps = engine.capabilities
        assert {"sts", "query", "passage", None} <= caps.tasks and caps.matryoshka
        for task in (None, "query", "sts", "passage"):
            assert_same(embed(loop, engine, TEXTS, task), ref.encode(TEXTS, prompt_name=task))
        plain = started(loop, path)
        try:
            assert plain.capabilities.identity != caps.identity  # other prompts, other vectors
            assert plain.capabilities.identity.startswith("sentence-transformers|sha256:")
            assert "|float32|cpu|" in plain.capabilities.identity
        finally:
            loop.run(plain.aclose())
    finally:
        loop.run(engine.aclose())


def test_capabilities_describe_the_loaded_pipeline(st_dirs: Callable[[str], Path], loop: LoopThread) -> None:
    path = st_dirs("xlmr-mean-sqrt-dense-identity")
    engine = build(SentenceTransformersSettings(model=str(path), device="cpu"), name="st")
    before = engine.capabilities
    assert before.identity is None and before.dimensions == 48  # read from the files, before loading
    loop.run(engine.start())
    try:
        caps = engine.capabilities
        assert caps.dimensions == 48 and caps.outputs == {"dense"} and not caps.matryoshka
        assert caps.numerics == "fp32-exact" and caps.vocab_size and caps.resident_bytes
        n_params = sum(p.numel() for p in reference(path).parameters())
        assert caps.resident_bytes == 4 * n_params
        health = loop.run(engine.check_health())
        assert health.ok
    finally:
        loop.run(engine.aclose())


# --------------------------------------------------------------------------- what is refused


def _copy(path: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(path, tmp_path / "copy"))


def test_a_custom_module_is_refused_by_name(st_dirs: Callable[[str], Path], loop: LoopThread, tmp_path: Path) -> None:
    path = _copy(st_dirs("bert-max-raw"), tmp_path)
    modules = json.loads((path / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Custom", "type": "custom_pooling.MyPooling"})
    (path / "modules.json").write_text(json.dumps(modules))
    engine = build(SentenceTransformersSettings(model=str(path), device="cpu"), name="st")
    with pytest.raises(EngineError, match="custom_pooling.MyPooling"):
        loop.run(engine.start())
    assert not loop.run(engine.check_health()).ok
    loop.run(engine.aclose())


def test_a_config_that_needs_remote_code_is_refused(st_dirs: Callable[[str], Path], loop: LoopThread, tmp_path: Path) -> None:
    path = _copy(st_dirs("bert-max-raw"), tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (path / "config.json").write_text(json.dumps(config))
    engine = build(SentenceTransformersSettings(model=str(path), device="cpu"), name="st")
    with pytest.raises(EngineError, match="auto_map"):
        loop.run(engine.start())
    loop.run(engine.aclose())


def test_int8_is_refused_at_start(st_dirs: Callable[[str], Path], loop: LoopThread) -> None:
    engine = build(SentenceTransformersSettings(model=str(st_dirs("bert-max-raw")), device="cpu", dtype="int8"), name="st")
    with pytest.raises(EngineError, match="int8"):
        loop.run(engine.start())
    loop.run(engine.aclose())


def test_the_legacy_layout_reads_as_sentence_transformers_reads_it(
    st_dirs: Callable[[str], Path], loop: LoopThread, tmp_path: Path
) -> None:
    """A checkpoint as sentence-transformers 2.x published them: ``sentence_transformers.models.*``
    types, ``pooling_mode_*_tokens`` flags, ``max_seq_length``/``do_lower_case`` in
    sentence_bert_config.json. The current library still loads that layout; both must agree."""
    path = _copy(st_dirs("bert-cls-dense-tanh"), tmp_path)
    modules = json.loads((path / "modules.json").read_text())
    for m in modules:
        m["type"] = "sentence_transformers.models." + m["type"].rsplit(".", 1)[-1]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 64, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    }))
    (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": True}))
    ref = reference(path)
    assert ref.max_seq_length == 24
    engine = started(loop, path)
    try:
        assert engine.capabilities.max_input_tokens == 24
        texts = [t.upper() for t in TEXTS] + [LONG]
        assert_same(embed(loop, engine, texts, None, truncate=True), ref.encode(texts))
    finally:
        loop.run(engine.aclose())


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("type_ref", "kind"),
    [
        ("sentence_transformers.models.Transformer", "Transformer"),
        ("sentence_transformers.base.modules.transformer.Transformer", "Transformer"),
        ("sentence_transformers.sentence_transformer.modules.pooling.Pooling", "Pooling"),
        ("sentence_transformers.models.Pooling", "Pooling"),
        ("sentence_transformers.base.modules.dense.Dense", "Dense"),
        ("sentence_transformers.models.Dense", "Dense"),
        ("sentence_transformers.sentence_transformer.modules.normalize.Normalize", "Normalize"),
        ("sentence_transformers.base.modules.normalize.Normalize", "Normalize"),
        ("sentence_transformers.models.LayerNorm", None),
        ("sentence_transformers.models.Asym", None),
        ("custom_st.Pooling", None),
        ("sentence_transformers.models.pooling.Dense", None),
    ],
)
def test_module_types(type_ref: str, kind: str | None) -> None:
    assert module_kind(type_ref) == kind


def test_prompt_table_maps_the_well_known_names() -> None:
    table = PromptTable({"query": "q: ", "document": "", "passage": "p: "}, default_prompt_name="query")
    assert table.prompt(None) == "q: " and table.prompt("document") == ""
    assert table.prompt(Task.RETRIEVAL_QUERY) == "q: " and table.prompt(Task.RETRIEVAL_PASSAGE) == "p: "
    no_passage = PromptTable({"query": "q: ", "document": "d: "})
    assert no_passage.prompt(Task.RETRIEVAL_PASSAGE) == "d: " and no_passage.prompt(None) == ""
    own = PromptTable({"retrieval.query": "own: ", "query": "q: "})
    assert own.prompt(Task.RETRIEVAL_QUERY) == "own: "  # a prompt named like the task wins
    assert Task.RETRIEVAL_PASSAGE not in own.tasks()
    with pytest.raises(UnsupportedTaskError):
        own.prompt("passage")
    with pytest.raises(ValueError, match="default prompt name"):
        PromptTable({"query": ""}, default_prompt_name="missing")
