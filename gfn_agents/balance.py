"""The balance baselines: trajectory balance (TB), detailed balance (DB) and sub-trajectory balance
(SubTB(λ)), each with a learned or a uniform P_B (the paper's "-B" and "-U"), or with P_B trained
by trajectory likelihood maximisation (TLM, :class:`~gfn_agents.backward.TLMBackward`).

Every residual is built from the forward cost of :mod:`gfn_envs.scoring`,
c_t = log P_F(s_{t+1}|s_t) − log P_B(s_t|s_{t+1}) on moves and c_T = log P_F(exit|x) − (log R̂(x) −
log Z) on the exit, with log R̂ = max(log R, clip). Writing s_0, …, s_{L−1} = x for the states a
trajectory of L actions acts in and s_L = s_f for the sink:

* **TB** (Malkin et al. 2022): the residual is the trajectory's summed forward cost
  S(τ) = Σ_t c_t = log Z + Σ_t log P_F − Σ_t log P_B − log R̂(x), with a learned scalar log Z;
  loss = mean_n S(τ_n)².
* **DB** (Bengio et al. 2023): a state flow log F(s) (an extra output of P_F's network); with the
  costs of log Z = 0 and no clip, residual log F(s_t) + c_t − log F(s_{t+1}) with log F(s_f) = 0,
  i.e. the exit transition's target is log R(x) (unclipped); loss = (1/B) Σ over all transitions of
  the squared residuals. log Z is read as log F(s0).
* **SubTB(λ)** (Madan et al. 2023): with the costs of log Z = 0 (clipped), over every
  sub-trajectory s_i … s_j (0 ≤ i < j ≤ L) the residual log F(s_i) + Σ_{i≤t<j} c_t − log F(s_j),
  log F(s_L) = log F(s_f) = 0, weighted by λ^{j−i} normalised within the trajectory, averaged over
  trajectories. A sub-trajectory that ends in s_f therefore compares with log R̂(x).

With ``backward="tlm"`` (``TB-TLM``) the loss trains P_F and log Z (or the flows) with P_B
detached, and after each loss step P_B takes its own TLM step on the same batch: P_B maximises
the likelihood of the trajectories the sampler produced.

Exploration (these losses are off-policy): ε-uniform mixing with ε_k = max(ε_end, ε·decay^k) at
iteration k (the paper's "γ-decayed noisy sampler"), and a sampling temperature. The gradients use
log P_F of the policy itself, not of the mixture.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from gfn_agents.backward import TLMBackward
from gfn_agents.base import GFlowNetAlgorithm
from gfn_agents.estimator import optimizer_step
from gfn_agents.logprobs import StepLogProbs, step_log_probs
from gfn_agents.policies import PolicyNetworks
from gfn_agents.rollout import Trajectories, sample_trajectories
from gfn_agents.validation import check_positive, check_unit_interval
from gfn_envs.scoring import forward_costs

BACKWARD = ("learned", "uniform", "tlm")


def step_costs(
    traj: Trajectories, lp: StepLogProbs, log_z: float | Tensor, clip: float | None
) -> Tensor:
    """Per-row forward costs c_t of ``traj`` (with their graph), ``[N]``."""
    log_rewards = traj.log_rewards[traj.batch_index]
    return forward_costs(lp.log_pf, lp.log_pb, traj.is_last, log_rewards, log_z, clip)


def tb_residuals(traj: Trajectories, lp: StepLogProbs, log_z: Tensor, clip: float | None) -> Tensor:
    """Per-trajectory TB residual S(τ) = Σ_t c_t, ``[B]`` (see the module docstring)."""
    return traj.per_trajectory_sum(step_costs(traj, lp, log_z, clip))


def subtrajectory_loss(traj: Trajectories, log_flows: Tensor, costs: Tensor, lam: float) -> Tensor:
    """The λ-weighted sub-trajectory balance loss of per-state log-flows and per-row costs.

    Positions k = 0 … L of a trajectory of L actions are the states s_0, …, s_{L−1} = x the
    actions are taken in, and the sink s_L = s_f. With log F(s_k) = ``log_flows`` of row k and
    log F(s_f) = 0, every sub-trajectory 0 ≤ i < j ≤ L has the residual

        r_ij = log F(s_i) + Σ_{i≤t<j} c_t − log F(s_j),

    weighted by w_ij = λ^{j−i} / Σ_{i'<j'} λ^{j'−i'} within its trajectory; the loss is
    (1/B) Σ_n Σ_{i<j} w_ij r_ij². SubTB uses it with its state flows and the costs of log Z = 0
    (so a sub-trajectory ending in s_f compares with log R̂(x)); the Sub-EB critic
    (:mod:`gfn_agents.subeb`) with its evaluation function and the costs of the learned log Z.

    Args:
        traj: the batch.
        log_flows: log F(s_t) per row, ``[N]``.
        costs: c_t per row, ``[N]`` (the exit row's cost holds the terminal reward).
        lam: λ of the geometric weights.
    """
    steps, batch = traj.valid.shape
    # A_k = log F(s_k) − Σ_{t<k} c_t, so r_ij = A_i − A_j; padding positions get weight 0.
    flows = torch.zeros(steps + 1, batch, dtype=costs.dtype, device=traj.valid.device)
    flows[:-1][traj.valid] = log_flows
    lengths = traj.lengths
    d = traj.to_grid(costs)
    a = flows - torch.cat([torch.zeros_like(d[:1]), d.cumsum(0)])
    residuals = a.unsqueeze(1) - a.unsqueeze(0)
    k = torch.arange(steps + 1, device=a.device)
    gap = (k.unsqueeze(0) - k.unsqueeze(1)).unsqueeze(2)
    inside = (gap > 0) & (k.view(1, -1, 1) <= lengths.view(1, 1, -1))
    weights = torch.where(inside, lam ** gap.clamp(min=0).to(a.dtype), 0.0)
    per_traj = (weights * residuals.pow(2)).sum((0, 1)) / weights.sum((0, 1))
    return per_traj.mean()


class BalanceGFN(GFlowNetAlgorithm):
    """Shared surface of TB, DB and SubTB.

    Args (beyond :class:`~gfn_agents.base.GFlowNetAlgorithm`):
        backward: ``"learned"`` (P_B trained jointly through the loss), ``"uniform"``, or
            ``"tlm"`` (P_B detached in the loss and trained by TLM).
        epsilon, epsilon_decay, epsilon_end: ε-uniform exploration schedule (default: none).
        temperature: sampling temperature of P_F (1 = on-policy).
        share_trunk: P_B as a head on P_F's trunk.
        tlm_tau, tlm_lr_decay: TLM's target-network rate τ and step-size decay γ per iteration
            (0.25, 0.999; :class:`~gfn_agents.backward.TLMBackward`).
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
        tlm_tau: float = 0.25,
        tlm_lr_decay: float = 0.999,
        **kwargs: Any,
    ) -> None:
        if backward not in BACKWARD:
            raise ValueError(f"backward must be one of {BACKWARD}, got {backward!r}")
        for name, value in (("tlm_tau", tlm_tau), ("tlm_lr_decay", tlm_lr_decay)):
            check_unit_interval(name, value)
            check_positive(name, value)
        check_unit_interval("epsilon", epsilon)
        check_unit_interval("epsilon_decay", epsilon_decay)
        check_unit_interval("epsilon_end", epsilon_end)
        check_positive("temperature", temperature)
        self.backward, self.share_trunk = backward, share_trunk
        self.epsilon, self.epsilon_decay = float(epsilon), float(epsilon_decay)
        self.epsilon_end, self.temperature = float(epsilon_end), float(temperature)
        self.tlm_tau, self.tlm_lr_decay = float(tlm_tau), float(tlm_lr_decay)
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        self.networks = PolicyNetworks.for_task(
            self.task,
            self.net_arch,
            learn_backward=self.backward != "uniform",
            flow=self.needs_flow,
            share_trunk=self.share_trunk,
        )
        policy_params = self.networks.forward_parameters()
        self.tlm: TLMBackward | None = None
        if self.backward == "learned":
            policy_params += self.networks.backward_parameters()
        elif self.backward == "tlm":
            self.tlm = TLMBackward(
                self.task, self.networks, self.learning_rate, self.tlm_tau, self.tlm_lr_decay
            )
        self.optimizer = torch.optim.Adam(
            [
                {"params": policy_params, "lr": self.learning_rate},
                {"params": [self.networks.log_z], "lr": self.lr_z},
            ]
        )

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:  # type: ignore[override]
        return {"optimizer": self.optimizer}

    def _modules(self) -> dict[str, Any]:
        return {**super()._modules(), **({} if self.tlm is None else self.tlm.modules())}

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            **super()._hyperparameters(),
            "backward": self.backward,
            "epsilon": self.epsilon,
            "epsilon_decay": self.epsilon_decay,
            "epsilon_end": self.epsilon_end,
            "temperature": self.temperature,
            "share_trunk": self.share_trunk,
            "tlm_tau": self.tlm_tau,
            "tlm_lr_decay": self.tlm_lr_decay,
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
        lp = step_log_probs(
            self.networks, self.task, traj, backward_grad=self.backward == "learned"
        )
        loss = self.loss(traj, lp)
        optimizer_step(self.optimizer, loss)
        stats = {} if self.tlm is None else self.tlm.update(traj)
        return {
            **stats,
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
        return tb_residuals(traj, lp, self.networks.log_z, self.log_reward_clip).pow(2).mean()


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
    """DB: (1/B) Σ_transitions (log F(s) + c − log F(s'))², exit target log R(x) (unclipped)."""

    def loss(self, traj: Trajectories, lp: StepLogProbs) -> Tensor:
        flows = self._log_flows(traj)
        costs = step_costs(traj, lp, 0.0, None)
        residuals = flows + costs - traj.next_values(flows, last=0.0)
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
        costs = step_costs(traj, lp, 0.0, self.log_reward_clip)
        return subtrajectory_loss(traj, self._log_flows(traj), costs, self.subtb_lambda)
