"""Shadow A/B: live comparison of a candidate model against the model that serves the requests."""

from gateway.shadow.agreement import Agreement, agreement
from gateway.shadow.runner import LaneView, PairView, Shadow

__all__ = ["Agreement", "LaneView", "PairView", "Shadow", "agreement"]
