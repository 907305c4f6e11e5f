"""Policy-gradient GFlowNet training (Niu et al., ICML 2024): RL-U, RL-B, RL-G and RL-T.

**Forward problem.** Each forward step s_t → s_{t+1} costs c_t = log P_F(s_{t+1}|s_t) − log P_B(s_t|s_{t+1});
the exit step x → s_f costs log P_F(s_f|x) − (log R̂(x) − log Z), with log R̂ = max(log R, clip). The
accumulated cost of a trajectory is the TB residual S(τ) = log[Z·P_F(τ)] − log[R(x)·P_B(τ|x)], and

    J_F = E_{τ∼P_F}[S(τ)] = KL(P_F(τ) ‖ P*(x)P_B(τ|x)) + log Z − log Z*,

so minimising J_F over P_F drives P_F^T to P* for any fixed P_B. One iteration:

1. sample B trajectories on-policy;
2. value step: Ṽ(s_t) regresses the Monte-Carlo cost-to-go G_t = Σ_{k≥t} c_k,
   loss (1/B) Σ (G_t − Ṽ(s_t))² (Adam, ``lr_value``);
3. actor step: GAE(λ) advantages Â_t = Σ_k λ^k δ_{t+k}, δ_t = c_t + Ṽ(s_{t+1}) − Ṽ(s_t), centred over
   the batch; loss (1/B) Σ Â_t log P_F(a_t|s_t) (Adam, ``learning_rate``), or a TRPO step (RL-T,
   :mod:`gfn_agents.trpo`); log Z moves with gradient mean_n S(τ_n) (Adam, ``lr_z``), which is ½ the
   TB gradient with respect to log Z;
4. backward step (RL-B, RL-G): see :class:`CoupledBackward`.

The costs use the log-probabilities of the sampling pass (no second P_F pass), and P_B at the
children is evaluated on the same observations.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from gfn_agents.base import GFlowNetAlgorithm, check_positive, check_unit_interval
from gfn_agents.logprobs import step_log_probs
from gfn_agents.policies import PolicyNetworks, ValueNetwork
from gfn_agents.rollout import Trajectories, sample_trajectories
from gfn_agents.trpo import trpo_step
from gfn_envs.guides import Guide

BACKWARD = ("uniform", "forward", "guided")
UPDATES = ("adam", "trpo")


def discounted_sum(traj: Trajectories, flat: Tensor, lam: float) -> Tensor:
    """Σ_{k≥0} λ^k x_{t+k} along each trajectory, for per-row values x (``[N]`` → ``[N]``).

    One matrix product with the upper-triangular matrix M[t, k] = λ^{k−t} over the padded grid.
    """
    grid = traj.to_grid(flat)
    steps = torch.arange(grid.shape[0], device=grid.device, dtype=grid.dtype)
    gap = steps.unsqueeze(0) - steps.unsqueeze(1)
    weights = torch.where(gap >= 0, torch.as_tensor(lam, dtype=grid.dtype) ** gap.clamp(min=0), 0.0)
    return (weights @ grid)[traj.valid]


def advantages_and_returns(
    traj: Trajectories, costs: Tensor, values: Tensor, lam: float
) -> tuple[Tensor, Tensor]:
    """Centred GAE(λ) advantages and Monte-Carlo returns of per-row ``costs`` (value 0 at the end)."""
    values = values.detach()
    deltas = costs + traj.next_values(values) - values
    advantages = discounted_sum(traj, deltas, lam)
    return advantages - advantages.mean(), discounted_sum(traj, costs, 1.0)


class CoupledBackward:
    """P_B trained by policy gradient towards a reference forward policy (RL-B, RL-G).

    From the terminal objects x of the forward batch, B backward trajectories are sampled with P_B.
    A backward step s' → s costs c̄ = log P_B(s|s') − log P_ref(s'|s), P_ref detached: P_F itself
    (RL-B) or a guide P_G (RL-G). The objective E_x E_{P_B(τ|x)}[Σ c̄] is minimised by P_B ∝ the
    reference's path posterior. The estimator is the forward one with λ = 1 (Monte-Carlo return
    minus a learned baseline Ṽ_B), value step first, then the policy step.
    """

    def __init__(
        self,
        agent: PolicyGradientGFN,
        guide: Guide | None,
        value_net_arch: tuple[int, ...],
    ) -> None:
        self.agent, self.guide = agent, guide
        self.value = ValueNetwork(agent.task.obs_dim, value_net_arch).to(agent.device)
        self.value_optimizer = torch.optim.Adam(self.value.parameters(), lr=agent.lr_value)
        self.optimizer = torch.optim.Adam(
            agent.networks.backward_parameters(), lr=agent.learning_rate
        )

    def update(self, objects: Tensor, log_rewards: Tensor) -> dict[str, float]:
        agent = self.agent
        if self.guide is not None:
            self.guide.observe(objects, log_rewards)
        traj = sample_trajectories(
            agent.backward_env, agent.networks.backward_logits, agent.generator, starts=objects
        )
        if len(traj.actions) == 0:
            return {}
        lp = step_log_probs(agent.networks, agent.task, traj, guide=self.guide)
        reference = lp.log_pf if self.guide is None else lp.log_guide
        costs = lp.log_pb.detach() - reference
        values = self.value(traj.obs)
        advantages, returns = advantages_and_returns(traj, costs, values, 1.0)
        n = traj.batch_size
        value_loss = (returns - values).pow(2).sum() / n
        self.value_optimizer.zero_grad()
        value_loss.backward()
        self.value_optimizer.step()
        policy_loss = (advantages * lp.log_pb).sum() / n
        self.optimizer.zero_grad()
        policy_loss.backward()
        self.optimizer.step()
        return {
            "backward_value_loss": float(value_loss.detach()),
            "backward_cost": float(costs.sum() / n),
        }

    def modules(self) -> dict[str, Any]:
        return {
            "backward_value": self.value,
            "backward_value_optimizer": self.value_optimizer,
            "backward_optimizer": self.optimizer,
        }


class PolicyGradientGFN(GFlowNetAlgorithm):
    """The policy-gradient GFlowNet family (see the module docstring).

    Args (beyond :class:`~gfn_agents.base.GFlowNetAlgorithm`):
        backward: ``"uniform"`` (RL-U), ``"forward"`` (P_B pulled towards P_F, RL-B) or
            ``"guided"`` (P_B pulled towards the task's guide, RL-G).
        update: ``"adam"`` (REINFORCE with GAE) or ``"trpo"`` (RL-T).
        gae_lambda: λ of the forward GAE (0.99).
        lr_value: Adam step size of the value networks (5e-3).
        value_net_arch: hidden widths of the value networks (2 × 256).
        max_kl, cg_iters, backtracks: TRPO trust region δ, conjugate-gradient iterations, line
            search steps (0.01, 10, 20).
        guide: a :class:`~gfn_envs.guides.Guide` for ``backward="guided"`` (default: the task's).
        share_trunk: P_B as a head on P_F's trunk.
    """

    def __init__(
        self,
        policy: str,
        env: Any,
        backward: str = "uniform",
        update: str = "adam",
        gae_lambda: float = 0.99,
        lr_value: float = 5e-3,
        value_net_arch: tuple[int, ...] | list[int] = (256, 256),
        max_kl: float = 0.01,
        cg_iters: int = 10,
        backtracks: int = 20,
        guide: Guide | None = None,
        share_trunk: bool = False,
        **kwargs: Any,
    ) -> None:
        if backward not in BACKWARD:
            raise ValueError(f"backward must be one of {BACKWARD}, got {backward!r}")
        if update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
        check_unit_interval("gae_lambda", gae_lambda)
        check_positive("lr_value", lr_value)
        check_positive("max_kl", max_kl)
        check_positive("cg_iters", cg_iters, integer=True)
        check_positive("backtracks", backtracks, integer=True)
        if guide is not None and backward != "guided":
            raise ValueError("guide= is only used with backward='guided'")
        self.backward, self.update = backward, update
        self.gae_lambda, self.lr_value = float(gae_lambda), float(lr_value)
        self.value_net_arch = tuple(value_net_arch)
        self.max_kl, self.cg_iters, self.backtracks = float(max_kl), cg_iters, backtracks
        self.share_trunk = share_trunk
        self._guide = guide
        super().__init__(policy, env, **kwargs)

    def _setup_model(self) -> None:
        task = self.task
        self.networks = PolicyNetworks.for_task(
            task,
            self.net_arch,
            learn_backward=self.backward != "uniform",
            share_trunk=self.share_trunk,
        )
        self.value = ValueNetwork(task.obs_dim, self.value_net_arch).to(self.device)
        self.value_optimizer = torch.optim.Adam(self.value.parameters(), lr=self.lr_value)
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.networks.forward_parameters(), "lr": self.learning_rate},
                {"params": [self.networks.log_z], "lr": self.lr_z},
            ]
        )
        self.backward_learner: CoupledBackward | None = None
        if self.backward != "uniform":
            guide = None
            if self.backward == "guided":
                guide = self._guide or task.default_guide()
                if guide is None:
                    raise ValueError(f"{type(task).__name__} has no default guide; pass guide=")
            self.backward_learner = CoupledBackward(self, guide, self.value_net_arch)

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:  # type: ignore[override]
        return {"value_optimizer": self.value_optimizer, "optimizer": self.optimizer}

    def _modules(self) -> dict[str, Any]:
        modules = {**super()._modules(), "value": self.value}
        if self.backward_learner is not None:
            modules.update(self.backward_learner.modules())
            guide = self.backward_learner.guide
            if guide is not None and hasattr(guide, "state_dict"):
                modules["guide"] = guide
        return modules

    def _hyperparameters(self) -> dict[str, Any]:
        return {
            **super()._hyperparameters(),
            "backward": self.backward,
            "update": self.update,
            "gae_lambda": self.gae_lambda,
            "lr_value": self.lr_value,
            "value_net_arch": list(self.value_net_arch),
            "max_kl": self.max_kl,
            "cg_iters": self.cg_iters,
            "backtracks": self.backtracks,
            "share_trunk": self.share_trunk,
        }

    def forward_costs(self, traj: Trajectories, log_pf: Tensor, log_pb: Tensor) -> Tensor:
        """Per-row costs c_t (detached), with −(log R̂(x) − log Z) replacing log P_B at exit."""
        terminal = self.clipped_log_rewards(traj.log_rewards) - self.networks.log_z.detach()
        exit_target = terminal[traj.batch_index]
        return (log_pf - torch.where(traj.is_last, exit_target, log_pb)).detach()

    def train_step(self) -> dict[str, float]:
        traj = sample_trajectories(self.forward_env, self.networks.forward_outputs, self.generator)
        lp = step_log_probs(self.networks, self.task, traj)
        costs = self.forward_costs(traj, lp.log_pf, lp.log_pb)
        n = traj.batch_size
        trajectory_costs = traj.per_trajectory_sum(costs)

        values = self.value(traj.obs)
        advantages, returns = advantages_and_returns(traj, costs, values, self.gae_lambda)
        value_loss = (returns - values).pow(2).sum() / n
        self.value_optimizer.zero_grad()
        value_loss.backward()
        self.value_optimizer.step()

        log_z_loss = self.networks.log_z * trajectory_costs.mean()
        stats: dict[str, float] = {}
        if self.update == "adam":
            actor_loss = (advantages * lp.log_pf).sum() / n
            self.optimizer.zero_grad()
            (actor_loss + log_z_loss).backward()
            self.optimizer.step()
        else:
            self.optimizer.zero_grad()
            log_z_loss.backward()
            self.optimizer.step()
            stats.update(self._trpo(traj, advantages))
        if self.backward_learner is not None:
            stats.update(self.backward_learner.update(traj.objects, traj.log_rewards))
        return {
            **stats,
            "value_loss": float(value_loss.detach()),
            "kl_objective": float(trajectory_costs.mean()),
            "log_z": self.log_z,
            "mean_log_reward": float(traj.log_rewards.mean()),
            "mean_length": float(traj.lengths.float().mean()),
            "transitions": float(len(traj.actions)),
        }

    def _trpo(self, traj: Trajectories, advantages: Tensor) -> dict[str, float]:
        n_actions = self.task.n_actions

        def log_probs(outputs: Tensor) -> Tensor:
            return outputs[:, :n_actions].masked_fill(~traj.masks, -torch.inf).log_softmax(dim=1)

        def evaluate() -> Tensor:
            return log_probs(self.networks.forward_outputs(traj.obs))

        # One batched pass with a fresh graph: double backward through it (the Fisher products)
        # is far cheaper than through the per-step graph of the sampling pass.
        return trpo_step(
            params=self.networks.forward_parameters(),
            log_probs=evaluate(),
            evaluate=evaluate,
            mask=traj.masks,
            actions=traj.actions,
            advantages=advantages,
            batch_size=traj.batch_size,
            max_kl=self.max_kl,
            cg_iters=self.cg_iters,
            backtracks=self.backtracks,
        )
