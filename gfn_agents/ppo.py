"""The clipped-PPO policy step on the policy-dependent cost (RL-PPO; Schulman et al. 2017).

A cheaper trust-region member of the policy-gradient family than RL-T. The costs c_t and the
centred GAE(λ) advantages Â_t of the batch are computed once, from the rollout policy π_old
(:mod:`gfn_agents.estimator`), and stay fixed while the policy takes several Adam steps.

**The surrogate.** The cost holds the policy's own log π, so changing the policy changes the
cost: for the expected trajectory cost J (paper section 2.9),

    J(θ') − J(θ_old) = E_{τ∼π_θ'}[Σ_t A_old(s_t, a_t)] + E_{τ∼π_θ'}[Σ_t KL(π_θ'(·|s_t) ‖ π_old(·|s_t))],

where the second term is the change of the cost's log π along the new policy's actions. Taking
the states from the rollout and the actions by importance weighting gives the surrogate

    L(θ) = (1/m) Σ_{trajectories n of the minibatch} Σ_t [max(ρ_t Â_t, clip(ρ_t, 1 − ε, 1 + ε) Â_t)
                                                          + KL(π_θ(·|s_t) ‖ π_old(·|s_t))],
    ρ_t = π_θ(a_t|s_t) / π_old(a_t|s_t),

to be *minimised*: max rather than min is PPO's pessimistic bound for a cost, and the KL term
is the identity's own, which a PPO on fixed costs would leave out (so the steps would ignore how
they change the costs and overshoot); it is not an added penalty with a coefficient. At
θ = θ_old the KL term and its gradient vanish, so the first step is the plain policy gradient.

**Epochs and minibatches.** ``n_epochs`` passes, each through a fresh random permutation of the
B trajectories cut into minibatches of m = ``minibatch_size`` trajectories (the last one smaller
when m does not divide B), one Adam step per minibatch. Minibatches are drawn over trajectories,
not rows, so each keeps the per-trajectory sum and the 1/m normalisation of the policy-gradient
surrogate: with one epoch, one minibatch (m ≥ B) and a clip range that never binds, the step is
exactly RL-U's Adam step. Stable-Baselines3's PPO calls the minibatch size ``batch_size``; here
``batch_size`` is the number of trajectories per iteration, as everywhere in gfn-gym.

The permutations come from a stream of their own (:class:`MinibatchOrder`): epoch k of the run
draws its permutation from a generator seeded with (base, k), where the base is drawn once from
the agent's generator when the agent is built. It is a pair of buffers, so checkpoints store it
and a data-parallel run starts every rank from rank 0's.

**Data-parallel runs** (:mod:`gfn_agents.distributed`). Every rank draws the same permutation of
the B global trajectory indices (rank r holds indices r·b … (r+1)·b − 1, b = B/N, the
single-process batch in rank order) and, for each minibatch, scores those of its members that it
holds, with the loss N/m · Σ_{own members} ℓ_n; averaging the gradients over the ranks gives
(1/m) Σ_{members} ℓ_n, the single-process minibatch loss. A rank that holds no member of a
minibatch still takes the (averaged) step. The approximate KL and the clip fraction are means over
the minibatch's rows on all ranks. So every step, and the early stop, is the single-process one
on the concatenated batch.

**Early stop** (``target_kl``): before each minibatch step, the approximate KL
mean_rows((ρ − 1) − log ρ) between π_old and π_θ on the minibatch is computed, and the
iteration's remaining steps are skipped once it exceeds 1.5·``target_kl`` (as in
Stable-Baselines3). There is no entropy bonus: the cost already holds log π.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gfn_agents import distributed
from gfn_agents.estimator import optimizer_step
from gfn_agents.rollout import Trajectories
from gfn_envs.scoring import Policy, gather, masked_log_softmax, policy_kl, policy_log_probs


def clipped_surrogate(log_ratio: Tensor, advantages: Tensor, clip_range: float) -> Tensor:
    """Per-row max(ρÂ, clip(ρ, 1 − ε, 1 + ε)Â) with ρ = exp(``log_ratio``): PPO's pessimistic
    bound for costs (the gradient vanishes where the clip binds on the improving side)."""
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(ratio * advantages, clipped * advantages)


def ppo_cost_surrogate(
    log_probs: Tensor,
    old_log_probs: Tensor,
    mask: Tensor,
    actions: Tensor,
    advantages: Tensor,
    clip_range: float,
) -> Tensor:
    """Per-row term of L (see the module docstring): the clipped ratio term of the taken action
    plus KL(π_θ(·|s) ‖ π_old(·|s)).

    Args:
        log_probs, old_log_probs: log π_θ(·|s) and log π_old(·|s), ``[N, n]``.
        mask: the legal actions, ``[N, n]``.
        actions: the actions taken, ``[N]``.
        advantages: Â, ``[N]``.
        clip_range: ε.
    """
    log_ratio = gather(log_probs, actions) - gather(old_log_probs, actions)
    clipped = clipped_surrogate(log_ratio, advantages, clip_range)
    return clipped + policy_kl(log_probs, old_log_probs, mask)


class MinibatchOrder(nn.Module):
    """The stream of PPO's minibatch permutations: epoch k draws from a generator seeded with
    (base, k). Its state, the buffer ``state`` = [base, k], is what checkpoints store and what a
    data-parallel run copies from rank 0 (:func:`gfn_agents.distributed.broadcast_parameters`), so
    every rank draws the same permutations.

    Args:
        generator: the agent's generator, from which the base is drawn.
    """

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        base = torch.randint(2**62, (1,), generator=generator, device=generator.device)
        self.register_buffer("state", torch.cat([base.cpu(), torch.zeros(1, dtype=torch.long)]))

    def permutation(self, n: int) -> Tensor:
        """The next epoch's random permutation of 0 … n − 1 (on the CPU)."""
        base, epoch = (int(v) for v in self.state)
        self.state[1] += 1
        seed = (base + epoch * 0x9E3779B97F4A7C15) % 2**63  # one seed per epoch, spread out
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


class PpoUpdate:
    """Policy step: clipped PPO epochs over minibatches of trajectories (see the module docstring).

    ``extra_loss`` (log Z's) takes one step of ``optimizer`` first, as in RL-T.

    Args:
        policy: the policy being updated, ``(obs, mask) -> logits``.
        optimizer: Adam over the policy's parameters (and log Z, which the epochs leave alone).
        order: the minibatch permutations.
        n_epochs: passes over the batch.
        minibatch_size: trajectories per minibatch (over all ranks).
        clip_range: ε of the clipped ratio.
        target_kl: the approximate-KL early stop, or None.
        parallel: this process's place in a data-parallel run (None in a single process).
    """

    needs_sampling_graph = False

    def __init__(
        self,
        policy: Policy,
        optimizer: torch.optim.Optimizer,
        order: MinibatchOrder,
        n_epochs: int,
        minibatch_size: int,
        clip_range: float,
        target_kl: float | None,
        parallel: distributed.DataParallel | None = None,
    ) -> None:
        self.policy, self.optimizer, self.order = policy, optimizer, order
        self.n_epochs, self.minibatch_size = n_epochs, minibatch_size
        self.clip_range, self.target_kl = clip_range, target_kl
        self.world = 1 if parallel is None else parallel.world_size
        self.rank = distributed.rank(parallel)

    def step(
        self,
        traj: Trajectories,
        log_probs: Tensor,
        advantages: Tensor,
        extra_loss: Tensor | None = None,
    ) -> dict[str, float]:
        """Epochs of minibatch steps on L. π_old(·|s) comes from the sampling pass's outputs
        (``log_probs``, the taken actions' log-probabilities, are its entries)."""
        if extra_loss is not None:
            optimizer_step(self.optimizer, extra_loss)
        if traj.outputs is None:
            raise ValueError("PPO needs the rollout's policy outputs (sampled with a policy)")
        old = masked_log_softmax(traj.outputs[:, : traj.masks.shape[1]].detach(), traj.masks)
        advantages = advantages.detach()
        local, device = traj.batch_size, traj.valid.device
        total, offset = local * self.world, local * self.rank
        steps, approx_kl, clipped = 0, torch.zeros(()), torch.zeros(())
        for _ in range(self.n_epochs):
            order = self.order.permutation(total)
            for start in range(0, total, self.minibatch_size):
                members = order[start : start + self.minibatch_size]
                own = members[(members >= offset) & (members < offset + local)] - offset
                chosen = torch.zeros(local, dtype=torch.bool, device=device)
                chosen[own.to(device)] = True
                rows = chosen[traj.batch_index].nonzero().squeeze(1)
                mask, actions = traj.masks[rows], traj.actions[rows]
                current = policy_log_probs(self.policy, traj.obs[rows], mask)
                with torch.no_grad():
                    log_ratio = gather(current, actions) - gather(old[rows], actions)
                    ratio = log_ratio.exp()
                    approx_kl = distributed.global_mean(ratio - 1 - log_ratio)
                    clipped = distributed.global_mean(
                        ((ratio - 1).abs() > self.clip_range).to(ratio.dtype)
                    )
                if self.target_kl is not None and float(approx_kl) > 1.5 * self.target_kl:
                    return self._stats(steps, approx_kl, clipped)
                surrogate = ppo_cost_surrogate(
                    current, old[rows], mask, actions, advantages[rows], self.clip_range
                )
                optimizer_step(self.optimizer, surrogate.sum() * self.world / len(members))
                steps += 1
        return self._stats(steps, approx_kl, clipped)

    @staticmethod
    def _stats(steps: int, approx_kl: Tensor, clipped: Tensor) -> dict[str, float]:
        """The minibatch steps taken, and the last minibatch's approximate KL and the fraction of
        its rows whose ratio lay outside the clip range."""
        return {
            "ppo_steps": float(steps),
            "ppo_approx_kl": float(approx_kl),
            "ppo_clip_fraction": float(clipped),
        }
