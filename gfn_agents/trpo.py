"""The natural-gradient trust-region step of RL-T (Schulman et al. 2015, as used by Niu et al.).

For the surrogate L(θ') = (1/B) Σ_rows π_θ'(a|s)/π_θ(a|s)·Â (to be *minimised*, since Â are
advantages of costs) and the average KL D(θ') = (1/B) Σ_rows KL(π_θ(·|s) ‖ π_θ'(·|s)):

1. g = ∇L(θ); the Fisher matrix F = ∇²D(θ) enters only through products F·v (double backward);
2. x ≈ F⁻¹g by ``cg_iters`` conjugate-gradient iterations;
3. full step Δ = −sqrt(2δ / xᵀFx)·x;
4. backtracking over θ + 0.5^k·Δ, k = 0…backtracks−1: accept the first candidate whose surrogate is
   below L(θ) and whose mean per-state KL(π_new ‖ π_θ) is at most δ;
5. when no candidate is accepted, the parameters are restored to θ (the reference code leaves them
   at its last trial).

In a data-parallel run each rank holds a share of the rows, with B its share of the trajectories:
g, the Fisher-vector products and the surrogate are averaged over the ranks and the line search's
KL is the mean over every rank's rows (:mod:`gfn_agents.distributed`), so every step, decision
included, is the single-process one on the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from gfn_agents import distributed


def _flat(tensors: tuple[Tensor | None, ...], params: list[nn.Parameter]) -> Tensor:
    return torch.cat(
        [
            (t if t is not None else torch.zeros_like(p)).reshape(-1)
            for t, p in zip(tensors, params, strict=True)
        ]
    )


def _kl(p_log: Tensor, q_log: Tensor, mask: Tensor) -> Tensor:
    """Per-row KL(p ‖ q) of masked log-probabilities (masked entries contribute 0)."""
    terms = p_log.exp() * (p_log - q_log)
    return torch.where(mask, terms, 0.0).sum(dim=1)


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int, tol: float = 1e-10
) -> Tensor:
    """Approximately solve A x = b for a symmetric positive definite A given by ``matvec``."""
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r @ r
        if rr_new < tol:
            break
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def trpo_step(
    params: list[nn.Parameter],
    log_probs: Tensor,
    evaluate: Callable[[], Tensor],
    mask: Tensor,
    actions: Tensor,
    advantages: Tensor,
    batch_size: int,
    max_kl: float = 0.01,
    cg_iters: int = 10,
    backtracks: int = 20,
    damping: float = 1e-3,
) -> dict[str, float]:
    """One TRPO update of ``params`` in place; see the module docstring.

    Args:
        params: the policy parameters.
        log_probs: masked log-probabilities ``[N, n]`` at θ, with the graph to ``params``.
        evaluate: recomputes the masked log-probabilities at the current parameters.
        mask, actions, advantages: per row, the legal actions, the action taken and Â.
        batch_size: B, the number of trajectories the rows belong to.
        damping: added to the Fisher matrix's diagonal for a stable CG solve.

    Returns:
        ``trpo_accepted`` (1 or 0), ``trpo_step_fraction`` and ``trpo_kl``.
    """
    old = log_probs.detach()
    rows = torch.arange(len(actions), device=actions.device)
    advantages = advantages.detach()

    def surrogate(current: Tensor) -> Tensor:
        ratio = (current[rows, actions] - old[rows, actions]).exp()
        return (ratio * advantages).sum() / batch_size

    loss = surrogate(log_probs)
    grad = _flat(torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True), params)
    grad = distributed.average(grad)
    kl = _kl(old, log_probs, mask).sum() / batch_size
    kl_grad = _flat(torch.autograd.grad(kl, params, create_graph=True, allow_unused=True), params)

    def fisher(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(kl_grad @ v, params, retain_graph=True, allow_unused=True)
        return distributed.average(_flat(hv, params)) + damping * v

    direction = conjugate_gradient(fisher, grad, cg_iters)
    curvature = direction @ fisher(direction)
    if not bool(curvature > 0):
        return {"trpo_accepted": 0.0, "trpo_step_fraction": 0.0, "trpo_kl": 0.0}
    full_step = -torch.sqrt(2 * max_kl / curvature) * direction
    start = torch.nn.utils.parameters_to_vector(params).detach()
    loss_old = float(distributed.average(loss.detach()))
    with torch.no_grad():
        for k in range(backtracks):
            fraction = 0.5**k
            torch.nn.utils.vector_to_parameters(start + fraction * full_step, params)
            current = evaluate()
            new_kl = float(distributed.global_mean(_kl(current, old, mask)))
            new_loss = float(distributed.average(surrogate(current)))
            if new_loss < loss_old and new_kl <= max_kl:
                return {"trpo_accepted": 1.0, "trpo_step_fraction": fraction, "trpo_kl": new_kl}
        torch.nn.utils.vector_to_parameters(start, params)
    return {"trpo_accepted": 0.0, "trpo_step_fraction": 0.0, "trpo_kl": 0.0}
