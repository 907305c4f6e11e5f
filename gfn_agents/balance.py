"""The balance baselines: trajectory balance (TB), detailed balance (DB) and sub-trajectory balance
(SubTB(λ)), each with a learned or a uniform P_B (the paper's "-B" and "-U").

With d_t = log P_F(s_{t+1}|s_t) − log P_B(s_t|s_{t+1}) per move (the exit move has no P_B factor):

* **TB** (Malkin et al. 2022): loss = mean_n (log Z + Σ_t d_t − log R̂(x))², with a learned scalar
  log Z and log R̂ = max(log R, clip).
* **DB** (Bengio et al. 2023): a state flow log F(s) (an extra output of P_F's network); loss =
  (1/B) Σ over all transitions of (log F(s) + d − log F(s'))², where the exit transition's target
  log F(s') is log R(x) (unclipped). log Z is read as log F(s0).
* **SubTB(λ)** (Madan et al. 2023): over every sub-trajectory s_i … s_j of a trajectory of length
  L, with log F(s_L) replaced by log R̂(x): residual log F(s_i) + Σ_{i≤t<j} d_t − log F(s_j),
  weighted by λ^{j−i} normalised within the trajectory, averaged over trajectories.

Exploration (these losses are off-policy): ε-uniform mixing with ε_k = max(ε_end, ε·decay^k) at
iteration k (the paper's "γ-decayed noisy sampler"), and a sampling temperature. The gradients use
log P_F of the policy itself, not of the mixture.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from gfn_agents.base import GFlowNetAlgorithm, check_positive, check_unit_interval
from gfn_agents.logprobs import StepLogProbs, step_log_probs
from gfn_agents.policies import PolicyNetworks
from gfn_agents.rollout import Trajectories, sample_trajectories

BACKWARD = ("learned", "uniform")


def tb_residuals(
    traj: Trajectories, lp: StepLogProbs, log_z: Tensor, log_rewards: Tensor
) -> Tensor:
    """Per-trajectory TB residual log Z + Σ_t (log P_F − log P_B) − log R, ``[B]``."""
    return log_z + traj.per_trajectory_sum(lp.log_pf - lp.log_pb) - log_rewards


class BalanceGFN(GFlowNetAlgorithm):
    """Shared surface of TB, DB and SubTB.

    Args (beyond :class:`~gfn_agents.base.GFlowNetAlgorithm`):
        backward: ``"learned"`` (P_B trained jointly through the loss) or ``"uniform"``.
        epsilon, epsilon_decay, epsilon_end: ε-uniform exploration schedule (default: none).
        temperature: sampling temperature of P_F (1 = on-policy).
        share_trunk: P_B as a head on P_F's trunk.
    """

    needs_flow: ClassVar[bool] = False

    def __init__(
        self,
        policy: str,
        env: Any,
        backward: str = "learned",
        epsilon: float = 0.0,
        epsilon_decay: float = 1.0,
        epsilon_end: float = 0.0,
        temperature: float = 1.0,
        share_trunk: bool = False,
        **kwargs: Any,
    ) -> None:
        if backward not in BACKWARD:
            raise ValueError(f"backward must be one of {BACKWARD}, got {backward!r}")
        check_unit_interval("epsilon", epsilon)
        check_unit_interval("epsilon_decay", epsilon_decay)
        check_unit_interval("epsilon_end", epsilon_end)
        check_positive("temperature", temperature)
        self.backward, self.share_trunk = backward, share_trunk
        self.epsilon, self.epsilon_decay = float(epsilon), float(epsilon_decay)
        self.epsilon_end, self.temperature = float(epsilon_end), float(temperature)
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        self.networks = PolicyNetworks.for_task(
            self.task,
            self.net_arch,
            learn_backward=self.backward == "learned",
            flow=self.needs_flow,
            share_trunk=self.share_trunk,
        )
        policy_params = self.networks.forward_parameters() + self.networks.backward_parameters()
        self.optimizer = torch.optim.Adam(
            [
                {"params": policy_params, "lr": self.learning_rate},
                {"params": [self.networks.log_z], "lr": self.lr_z},
            ]
        )

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:  # type: ignore[override]
        return {"optimizer": self.optimizer}

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            **super()._hyperparameters(),
            "backward": self.backward,
            "epsilon": self.epsilon,
            "epsilon_decay": self.epsilon_decay,
            "epsilon_end": self.epsilon_end,
            "temperature": self.temperature,
            "share_trunk": self.share_trunk,
        }

    @property
    def current_epsilon(self) -> float:
        """ε at the current iteration: max(ε_end, ε·decay^iteration)."""
        return max(self.epsilon_end, self.epsilon * self.epsilon_decay**self.iteration)

    def loss(self, traj: Trajectories, lp: StepLogProbs) -> Tensor:
        """The training loss of one batch."""
        raise NotImplementedError

    def train_step(self) -> dict[str, float]:
        traj = sample_trajectories(
            self.forward_env,
            self.networks.forward_outputs,
            self.generator,
            epsilon=self.current_epsilon,
            temperature=self.temperature,
        )
        lp = step_log_probs(self.networks, self.task, traj, backward_grad=True)
        loss = self.loss(traj, lp)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {
            "loss": float(loss.detach()),
            "log_z": self.log_z,
            "epsilon": self.current_epsilon,
            "mean_log_reward": float(traj.log_rewards.mean()),
            "mean_length": float(traj.lengths.float().mean()),
            "transitions": float(len(traj.actions)),
        }


class TrajectoryBalance(BalanceGFN):
    """TB: loss = mean_n (log Z + Σ_t d_t − log R̂(x))² (see the module docstring)."""

    def loss(self, traj: Trajectories, lp: StepLogProbs) -> Tensor:
        log_rewards = self.clipped_log_rewards(traj.log_rewards)
        return tb_residuals(traj, lp, self.networks.log_z, log_rewards).pow(2).mean()


class FlowBalanceGFN(BalanceGFN):
    """Balance losses with a state flow log F(s); log Z is log F(s0)."""

    needs_flow = True

    @property
    def log_z(self) -> float:
        with torch.no_grad():
            s0 = self.task.encode(self.task.s0(1))
            return float(self.networks.forward_outputs(s0)[0, self.task.n_actions])

    def _log_flows(self, traj: Trajectories) -> Tensor:
        assert traj.outputs is not None
        return traj.outputs[:, self.task.n_actions]


class DetailedBalance(FlowBalanceGFN):
    """DB: (1/B) Σ_transitions (log F(s) + d − log F(s'))², exit target log R(x)."""

    def loss(self, traj: Trajectories, lp: StepLogProbs) -> Tensor:
        flows = self._log_flows(traj)
        targets = traj.next_values(flows, last=0.0)
        targets = torch.where(traj.is_last, traj.log_rewards[traj.batch_index], targets)
        residuals = flows + lp.log_pf - lp.log_pb - targets
        return residuals.pow(2).sum() / traj.batch_size


class SubTrajectoryBalance(FlowBalanceGFN):
    """SubTB(λ): λ^{j−i}-weighted squared residuals of every sub-trajectory.

    Args (beyond :class:`BalanceGFN`):
        subtb_lambda: λ of the geometric weights (0.9; the paper's scripts use 0.99).
    """

    def __init__(self, policy: str, env: Any, subtb_lambda: float = 0.9, **kwargs: Any) -> None:
        check_unit_interval("subtb_lambda", subtb_lambda)
        self.subtb_lambda = float(subtb_lambda)
        super().__init__(policy, env, **kwargs)

    def _hyperparameters(self) -> dict[str, Any]:
        return {**super()._hyperparameters(), "subtb_lambda": self.subtb_lambda}

    def loss(self, traj: Trajectories, lp: StepLogProbs) -> Tensor:
        steps, batch = traj.valid.shape
        # Position k of a trajectory is the state before its k-th action; position L is x after
        # exit, whose "flow" is log R̂(x). A_k = log F(s_k) − Σ_{t<k} d_t, residual(i, j) = A_i − A_j.
        flows = torch.zeros(steps + 1, batch, dtype=lp.log_pf.dtype, device=traj.valid.device)
        flows[:-1][traj.valid] = self._log_flows(traj)
        lengths = traj.lengths
        log_rewards = self.clipped_log_rewards(traj.log_rewards).to(flows.dtype)
        flows = flows.scatter(0, lengths.unsqueeze(0), log_rewards.unsqueeze(0))
        d = traj.to_grid(lp.log_pf - lp.log_pb)
        cum = torch.cat([torch.zeros_like(d[:1]), d.cumsum(0)])
        a = flows - cum
        residuals = a.unsqueeze(1) - a.unsqueeze(0)
        k = torch.arange(steps + 1, device=a.device)
        gap = (k.unsqueeze(0) - k.unsqueeze(1)).unsqueeze(2)
        inside = (gap > 0) & (k.view(1, -1, 1) <= lengths.view(1, 1, -1))
        weights = torch.where(inside, self.subtb_lambda ** gap.clamp(min=0).to(a.dtype), 0.0)
        per_traj = (weights * residuals.pow(2)).sum((0, 1)) / weights.sum((0, 1))
        return per_traj.mean()
