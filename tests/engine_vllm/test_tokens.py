"""Where the engine finds the served model's tokenizer: the configured path, or a managed vLLM's
command line when it names a local directory; and that it encodes with the special tokens."""

from __future__ import annotations

from pathlib import Path

from engine_vllm.tokens import CHECK_TEXTS, LocalTokenizer, is_hub_name, tokenizer_from_command, tokenizer_path


def test_a_directory_or_the_file_itself(original_dir: Path, tmp_path: Path) -> None:
    file = original_dir / "tokenizer.json"
    assert tokenizer_path(original_dir) == file and tokenizer_path(file) == file
    assert tokenizer_path(tmp_path) is None and tokenizer_path(tmp_path / "missing") is None


def test_the_managed_command_names_it(original_dir: Path, tmp_path: Path) -> None:
    file = original_dir / "tokenizer.json"
    d = str(original_dir)
    assert tokenizer_from_command(["python", "-m", "vllm.entrypoints.openai.api_server", "--model", d]) == file
    assert tokenizer_from_command(["vllm", "serve", d, "--port", "8000"]) == file
    assert tokenizer_from_command(["vllm", "serve", "--model=" + d]) == file
    # --tokenizer wins over the model; a hub name or a directory without tokenizer.json gives none
    assert tokenizer_from_command(["vllm", "serve", str(tmp_path), "--tokenizer", d]) == file
    assert tokenizer_from_command(["vllm", "serve", "jinaai/jina-embeddings-v3"]) is None
    assert tokenizer_from_command(["vllm", "serve", str(tmp_path)]) is None
    assert tokenizer_from_command(["vllm", "serve", "--port", "8000"]) is None


def test_encodes_with_the_special_tokens_like_the_model_tokenizer(original_dir: Path) -> None:
    from transformers import AutoTokenizer

    texts = ["hello world", "Grüße aus Köln, 東京 ✓", "a", *CHECK_TEXTS, "x " * 40]
    reference = AutoTokenizer.from_pretrained(str(original_dir))
    local = LocalTokenizer(original_dir / "tokenizer.json")
    assert local.encode(texts) == [reference(t)["input_ids"] for t in texts]
    assert local.encode(texts[:1]) == [reference(texts[0])["input_ids"]]


def test_the_ids_without_offsets_are_the_model_tokenizers_ids(original_dir: Path) -> None:
    """The engine encodes without character offsets (cheaper): the ids transformers' tokenizer for
    the checkpoint gives, on multilingual facts and on empty, blank and long inputs, in batches and
    one by one."""
    from transformers import AutoTokenizer

    from gateway.bench.workloads import make_workload

    facts = [r.texts[0] for r in make_workload("facts", 300, lambda t: len(t.split()), seed=3)]
    texts = [*facts, "", " ", "\n\t", "Ω" * 600, *CHECK_TEXTS]
    reference = AutoTokenizer.from_pretrained(str(original_dir))
    expected = [reference(t)["input_ids"] for t in texts]
    local = LocalTokenizer(original_dir / "tokenizer.json")
    assert local.encode(texts) == expected
    assert [local.encode([t])[0] for t in texts[:20]] == expected[:20]


def test_a_hub_name_is_found_in_the_local_cache_only(original_dir: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import shutil

    import huggingface_hub.constants

    snapshot = tmp_path / "models--acme--embedder" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    shutil.copy(original_dir / "tokenizer.json", snapshot / "tokenizer.json")
    (tmp_path / "models--acme--embedder" / "refs").mkdir()
    (tmp_path / "models--acme--embedder" / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert tokenizer_path("acme/embedder") == snapshot / "tokenizer.json"
    assert tokenizer_path("acme/not-downloaded") is None  # never fetched
    assert tokenizer_from_command(["vllm", "serve", "acme/embedder"]) == snapshot / "tokenizer.json"


def test_a_hub_name_is_looked_up_later_a_missing_local_path_is_an_error(tmp_path: Path) -> None:
    import pytest

    from engine_vllm import VLLMEngine
    from engine_vllm.settings import VLLMEngineSettings

    assert is_hub_name("jinaai/jina-embeddings-v3")
    assert not is_hub_name("/models/jina") and not is_hub_name("./jina/v3") and not is_hub_name("models/jina/v3")
    VLLMEngine(VLLMEngineSettings(enabled=True, tokenizer="acme/not-downloaded-yet"))  # found (or not) at discovery
    with pytest.raises(ValueError, match="no tokenizer.json"):
        VLLMEngine(VLLMEngineSettings(enabled=True, tokenizer=str(tmp_path / "nowhere")))
