"""The natural-gradient trust-region step of RL-T (Schulman et al. 2015, as used by Niu et al.).

For the surrogate L(θ') = (1/B) Σ_rows π_θ'(a|s)/π_θ(a|s)·Â (to be *minimised*, since Â are
advantages of costs) and the average KL D(θ') = (1/B) Σ_rows KL(π_θ(·|s) ‖ π_θ'(·|s)):

1. g = ∇L(θ); the Fisher matrix F = ∇²D(θ) enters only through products F·v (Gauss-Newton form,
   below);
2. x ≈ (F + λI)⁻¹g by ``cg_iters`` conjugate-gradient iterations (λ = ``damping``);
3. full step Δ = −sqrt(2δ / xᵀ(F + λI)x)·x, with (F + λI)x read off CG's residual;
4. backtracking over θ + 0.5^k·Δ, k = 0…backtracks−1: accept the first candidate whose surrogate is
   below L(θ) and whose mean per-row KL(π_new ‖ π_θ) is at most δ;
5. when no candidate is accepted, the parameters are restored to θ (the reference code leaves them
   at its last trial).

**Over distinct states.** The policy sees only a row's observation and mask, so rows with the same
(observation, mask) — the same state s — have the same log-probabilities ℓ_s. With c_s the number
of rows at s and W[s, a] = (1/B) Σ_{rows at s taking a} Â (0 for actions no row took), every
quantity of the step is a weighted sum over the U distinct states instead of the N rows:

    L(θ') = Σ_s Σ_a W[s, a] exp(ℓ'_{s,a} − ℓ_{s,a}),            g = Σ_s Σ_a W[s, a] ∇ℓ_{s,a},
    D(θ') = (1/B) Σ_s c_s KL(π_θ(·|s) ‖ π_θ'(·|s)),
    line-search KL = Σ_s c_s KL(π_θ'(·|s) ‖ π_θ(·|s)) / Σ_s c_s.

These are the row sums regrouped, so the step is the one over rows up to float rounding, and the
network passes of the step (the gradient pass, the Fisher-vector products, the line search's
forwards) run on U rows. :func:`distinct_states` finds the states; on HyperGrid 2 × 64 U is about a
third of N, since trajectories share their first states.

In a data-parallel run each rank holds a share of the rows, with B its share of the trajectories,
and finds its own distinct states: g, the Fisher-vector products and the surrogate are averaged
over the ranks and the line search's KL sums c_s·KL_s and c_s over every rank
(:mod:`gfn_agents.distributed`). Each rank's weighted sums are its share of the global row sums,
so every step, decision included, is the single-process one on the whole batch.

**The Fisher-vector product.** Let ℓ(θ) be the masked log-probabilities ``[U, n]`` (one row per
state), p = exp ℓ(θ) (0 at illegal actions) and J = ∂ℓ/∂θ. With ℓ' = ℓ(θ'),
D(θ') = (1/B) Σ_s c_s Σ_a p_a (log p_a − ℓ'_a) over the legal actions, so
∇²D(θ') = −(1/B) Σ_s c_s Σ_a p_a ∇²ℓ'_a. Differentiating Σ_a exp ℓ'_a = 1 twice gives
Σ_a p'_a (∇ℓ'_a ∇ℓ'_aᵀ + ∇²ℓ'_a) = 0, so at θ' = θ, where p' = p,

    F = ∇²D(θ) = (1/B) Σ_s c_s Σ_a p_a ∇ℓ_a ∇ℓ_aᵀ = Jᵀ diag(w) J,   w[s, a] = c_s p_{s,a} / B,

the Gauss-Newton matrix of D, with no second derivative of the network. (With the logits z,
ℓ = z − logsumexp(z) over the legal actions, J = (I − 1pᵀ) J_z and F = (1/B) Σ_s c_s J_zᵀ
(diag(p) − ppᵀ) J_z.) F is positive semi-definite, so F + λI is positive definite and CG is well
posed. (Rows of J at illegal actions are finite, −pᵀJ_z, and weighted by p = 0.) A product
F·v = Jᵀ(w ⊙ Jv) takes two linear passes:

* Jᵀu is one vector-Jacobian product (backward) through the graph ``log_probs`` already holds;
* Jv comes from the *double-vjp* trick: G(u) = Jᵀu is built once with ``create_graph=True`` and is
  linear in u, so the vector-Jacobian product of G against v, with respect to u, is J v. It reuses
  the first pass's activations (no forward recomputation) and costs about one backward. The seed u
  is ∂L/∂ℓ at θ (W; the ratio is 1 there), so G(u) is also the gradient g.

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
from gfn_envs.scoring import policy_kl


def _flat(tensors: tuple[Tensor | None, ...], params: list[nn.Parameter]) -> Tensor:
    return torch.cat(
        [
            (t if t is not None else torch.zeros_like(p)).reshape(-1)
            for t, p in zip(tensors, params, strict=True)
        ]
    )


def distinct_states(obs: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The distinct (observation, mask) rows of a batch, and each row's index among them.

    Args:
        obs: observations ``[N, ...]``.
        mask: legal actions ``[N, n]``.

    Returns:
        ``(obs_u [U, ...], mask_u [U, n], states [N])`` with ``obs == obs_u[states]`` and
        ``mask == mask_u[states]``; the U rows are in lexicographic order (``torch.unique``).
    """
    keys = torch.cat([obs.reshape(len(obs), -1), mask.to(obs.dtype)], dim=1)
    unique, states = torch.unique(keys, dim=0, return_inverse=True)
    width = keys.shape[1] - mask.shape[1]
    return unique[:, :width].reshape(-1, *obs.shape[1:]), unique[:, width:].bool(), states


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
    """F·v = Jᵀ(w ⊙ Jv) + λv, w[s, a] = c_s p_{s,a} / B, for masked log-probabilities ℓ of the
    distinct states with J = ∂ℓ/∂θ (module docstring).

    In a data-parallel run :attr:`gradient` and every product are averaged over the ranks.

    Args:
        params: θ.
        log_probs: ℓ(θ) ``[U, n]`` with the graph to ``params`` (kept alive by the products).
        mask: legal actions ``[U, n]``; p = exp ℓ there and 0 elsewhere.
        seed: u ``[U, n]``, the cotangent whose pull-back :attr:`gradient` = Jᵀu is returned.
        counts: c ``[U]``, the rows at each state.
        batch_size: B.
        damping: λ.
    """

    def __init__(
        self,
        params: list[nn.Parameter],
        log_probs: Tensor,
        mask: Tensor,
        seed: Tensor,
        counts: Tensor,
        batch_size: int,
        damping: float,
    ) -> None:
        self.params, self.log_probs, self.damping = params, log_probs, damping
        probs = torch.where(mask, log_probs.detach().exp(), 0.0)
        self.weights = probs * (counts.to(probs.dtype) / batch_size).unsqueeze(1)
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
        """J v ``[U, n]``: the vector-Jacobian product of Jᵀu with respect to u."""
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
    states: Tensor | None = None,
    max_kl: float = 0.01,
    cg_iters: int = 10,
    backtracks: int = 20,
    damping: float = 1e-3,
) -> dict[str, float]:
    """One TRPO update of ``params`` in place; see the module docstring.

    Args:
        params: the policy parameters.
        log_probs: masked log-probabilities ``[U, n]`` of the distinct states at θ, with the graph
            to ``params``.
        evaluate: recomputes them at the current parameters.
        mask: the legal actions ``[U, n]`` of the states.
        actions, advantages: per row ``[N]``, the action taken and Â.
        batch_size: B, the number of trajectories the rows belong to.
        states: per row ``[N]``, the index of its state in ``log_probs`` (from
            :func:`distinct_states`); None when row i is state i (U = N).
        damping: added to the Fisher matrix's diagonal for a stable CG solve.

    Returns:
        ``trpo_accepted`` (1 or 0), ``trpo_step_fraction`` and ``trpo_kl``.
    """
    old = log_probs.detach()
    if states is None:
        states = torch.arange(len(actions), device=actions.device)
    counts = torch.bincount(states, minlength=len(old)).to(old.dtype)
    # W = ∂L/∂ℓ at θ (the ratio is 1): Σ Â/B over the rows at each (state, action).
    weights = torch.zeros_like(old).index_put(
        (states, actions), advantages.detach() / batch_size, accumulate=True
    )

    def surrogate(current: Tensor) -> Tensor:
        return torch.where(mask, (current - old).exp() * weights, 0.0).sum()

    fisher = GaussNewtonFisher(params, log_probs, mask, weights, counts, batch_size, damping)
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
            kl_rows = torch.stack([(counts * policy_kl(current, old, mask)).sum(), counts.sum()])
            kl_sum, rows = distributed.global_sum(kl_rows.double()).tolist()
            new_kl = kl_sum / rows
            new_loss = float(distributed.average(surrogate(current)))
            if new_loss < loss_old and new_kl <= max_kl:
                return {"trpo_accepted": 1.0, "trpo_step_fraction": fraction, "trpo_kl": new_kl}
        torch.nn.utils.vector_to_parameters(start, params)
    return {"trpo_accepted": 0.0, "trpo_step_fraction": 0.0, "trpo_kl": 0.0}
