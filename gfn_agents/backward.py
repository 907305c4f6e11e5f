"""Backward-policy strategies: uniform, coupled to P_F, guided, trajectory likelihood.

After each forward update, :class:`~gfn_agents.pg.PolicyGradientGFN` hands the forward batch (its
trajectories, terminal objects x and log-rewards), its per-row log-probabilities and its forward
costs to its backward learner (:meth:`BackwardLearner.update`):

* :class:`UniformBackward` (RL-U, RL-T): P_B(s|s') = 1/|Par(s')| is fixed; nothing to learn.
* :class:`CoupledBackward` (RL-B): from the objects x, B backward trajectories are sampled with
  P_B; a backward step s' → s costs c̄ = log P_B(s|s') − log P_F(s'|s) (P_F detached,
  :func:`gfn_envs.scoring.backward_costs`). The objective E_x E_{P_B(τ|x)}[Σ c̄] is minimised by
  P_B ∝ P_F's path posterior. The estimator is :func:`gfn_agents.estimator.estimator_step` with
  λ = 1 (Monte-Carlo return minus a learned baseline Ṽ_B), value step first, then an Adam step of
  P_B.
* :class:`GuidedBackward` (RL-G): the same with P_ref = the guide P_G (paper section 2.7), which
  first :meth:`~gfn_envs.scoring.Guide.observe`\\ s the objects.
* :class:`TLMBackward` (RL-TLM, and TB-TLM in :mod:`gfn_agents.balance`): P_B maximises the
  likelihood of the forward batch's trajectories (Gritsaev et al., ICLR 2025).
* ``SubEB-B``'s P_B learns through the Sub-EB loss (:class:`gfn_agents.subeb.SubEBBackward`).

A learner receives what it needs (the backward vector env, the networks, the generator and its
optimiser settings), never the agent. Another strategy is a sibling class with the same two
methods and attribute.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from gfn_agents import distributed
from gfn_agents.estimator import AdamUpdate, ValueCritic, estimator_step, optimizer_step
from gfn_agents.logprobs import StepLogProbs, children_log_pb, step_log_probs
from gfn_agents.policies import PolicyNetworks
from gfn_agents.rollout import Trajectories, sample_trajectories
from gfn_envs.env import GFlowNetVectorEnv
from gfn_envs.scoring import Guide, backward_costs
from gfn_envs.task import Task


class BackwardLearner(Protocol):
    """What :class:`~gfn_agents.pg.PolicyGradientGFN` needs from a backward strategy."""

    needs_backward_grad: bool
    """Whether :meth:`update` trains P_B through the forward batch's log P_B, which the forward
    update then computes with P_B's graph."""

    def update(self, traj: Trajectories, lp: StepLogProbs, costs: Tensor) -> dict[str, float]:
        """Train P_B after the forward update on the forward batch ``traj``, its per-row
        log-probabilities ``lp`` and its detached forward costs; return statistics."""
        ...

    def modules(self) -> dict[str, Any]:
        """Everything with a ``state_dict`` that a checkpoint must hold, by name."""
        ...


class UniformBackward:
    """P_B uniform over the parents: no parameters, no update."""

    needs_backward_grad = False

    def update(self, traj: Trajectories, lp: StepLogProbs, costs: Tensor) -> dict[str, float]:
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

    needs_backward_grad = False

    def reference_log_probs(self, lp: StepLogProbs) -> Tensor:
        """log P_ref of the forward moves the backward steps undo: here log P_F."""
        return lp.log_pf

    def update(self, traj: Trajectories, lp: StepLogProbs, costs: Tensor) -> dict[str, float]:
        """Sample backward trajectories from ``traj``'s objects and take one estimator step (the
        forward ``lp`` and ``costs`` are not used)."""
        back = sample_trajectories(
            self.env, self.networks.backward_logits, self.generator, starts=traj.objects
        )
        if distributed.global_count(len(back.actions), back.valid.device) == 0:
            return {}  # every start is s0 (on every rank of a data-parallel run)
        back_lp = step_log_probs(self.networks, self.task, back, guide=self.guide)
        back_costs = backward_costs(self.reference_log_probs(back_lp), back_lp.log_pb.detach())
        stats = estimator_step(back, back_costs, back_lp.log_pb, self.critic, self.policy_update)
        return {**stats, "backward_cost": float(back_costs.sum() / back.batch_size)}

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

    def update(self, traj: Trajectories, lp: StepLogProbs, costs: Tensor) -> dict[str, float]:
        self._guide.observe(*distributed.gather_rows(traj.objects, traj.log_rewards))
        return super().update(traj, lp, costs)

    def modules(self) -> dict[str, Any]:
        modules = super().modules()
        if hasattr(self._guide, "state_dict"):
            modules["guide"] = self._guide
        return modules


class TLMBackward:
    """P_B trained by trajectory likelihood maximisation (TLM; Gritsaev et al., ICLR 2025).

    After each forward update, one Adam step of an online copy φ of P_B on the negative mean
    log-likelihood of the forward batch's trajectories (the exit has no P_B factor),

        L_TLM(φ) = −(1/B) Σ_n log P_B(τ_n|x_n; φ) = −(1/B) Σ_n Σ_t log P_B(s_t|s_{t+1}; φ),

    whose expectation over τ ∼ P_F is minimised by P_F's path posterior
    P_B(s|s') = u(s)·P_F(s'|s)/u(s') (u: P_F's state-visit probabilities), the backward policy
    under which P_F's trajectory distribution factorises as P_F^T(x)·P_B(τ|x). Only φ moves.
    Every other loss and cost reads the agent's P_B, a target network that follows φ by Polyak
    averaging, φ̄ ← (1 − τ)·φ̄ + τ·φ after each step (τ = ``tau``, 1 = no target network), and φ's
    step size decays as lr·γ^k at its k-th step (γ = ``lr_decay``); P_B's output layer starts at
    zero, so P_B starts uniform. These are the reference code's defaults (τ = 0.25, γ = 0.999),
    which runs the TLM step before the forward step; here it follows it, so a forward step sees
    P_B as of the previous iteration.

    Args:
        task: the task.
        networks: the agent's networks; their P_B (its own network, not a head on P_F's trunk)
            is the target network φ̄.
        learning_rate: Adam step size of φ.
        tau: Polyak rate of the target network, in (0, 1].
        lr_decay: per-step decay γ of φ's step size, in (0, 1].
    """

    def __init__(
        self,
        task: Task,
        networks: PolicyNetworks,
        learning_rate: float,
        tau: float,
        lr_decay: float,
    ) -> None:
        if networks.pb is None or networks.share_trunk:
            raise ValueError("TLM needs a P_B network of its own: share_trunk must be False")
        self.task, self.networks, self.tau = task, networks, tau
        output = [m for m in networks.pb.modules() if isinstance(m, nn.Linear)][-1]
        with torch.no_grad():
            output.weight.zero_()
            output.bias.zero_()
        self.online = copy.deepcopy(networks.pb)
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=learning_rate)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, lr_decay)

    needs_backward_grad = False

    def update(
        self, traj: Trajectories, lp: StepLogProbs | None = None, costs: Tensor | None = None
    ) -> dict[str, float]:
        """One TLM step on the forward batch ``traj``, then the target update (``lp`` and ``costs``
        unused: the online P_B is scored here)."""
        log_pb = children_log_pb(self.task, traj, lambda obs, mask: self.online(obs))
        loss = -traj.per_trajectory_sum(log_pb).mean()
        optimizer_step(self.optimizer, loss)
        self.scheduler.step()
        with torch.no_grad():
            for target, online in zip(
                self.networks.backward_parameters(), self.online.parameters(), strict=True
            ):
                target.lerp_(online, self.tau)
        return {"tlm_loss": float(loss.detach())}

    def modules(self) -> dict[str, Any]:
        return {
            "tlm_backward": self.online,
            "tlm_optimizer": self.optimizer,
            "tlm_scheduler": self.scheduler,
        }
