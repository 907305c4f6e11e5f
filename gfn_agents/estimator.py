"""The policy-gradient estimator, written once for the forward and the backward updates.

One estimator step on a batch of trajectories with per-row costs c (detached) and the
log-probabilities log π(a|s) of the taken actions (with their graph):

1. **value step** (:class:`ValueCritic`): Ṽ(s_t) regresses the Monte-Carlo cost-to-go
   G_t = Σ_{k≥t} c_k, loss (1/B) Σ_rows (G_t − Ṽ(s_t))², one Adam step (or the Sub-EB critic,
   :class:`gfn_agents.subeb.SubEBCritic`);
2. **advantages**: GAE(λ) with the values of *before* the value step,
   Â_t = Σ_{k≥0} λ^k δ_{t+k}, δ_t = c_t + Ṽ(s_{t+1}) − Ṽ(s_t) (Ṽ = 0 after the last row), then
   centred over the batch: Â ← Â − mean(Â);
3. **policy step**: an update rule minimises the surrogate (1/B) Σ_rows Â_t log π(a_t|s_t):
   :class:`AdamUpdate` (one Adam step, optionally together with an extra loss such as log Z's),
   :class:`TrpoUpdate` (a natural-gradient step, :mod:`gfn_agents.trpo`) or
   :class:`gfn_agents.ppo.PpoUpdate` (clipped-PPO epochs).

:func:`estimator_step` runs the three in this order. The forward update of
:class:`~gfn_agents.pg.PolicyGradientGFN` uses it with λ = ``gae_lambda``, the backward learners
of :mod:`gfn_agents.backward` with λ = 1. Another critic (any object with
``step(traj, costs) -> (advantages, stats)``, :class:`Critic`) or another update rule
(``step(traj, log_probs, advantages, extra_loss) -> stats``, :class:`PolicyUpdate`) plugs into
the same step. Every optimiser step goes through :func:`optimizer_step`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from gfn_agents import distributed
from gfn_agents.policies import ValueNetwork
from gfn_agents.rollout import Trajectories
from gfn_agents.trpo import distinct_states, trpo_step
from gfn_envs.scoring import Policy, policy_log_probs


def discounted_sum(traj: Trajectories, flat: Tensor, lam: float) -> Tensor:
    """Σ_{k≥0} λ^k x_{t+k} along each trajectory, for per-row values x (``[N]`` → ``[N]``).

    One matrix product with the upper-triangular matrix M[t, k] = λ^{k−t} over the padded grid.
    """
    grid = traj.to_grid(flat)
    steps = torch.arange(grid.shape[0], device=grid.device, dtype=grid.dtype)
    gap = steps.unsqueeze(0) - steps.unsqueeze(1)
    weights = torch.where(gap >= 0, torch.as_tensor(lam, dtype=grid.dtype) ** gap.clamp(min=0), 0.0)
    return (weights @ grid)[traj.valid]


def gae_advantages(traj: Trajectories, costs: Tensor, values: Tensor, lam: float) -> Tensor:
    """Centred GAE(λ) advantages of per-row ``costs`` under the baseline Ṽ = ``values``.

    Â_t = Σ_k λ^k δ_{t+k} with δ_t = c_t + Ṽ(s_{t+1}) − Ṽ(s_t) (Ṽ = 0 after the last row), then
    Â ← Â − mean(Â); ``values`` are detached. In a data-parallel run the mean is over the rows of
    every rank (:func:`gfn_agents.distributed.global_mean`).
    """
    values = values.detach()
    deltas = costs + traj.next_values(values) - values
    advantages = discounted_sum(traj, deltas, lam)
    return advantages - distributed.global_mean(advantages)


def advantages_and_returns(
    traj: Trajectories, costs: Tensor, values: Tensor, lam: float
) -> tuple[Tensor, Tensor]:
    """Centred GAE(λ) advantages (:func:`gae_advantages`) and Monte-Carlo returns
    G_t = Σ_{k≥t} c_k of per-row ``costs``."""
    return gae_advantages(traj, costs, values, lam), discounted_sum(traj, costs, 1.0)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """One step of ``optimizer`` on ``loss``: clear the gradients, backpropagate, step. Every
    optimiser step of the agents' estimators and learners goes through here."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def surrogate_loss(advantages: Tensor, log_probs: Tensor, batch_size: int) -> Tensor:
    """(1/B) Σ_rows Â_t log π(a_t|s_t), whose gradient is the policy gradient of the costs."""
    return (advantages * log_probs).sum() / batch_size


class Critic(Protocol):
    """What :func:`estimator_step` needs from a critic."""

    def step(self, traj: Trajectories, costs: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Update the critic on the batch; return the advantages ``[N]`` and statistics."""
        ...


class PolicyUpdate(Protocol):
    """What :func:`estimator_step` needs from a policy update rule.

    ``needs_sampling_graph``: whether :meth:`step` differentiates ``log_probs`` (the sampling
    pass's graph); a rule that re-evaluates the policy itself lets the rollout run without one.
    """

    needs_sampling_graph: bool

    def step(
        self,
        traj: Trajectories,
        log_probs: Tensor,
        advantages: Tensor,
        extra_loss: Tensor | None = None,
    ) -> dict[str, float]:
        """Update the policy (and minimise ``extra_loss`` with it); return statistics."""
        ...


class ValueCritic:
    """A learned baseline Ṽ(s) with its own Adam optimiser and GAE(λ) advantages.

    Args:
        obs_dim: observation width.
        net_arch: hidden widths of Ṽ.
        lr: Adam step size.
        lam: λ of GAE (1: Monte-Carlo returns minus the baseline).
        device: where Ṽ lives.
        prefix: prefix of the statistics' names (``"backward_"`` for the backward learners).
    """

    def __init__(
        self,
        obs_dim: int,
        net_arch: Sequence[int],
        lr: float,
        lam: float,
        device: torch.device,
        prefix: str = "",
    ) -> None:
        self.value = ValueNetwork(obs_dim, net_arch).to(device)
        self.optimizer = torch.optim.Adam(self.value.parameters(), lr=lr)
        self.lam, self.prefix = lam, prefix

    def step(self, traj: Trajectories, costs: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Value step, then the centred GAE(λ) advantages of the values before it."""
        values = self.value(traj.obs)
        advantages, returns = advantages_and_returns(traj, costs, values, self.lam)
        value_loss = (returns - values).pow(2).sum() / traj.batch_size
        optimizer_step(self.optimizer, value_loss)
        return advantages, {f"{self.prefix}value_loss": float(value_loss.detach())}


class AdamUpdate:
    """Policy step: one step of ``optimizer`` on the surrogate loss (plus ``extra_loss``)."""

    needs_sampling_graph = True

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def step(
        self,
        traj: Trajectories,
        log_probs: Tensor,
        advantages: Tensor,
        extra_loss: Tensor | None = None,
    ) -> dict[str, float]:
        loss = surrogate_loss(advantages, log_probs, traj.batch_size)
        if extra_loss is not None:
            loss = loss + extra_loss
        optimizer_step(self.optimizer, loss)
        return {}


class TrpoUpdate:
    """Policy step: a TRPO step of the policy's parameters (RL-T, :func:`gfn_agents.trpo.trpo_step`).

    ``extra_loss`` (log Z's) takes one step of ``optimizer`` first. The step re-evaluates the
    policy on the batch's distinct (observation, mask) rows
    (:func:`~gfn_agents.trpo.distinct_states`) in one batched pass with a fresh graph: the Fisher
    products through it are far cheaper than through the per-step graph of the sampling pass, and
    rows that repeat a state cost nothing beyond their weight.

    Args:
        policy: the policy being updated, ``(obs, mask) -> logits``.
        params: its parameters.
        optimizer: the optimiser of ``extra_loss``'s parameters.
        max_kl, cg_iters, backtracks: see :func:`~gfn_agents.trpo.trpo_step`.
    """

    needs_sampling_graph = False

    def __init__(
        self,
        policy: Policy,
        params: list[torch.nn.Parameter],
        optimizer: torch.optim.Optimizer,
        max_kl: float,
        cg_iters: int,
        backtracks: int,
    ) -> None:
        self.policy, self.params, self.optimizer = policy, params, optimizer
        self.max_kl, self.cg_iters, self.backtracks = max_kl, cg_iters, backtracks

    def step(
        self,
        traj: Trajectories,
        log_probs: Tensor,
        advantages: Tensor,
        extra_loss: Tensor | None = None,
    ) -> dict[str, float]:
        if extra_loss is not None:
            optimizer_step(self.optimizer, extra_loss)

        obs, masks, states = distinct_states(traj.obs, traj.masks)

        def evaluate() -> Tensor:
            return policy_log_probs(self.policy, obs, masks)

        return trpo_step(
            params=self.params,
            log_probs=evaluate(),
            evaluate=evaluate,
            mask=masks,
            actions=traj.actions,
            advantages=advantages,
            batch_size=traj.batch_size,
            states=states,
            max_kl=self.max_kl,
            cg_iters=self.cg_iters,
            backtracks=self.backtracks,
        )


def estimator_step(
    traj: Trajectories,
    costs: Tensor,
    log_probs: Tensor,
    critic: Critic,
    update: PolicyUpdate,
    extra_loss: Tensor | None = None,
) -> dict[str, float]:
    """One estimator step (see the module docstring): critic step, advantages, policy step.

    Args:
        traj: the batch.
        costs: per-row costs, detached.
        log_probs: per-row log π(a|s) of the taken actions, with their graph.
        critic: gives the advantages (and updates itself).
        update: the policy update rule.
        extra_loss: minimised together with the policy step (log Z's loss in the forward update).
    """
    advantages, critic_stats = critic.step(traj, costs)
    return {**critic_stats, **update.step(traj, log_probs, advantages, extra_loss)}
