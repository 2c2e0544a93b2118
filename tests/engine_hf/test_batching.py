"""The pure batching policy."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine_hf.batching import BatchLimits, Queued, next_batch, padded_tokens, worth_gathering


def q(*lengths: int, group: object = None) -> list[Queued]:
    return [Queued(n, group) for n in lengths]


def test_empty() -> None:
    assert next_batch([], BatchLimits()) == []


def test_oldest_always_included_even_if_over_budget() -> None:
    assert next_batch(q(5000, 10, 10), BatchLimits(max_batch_tokens=1000)) == [0]


def test_fills_up_to_token_budget_with_similar_lengths() -> None:
    pending = q(100, 400, 90, 110, 20, 105)
    chosen = next_batch(pending, BatchLimits(max_batch_tokens=440, max_padding=0.5))
    # 100 anchors; 105, 110, 90 are closest; 4 * 110 = 440 fits; 400 and 20 stay
    assert chosen == [0, 2, 3, 5]
    assert padded_tokens([pending[i].length for i in chosen]) <= 440


def test_respects_max_requests() -> None:
    assert len(next_batch(q(*[10] * 50), BatchLimits(max_batch_requests=8))) == 8


def test_padding_cap_keeps_short_and_long_apart() -> None:
    chosen = next_batch(q(500, 20, 20, 20), BatchLimits(max_batch_tokens=100000, max_padding=0.25))
    assert chosen == [0]


def test_packed_cost_is_real_tokens_and_mixes_lengths() -> None:
    pending = q(500, 20, 20, 20, 400)
    # packed: no padding, so short and long share a batch; the cost is the sum of lengths
    assert next_batch(pending, BatchLimits(max_batch_tokens=560, padded=False)) == [0, 1, 2, 3]
    assert sum(pending[i].length for i in next_batch(pending, BatchLimits(max_batch_tokens=1000, padded=False))) <= 1000


def test_groups_are_not_mixed() -> None:
    pending = [Queued(10, "a"), Queued(10, "b"), Queued(10, "a")]
    assert next_batch(pending, BatchLimits()) == [0, 2]


@given(
    lengths=st.lists(st.integers(1, 600), min_size=1, max_size=80),
    budget=st.integers(16, 5000),
    max_requests=st.integers(1, 40),
)
def test_invariants(lengths: list[int], budget: int, max_requests: int) -> None:
    limits = BatchLimits(max_batch_tokens=budget, max_batch_requests=max_requests)
    chosen = next_batch(q(*lengths), limits)
    assert chosen[0] == 0 and chosen == sorted(set(chosen))
    assert len(chosen) <= max_requests
    if len(chosen) > 1:
        assert padded_tokens([lengths[i] for i in chosen]) <= budget
    packed = next_batch(q(*lengths), BatchLimits(max_batch_tokens=budget, max_batch_requests=max_requests, padded=False))
    assert packed[0] == 0 and len(packed) <= max_requests
    if len(packed) > 1:
        assert sum(lengths[i] for i in packed) <= budget


def test_gathering_waits_for_the_clients_just_answered_and_for_arrivals_only() -> None:
    limits = BatchLimits(max_batch_tokens=1000, max_batch_requests=8)
    # the last pass answered 4 clients and nothing was queued: hold until 4 are back
    assert worth_gathering(queued_tokens=30, queued_sequences=1, arriving=0, expected_sequences=4, limits=limits)
    assert not worth_gathering(queued_tokens=120, queued_sequences=4, arriving=0, expected_sequences=4, limits=limits)
    # a lone client (the last pass carried its one request): never held
    assert not worth_gathering(queued_tokens=30, queued_sequences=1, arriving=0, expected_sequences=1, limits=limits)
    # requests accepted and still being tokenised are worth holding for
    assert worth_gathering(queued_tokens=30, queued_sequences=1, arriving=1, expected_sequences=1, limits=limits)
    # a full pass never waits, by tokens or by requests
    assert not worth_gathering(queued_tokens=1000, queued_sequences=2, arriving=3, expected_sequences=9, limits=limits)
    assert not worth_gathering(queued_tokens=80, queued_sequences=8, arriving=3, expected_sequences=9, limits=limits)
