"""The operational API: liveness, readiness, metrics, ``/info`` and the admin endpoints.

* :mod:`~gateway.api.ops.protocol` — the wire views (``/info``, ``/ready``, ``/admin/*``);
* :mod:`~gateway.api.ops.info` — ``/info``'s body from the engines' capabilities, limits, cache;
* :mod:`~gateway.api.ops.views` — the live engine state as the ``/ready`` and ``/admin/engines`` views;
* :mod:`~gateway.api.ops.routes` — ``/health``, ``/ready``, ``/metrics``, ``/info``;
* :mod:`~gateway.api.ops.admin` — ``/admin/engines``, ``/admin/reload``, ``/admin/cache/flush``.
"""
