"""``embed --qdrant URL|PATH --collection NAME``: upsert points into a Qdrant collection.

Qdrant point ids must be unsigned integers or UUIDs, while a record's id is any string; each id is
mapped to ``uuid5(ID_NAMESPACE, id)`` — deterministic, so a replayed batch overwrites its own
points and a resumed run asks Qdrant for exactly the points it would write — and the original id
is kept in the payload (``id``). A URL (``http://host:6333``) is a Qdrant server; a folder path is
qdrant-client's local mode (one process at a time; every point is its own SQLite transaction, so
a killed run keeps whole points only), ``:memory:`` a throw-away one.

``ubinary``: each vector is stored as its sign pattern, +1 where the float is > 0 and -1
elsewhere (the gateway's ``ubinary`` bits, in float16), with the DOT distance and binary
quantisation. For ±1 vectors the dot product is ``n - 2·hamming``, so ranking is exactly Hamming
ranking, and the quantised index (1 bit per dimension, what a Qdrant server searches) loses nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.contract import SparseVector
from gateway.ingest.records import Record
from gateway.ingest.sinks import SinkError
from gateway.ingest.stamp import STAMP_KEY, Stamp, StampedStore, check_stamp

__all__ = ["ID_NAMESPACE", "QdrantSink", "open_client", "point_id", "sign_vectors"]

#: the namespace of the point ids: ``uuid5(ID_NAMESPACE, record_id)``
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "ids.embed-gateway")

_DISTANCES = {"COSINE": "Cosine", "IP": "Dot", "L2": "Euclid"}


def point_id(record_id: str) -> str:
    """The Qdrant point id of a record id (a UUID string)."""
    return str(uuid.uuid5(ID_NAMESPACE, record_id))


def sign_vectors(vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The ``ubinary`` bits as ±1 (bit set where the value is > 0, as the gateway packs them)."""
    return np.where(np.asarray(vectors) > 0, 1.0, -1.0).astype(np.float32)


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """qdrant-client raises HTTP/gRPC errors, and RuntimeError for a local folder another process holds."""
    from qdrant_client.http.exceptions import ApiException

    try:
        yield
    except (ApiException, RuntimeError) as exc:
        raise SinkError(f"{what}: {exc}") from exc


def open_client(location: str, api_key: str | None = None) -> Any:
    """A ``QdrantClient`` for a server URL, ``:memory:`` or a local-mode folder."""
    try:
        from qdrant_client import QdrantClient
    except ImportError as exc:
        raise RuntimeError("Qdrant output needs the stores extra: pip install 'embed-gateway[stores]'") from exc
    with _errors(f"cannot open Qdrant at {location}"):
        if "://" in location:
            return QdrantClient(url=location, api_key=api_key)
        if location == ":memory:":
            return QdrantClient(location=":memory:")
        return QdrantClient(path=location)


class QdrantSink(StampedStore):
    """Upserts into ``collection``: the dense vector ``dense`` (and the sparse vector ``sparse``) with
    the payload ``id``, ``line``, [``text``], [``metadata``].

    The collection is created on the first write when ``create`` is set (size from the vectors,
    ``metric`` as its distance, or DOT with binary quantisation for ``ubinary``; a ``sparse``
    vector when ``sparse`` is set) and stamped with ``stamp`` in its metadata; an existing one must
    match (vector name, size, distance, stamp) before anything is written. ``client``: an open
    client (:func:`open_client`) to use and leave open; by default the sink opens and closes its own.
    """

    VECTOR = "dense"
    SPARSE = "sparse"

    def __init__(
        self,
        location: str,
        collection: str,
        *,
        api_key: str | None = None,
        create: bool = False,
        metric: str = "COSINE",
        encoding: str = "float",
        sparse: bool = False,
        store_text: bool = False,
        with_metadata: bool = False,
        stamp: Stamp | None = None,
        client: Any = None,
    ) -> None:
        if metric not in _DISTANCES:
            raise ValueError(f"--metric must be one of {', '.join(_DISTANCES)}, not {metric!r}")
        if encoding not in ("float", "ubinary"):
            raise ValueError(f"encoding must be float or ubinary, not {encoding!r}")
        if stamp is not None and stamp.encoding != encoding:
            raise ValueError(f"the stamp says {stamp.encoding} but the sink writes {encoding}")
        self.location, self.collection = location, collection
        self.create, self.metric, self.encoding, self.sparse = create, metric, encoding, sparse
        self.store_text, self.with_metadata = store_text, with_metadata
        self.stamp = stamp
        #: a local-mode folder admits one client per process: sinks of one run that share a folder
        #: share its client, which their caller opened and closes
        self._owns_client = client is None
        self.client = open_client(location, api_key) if client is None else client
        try:
            with _errors(f"cannot read Qdrant at {location}"):
                self.exists = self.client.collection_exists(collection)
            if not self.exists and not create:
                raise ValueError(
                    f"Qdrant collection {collection!r} does not exist at {location}; pass --create-collection")
            self.stored_stamp = self._read_stamp() if self.exists else None
            if stamp is not None:
                check_stamp(self._where, self.stored_stamp, stamp)  # before anything is embedded
        except BaseException:
            self.close()  # a local folder stays locked while its client is open
            raise
        self.checked_dims: int | None = None

    @property
    def _where(self) -> str:
        return f"Qdrant collection {self.collection!r} at {self.location}"

    def _info(self) -> Any:
        with _errors(f"cannot read Qdrant collection {self.collection!r}"):
            return self.client.get_collection(self.collection)

    def _read_stamp(self) -> Stamp | None:
        raw = (self._info().config.metadata or {}).get(STAMP_KEY)
        return Stamp.from_dict(raw) if raw is not None else None

    def _write_stamp(self, stamp: Stamp) -> None:
        with _errors(f"cannot stamp Qdrant collection {self.collection!r}"):
            self.client.update_collection(self.collection, metadata={STAMP_KEY: stamp.to_dict()})

    def _distance(self) -> Any:
        from qdrant_client import models

        return models.Distance.DOT if self.encoding == "ubinary" else models.Distance(_DISTANCES[self.metric])

    def _check_existing(self, dims: int) -> None:
        params = self._info().config.params
        vectors = params.vectors if isinstance(params.vectors, dict) else {}
        dense = vectors.get(self.VECTOR)
        if dense is None:
            raise ValueError(
                f"Qdrant collection {self.collection!r} has no vector named {self.VECTOR!r} (it has "
                f"{', '.join(vectors) or 'one unnamed vector'}); choose another --collection "
                "(embed-gateway creates its own with --create-collection)"
            )
        if dense.size != dims:
            raise ValueError(
                f"Qdrant collection {self.collection!r} stores {dense.size}-dim vectors but this run makes {dims}; "
                "use --dimensions to match, or another collection"
            )
        if dense.distance != self._distance():
            raise ValueError(
                f"Qdrant collection {self.collection!r} uses the {dense.distance.value} distance, this run asks for "
                f"{self._distance().value}; use its --metric, or another collection"
            )
        if self.sparse and self.SPARSE not in (params.sparse_vectors or {}):
            raise ValueError(f"Qdrant collection {self.collection!r} has no sparse vector named {self.SPARSE!r}")

    def _create(self, dims: int, stamp: Stamp | None) -> None:
        from qdrant_client import models

        binary = self.encoding == "ubinary"
        dense = models.VectorParams(
            size=dims, distance=self._distance(),
            # the ±1 originals on disk in half precision; the 1-bit quantised copy in RAM is what is searched
            datatype=models.Datatype.FLOAT16 if binary else None, on_disk=True if binary else None,
        )
        quantization = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True)) if binary else None
        with _errors(f"cannot create Qdrant collection {self.collection!r}"):
            self.client.create_collection(
                self.collection,
                vectors_config={self.VECTOR: dense},
                sparse_vectors_config={self.SPARSE: models.SparseVectorParams()} if self.sparse else None,
                quantization_config=quantization,
                metadata={STAMP_KEY: stamp.to_dict()} if stamp is not None else None,
            )

    def done(self, ids: Sequence[str]) -> set[str]:
        if not self.exists or not ids:
            return set()
        by_point = {point_id(i): i for i in ids}
        with _errors(f"Qdrant retrieve from {self.collection!r} failed"):
            points = self.client.retrieve(self.collection, list(by_point), with_payload=False, with_vectors=False)
        return {by_point[str(p.id)] for p in points}

    def write(self, records: Sequence[Record], vectors: npt.NDArray[np.float32],
              sparse: Sequence[SparseVector] | None = None) -> None:
        from qdrant_client import models

        if sparse is not None and not self.sparse:
            raise ValueError("sparse vectors given but the Qdrant sink was opened without sparse=True")
        if sparse is None and self.sparse:
            raise ValueError("this Qdrant sink stores a sparse vector per record, and the batch has none")
        self._ensure(int(vectors.shape[1]))
        dense = sign_vectors(vectors) if self.encoding == "ubinary" else np.asarray(vectors, dtype=np.float32)
        points = []
        for i, r in enumerate(records):
            vector: dict[str, Any] = {self.VECTOR: dense[i].tolist()}
            if sparse is not None:
                vector[self.SPARSE] = models.SparseVector(indices=sparse[i].indices.tolist(),
                                                          values=sparse[i].values.tolist())
            payload: dict[str, Any] = {"id": r.id, "line": r.line}
            if self.store_text:
                payload["text"] = r.text
            if self.with_metadata:
                payload["metadata"] = json.loads(json.dumps(r.metadata, default=str))
            points.append(models.PointStruct(id=point_id(r.id), vector=vector, payload=payload))
        with _errors(f"Qdrant upsert into {self.collection!r} failed"):
            self.client.upsert(self.collection, points, wait=True)

    def finish(self) -> str:
        if not self.exists:
            return f"nothing to store; Qdrant collection {self.collection!r} was not created"
        with _errors(f"cannot count Qdrant collection {self.collection!r}"):
            n = self.client.count(self.collection, exact=True).count
        return f"Qdrant collection {self.collection!r} at {self.location} holds {n} points"

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
