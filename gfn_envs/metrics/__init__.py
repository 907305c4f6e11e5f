"""Distances between distributions over terminal objects, with fixed names and meanings.

* ``tv``  = ½·Σ|p − q|             (total variation, in [0, 1])
* ``l1``  = Σ|p − q|               (= 2·tv; torchgfn's ``l1_dist``)
* ``kl``  = Σ p·log(p/q), nats     (KL(p ‖ q); +inf where q = 0 < p)
* ``jsd`` = ½KL(p‖m) + ½KL(q‖m), m = (p + q)/2, nats (in [0, log 2])
* ``logz_error`` = |log Z − log Z*|

Exact metrics take two full probability vectors. The ``sampled_*`` helpers estimate them from
samples, report the sample count and the noise floor (the TV a *perfect* sampler would show with that
many samples), and warn when a result cannot be told apart from that floor.

Task-family metrics build on these in submodules: :mod:`gfn_envs.metrics.sequences` (accuracy,
exact metrics of sequence tasks, top-k reward, diversity, discovery metrics) and
:mod:`gfn_envs.metrics.graphs` (edge marginals, SHD, edge AUROC, exact and sampled BayesNet metrics).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor


def _pair(p: Tensor, q: Tensor) -> tuple[Tensor, Tensor]:
    p, q = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
    if p.shape != q.shape or p.dim() != 1:
        raise ValueError(
            f"p and q must be 1-D of equal length, got {list(p.shape)}, {list(q.shape)}"
        )
    return p, q.to(p.device)


def tv(p: Tensor, q: Tensor) -> float:
    """Total variation ½·Σ|p − q|."""
    p, q = _pair(p, q)
    return 0.5 * float((p - q).abs().sum())


def l1(p: Tensor, q: Tensor) -> float:
    """L1 distance Σ|p − q|."""
    p, q = _pair(p, q)
    return float((p - q).abs().sum())


def _kl(p: Tensor, q: Tensor) -> Tensor:
    support = p > 0
    if bool((q[support] <= 0).any()):
        return torch.tensor(math.inf, dtype=torch.float64)
    return (p[support] * (p[support].log() - q[support].log())).sum()


def kl(p: Tensor, q: Tensor) -> float:
    """KL(p ‖ q) in nats, with 0·log 0 = 0."""
    return float(_kl(*_pair(p, q)))


def jsd(p: Tensor, q: Tensor) -> float:
    """Jensen–Shannon divergence in nats."""
    p, q = _pair(p, q)
    m = 0.5 * (p + q)
    return float(0.5 * _kl(p, m) + 0.5 * _kl(q, m))


def logz_error(log_z: float, log_z_star: float) -> float:
    """|log Z − log Z*|."""
    return abs(float(log_z) - float(log_z_star))


def expected_modes_found(p: Tensor, modes: Tensor, n_samples: int) -> float:
    """Expected number of distinct modes among ``n_samples`` draws from p: Σ_m 1 − (1 − p_m)^n.

    ``modes`` is a bool mask or an index tensor over the support of p.
    """
    p = torch.as_tensor(p, dtype=torch.float64)
    pm = p[modes]
    return float((1.0 - torch.exp(n_samples * torch.log1p(-pm.clamp(max=1.0 - 1e-16)))).sum())


def exact_metrics(p: Tensor, target: Tensor) -> dict[str, float]:
    """``tv``, ``l1``, ``kl`` (KL(target ‖ p)) and ``jsd`` of a sampler's exact distribution p."""
    return {"tv": tv(p, target), "l1": l1(p, target), "kl": kl(target, p), "jsd": jsd(p, target)}


def empirical_distribution(indices: Tensor, n_objects: int) -> Tensor:
    """Frequencies of object ``indices`` (long ``[n]``) over ``n_objects`` objects."""
    indices = torch.as_tensor(indices, dtype=torch.long)
    counts = torch.bincount(indices.flatten().cpu(), minlength=n_objects).to(torch.float64)
    return counts / counts.sum()


def tv_noise_floor(target: Tensor, n_samples: int) -> float:
    """Expected TV between ``target`` and the frequencies of ``n_samples`` exact draws from it.

    Uses the normal approximation E|p̂_i − p_i| ≈ sqrt(2 p_i (1 − p_i) / (π n)).
    """
    target = torch.as_tensor(target, dtype=torch.float64)
    return 0.5 * float(torch.sqrt(2 * target * (1 - target) / (math.pi * n_samples)).sum())


def sampled_metrics(indices: Tensor, target: Tensor) -> dict[str, float]:
    """``tv``, ``l1``, ``jsd`` estimated from sampled object indices, with ``n_samples`` and
    ``tv_noise_floor``. Warns when the TV is within twice the noise floor."""
    target = torch.as_tensor(target, dtype=torch.float64)
    n = int(torch.as_tensor(indices).numel())
    if n == 0:
        raise ValueError("indices must hold at least one sample")
    p = empirical_distribution(indices, len(target))
    floor = tv_noise_floor(target, n)
    out = {"tv": tv(p, target), "l1": l1(p, target), "jsd": jsd(p, target)}
    if out["tv"] < 2 * floor:
        warnings.warn(
            f"sampled tv={out['tv']:.4f} from {n} samples is within twice the noise floor "
            f"{floor:.4f} of a perfect sampler; use the exact metrics or more samples",
            stacklevel=2,
        )
    return {**out, "n_samples": float(n), "tv_noise_floor": floor}
