"""Metrics of samplers on sequence tasks (:class:`~gfn_envs.tasks.sequence.SequenceTask`).

* :func:`accuracy` is the paper's Acc = min(1, E_p[R] / E_{P*}[R]) with E_{P*}[R] = ΣR²/ΣR
  (Shen et al. 2023).
* :func:`exact_sequence_metrics` bundles the exact metrics of a distribution over
  ``task.terminal_states()``: tv, l1, kl, jsd, acc and the expected number of distinct modes.
* :func:`top_k_mean_reward`, :func:`mean_pairwise_hamming` and :func:`discovery_metrics` serve
  samples of tasks that cannot be enumerated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gfn_envs.metrics import exact_metrics, expected_modes_found
from gfn_envs.tasks.rna import RNABinding
from gfn_envs.tasks.sequence import SequenceTask


def accuracy(p: Tensor, rewards: Tensor) -> float:
    """Acc = min(1, E_p[R] / E_{P*}[R]) with P* ∝ R, so E_{P*}[R] = ΣR²/ΣR (Shen et al. 2023).

    ``p`` and ``rewards`` are aligned vectors over all objects.
    """
    p = torch.as_tensor(p, dtype=torch.float64)
    rewards = torch.as_tensor(rewards, dtype=torch.float64).to(p.device)
    if p.shape != rewards.shape or p.dim() != 1:
        raise ValueError(
            f"p and rewards must be 1-D of equal length, got {list(p.shape)}, {list(rewards.shape)}"
        )
    target = float((rewards * rewards).sum() / rewards.sum())
    return min(1.0, float((p * rewards).sum()) / target)


def exact_sequence_metrics(task: SequenceTask, p: Tensor) -> dict[str, float]:
    """Exact ``tv``, ``l1``, ``kl`` (KL(P* ‖ p)), ``jsd`` and ``acc`` of a sampler's distribution
    ``p`` over ``task.terminal_states()``, and ``expected_modes``: the expected number of distinct
    modes (``task.modes()``) among M draws from p, M the number of modes."""
    p = torch.as_tensor(p, dtype=torch.float64)
    out = exact_metrics(p, task.true_distribution().to(p.device))
    out["acc"] = accuracy(p, task.reward_table.to(p.device))
    modes = task.modes().to(p.device)
    out["expected_modes"] = expected_modes_found(p, modes, int(modes.sum()))
    return out


def unique_sequences(seqs: Tensor) -> Tensor:
    """The distinct rows of ``seqs`` ``[B, L]``, sorted lexicographically."""
    return torch.unique(torch.as_tensor(seqs), dim=0)


def top_k_mean_reward(seqs: Tensor, log_rewards: Tensor, k: int) -> float:
    """Mean reward R of the ``k`` best *distinct* sequences among ``seqs`` (fewer if fewer exist)."""
    seqs = torch.as_tensor(seqs)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    uniq, inverse = torch.unique(seqs, dim=0, return_inverse=True)
    best = torch.full((len(uniq),), -math.inf, dtype=torch.float64)
    best.scatter_reduce_(0, inverse.cpu(), torch.as_tensor(log_rewards).double().cpu(), "amax")
    return float(best.topk(min(k, len(best))).values.exp().mean())


def mean_pairwise_hamming(seqs: Tensor) -> float:
    """Diversity: mean Hamming distance over unordered pairs of distinct rows of ``seqs``."""
    seqs = torch.as_tensor(seqs)
    n = len(seqs)
    if n < 2:
        raise ValueError(f"seqs must hold at least 2 sequences, got {n}")
    total = 0.0
    for start in range(0, n, 1024):
        block = seqs[start : start + 1024]
        total += float((block.unsqueeze(1) != seqs.unsqueeze(0)).sum())
    return total / (n * (n - 1))


def discovery_metrics(task: RNABinding, seqs: Tensor, k: int = 100) -> dict[str, float]:
    """Sampled metrics of terminal sequences ``[N, L]`` drawn from a sampler (repeats allowed) on
    the RNA binding task.

    Returns ``modes_found`` (distinct sequences with f ≥ ``task.mode_threshold``), ``unique``
    (distinct sequences), ``top_k_fitness`` / ``top_k_reward`` (mean f and mean R of the k best
    distinct ones, fewer if fewer exist), ``top_k_diversity`` (mean pairwise Hamming distance among
    those, 0 for fewer than two), ``max_fitness`` and ``oracle_calls`` (cumulative).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    seqs = task.validate_states(seqs, "seqs")
    if len(seqs) == 0 or bool((seqs < 0).any()):
        raise ValueError("seqs must be a non-empty batch of full sequences")
    distinct = unique_sequences(seqs)
    f = task.fitness(distinct)
    top = f.topk(min(k, len(f))).indices
    best = distinct[top]
    return {
        "modes_found": float((f >= task.mode_threshold).sum()),
        "unique": float(len(distinct)),
        "top_k_fitness": float(f[top].mean()),
        "top_k_reward": float(task.sequence_log_reward(best).exp().mean()),
        "top_k_diversity": mean_pairwise_hamming(best) if len(best) > 1 else 0.0,
        "max_fitness": float(f.max()),
        "oracle_calls": float(task.oracle_calls),
    }
