"""Metrics of samplers on DAG structure learning (:class:`~gfn_envs.tasks.bayesnet.BayesNet`).

* :func:`edge_marginals`: P(i → j) = Σ_G w(G)·A_G[i, j].
* :func:`structural_hamming_distance`: node pairs whose edge (absent, i→j or j→i) differs.
* :func:`edge_auroc`: the Mann–Whitney AUROC of edge scores for the true edges.
* :func:`exact_bayesnet_metrics` (d ≤ 5, against the exact posterior) and
  :func:`sampled_bayesnet_metrics` (any d, from sampled graphs).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gfn_envs.metrics import jsd, tv
from gfn_envs.tasks.bayesnet import BayesNet


def edge_marginals(adjacency: Tensor, weights: Tensor | None = None) -> Tensor:
    """P(i → j) = Σ_G w(G)·A_G[i, j] with normalised ``weights`` (uniform if None), float64 [d, d]."""
    adjacency = adjacency.double()
    if weights is None:
        return adjacency.mean(dim=0)
    weights = torch.as_tensor(weights, dtype=torch.float64, device=adjacency.device)
    return torch.einsum("b,bij->ij", weights / weights.sum(), adjacency)


def structural_hamming_distance(adjacency: Tensor, true_graph: Tensor) -> Tensor:
    """SHD of each graph to ``true_graph``: node pairs {i, j} whose edge (absent, i→j or j→i)
    differs, so a reversed edge counts once. Long ``[B]``."""
    differ = adjacency.long() != true_graph.long().to(adjacency.device).unsqueeze(0)
    pair = differ | differ.transpose(1, 2)
    return torch.triu(pair, diagonal=1).flatten(1).sum(dim=1)


def edge_auroc(marginals: Tensor, true_graph: Tensor) -> float:
    """AUROC of the edge marginals (off-diagonal entries) as scores for the true edges.

    P(score of a true edge > score of an absent edge) + ½·P(tie), over all such pairs (the
    Mann–Whitney statistic); NaN when the true graph has no edges or is complete (one class only).
    """
    d = marginals.shape[0]
    off = ~torch.eye(d, dtype=torch.bool)
    scores = marginals.cpu().double()[off]
    labels = true_graph.cpu().bool()[off]
    positive, negative = scores[labels], scores[~labels]
    if len(positive) == 0 or len(negative) == 0:
        return math.nan
    greater = (positive.unsqueeze(1) > negative.unsqueeze(0)).double().mean()
    ties = (positive.unsqueeze(1) == negative.unsqueeze(0)).double().mean()
    return float(greater + 0.5 * ties)


def exact_bayesnet_metrics(task: BayesNet, p: Tensor) -> dict[str, float]:
    """Exact metrics of a sampler's distribution ``p`` over ``task.terminal_states()`` (d ≤ 5).

    ``tv`` and ``jsd`` to the exact posterior; ``edge_marginal_mae`` / ``edge_marginal_max``, the
    mean / max absolute error of the edge marginals P(i → j) over the d(d−1) ordered pairs; and
    ``expected_shd`` E_p[SHD(G, G_true)] with ``posterior_expected_shd`` its value under the
    posterior, when the task knows its true graph.
    """
    target = task.true_distribution()
    p = torch.as_tensor(p, dtype=torch.float64, device=target.device)
    adjacency = task.adjacency(task.terminal_states())
    error = (edge_marginals(adjacency, p) - edge_marginals(adjacency, target)).abs()
    off = ~torch.eye(task.num_nodes, dtype=torch.bool, device=error.device)
    out = {
        "tv": tv(p, target),
        "jsd": jsd(p, target),
        "edge_marginal_mae": float(error[off].mean()) if task.num_nodes > 1 else 0.0,
        "edge_marginal_max": float(error[off].max()) if task.num_nodes > 1 else 0.0,
    }
    if task.true_graph is not None:
        shd = structural_hamming_distance(adjacency, task.true_graph).double()
        out["expected_shd"] = float((p * shd).sum())
        out["posterior_expected_shd"] = float((target * shd).sum())
    return out


def sampled_bayesnet_metrics(task: BayesNet, states: Tensor) -> dict[str, float]:
    """Metrics of sampled graphs (``states``, any d).

    ``n_samples``, ``distinct_graphs``, ``mean_log_reward``, and when the true graph is known
    ``expected_shd`` (mean SHD to it) and ``edge_auroc`` (AUROC of the sampled edge frequencies).
    """
    states = task.validate_states(states)
    if len(states) == 0:
        raise ValueError("states must hold at least one sampled graph")
    adjacency = task.adjacency(states)
    out = {
        "n_samples": float(len(states)),
        "distinct_graphs": float(len(torch.unique(adjacency.flatten(1), dim=0))),
        "mean_log_reward": float(task.log_reward(states).mean()),
    }
    if task.true_graph is not None:
        out["expected_shd"] = float(
            structural_hamming_distance(adjacency, task.true_graph).double().mean()
        )
        out["edge_auroc"] = edge_auroc(edge_marginals(adjacency), task.true_graph)
    return out
