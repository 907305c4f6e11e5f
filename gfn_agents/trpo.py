"""The natural-gradient trust-region step of RL-T (Schulman et al. 2015, as used by Niu et al.).

For the surrogate L(θ') = (1/B) Σ_rows π_θ'(a|s)/π_θ(a|s)·Â (to be *minimised*, since Â are
advantages of costs) and the average KL D(θ') = (1/B) Σ_rows KL(π_θ(·|s) ‖ π_θ'(·|s)):

1. g = ∇L(θ); the Fisher matrix F = ∇²D(θ) enters only through products F·v (Gauss-Newton form,
   below);
2. x ≈ (F + λI)⁻¹g by ``cg_iters`` conjugate-gradient iterations (λ = ``damping``);
3. full step Δ = −sqrt(2δ / xᵀ(F + λI)x)·x, with (F + λI)x read off CG's residual;
4. backtracking over θ + 0.5^k·Δ, k = 0…backtracks−1: accept the first candidate whose surrogate is
   below L(θ) and whose mean per-state KL(π_new ‖ π_θ) is at most δ;
5. when no candidate is accepted, the parameters are restored to θ (the reference code leaves them
   at its last trial).

In a data-parallel run each rank holds a share of the rows, with B its share of the trajectories:
g, the Fisher-vector products and the surrogate are averaged over the ranks and the line search's
KL is the mean over every rank's rows (:mod:`gfn_agents.distributed`), so every step, decision
included, is the single-process one on the whole batch.

**The Fisher-vector product.** Let ℓ(θ) be the masked log-probabilities ``[N, n]`` (one row per
state), p = exp ℓ(θ) (0 at illegal actions) and J = ∂ℓ/∂θ. With ℓ' = ℓ(θ'),
D(θ') = (1/B) Σ_rows Σ_a p_a (log p_a − ℓ'_a) over the legal actions, so
∇²D(θ') = −(1/B) Σ_rows Σ_a p_a ∇²ℓ'_a. Differentiating Σ_a exp ℓ'_a = 1 twice gives
Σ_a p'_a (∇ℓ'_a ∇ℓ'_aᵀ + ∇²ℓ'_a) = 0, so at θ' = θ, where p' = p,

    F = ∇²D(θ) = (1/B) Σ_rows Σ_a p_a ∇ℓ_a ∇ℓ_aᵀ = (1/B) Jᵀ diag(p) J,

the Gauss-Newton matrix of D, with no second derivative of the network. (With the logits z,
ℓ = z − logsumexp(z) over the legal actions, J = (I − 1pᵀ) J_z and F = (1/B) J_zᵀ (diag(p) − ppᵀ) J_z.)
F is positive semi-definite, so F + λI is positive definite and CG is well posed. (Rows of J at
illegal actions are finite, −pᵀJ_z, and weighted by p = 0.) A product F·v = (1/B) Jᵀ(p ⊙ Jv)
takes two linear passes:

* Jᵀu is one vector-Jacobian product (backward) through the graph ``log_probs`` already holds;
* Jv comes from the *double-vjp* trick: G(u) = Jᵀu is built once with ``create_graph=True`` and is
  linear in u, so the vector-Jacobian product of G against v, with respect to u, is J v. It reuses
  the first pass's activations (no forward recomputation) and costs about one backward. The seed u
  is ∂L/∂ℓ at θ (Â/B at the taken actions; the ratio is 1 there), so G(u) is also the gradient g.

Per layer of an MLP the product is 2 matrix products for Jv and 2 for Jᵀu, against 1 + 2 for a
forward and backward pass and 5 to 6 for autograd's double backward of ∇D (the Hessian-vector
product, which gives the same F·v up to rounding: the terms it adds are multiplied by
∂D/∂z = softmax(z') − p, which is 0 at θ' = θ).
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
) -> tuple[Tensor, Tensor]:
    """Approximately solve A x = b for a symmetric positive definite A given by ``matvec``, by at
    most ``iters`` conjugate-gradient iterations, stopping once |r|² < ``tol``.

    Returns x and A x. A x = Σ_i α_i A p_i = b − r is read off the residual, which CG updates with
    the same products, so it is exact up to rounding and costs no further ``matvec``.
    """
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr < tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, b - r


class GaussNewtonFisher:
    """F·v = (1/B) Jᵀ(p ⊙ Jv) + λv for masked log-probabilities ℓ with J = ∂ℓ/∂θ (module docstring).

    In a data-parallel run :attr:`gradient` and every product are averaged over the ranks.

    Args:
        params: θ.
        log_probs: ℓ(θ) ``[N, n]`` with the graph to ``params`` (kept alive by the products).
        mask: legal actions ``[N, n]``; p = exp ℓ there and 0 elsewhere.
        seed: u ``[N, n]``, the cotangent whose pull-back :attr:`gradient` = Jᵀu is returned.
        batch_size: B.
        damping: λ.
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        log_probs: Tensor,
        mask: Tensor,
        seed: Tensor,
        batch_size: int,
        damping: float,
    ) -> None:
        self.params, self.log_probs, self.damping = params, log_probs, damping
        self.weights = torch.where(mask, log_probs.detach().exp(), 0.0) / batch_size
        self.seed = seed.detach().requires_grad_()
        pulled = torch.autograd.grad(
            log_probs, params, self.seed, create_graph=True, allow_unused=True
        )
        self.gradient = distributed.average(_flat(pulled, params).detach())
        # The parameters whose Jacobian block is not identically 0, with their offsets in θ.
        self._linear: list[Tensor] = []
        self._slices: list[slice] = []
        start = 0
        for g, p in zip(pulled, params, strict=True):
            if g is not None and g.requires_grad:
                self._linear.append(g)
                self._slices.append(slice(start, start + p.numel()))
            start += p.numel()

    def jvp(self, v: Tensor) -> Tensor:
        """J v ``[N, n]``: the vector-Jacobian product of Jᵀu with respect to u."""
        parts = [v[s].view_as(g) for s, g in zip(self._slices, self._linear, strict=True)]
        (jv,) = torch.autograd.grad(self._linear, self.seed, parts, retain_graph=True)
        return jv

    def __call__(self, v: Tensor) -> Tensor:
        """(F + λI) v."""
        back = torch.autograd.grad(
            self.log_probs,
            self.params,
            self.weights * self.jvp(v),
            retain_graph=True,
            allow_unused=True,
        )
        return distributed.average(_flat(back, self.params)) + self.damping * v


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

    # ∂L/∂ℓ at θ: the ratio is 1, so Â/B at the taken actions and 0 elsewhere.
    seed = torch.zeros_like(old).index_put((rows, actions), advantages / batch_size)
    fisher = GaussNewtonFisher(params, log_probs, mask, seed, batch_size, damping)
    direction, product = conjugate_gradient(fisher, fisher.gradient, cg_iters)
    curvature = direction @ product
    if not bool(curvature > 0):
        return {"trpo_accepted": 0.0, "trpo_step_fraction": 0.0, "trpo_kl": 0.0}
    full_step = -torch.sqrt(2 * max_kl / curvature) * direction
    start = torch.nn.utils.parameters_to_vector(params).detach()
    loss_old = float(distributed.average(surrogate(old)))
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
