"""The scoring layer: the one place for policy log-probabilities, guides, costs and the reward clip.

Agents (rollouts, losses, the backward learners), the reward wrappers and the exact evaluator all
score transitions through this module, so the conventions below hold everywhere.

**Policies.** A policy maps observations ``obs`` (float ``[B, obs_dim]``) and legal-action masks
``mask`` (bool ``[B, n]``) to logits ``[B, n]``: any real numbers on the legal entries, ignored on
the masked ones. Its probabilities are π(a|s) = exp(ℓ_a) / Σ_{a' legal} exp(ℓ_a') on legal
actions and 0 elsewhere (:func:`masked_log_softmax`). Log-probabilities are valid logits, so a
callable that already normalises is a policy too. An agent's network may return further columns
after the n logits (the log-flow head of DB and SubTB); :func:`policy_log_probs` reads the first n.
``None`` stands for the uniform policy over the legal actions (:func:`uniform_log_probs`).

**Transitions.** A forward transition is (s, a) with child s' = step(s, a), the exit action
included; its backward twin is (s', b) with b = backward_action(s, a). For a batch of them:

* log P_F(a|s):  :func:`forward_log_probs`;
* log P_B(b|s'): :func:`backward_log_probs` (P_B has no exit factor: 0 on exit rows);
* log P_G(a|s, x): :func:`guided_log_probs`, which hands the guide the *normalised* log P_F(·|s)
  (−inf where masked). A guide therefore depends on P_F's probabilities only: adding a constant
  to all logits of a state changes nothing.

**Costs** (paper section 2.2; the reward of a wrapper is minus the cost):

* forward, per transition: c_t = log P_F(s_{t+1}|s_t) − log P_B(s_t|s_{t+1}) on moves and
  c_T = log P_F(exit|x) − (log R̂(x) − log Z) on the exit, with the clipped log-reward
  log R̂ = max(log R, clip) (:func:`clip_log_rewards`). Along a trajectory Σ_t c_t is the TB
  residual S(τ) = log[Z·P_F(τ)] − log[R̂(x)·P_B(τ|x)] (:func:`forward_costs`).
* backward, per transition s' → s: c̄ = log P_B(s|s') − log P_ref(s'|s), where P_ref is P_F
  (RL-B) or a guide P_G (RL-G) (:func:`backward_costs`).

Every function is a few tensor operations on values the caller already has: none adds a network
pass or a host synchronisation. The module imports nothing else from gfn-gym: it sits below the
tasks, the guides, the wrappers, the evaluator and the agents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


class TaskView(Protocol):
    """What the scoring functions read from a task (any :class:`gfn_envs.task.Task` has it)."""

    def encode(self, states: Tensor) -> Tensor:
        """Observations of raw states."""
        ...

    def forward_mask(self, states: Tensor) -> Tensor:
        """Legal forward actions (exit included) of raw states."""
        ...

    def backward_mask(self, states: Tensor) -> Tensor:
        """Legal backward actions of raw states."""
        ...


Policy = Callable[[Tensor, Tensor], Tensor]
"""``policy(obs float [B, obs_dim], mask bool [B, n]) -> logits [B, n]`` (see the module
docstring); log-probabilities are valid logits."""


@runtime_checkable
class Guide(Protocol):
    """A guided distribution P_G over forward transitions (RL-G, paper section 2.7).

    A guide scores the forward transitions s → s' of trajectories sampled backwards from terminal
    objects x. It sees P_F only through its normalised log-probabilities at s, and may use the
    object x (the sequence guide is not Markovian). A guide with state (a replay buffer) may also
    define ``state_dict()`` and ``load_state_dict(state)``.
    """

    def observe(self, objects: Tensor, log_rewards: Tensor) -> None:
        """Record terminal objects seen in training (a replay buffer; stateless guides ignore it)."""

    def log_prob(self, states: Tensor, actions: Tensor, log_pf: Tensor, objects: Tensor) -> Tensor:
        """log P_G(actions | states), float ``[N]``.

        Args:
            states: parents s, ``[N, *state_shape]``.
            actions: forward actions taken at ``states``, long ``[N]`` (exit allowed).
            log_pf: log P_F(·|s), normalised over the legal actions, ``[N, n_actions]``, −inf
                where masked.
            objects: the terminal object x of the trajectory each transition belongs to.
        """
        ...


# ------------------------------------------------------------------------------- the policy
def masked_log_softmax(logits: Tensor, mask: Tensor) -> Tensor:
    """log π(·|s) = ℓ − logsumexp_{legal} ℓ on legal actions, −inf on masked ones.

    Every row needs at least one legal action. This is the only masked log-softmax of gfn-gym.
    """
    return logits.masked_fill(~mask, -torch.inf).log_softmax(dim=-1)


def uniform_log_probs(mask: Tensor) -> Tensor:
    """log-probabilities of the uniform policy over the legal actions: −log |legal(s)|, −inf
    where masked."""
    return (mask.float() / mask.sum(dim=-1, keepdim=True)).log()


def uniform_policy(obs: Tensor, mask: Tensor) -> Tensor:
    """The uniform policy as a :data:`Policy` (its log-probabilities, which are valid logits)."""
    return uniform_log_probs(mask)


def policy_log_probs(policy: Policy | None, obs: Tensor, mask: Tensor) -> Tensor:
    """log π(·|s) ``[B, n]`` of ``policy`` (None: uniform) at ``obs`` with legal actions ``mask``.

    Columns of the policy's output past the n logits are ignored (see the module docstring).
    """
    if policy is None:
        return uniform_log_probs(mask)
    return masked_log_softmax(policy(obs, mask)[:, : mask.shape[-1]], mask)


def gather(log_probs: Tensor, actions: Tensor) -> Tensor:
    """The entries ``log_probs[i, actions[i]]``, ``[B]``."""
    return log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)


def policy_kl(log_p: Tensor, log_q: Tensor, mask: Tensor) -> Tensor:
    """Per-row KL(p ‖ q) = Σ_{a legal} p(a)·(log p(a) − log q(a)) of two policies' log-probabilities
    ``[B, n]`` over the same legal actions ``mask``, ``[B]``. Masked entries contribute 0, and their
    −inf never reach a value or a gradient."""
    safe_p, safe_q = torch.where(mask, log_p, 0.0), torch.where(mask, log_q, 0.0)
    return torch.where(mask, safe_p.exp() * (safe_p - safe_q), 0.0).sum(dim=-1)


# ---------------------------------------------------------------------------- transitions
def forward_log_probs(
    task: TaskView,
    policy: Policy | None,
    states: Tensor,
    actions: Tensor,
    obs: Tensor | None = None,
) -> Tensor:
    """log P_F(a|s) of forward transitions (s, a), exit included, ``[B]``.

    Args:
        task: the task (masks and encoding).
        policy: P_F (None: uniform).
        states: raw parents s; ``obs`` is their encoding when the caller has it already.
        actions: forward actions, long ``[B]``.
    """
    obs = task.encode(states) if obs is None else obs
    return gather(policy_log_probs(policy, obs, task.forward_mask(states)), actions)


def backward_log_probs(
    task: TaskView,
    policy: Policy | None,
    states: Tensor,
    actions: Tensor,
    obs: Tensor | None = None,
) -> Tensor:
    """log P_B(b|s') of backward transitions (s', b), ``[B]``.

    Args:
        task: the task.
        policy: P_B (None: uniform over the parents).
        states: raw children s'; ``obs`` is their encoding when the caller has it already.
        actions: backward actions, long ``[B]``.
    """
    obs = task.encode(states) if obs is None else obs
    return gather(policy_log_probs(policy, obs, task.backward_mask(states)), actions)


def guided_log_probs(
    task: TaskView,
    forward_policy: Policy | None,
    states: Tensor,
    actions: Tensor,
    objects: Tensor,
    guide: Guide | None = None,
) -> tuple[Tensor, Tensor | None]:
    """log P_F(a|s) and, with a guide, log P_G(a|s, x) of forward transitions, from one P_F pass.

    Args:
        task: the task.
        forward_policy: P_F (None: uniform); the guide receives its normalised log-probabilities.
        states: raw parents s, ``[B, *state_shape]``.
        actions: forward actions taken at ``states``, long ``[B]`` (exit allowed).
        objects: the terminal object x of each transition's trajectory.
        guide: a :class:`Guide`, or None for log P_F only.

    Returns:
        ``(log_pf [B], log_pg [B] or None)``.
    """
    log_pf = policy_log_probs(forward_policy, task.encode(states), task.forward_mask(states))
    log_pg = None if guide is None else guide.log_prob(states, actions, log_pf, objects)
    return gather(log_pf, actions), log_pg


# ---------------------------------------------------------------------------------- costs
def clip_log_rewards(log_rewards: Tensor, clip: float | None) -> Tensor:
    """log R̂ = max(log R, clip) (the paper's code uses −12), or log R unchanged when clip is None."""
    return log_rewards if clip is None else log_rewards.clamp(min=clip)


def forward_costs(
    log_pf: Tensor | None,
    log_pb: Tensor,
    is_exit: Tensor,
    log_rewards: Tensor,
    log_z: float | Tensor,
    clip: float | None = None,
) -> Tensor:
    """Per-transition forward cost c_t (see the module docstring), ``[N]``.

    c_t = log P_F(a_t|s_t) − log P_B(s_t|s_{t+1}) on moves and
    c_T = log P_F(exit|x) − (log R̂(x) − log Z) on exits.

    Args:
        log_pf: log P_F of the transitions; None drops the term (the wrappers without entropy).
        log_pb: log P_B at the children (ignored on exit rows).
        is_exit: bool, which rows are exits.
        log_rewards: log R of each row's terminal object (read on exit rows only).
        log_z: log Z, a float or a scalar tensor (its graph is kept).
        clip: the log-reward clip of :func:`clip_log_rewards`.
    """
    target = torch.where(is_exit, clip_log_rewards(log_rewards, clip) - log_z, log_pb)
    return -target if log_pf is None else log_pf - target


def backward_costs(log_ref: Tensor, log_pb: Tensor | None = None) -> Tensor:
    """Per-transition backward cost c̄ = log P_B(s|s') − log P_ref(s'|s), ``[N]``.

    Args:
        log_ref: log P_ref of the forward move each backward step undoes (P_F or a guide P_G).
        log_pb: log P_B of the backward step; None drops the term (the wrappers without entropy).
    """
    return -log_ref if log_pb is None else log_pb - log_ref
