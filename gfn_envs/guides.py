"""Guided distributions P_G for RL-G (paper section 2.7).

RL-G trains the backward policy P_B towards a guided forward distribution P_G instead of towards the
current P_F: the backward cost of a step s' → s is log P_B(s|s') − log P_G(s'|s). A guide scores the
*forward* transitions s → s' of trajectories sampled backwards from terminal objects x. It may look at
the current P_F logits at s (the HyperGrid and DAG guides are P_F with a capped exit logit) and at
the object x the trajectory belongs to (the sequence guide is not Markovian: it scores children by
the rewards of objects seen so far that share their filled positions).

A task offers its default guide through :meth:`gfn_envs.task.Task.default_guide`; any object with
the :class:`Guide` methods plugs in. A guide with state (a replay buffer) may also define
``state_dict()`` and ``load_state_dict(state)``; agent checkpoints then hold it.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from gfn_envs.task import Task


@runtime_checkable
class Guide(Protocol):
    """A guided distribution over forward transitions."""

    def observe(self, objects: Tensor, log_rewards: Tensor) -> None:
        """Record terminal objects seen in training (a replay buffer; stateless guides ignore it)."""

    def log_prob(self, states: Tensor, actions: Tensor, logits: Tensor, objects: Tensor) -> Tensor:
        """log P_G(actions | states), float ``[N]``.

        Args:
            states: parents s, ``[N, *state_shape]``.
            actions: forward actions taken at ``states``, long ``[N]`` (exit allowed).
            logits: the current P_F logits at ``states``, ``[N, n_actions]``, −inf where masked.
            objects: the terminal object x of the trajectory each transition belongs to.
        """
        ...


class ExitCapGuide:
    """P_F with the exit logit capped at ``cap`` in terminal states whose log-reward ≤ ``threshold``.

    P_G(·|s) = softmax(ℓ'(s)), where ℓ' equals the P_F logits ℓ except that
    ℓ'_exit = min(ℓ_exit, cap) whenever log R(s) ≤ threshold. The mass P_F puts on stopping in
    low-reward states moves to the other actions in proportion, so P_B is steered towards paths
    that do not stop early there. HyperGrid: threshold log R0, cap log 1e-5 (the paper's values).
    """

    def __init__(self, task: Task, threshold: float, cap: float = math.log(1e-5)) -> None:
        if not math.isfinite(cap):
            raise ValueError(f"cap must be a finite log-probability, got {cap!r}")
        self.task, self.threshold, self.cap = task, float(threshold), float(cap)

    def observe(self, objects: Tensor, log_rewards: Tensor) -> None:
        """Stateless: nothing to record."""

    def log_prob(self, states: Tensor, actions: Tensor, logits: Tensor, objects: Tensor) -> Tensor:
        exit_ = self.task.exit_action
        terminal = torch.isfinite(logits[:, exit_])
        low = torch.zeros_like(terminal)
        if bool(terminal.any()):
            low[terminal] = self.task.log_reward(states[terminal]) <= self.threshold
        capped = logits.clone()
        capped[:, exit_] = torch.where(low, logits[:, exit_].clamp(max=self.cap), logits[:, exit_])
        return capped.log_softmax(dim=1).gather(1, actions.unsqueeze(1)).squeeze(1)
