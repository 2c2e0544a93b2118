"""Bearer keys: client API keys for the API, the admin key for ``/admin``; one way to check both.

Why here and like this: an embedding server holds a GPU and sees users' memories, so strangers
must not use it once an operator sets keys — but a gateway on loopback for one Mem0 process
needs none, so keys are optional. Keys are compared in constant time: the presented key and every
configured key are hashed (SHA-256, so lengths leak nothing) and *all* are compared with
:func:`secrets.compare_digest`, without stopping at the first match.

* Client keys (``auth.api_keys``, ``auth.api_keys_file``): when any is configured, every route but
  the open ones needs one (the front door, :mod:`gateway.api.middleware`, enforces it). The admin
  key is accepted there too: it is the stronger credential.
* Open routes (:meth:`gateway.config.AuthSettings.open_paths`): ``/health`` and ``/ready`` unless
  ``auth.probes_open`` is false (a kubelet or load-balancer probe sends no key), ``/metrics`` only
  with ``auth.metrics_open``. ``/ready`` shows its per-engine detail (engine errors, URLs) only to
  a caller whose key :func:`client_allowed` accepts.
* The admin key (``auth.admin_key``) guards ``/admin/*``: without one configured they answer 403;
  a missing or wrong key is 401; a valid *client* key is 403 (authenticated, not allowed).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from fastapi import Request
from pydantic import SecretStr

from gateway.config import AuthSettings
from gateway.errors import AuthenticationError, PermissionDeniedError
from gateway.obs.context import request_snapshot

__all__ = ["bearer_token", "check_admin", "check_client", "client_allowed", "key_matches", "require_admin"]


def bearer_token(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header; None when absent or another scheme."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def key_matches(given: str, keys: Iterable[SecretStr]) -> bool:
    """Whether ``given`` is one of ``keys``, in time independent of which key (if any) matches."""
    presented = _digest(given)
    found = False
    for key in keys:
        found |= secrets.compare_digest(presented, _digest(key.get_secret_value()))
    return found


def check_client(auth: AuthSettings, authorization: str | None) -> None:
    """Raise ``AuthenticationError`` unless the request may use the API (no keys configured = open)."""
    keys = auth.client_keys()
    if not keys:
        return
    token = bearer_token(authorization)
    if token is None:
        raise AuthenticationError(
            "this server needs an API key: send it as 'Authorization: Bearer <key>' "
            "(OpenAI SDK: api_key=...)"
        )
    allowed = (*keys, auth.admin_key) if auth.admin_key is not None else keys
    if not key_matches(token, allowed):
        raise AuthenticationError("the API key is not valid for this server")


def client_allowed(auth: AuthSettings, authorization: str | None) -> bool:
    """Whether the request could use the API: no keys configured, or a valid client (or admin) key."""
    try:
        check_client(auth, authorization)
    except AuthenticationError:
        return False
    return True


def check_admin(auth: AuthSettings, authorization: str | None) -> None:
    """Raise unless the request carries the admin key (see the module docstring for the statuses)."""
    if auth.admin_key is None:
        raise PermissionDeniedError("admin endpoints are disabled: set auth.admin_key to use them")
    token = bearer_token(authorization)
    if token is None:
        raise AuthenticationError("missing admin key (send Authorization: Bearer <auth.admin_key>)")
    if key_matches(token, (auth.admin_key,)):
        return
    if key_matches(token, auth.client_keys()):
        raise PermissionDeniedError("this API key may not use the admin endpoints; they need auth.admin_key")
    raise AuthenticationError("wrong admin key (send Authorization: Bearer <auth.admin_key>)")


def require_admin(request: Request) -> None:
    """FastAPI dependency of the ``/admin`` router (reads the live settings: keys reload)."""
    check_admin(request_snapshot().settings.auth, request.headers.get("authorization"))
