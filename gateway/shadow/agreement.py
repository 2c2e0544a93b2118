"""How far two models agree on the neighbourhoods of the same texts.

Vectors of two models live in two spaces and cannot be compared with each other; what can be
compared is what each model says about the texts: which texts are each text's nearest neighbours,
and how the pairwise similarities rank. Two measures, over one window of texts embedded by both:

- **top-k overlap**: per text, the share of its ``k`` nearest neighbours (cosine, itself excluded)
  that both models name; the mean over the texts. 1.0 = the same neighbourhoods.
- **rank correlation**: Spearman's rho between the two models' pairwise similarities (every pair
  of distinct texts once), by scipy. 1.0 = the same order of every pair.

Pure functions of two arrays, no state: the shadow runner keeps the window and calls this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import spearmanr

__all__ = ["Agreement", "agreement"]


@dataclass(frozen=True, slots=True)
class Agreement:
    #: texts in the window the figures are computed over
    texts: int
    #: neighbours compared per text (``k``)
    neighbours: int
    #: mean share of each text's ``k`` nearest neighbours both models name
    top_k_overlap: float
    #: Spearman's rho of the two models' pairwise similarities (None: undefined, e.g. all equal)
    rank_correlation: float | None


def _similarities(vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit = v / np.where(norms > 0, norms, 1.0)
    return unit @ unit.T


def agreement(
    primary: npt.NDArray[np.floating], candidate: npt.NDArray[np.floating], neighbours: int = 10
) -> Agreement | None:
    """The agreement of two models on the same texts (row ``i`` of both is text ``i``); None while
    there are too few texts for ``neighbours`` neighbours each."""
    n = len(primary)
    if len(candidate) != n:
        raise ValueError(f"{n} primary vectors against {len(candidate)} candidate vectors")
    if n < neighbours + 1:
        return None
    sp, sc = _similarities(primary), _similarities(candidate)
    upper = np.triu_indices(n, k=1)
    rho = spearmanr(sp[upper], sc[upper]).statistic
    np.fill_diagonal(sp, -np.inf)
    np.fill_diagonal(sc, -np.inf)
    top_p = np.argpartition(-sp, neighbours - 1, axis=1)[:, :neighbours]
    top_c = np.argpartition(-sc, neighbours - 1, axis=1)[:, :neighbours]
    shared = (top_p[:, :, None] == top_c[:, None, :]).any(axis=2).sum(axis=1)
    return Agreement(
        texts=n,
        neighbours=neighbours,
        top_k_overlap=float(shared.mean() / neighbours),
        rank_correlation=None if np.isnan(rho) else float(rho),
    )
