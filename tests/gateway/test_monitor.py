"""What the monitor does for one engine per round: a pure decision."""

from __future__ import annotations

import pytest

from gateway.pool.supervisor import Check, next_check
from gateway.pool.parity import ParityStatus as P


@pytest.mark.parametrize(
    ("circuit_open", "parity", "age", "want"),
    [
        (False, P.NOT_REQUIRED, None, Check.HEALTH),  # the reference: health only
        (True, P.NOT_REQUIRED, None, Check.PROBE),  # out, nothing to compare with: probe it back
        (False, P.PENDING, None, Check.PARITY),  # never compared: compare before it serves
        (False, P.FAILED, 1.0, Check.PARITY),  # failed: keep re-checking (the operator may fix it)
        (True, P.PASSED, 1.0, Check.PARITY),  # out after failures: come back only with the right vectors
        (False, P.PASSED, 10.0, Check.HEALTH),  # fresh pass: cheap health check
        (False, P.PASSED, 300.0, Check.PARITY),  # periodic re-check
    ],
)
def test_next_check(circuit_open: bool, parity: P, age: float | None, want: Check) -> None:
    assert next_check(circuit_open=circuit_open, parity=parity, parity_age=age, parity_interval=300.0) is want
