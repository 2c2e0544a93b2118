"""Contract errors across a process boundary (a Ray replica, an engine's own process), by value.

Pickled as an exception, a contract error is rebuilt from ``args``: errors whose constructor takes
other arguments (``InputTooLongError(index, ...)``) do not survive that (Ray's ``RayTaskError``
rebuilds them the same way). So the far side sends a :class:`RemoteError` (class name, message and
attributes) and the near side raises the same class again, attributes intact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.contract import errors as contract_errors
from gateway.contract.errors import EmbedGatewayError, EngineError

__all__ = ["RemoteError", "pack_error", "unpack_error"]

#: the classes that may be rebuilt: the contract's tree, nothing else
_CLASSES: dict[str, type[EmbedGatewayError]] = {
    name: cls
    for name in contract_errors.__all__
    if isinstance(cls := getattr(contract_errors, name), type) and issubclass(cls, EmbedGatewayError)
}


@dataclass(frozen=True, slots=True)
class RemoteError:
    """A contract error raised on the far side, as plain data."""

    kind: str
    message: str
    attrs: dict[str, Any] = field(default_factory=dict)


def pack_error(err: EmbedGatewayError) -> RemoteError:
    return RemoteError(type(err).__name__, err.message, dict(vars(err)))


def unpack_error(remote: RemoteError, *, engine: str) -> EmbedGatewayError:
    """The same error again (an ``EngineError`` if the class is not the contract's)."""
    cls = _CLASSES.get(remote.kind)
    if cls is None:
        return EngineError(f"remote error {remote.kind}: {remote.message}", engine=engine)
    err = cls.__new__(cls)
    Exception.__init__(err, remote.message)
    vars(err).update(remote.attrs)
    if "engine" in remote.attrs:
        err.engine = engine  # type: ignore[attr-defined]  # the near side's name for it, not the far side's
    return err
