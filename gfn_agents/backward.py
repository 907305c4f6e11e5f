"""Backward-policy strategies of the policy-gradient family: uniform, coupled to P_F, guided.

After each forward update, :class:`~gfn_agents.pg.PolicyGradientGFN` hands the batch's terminal
objects x and their log-rewards to its backward learner (:meth:`BackwardLearner.update`):

* :class:`UniformBackward` (RL-U, RL-T): P_B(s|s') = 1/|Par(s')| is fixed; nothing to learn.
* :class:`CoupledBackward` (RL-B): from the objects x, B backward trajectories are sampled with
  P_B; a backward step s' → s costs c̄ = log P_B(s|s') − log P_F(s'|s) (P_F detached,
  :func:`gfn_envs.scoring.backward_costs`). The objective E_x E_{P_B(τ|x)}[Σ c̄] is minimised by
  P_B ∝ P_F's path posterior. The estimator is :func:`gfn_agents.estimator.estimator_step` with
  λ = 1 (Monte-Carlo return minus a learned baseline Ṽ_B), value step first, then an Adam step of
  P_B.
* :class:`GuidedBackward` (RL-G): the same with P_ref = the guide P_G (paper section 2.7), which
  first :meth:`~gfn_envs.scoring.Guide.observe`\\ s the objects.

A learner receives what it needs (the backward vector env, the networks, the generator and its
optimiser settings), never the agent. Another strategy (for example a trajectory-likelihood
backward learner) is a sibling class with the same two methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from gfn_agents import distributed
from gfn_agents.estimator import AdamUpdate, ValueCritic, estimator_step
from gfn_agents.logprobs import StepLogProbs, step_log_probs
from gfn_agents.policies import PolicyNetworks
from gfn_agents.rollout import sample_trajectories
from gfn_envs.env import GFlowNetVectorEnv
from gfn_envs.scoring import Guide, backward_costs


class BackwardLearner(Protocol):
    """What :class:`~gfn_agents.pg.PolicyGradientGFN` needs from a backward strategy."""

    def update(self, objects: Tensor, log_rewards: Tensor) -> dict[str, float]:
        """Train P_B on the terminal ``objects`` of the forward batch; return statistics."""
        ...

    def modules(self) -> dict[str, Any]:
        """Everything with a ``state_dict`` that a checkpoint must hold, by name."""
        ...


class UniformBackward:
    """P_B uniform over the parents: no parameters, no update."""

    def update(self, objects: Tensor, log_rewards: Tensor) -> dict[str, float]:
        return {}

    def modules(self) -> dict[str, Any]:
        return {}


class CoupledBackward:
    """P_B trained by policy gradient towards P_F (RL-B); see the module docstring.

    Args:
        env: the backward vector env to sample from (autoreset disabled, tensors on).
        networks: the agent's networks: P_B is trained, P_F read without gradient.
        generator: the source of randomness of the backward rollouts.
        learning_rate: Adam step size of P_B.
        lr_value, value_net_arch: Adam step size and hidden widths of the baseline Ṽ_B.
    """

    def __init__(
        self,
        env: GFlowNetVectorEnv,
        networks: PolicyNetworks,
        generator: torch.Generator,
        learning_rate: float,
        lr_value: float,
        value_net_arch: Sequence[int],
    ) -> None:
        self.env, self.task, self.networks, self.generator = env, env.task, networks, generator
        self.critic = ValueCritic(
            self.task.obs_dim, value_net_arch, lr_value, 1.0, env.device, prefix="backward_"
        )
        self.optimizer = torch.optim.Adam(networks.backward_parameters(), lr=learning_rate)
        self.policy_update = AdamUpdate(self.optimizer)

    @property
    def guide(self) -> Guide | None:
        """The guide P_G of the reference, or None when the reference is P_F."""
        return None

    def reference_log_probs(self, lp: StepLogProbs) -> Tensor:
        """log P_ref of the forward moves the backward steps undo: here log P_F."""
        return lp.log_pf

    def update(self, objects: Tensor, log_rewards: Tensor) -> dict[str, float]:
        traj = sample_trajectories(
            self.env, self.networks.backward_logits, self.generator, starts=objects
        )
        if distributed.global_count(len(traj.actions), traj.valid.device) == 0:
            return {}  # every start is s0 (on every rank of a data-parallel run)
        lp = step_log_probs(self.networks, self.task, traj, guide=self.guide)
        costs = backward_costs(self.reference_log_probs(lp), lp.log_pb.detach())
        stats = estimator_step(traj, costs, lp.log_pb, self.critic, self.policy_update)
        return {**stats, "backward_cost": float(costs.sum() / traj.batch_size)}

    def modules(self) -> dict[str, Any]:
        return {
            "backward_value": self.critic.value,
            "backward_value_optimizer": self.critic.optimizer,
            "backward_optimizer": self.optimizer,
        }


class GuidedBackward(CoupledBackward):
    """P_B trained by policy gradient towards a guide P_G (RL-G); see the module docstring.

    Args:
        guide: the guided distribution (observes each batch's objects before scoring).
        **kwargs: as :class:`CoupledBackward`.
    """

    def __init__(self, guide: Guide, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guide = guide

    @property
    def guide(self) -> Guide:
        return self._guide

    def reference_log_probs(self, lp: StepLogProbs) -> Tensor:
        """log P_G of the forward moves the backward steps undo."""
        assert lp.log_guide is not None
        return lp.log_guide

    def update(self, objects: Tensor, log_rewards: Tensor) -> dict[str, float]:
        self._guide.observe(*distributed.gather_rows(objects, log_rewards))  # all ranks' batch
        return super().update(objects, log_rewards)

    def modules(self) -> dict[str, Any]:
        modules = super().modules()
        if hasattr(self._guide, "state_dict"):
            modules["guide"] = self._guide
        return modules
