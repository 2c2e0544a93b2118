"""Asymmetric retrieval for Mem0: a Mem0 embedder that tells the gateway whether it adds or searches.

Mem0 passes ``memory_action`` ("add", "update", "search") to its embedder, but its stock ``openai``
embedder drops it, so a server can only embed every text the same way. That is right for the
gateway's default alias (text-matching: short facts compared with short facts). For
jina-embeddings-v3's asymmetric pair — ``retrieval.passage`` for what is stored,
``retrieval.query`` for what is asked — this embedder maps the action to a task and sends it to
the gateway's ``task`` field. Usage (docs/mem0.md):

    memory = Memory.from_config(config)           # the usual openai-embedder config, pointed at the gateway
    use_gateway_embedder(memory, GatewayEmbedder.from_mem0_config(config))

Mem0 2.2 validates ``embedder.provider`` against a fixed list, so a new provider name cannot be
registered through the config; replacing ``memory.embedding_model`` after construction is the
supported seam (Mem0 only calls ``embed``/``embed_batch`` and reads ``config.embedding_dims``).
This module imports neither mem0 nor torch (a test proves it in a fresh interpreter).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.client import GatewayClient, RetryPolicy
from gateway.contract import parse_task
from gateway.ingest.stamp import STAMP_KEY, Stamp, check_stamp

__all__ = [
    "DEFAULT_ACTION_TASKS",
    "GatewayEmbedder",
    "GatewayEmbedderConfig",
    "check_store_space",
    "reload_milvus_collection",
    "task_for_action",
    "use_gateway_embedder",
]

#: Mem0 action -> jina-embeddings-v3 task. ``None`` (an action Mem0 did not name) counts as "add".
DEFAULT_ACTION_TASKS: Mapping[str, str] = {
    "add": "retrieval.passage",
    "update": "retrieval.passage",
    "search": "retrieval.query",
}


def task_for_action(action: str | None, tasks: Mapping[str, str]) -> str:
    """The task for one Mem0 action; a clear error for an action the mapping does not cover."""
    key = action or "add"
    try:
        return tasks[key]
    except KeyError:
        known = ", ".join(sorted(tasks))
        raise ValueError(f"no task configured for Mem0 memory_action {key!r}; mapped actions: {known}") from None


def _checked_tasks(tasks: Mapping[str, str] | None) -> dict[str, str]:
    merged = {**DEFAULT_ACTION_TASKS, **(tasks or {})}
    for action, task in merged.items():
        parse_task(task)  # ValueError naming the valid tasks
        if action not in ("add", "update", "search"):
            raise ValueError(f"unknown Mem0 memory_action {action!r}; Mem0 uses add, update and search")
    return merged


@dataclass(slots=True)
class GatewayEmbedderConfig:
    """The attributes Mem0 reads back from ``embedding_model.config`` (telemetry, logging)."""

    model: str
    embedding_dims: int
    openai_base_url: str


class GatewayEmbedder:
    """A Mem0 embedder (same ``embed``/``embed_batch`` interface) that maps actions to tasks."""

    def __init__(
        self,
        base_url: str,
        *,
        dimensions: int,
        model: str = "jina-embeddings-v3",
        api_key: str | None = None,
        tasks: Mapping[str, str] | None = None,
        strip_newlines: bool = True,
        timeout: float = 60.0,
        policy: RetryPolicy | None = None,
    ) -> None:
        if dimensions < 1:
            raise ValueError("dimensions must be >= 1 and equal the vector store's embedding_model_dims")
        self.tasks = _checked_tasks(tasks)
        #: Mem0's openai embedder replaces newlines with spaces; doing the same keeps vectors comparable
        self.strip_newlines = strip_newlines
        self.config = GatewayEmbedderConfig(model=model, embedding_dims=dimensions, openai_base_url=base_url)
        self.client = GatewayClient(
            base_url, api_key=api_key, timeout=timeout, policy=policy or RetryPolicy(max_retries=2)
        )

    @classmethod
    def from_mem0_config(
        cls, config: Mapping[str, Any], *, tasks: Mapping[str, str] | None = None, **kwargs: Any
    ) -> GatewayEmbedder:
        """Build from a Mem0 config dict whose ``embedder`` is the ``openai`` provider on the gateway."""
        embedder = config.get("embedder") or {}
        if embedder.get("provider") != "openai":
            raise ValueError("from_mem0_config expects embedder.provider 'openai' pointed at the gateway")
        c = embedder.get("config") or {}
        if not c.get("openai_base_url"):
            raise ValueError("embedder.config.openai_base_url must be the gateway's URL (e.g. http://127.0.0.1:8080/v1)")
        if not c.get("embedding_dims"):
            raise ValueError("embedder.config.embedding_dims must be set (Mem0 otherwise assumes 1536)")
        return cls(
            c["openai_base_url"],
            dimensions=int(c["embedding_dims"]),
            model=c.get("model") or "jina-embeddings-v3",
            api_key=c.get("api_key"),
            tasks=tasks,
            **kwargs,
        )

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        return [t.replace("\n", " ") for t in texts] if self.strip_newlines else list(texts)

    def embed_batch(self, texts: Sequence[str], memory_action: str | None = "add") -> list[list[float]]:
        if not texts:
            return []
        out = self.client.embed(
            self._prepare(texts),
            model=self.config.model,
            task=task_for_action(memory_action, self.tasks),
            dimensions=self.config.embedding_dims,
        )
        return [v.tolist() for v in out.vectors]

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        return self.embed_batch([text], memory_action)[0]

    def close(self) -> None:
        self.client.close()


def use_gateway_embedder(memory: Any, embedder: GatewayEmbedder) -> Any:
    """Install ``embedder`` on a Mem0 ``Memory``/``AsyncMemory``; refuses a dimension mismatch up front."""
    store_dims = getattr(getattr(memory.config.vector_store, "config", None), "embedding_model_dims", None)
    if store_dims is not None and int(store_dims) != embedder.config.embedding_dims:
        raise ValueError(
            f"the embedder makes {embedder.config.embedding_dims}-dim vectors but the vector store expects "
            f"{store_dims} (vector_store.config.embedding_model_dims); set both to the same value"
        )
    memory.embedding_model = embedder
    return memory


def check_store_space(memory: Any, embedder: GatewayEmbedder) -> Stamp:
    """Stamp Mem0's collection with the vector space the embedder stores memories in, or refuse
    (:class:`~gateway.ingest.stamp.StampMismatchError`, naming both spaces) when it holds another:
    a Mem0 pointed at a gateway whose model, task, dimensions or weights changed must not add
    vectors that its old memories cannot be compared with. Call it once at start, after
    :func:`use_gateway_embedder`. The embedder pins the space from then on (our client sends it
    back with every request). Milvus, Qdrant and pgvector stores; others pass unchecked."""
    task = task_for_action("add", embedder.tasks)
    probe = embedder.client.embed(["vector space probe"], model=embedder.config.model, task=task,
                                  dimensions=embedder.config.embedding_dims)
    run = Stamp(model=embedder.config.model, task=task, dimensions=embedder.config.embedding_dims, space=probe.space)
    store = memory.vector_store
    where = f"Mem0 collection {getattr(store, 'collection_name', '?')!r}"
    stored = _read_store_stamp(store)
    check_stamp(where, stored, run)
    if stored is None:
        _write_store_stamp(store, run)
    return run


def _read_store_stamp(store: Any) -> Stamp | None:
    client, name = getattr(store, "client", None), getattr(store, "collection_name", None)
    if hasattr(client, "alter_collection_properties"):  # Milvus
        raw = (client.describe_collection(name).get("properties") or {}).get(f"{STAMP_KEY}.stamp")
        return Stamp.from_json(raw) if raw else None
    if hasattr(client, "update_collection"):  # Qdrant
        meta = client.get_collection(name).config.metadata or {}
        return Stamp.from_dict(meta[STAMP_KEY]) if STAMP_KEY in meta else None
    if getattr(store, "connection_pool", None) is not None:  # pgvector
        with store._get_cursor() as cur:
            cur.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (name,))
            row = cur.fetchone()
        if row and row[0]:
            try:
                return Stamp.from_dict(json.loads(row[0]).get(STAMP_KEY))
            except (ValueError, AttributeError):
                return None
    return None


def _write_store_stamp(store: Any, stamp: Stamp) -> None:
    client, name = getattr(store, "client", None), getattr(store, "collection_name", None)
    if hasattr(client, "alter_collection_properties"):
        client.alter_collection_properties(name, properties={f"{STAMP_KEY}.stamp": stamp.to_json()})
    elif hasattr(client, "update_collection"):
        client.update_collection(name, metadata={STAMP_KEY: stamp.to_dict()})
    elif getattr(store, "connection_pool", None) is not None:
        from psycopg import sql

        if hasattr(store, "_ensure_collection"):  # Mem0 creates its table at the first write otherwise
            store._ensure_collection()
        comment = json.dumps({STAMP_KEY: stamp.to_dict()})
        with store._get_cursor(commit=True) as cur:
            cur.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier(name), sql.Literal(comment)))


def reload_milvus_collection(memory: Any) -> Any:
    """Load Mem0's Milvus collection again; needed once after a process using it died uncleanly.

    Milvus Lite 3.2.2 reopens a collection left by a killed process as "released", and Mem0 2.2.1
    never calls ``load_collection``, so every search fails with "call load() before search". Safe
    to call always (a no-op for a loaded collection, and for vector stores other than Milvus).
    """
    store = memory.vector_store
    client, name = getattr(store, "client", None), getattr(store, "collection_name", None)
    if client is not None and name and hasattr(client, "load_collection") and client.has_collection(name):
        client.load_collection(name)
    return memory
