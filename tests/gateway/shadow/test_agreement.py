"""Neighbourhood agreement of two models, on vectors whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group, spearmanr

from gateway.shadow import agreement


def _vectors(n: int = 60, d: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def test_the_same_vectors_agree_fully() -> None:
    v = _vectors()
    got = agreement(v, v.copy(), neighbours=10)
    assert got is not None and got.texts == 60 and got.neighbours == 10
    assert got.top_k_overlap == 1.0 and got.rank_correlation == pytest.approx(1.0)


def test_another_space_with_the_same_neighbourhoods_agrees_fully() -> None:
    """A rotation (and another width, and another scale per vector) changes every vector and no
    neighbourhood: two models can agree fully without sharing a space."""
    v = _vectors()
    rotation = ortho_group.rvs(48, random_state=1)[:, :32]
    other = (v @ rotation.T) * np.random.default_rng(2).uniform(0.5, 3.0, (60, 1))
    got = agreement(v, other.astype(np.float32), neighbours=10)
    assert got is not None and got.top_k_overlap == 1.0 and got.rank_correlation == pytest.approx(1.0)


def test_unrelated_models_barely_agree() -> None:
    got = agreement(_vectors(seed=3), _vectors(seed=4), neighbours=10)
    assert got is not None
    assert got.top_k_overlap < 0.35  # chance: about 10 / 59
    assert abs(got.rank_correlation or 0.0) < 0.1


def test_the_overlap_is_each_texts_shared_neighbours_counted_one_by_one() -> None:
    """Against a direct count: sort every row, take the first k other texts, intersect the sets."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((40, 16))
    p, c = base + 0.3 * rng.standard_normal(base.shape), base + 0.3 * rng.standard_normal(base.shape)

    def neighbours(v: np.ndarray, i: int, k: int) -> set[int]:
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        order = [j for j in np.argsort(-(u @ u[i]), kind="stable") if j != i]
        return set(order[:k])

    want = np.mean([len(neighbours(p, i, 5) & neighbours(c, i, 5)) / 5 for i in range(40)])
    got = agreement(p, c, neighbours=5)
    assert got is not None and got.top_k_overlap == pytest.approx(want)
    assert 0.2 < got.top_k_overlap < 1.0

    def sims(v: np.ndarray) -> np.ndarray:
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        return (u @ u.T)[np.triu_indices(40, k=1)]

    assert got.rank_correlation == pytest.approx(spearmanr(sims(p), sims(c)).statistic)


def test_too_few_texts_give_no_figure_and_mismatched_rows_are_an_error() -> None:
    assert agreement(_vectors(n=10), _vectors(n=10), neighbours=10) is None
    assert agreement(_vectors(n=11), _vectors(n=11), neighbours=10) is not None
    with pytest.raises(ValueError, match="11 primary vectors against 12"):
        agreement(_vectors(n=11), _vectors(n=12))
