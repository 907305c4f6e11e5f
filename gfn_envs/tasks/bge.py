"""Decomposable scores of DAG structures on continuous data: BGe and linear-Gaussian BIC.

A decomposable score is a sum of local scores, one per node j and its parent set Pa_G(j):

    score(G) = Σ_j s(j, Pa_G(j)).

Parent sets are bitmasks: bit i of ``mask`` is set iff node i is a parent. Local scores are computed
batched and cached lazily by the key ``(j, mask)``, kept as a sorted int64 tensor so a lookup is one
``searchsorted``; each (node, parent set) is computed once per score object. For d nodes there are
at most d·2^(d−1) keys, and a sampler only ever meets a small part of them when d is large.

Both scores only need log-determinants of principal submatrices M_YY of a fixed d×d matrix M. A
batch of subsets Y is handled with one batched ``slogdet`` of the d×d matrices M ⊙ (y yᵀ) + diag(1 − y)
(y the indicator of Y), whose determinant is det M_YY (and 1 for the empty set).

BGe (Geiger & Heckerman 1994; the corrected parametrisation of Kuipers, Moffa & Heckerman 2014, as in
DAG-GFlowNet). Normal–Wishart prior on the mean and precision of the d-variate Gaussian with prior
mean ν, mean-precision scale α_μ, α_w degrees of freedom and Wishart scale T = t·I with
t = α_μ(α_w − d − 1)/(α_μ + 1). With N samples, mean x̄ and scatter S_N = Σ_n (x_n − x̄)(x_n − x̄)ᵀ,
the posterior scale is R = T + S_N + (N α_μ/(N + α_μ))(x̄ − ν)(x̄ − ν)ᵀ, and for a node j with
l = |Pa| parents, F = Pa ∪ {j}, a = N + α_w − d + l:

    s(j, Pa) = ½ log(α_μ/(N + α_μ)) + log Γ((a + 1)/2) − log Γ((α_w − d + l + 1)/2) − (N/2) log π
               + ½(α_w − d + 2l + 1) log t + (a/2) log det R_PaPa − ((a + 1)/2) log det R_FF.

It is score-equivalent: Markov-equivalent DAGs get equal scores.

Linear-Gaussian BIC. Each node is regressed on its parents by least squares with an intercept; with
Σ̂ the maximum-likelihood covariance, the residual variance is σ̂² = det Σ̂_FF / det Σ̂_PaPa and

    s(j, Pa) = −(N/2)(log 2π + log σ̂² + 1) − ((l + 2)/2) log N

(l weights, an intercept and a variance). It is also score-equivalent. It needs l < N.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

SCORES = ("bge", "bic")


def parent_masks(adjacency: Tensor) -> Tensor:
    """Long ``[B, d]``: bit i of entry j is set iff ``adjacency[b, i, j]`` (edge i → j)."""
    d = adjacency.shape[-1]
    powers = torch.ones(d, dtype=torch.long, device=adjacency.device) << torch.arange(
        d, device=adjacency.device
    )
    return (adjacency.long() * powers.view(1, d, 1)).sum(dim=1)


def mask_bits(masks: Tensor, d: int) -> Tensor:
    """Bool ``[*masks.shape, d]``: the bits of the long bitmasks ``masks``."""
    shifts = torch.arange(d, device=masks.device)
    return ((masks.unsqueeze(-1) >> shifts) & 1).bool()


def submatrix_logdet(matrix: Tensor, masks: Tensor) -> Tensor:
    """log |det M_YY| for each subset Y given as a bitmask in ``masks`` (long ``[K]``); 0 for Y = ∅."""
    d = matrix.shape[0]
    bits = mask_bits(masks, d).to(matrix.dtype)
    blocks = matrix.unsqueeze(0) * bits.unsqueeze(2) * bits.unsqueeze(1)
    blocks = blocks + torch.diag_embed(1.0 - bits)
    return torch.linalg.slogdet(blocks).logabsdet


class DecomposableScore(ABC):
    """A score Σ_j s(j, Pa(j)) with batched, lazily cached local scores (float64).

    Args:
        data: observations, array-like ``[N, d]`` of finite floats, one column per node.
    """

    name: str = ""

    def __init__(self, data: ArrayLike) -> None:
        array = np.asarray(data, dtype=np.float64)
        if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
            raise ValueError(
                f"data must be a 2-D array [num_samples, num_nodes], got {array.shape}"
            )
        if not np.isfinite(array).all():
            raise ValueError("data must hold finite values only")
        self.data = torch.as_tensor(array)
        self.num_samples, self.num_nodes = array.shape
        self._keys = torch.empty(0, dtype=torch.long)
        self._values = torch.empty(0, dtype=torch.float64)

    @abstractmethod
    def compute_local(self, nodes: Tensor, masks: Tensor) -> Tensor:
        """Uncached local scores s(nodes[k], masks[k]), float64 ``[K]``."""

    @property
    def cache_size(self) -> int:
        """How many (node, parent set) local scores are cached."""
        return len(self._keys)

    def local_scores(self, nodes: Tensor, masks: Tensor) -> Tensor:
        """Cached local scores s(j, Pa), float64 with the broadcast shape of ``nodes`` and ``masks``.

        Args:
            nodes: long node indices j.
            masks: long parent bitmasks (bit j must be clear).
        """
        nodes, masks = torch.broadcast_tensors(nodes.long().cpu(), masks.long().cpu())
        keys = (nodes << self.num_nodes) | masks
        unique, inverse = torch.unique(keys.flatten(), return_inverse=True)
        values = self._lookup(unique)
        return values[inverse].view(keys.shape)

    def graph_scores(self, adjacency: Tensor) -> Tensor:
        """score(G) of each adjacency matrix in ``adjacency`` (``[B, d, d]``), float64 ``[B]``."""
        masks = parent_masks(adjacency.cpu())
        nodes = torch.arange(self.num_nodes).expand_as(masks)
        return self.local_scores(nodes, masks).sum(dim=1)

    def _lookup(self, unique: Tensor) -> Tensor:
        """Values of sorted unique keys, computing and caching the missing ones."""
        pos = torch.searchsorted(self._keys, unique)
        found = torch.zeros_like(unique, dtype=torch.bool)
        if len(self._keys):
            found = self._keys[pos.clamp(max=len(self._keys) - 1)] == unique
        values = torch.empty(len(unique), dtype=torch.float64)
        values[found] = self._values[pos[found]]
        if not bool(found.all()):
            missing = unique[~found]
            low = (1 << self.num_nodes) - 1
            new = self.compute_local(missing >> self.num_nodes, missing & low)
            values[~found] = new
            keys = torch.cat([self._keys, missing])
            order = torch.argsort(keys)
            self._keys = keys[order]
            self._values = torch.cat([self._values, new])[order]
        return values


class BGeScore(DecomposableScore):
    """The BGe score in the Kuipers et al. (2014) parametrisation (see the module docstring).

    Args:
        data: observations ``[N, d]``.
        alpha_mu: α_μ > 0, the precision scale of the prior on the mean (default 1).
        alpha_w: α_w > d + 1, the Wishart degrees of freedom (default d + 2).
        mean_obs: prior mean ν, ``[d]`` (default 0).
    """

    name = "bge"

    def __init__(
        self,
        data: ArrayLike,
        alpha_mu: float = 1.0,
        alpha_w: float | None = None,
        mean_obs: ArrayLike | None = None,
    ) -> None:
        super().__init__(data)
        n, d = self.num_samples, self.num_nodes
        if alpha_w is None:
            alpha_w = d + 2.0
        if not isinstance(alpha_mu, (int, float)) or not math.isfinite(alpha_mu) or alpha_mu <= 0:
            raise ValueError(f"alpha_mu must be a finite number > 0, got {alpha_mu!r}")
        if not isinstance(alpha_w, (int, float)) or not math.isfinite(alpha_w) or alpha_w <= d + 1:
            raise ValueError(
                f"alpha_w must be a finite number > num_nodes + 1 = {d + 1}, got {alpha_w!r}"
            )
        nu = torch.zeros(d, dtype=torch.float64)
        if mean_obs is not None:
            nu = torch.as_tensor(np.asarray(mean_obs, dtype=np.float64))
            if nu.shape != (d,):
                raise ValueError(f"mean_obs must have shape [{d}], got {list(nu.shape)}")
        self.alpha_mu, self.alpha_w = float(alpha_mu), float(alpha_w)
        self.t = self.alpha_mu * (self.alpha_w - d - 1) / (self.alpha_mu + 1)
        mean = self.data.mean(dim=0)
        centered = self.data - mean
        shift = (mean - nu).unsqueeze(1)
        self.R = (
            self.t * torch.eye(d, dtype=torch.float64)
            + centered.T @ centered
            + (n * self.alpha_mu / (n + self.alpha_mu)) * (shift @ shift.T)
        )
        parents = torch.arange(d, dtype=torch.float64)
        self._constant = (
            0.5 * (math.log(self.alpha_mu) - math.log(n + self.alpha_mu))
            + torch.lgamma(0.5 * (n + self.alpha_w - d + parents + 1))
            - torch.lgamma(0.5 * (self.alpha_w - d + parents + 1))
            - 0.5 * n * math.log(math.pi)
            + 0.5 * (self.alpha_w - d + 2 * parents + 1) * math.log(self.t)
        )

    def compute_local(self, nodes: Tensor, masks: Tensor) -> Tensor:
        n_parents = mask_bits(masks, self.num_nodes).sum(dim=1)
        family = masks | (torch.ones_like(nodes) << nodes)
        a = self.num_samples + self.alpha_w - self.num_nodes + n_parents.double()
        return (
            self._constant[n_parents]
            + 0.5 * a * submatrix_logdet(self.R, masks)
            - 0.5 * (a + 1) * submatrix_logdet(self.R, family)
        )


class LinearGaussianBICScore(DecomposableScore):
    """BIC of linear-Gaussian conditionals with intercepts (see the module docstring).

    Args:
        data: observations ``[N, d]``; parent sets must have fewer than N nodes.
    """

    name = "bic"

    def __init__(self, data: ArrayLike) -> None:
        super().__init__(data)
        centered = self.data - self.data.mean(dim=0)
        self.covariance = centered.T @ centered / self.num_samples

    def compute_local(self, nodes: Tensor, masks: Tensor) -> Tensor:
        n = self.num_samples
        n_parents = mask_bits(masks, self.num_nodes).sum(dim=1).double()
        family = masks | (torch.ones_like(nodes) << nodes)
        log_var = submatrix_logdet(self.covariance, family) - submatrix_logdet(
            self.covariance, masks
        )
        return -0.5 * n * (math.log(2 * math.pi) + log_var + 1) - 0.5 * (n_parents + 2) * math.log(
            n
        )


def make_score(
    score: str | DecomposableScore,
    data: ArrayLike,
    alpha_mu: float = 1.0,
    alpha_w: float | None = None,
) -> DecomposableScore:
    """A score object from its name (``"bge"`` or ``"bic"``) or an existing instance."""
    if isinstance(score, DecomposableScore):
        return score
    if score == "bge":
        return BGeScore(data, alpha_mu=alpha_mu, alpha_w=alpha_w)
    if score == "bic":
        return LinearGaussianBICScore(data)
    raise ValueError(f"score must be one of {SCORES} or a DecomposableScore, got {score!r}")
