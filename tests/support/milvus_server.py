"""A real Milvus server for tests (Milvus Lite's gRPC service on a loopback port, in this process)
whose writes can be held: the way to have a client *inside* a Milvus write at a known moment.

Milvus Lite serves the Milvus gRPC protocol (what pymilvus speaks to a Milvus server); a gRPC server
interceptor counts the ``Upsert`` calls and, once ``answered`` of them have gone through, holds every
later one until :meth:`HeldMilvus.release` — the client is then blocked in its upsert call for as
long as the test needs, whatever the machine's speed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

__all__ = ["HeldMilvus", "held_milvus"]


class HeldMilvus(grpc.ServerInterceptor):
    def __init__(self, answered: int) -> None:
        self.answered = answered
        self.upserts = 0
        self.finished = 0
        self.holding = threading.Event()  # set when an upsert is being held
        self._open = threading.Event()
        self._changed = threading.Condition()
        self.port = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        """Let held and later upserts through."""
        self._open.set()

    def wait_finished(self, timeout: float) -> bool:
        """True once every upsert that arrived has completed on the server."""
        with self._changed:
            return self._changed.wait_for(lambda: self.finished == self.upserts, timeout)

    def _gated(self, inner: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def upsert(request: Any, context: grpc.ServicerContext) -> Any:
            with self._changed:
                self.upserts += 1
                hold = self.upserts > self.answered
            try:
                if hold and not self._open.is_set():
                    self.holding.set()
                    self._open.wait()
                return inner(request, context)
            finally:
                with self._changed:
                    self.finished += 1
                    self._changed.notify_all()

        return upsert

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.endswith("/Upsert") or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._gated(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@contextmanager
def held_milvus(data_dir: Path, answered: int) -> Iterator[HeldMilvus]:
    """A Milvus server on a free loopback port that answers ``answered`` upserts, then holds the rest."""
    from milvus_lite.adapter.grpc.servicer import MilvusServicer
    from milvus_lite.db import MilvusLite
    from pymilvus.grpc_gen import milvus_pb2_grpc

    # pymilvus asks for AllocTimestamp, which Milvus Lite does not implement; gRPC logs that as an ERROR
    grpc_log = logging.getLogger("grpc._server")
    level = grpc_log.level
    grpc_log.setLevel(logging.CRITICAL)
    gate = HeldMilvus(answered)
    db = MilvusLite(str(data_dir))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), interceptors=[gate])
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusServicer(db), server)
    gate.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield gate
    finally:
        gate.release()
        server.stop(grace=5).wait(10)
        db.close()
        grpc_log.setLevel(level)
