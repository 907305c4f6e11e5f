"""Policy-gradient GFlowNet training (Niu et al., ICML 2024): RL-U, RL-B, RL-G and RL-T, and the
members beyond the paper: Sub-EB (SubEB-U, SubEB-B), TLM (RL-TLM) and clipped PPO (RL-PPO).

**Forward problem.** Each forward step s_t → s_{t+1} costs c_t = log P_F(s_{t+1}|s_t) − log P_B(s_t|s_{t+1});
the exit step x → s_f costs log P_F(s_f|x) − (log R̂(x) − log Z), with log R̂ = max(log R, clip)
(:func:`gfn_envs.scoring.forward_costs`). The accumulated cost of a trajectory is the TB residual
S(τ) = log[Z·P_F(τ)] − log[R(x)·P_B(τ|x)], and

    J_F = E_{τ∼P_F}[S(τ)] = KL(P_F(τ) ‖ P*(x)P_B(τ|x)) + log Z − log Z*,

so minimising J_F over P_F drives P_F^T to P* for any fixed P_B. One iteration:

1. sample B trajectories on-policy;
2. the estimator step of :mod:`gfn_agents.estimator` on the costs: critic step, centred GAE(λ)
   advantages, then the policy step; log Z moves with gradient mean_n S(τ_n) (Adam, ``lr_z``),
   which is ½ the TB gradient with respect to log Z;
3. backward step: see :mod:`gfn_agents.backward`.

The family is three independent choices:

* the critic (``critic``): ``"returns"``, a value network Ṽ regressing the Monte-Carlo
  cost-to-go (Adam ``lr_value``, GFN-PG), or ``"subeb"``, the evaluation function V fitted by the
  Sub-EB loss over all sub-trajectories, with −V as the baseline (:mod:`gfn_agents.subeb`);
* the update rule (``update``): Adam on (1/B) Σ Â_t log P_F(a_t|s_t) (``learning_rate``), a TRPO
  step (RL-T, :mod:`gfn_agents.trpo`) or clipped-PPO epochs (RL-PPO, :mod:`gfn_agents.ppo`);
* the backward strategy (``backward``): uniform, coupled to P_F (RL-B), guided (RL-G),
  trajectory likelihood (RL-TLM), or through the Sub-EB loss (SubEB-B).

The costs use the log-probabilities of the sampling pass (no second P_F pass), and P_B at the
children is evaluated on the same observations. The rollout keeps the sampling pass's graph only
for the Adam update, which differentiates it; TRPO and PPO re-evaluate P_F on the batch.
"""

from __future__ import annotations

from typing import Any

import torch

from gfn_agents.backward import (
    BackwardLearner,
    CoupledBackward,
    GuidedBackward,
    TLMBackward,
    UniformBackward,
)
from gfn_agents.base import GFlowNetAlgorithm
from gfn_agents.estimator import (
    AdamUpdate,
    PolicyUpdate,
    TrpoUpdate,
    ValueCritic,
    estimator_step,
)
from gfn_agents.logprobs import step_log_probs
from gfn_agents.policies import PolicyNetworks
from gfn_agents.ppo import MinibatchOrder, PpoUpdate
from gfn_agents.rollout import sample_trajectories
from gfn_agents.subeb import SubEBBackward, SubEBCritic
from gfn_agents.validation import check_positive, check_unit_interval
from gfn_envs.guides import guide_spec, make_guide
from gfn_envs.scoring import Guide, forward_costs

BACKWARD = ("uniform", "forward", "guided", "tlm", "subeb")
UPDATES = ("adam", "trpo", "ppo")
CRITICS = ("returns", "subeb")


class PolicyGradientGFN(GFlowNetAlgorithm):
    """The policy-gradient GFlowNet family (see the module docstring).

    Args (beyond :class:`~gfn_agents.base.GFlowNetAlgorithm`):
        backward: ``"uniform"`` (RL-U), ``"forward"`` (P_B pulled towards P_F, RL-B),
            ``"guided"`` (P_B pulled towards the task's guide, RL-G), ``"tlm"`` (P_B maximises
            the likelihood of the forward trajectories, RL-TLM) or ``"subeb"`` (P_B trained
            through the Sub-EB loss, SubEB-B; needs ``critic="subeb"``).
        update: ``"adam"`` (REINFORCE with GAE), ``"trpo"`` (RL-T) or ``"ppo"`` (RL-PPO).
        critic: ``"returns"`` (Ṽ regresses the Monte-Carlo cost-to-go) or ``"subeb"`` (the
            Sub-EB evaluation function).
        gae_lambda: λ of the forward GAE (0.99).
        lr_value: Adam step size of the value networks (5e-3).
        value_net_arch: hidden widths of the value networks (2 × 256).
        subeb_lambda: λ of the Sub-EB sub-trajectory weights (0.9).
        max_kl, cg_iters, backtracks: TRPO trust region δ, conjugate-gradient iterations, line
            search steps (0.01, 10, 20).
        n_epochs, minibatch_size, clip_range, target_kl: PPO's passes over each batch,
            trajectories per minibatch, clip ε and approximate-KL early stop (4, 32, 0.2, None;
            :mod:`gfn_agents.ppo`).
        tlm_tau, tlm_lr_decay: TLM's target-network rate τ and step-size decay γ per iteration
            (0.25, 0.999; :class:`~gfn_agents.backward.TLMBackward`).
        guide: a :class:`~gfn_envs.guides.Guide` for ``backward="guided"`` (default: the task's),
            or its spec ``{"name", "config"}`` as checkpoints store it (:mod:`gfn_envs.guides`).
        share_trunk: P_B as a head on P_F's trunk.
    """

    def __init__(
        self,
        policy: str,
        env: Any,
        backward: str = "uniform",
        update: str = "adam",
        critic: str = "returns",
        gae_lambda: float = 0.99,
        lr_value: float = 5e-3,
        value_net_arch: tuple[int, ...] | list[int] = (256, 256),
        subeb_lambda: float = 0.9,
        max_kl: float = 0.01,
        cg_iters: int = 10,
        backtracks: int = 20,
        n_epochs: int = 4,
        minibatch_size: int = 32,
        clip_range: float = 0.2,
        target_kl: float | None = None,
        tlm_tau: float = 0.25,
        tlm_lr_decay: float = 0.999,
        guide: Guide | dict[str, Any] | None = None,
        share_trunk: bool = False,
        **kwargs: Any,
    ) -> None:
        if backward not in BACKWARD:
            raise ValueError(f"backward must be one of {BACKWARD}, got {backward!r}")
        if update not in UPDATES:
            raise ValueError(f"update must be one of {UPDATES}, got {update!r}")
        if critic not in CRITICS:
            raise ValueError(f"critic must be one of {CRITICS}, got {critic!r}")
        if backward == "subeb" and critic != "subeb":
            raise ValueError(
                "backward='subeb' trains P_B through the Sub-EB loss: set critic='subeb'"
            )
        check_unit_interval("gae_lambda", gae_lambda)
        check_unit_interval("subeb_lambda", subeb_lambda)
        check_positive("n_epochs", n_epochs, integer=True)
        check_positive("minibatch_size", minibatch_size, integer=True)
        check_positive("clip_range", clip_range)
        if target_kl is not None:
            check_positive("target_kl", target_kl)
        for name, value in (("tlm_tau", tlm_tau), ("tlm_lr_decay", tlm_lr_decay)):
            check_unit_interval(name, value)
            check_positive(name, value)
        check_positive("lr_value", lr_value)
        check_positive("max_kl", max_kl)
        check_positive("cg_iters", cg_iters, integer=True)
        check_positive("backtracks", backtracks, integer=True)
        if guide is not None and backward != "guided":
            raise ValueError("guide= is only used with backward='guided'")
        if guide is not None and not isinstance(guide, (Guide, dict)):
            raise TypeError(
                f"guide must implement gfn_envs.Guide (observe, log_prob), got {type(guide).__name__}"
            )
        self.backward, self.update, self.critic_name = backward, update, critic
        self.gae_lambda, self.lr_value = float(gae_lambda), float(lr_value)
        self.value_net_arch = tuple(value_net_arch)
        self.subeb_lambda = float(subeb_lambda)
        self.max_kl, self.cg_iters, self.backtracks = float(max_kl), cg_iters, backtracks
        self.n_epochs, self.minibatch_size = n_epochs, minibatch_size
        self.clip_range = float(clip_range)
        self.target_kl = None if target_kl is None else float(target_kl)
        self.tlm_tau, self.tlm_lr_decay = float(tlm_tau), float(tlm_lr_decay)
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
        self.critic: ValueCritic
        if self.critic_name == "subeb":
            self.critic = SubEBCritic(
                task.obs_dim,
                self.value_net_arch,
                self.lr_value,
                self.gae_lambda,
                self.subeb_lambda,
                self.device,
            )
        else:
            self.critic = ValueCritic(
                task.obs_dim, self.value_net_arch, self.lr_value, self.gae_lambda, self.device
            )
        self.optimizer = torch.optim.Adam(
            [
                {"params": self.networks.forward_parameters(), "lr": self.learning_rate},
                {"params": [self.networks.log_z], "lr": self.lr_z},
            ]
        )
        self.policy_update: PolicyUpdate = AdamUpdate(self.optimizer)
        if self.update == "trpo":
            self.policy_update = TrpoUpdate(
                self.networks.forward_outputs,
                self.networks.forward_parameters(),
                self.optimizer,
                self.max_kl,
                self.cg_iters,
                self.backtracks,
            )
        elif self.update == "ppo":
            self.minibatch_order = MinibatchOrder(self.generator)
            self.policy_update = PpoUpdate(
                self.networks.forward_outputs,
                self.optimizer,
                self.minibatch_order,
                self.n_epochs,
                self.minibatch_size,
                self.clip_range,
                self.target_kl,
                self.parallel,
            )
        self.backward_learner: BackwardLearner = UniformBackward()
        if self.backward == "tlm":
            self.backward_learner = TLMBackward(
                task, self.networks, self.learning_rate, self.tlm_tau, self.tlm_lr_decay
            )
        elif self.backward == "subeb":
            assert isinstance(self.critic, SubEBCritic)
            self.backward_learner = SubEBBackward(
                self.networks, self.critic, self.subeb_lambda, self.learning_rate
            )
        elif self.backward != "uniform":
            settings: dict[str, Any] = {
                "env": self.backward_env,
                "networks": self.networks,
                "generator": self.generator,
                "learning_rate": self.learning_rate,
                "lr_value": self.lr_value,
                "value_net_arch": self.value_net_arch,
            }
            if self.backward == "forward":
                self.backward_learner = CoupledBackward(**settings)
            else:
                self.backward_learner = GuidedBackward(self._resolve_guide(), **settings)

    def _resolve_guide(self) -> Guide:
        """The guide of RL-G: ``guide=`` (an object, or a checkpoint's spec), else the task's."""
        if isinstance(self._guide, dict):
            return make_guide(self.task, self._guide)
        guide = self.task.default_guide() if self._guide is None else self._guide
        if guide is None:
            raise ValueError(f"{type(self.task).__name__} has no default guide; pass guide=")
        return guide

    @property
    def guide(self) -> Guide | None:
        """The guide P_G of RL-G (None for the other backward strategies)."""
        return getattr(self.backward_learner, "guide", None)

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:  # type: ignore[override]
        return {"value_optimizer": self.critic.optimizer, "optimizer": self.optimizer}

    def _modules(self) -> dict[str, Any]:
        return {
            **super()._modules(),
            "value": self.critic.value,
            **({"minibatch_order": self.minibatch_order} if self.update == "ppo" else {}),
            **self.backward_learner.modules(),
        }

    def _hyperparameters(self) -> dict[str, Any]:
        """As the base class's, plus the PG settings. A guide passed as ``guide=`` is stored as its
        registered spec (:func:`gfn_envs.guides.guide_spec`, a ``ValueError`` if its class is not
        registered); the task's default guide is rebuilt from the task."""
        guide = None if self._guide is None else guide_spec(self.guide)  # type: ignore[arg-type]
        return {
            **super()._hyperparameters(),
            "backward": self.backward,
            "update": self.update,
            "critic": self.critic_name,
            "gae_lambda": self.gae_lambda,
            "lr_value": self.lr_value,
            "value_net_arch": list(self.value_net_arch),
            "subeb_lambda": self.subeb_lambda,
            "max_kl": self.max_kl,
            "cg_iters": self.cg_iters,
            "backtracks": self.backtracks,
            "n_epochs": self.n_epochs,
            "minibatch_size": self.minibatch_size,
            "clip_range": self.clip_range,
            "target_kl": self.target_kl,
            "tlm_tau": self.tlm_tau,
            "tlm_lr_decay": self.tlm_lr_decay,
            "guide": guide,
            "share_trunk": self.share_trunk,
        }

    def train_step(self) -> dict[str, float]:
        traj = sample_trajectories(
            self.forward_env,
            self.networks.forward_outputs,
            self.generator,
            grad=self.policy_update.needs_sampling_graph,
        )
        lp = step_log_probs(
            self.networks,
            self.task,
            traj,
            backward_grad=self.backward_learner.needs_backward_grad,
        )
        log_z = self.networks.log_z
        costs = forward_costs(
            lp.log_pf,
            lp.log_pb,
            traj.is_last,
            traj.log_rewards[traj.batch_index],
            log_z.detach(),
            self.log_reward_clip,
        ).detach()
        trajectory_costs = traj.per_trajectory_sum(costs)
        log_z_loss = log_z * trajectory_costs.mean()
        stats = estimator_step(
            traj, costs, lp.log_pf, self.critic, self.policy_update, extra_loss=log_z_loss
        )
        stats.update(self.backward_learner.update(traj, lp, costs))
        return {
            **stats,
            "kl_objective": float(trajectory_costs.mean()),
            "log_z": self.log_z,
            "mean_log_reward": float(traj.log_rewards.mean()),
            "mean_length": float(traj.lengths.float().mean()),
            "transitions": float(len(traj.actions)),
        }
