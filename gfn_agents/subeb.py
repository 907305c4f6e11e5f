"""Sub-EB: the evaluation function fitted from partial episodes (Niu, Wu and Qian, ICLR 2026).

Sub-EB keeps the policy-gradient update of P_F (GAE(λ), λ = 0.99) and changes how the evaluation
function is learned. With the forward costs c_t of :func:`gfn_envs.scoring.forward_costs`
(c_t = log P_F(s_{t+1}|s_t) − log P_B(s_t|s_{t+1}) on moves, c_T = log P_F(exit|x) −
(log R̂(x) − log Z) on the exit, log Z detached), the **Sub-EB loss** of an evaluation function
V over every sub-trajectory 0 ≤ i < j ≤ L of each trajectory (s_L = s_f, V(s_f) = 0) is

    L(V) = (1/B) Σ_n Σ_{i<j} w_ij (V(s_i) + Σ_{i≤t<j} c_t − V(s_j))²,
    w_ij = λ^{j−i} / Σ_{i'<j'} λ^{j'−i'}  (λ = ``subeb_lambda`` = 0.9),

that is, log[P_F(τ_{i:j}|s_i)·e^{V(s_i)}] against log[P_B(τ_{i:j}|s_j)·e^{V(s_j)}], and against
log[R̂(x)·P_B(τ_{i:L−1}|x)/Z] when the sub-trajectory ends in s_f. It is the SubTB loss with the
state flow replaced by V and the log Z shift in the terminal value
(:func:`gfn_agents.balance.subtrajectory_loss`).

**What V is.** Let F*(s) = Σ_x R̂(x)·P_B(s|x) be the flow that P_B induces and
P_B(τ_{h:}|s) = R̂(x)·P_B(τ_{h:}|x)/F*(s) the continuation from s it implies. GFN-PG's expected
cost-to-go is V_F(s) = E_{P_F}[Σ_{k≥h} c_k | s_h = s] = log Z − log F*(s) +
KL(P_F(τ_{h:}|s) ‖ P_B(τ_{h:}|s)), and V = −V_F, i.e.

    V(s) = log F*(s) − KL(P_F(τ_{h:}|s) ‖ P_B(τ_{h:}|s)) − log Z,

is the evaluation function whose residuals have zero mean under P_F on every sub-trajectory
(V_F(s_i) = E[Σ_{i≤t<j} c_t + V_F(s_j) | s_i]): the paper's V(s) = log F*(s) − KL(·‖·), measured
from log Z because the terminal value is log R̂(x) − log Z. When P_F is balanced with P_B the
residuals vanish pointwise and V(s) = log F*(s) − log Z. So −V is a baseline for GFN-PG's GAE:
with Ṽ = −V, δ_t = c_t + Ṽ(s_{t+1}) − Ṽ(s_t) = V(s_t) + c_t − V(s_{t+1}) is the one-edge Sub-EB
residual, and at that fixed point every δ and every advantage is 0.

**One iteration** (the critic and the backward strategy of
:class:`~gfn_agents.pg.PolicyGradientGFN`):

1. :class:`SubEBCritic`: centred GAE(λ) advantages with the baseline −V of before the step, then
   one Adam step of V on L(V) (P_F, P_B and log Z fixed);
2. the policy step of P_F and log Z's step, as in GFN-PG. The Sub-EB code minimises
   mean_n S(τ_n)² for log Z, whose gradient 2·mean_n S(τ_n) is twice GFN-PG's; Adam's step does
   not change when a gradient is scaled by a constant (up to its ε), so both give the same log Z;
3. ``SubEB-B``, :class:`SubEBBackward`: one Adam step of P_B on the same loss L with V and P_F
   fixed — no backward rollouts, no guide. ``SubEB-U`` keeps P_B uniform.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from gfn_agents.balance import subtrajectory_loss
from gfn_agents.estimator import ValueCritic, gae_advantages, optimizer_step
from gfn_agents.logprobs import StepLogProbs
from gfn_agents.policies import PolicyNetworks
from gfn_agents.rollout import Trajectories


class SubEBCritic(ValueCritic):
    """The evaluation function V fitted by the Sub-EB loss; advantages with the baseline −V.

    Args:
        obs_dim: observation width.
        net_arch: hidden widths of V.
        lr: Adam step size of V.
        lam: λ of GAE (0.99).
        subeb_lambda: λ of the sub-trajectory weights (0.9).
        device: where V lives.
    """

    def __init__(
        self,
        obs_dim: int,
        net_arch: Sequence[int],
        lr: float,
        lam: float,
        subeb_lambda: float,
        device: torch.device,
    ) -> None:
        super().__init__(obs_dim, net_arch, lr, lam, device)
        self.subeb_lambda = subeb_lambda

    values: Tensor | None = None
    """V on the last batch, as of before its step (what ``SubEB-B``'s P_B step reads)."""

    def step(self, traj: Trajectories, costs: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Advantages under the baseline −V of before the step, then one step of V on L(V)."""
        values = self.value(traj.obs)
        self.values = values.detach()
        advantages = gae_advantages(traj, costs, -values, self.lam)
        loss = subtrajectory_loss(traj, values, costs, self.subeb_lambda)
        optimizer_step(self.optimizer, loss)
        return advantages, {"value_loss": float(loss.detach())}


class SubEBBackward:
    """P_B trained through the Sub-EB loss on the forward batch, V and P_F fixed (``SubEB-B``).

    The loss is L of the module docstring with each move's cost c_t = log P_F − log P_B read with
    P_B's graph (the forward batch's log P_B, computed with it), so its gradient is that of L with
    respect to P_B alone; V is the critic's on the same batch as of before its step, as in the
    authors' code, where the V, P_B and P_F steps all read one forward pass.

    Args:
        networks: the agent's networks (P_B is trained).
        critic: the Sub-EB critic, whose values on the batch are read.
        subeb_lambda: λ of the sub-trajectory weights.
        learning_rate: Adam step size of P_B.
    """

    needs_backward_grad = True

    def __init__(
        self,
        networks: PolicyNetworks,
        critic: SubEBCritic,
        subeb_lambda: float,
        learning_rate: float,
    ) -> None:
        self.critic, self.subeb_lambda = critic, subeb_lambda
        self.optimizer = torch.optim.Adam(networks.backward_parameters(), lr=learning_rate)

    def update(self, traj: Trajectories, lp: StepLogProbs, costs: Tensor) -> dict[str, float]:
        """One step of P_B on L after the critic's step on the same batch; ``lp.log_pb`` carries
        P_B's graph and ``costs`` are the batch's detached forward costs."""
        if self.critic.values is None or len(self.critic.values) != len(costs):
            raise RuntimeError("SubEBBackward.update needs the Sub-EB critic's step on this batch")
        # the value of the costs, the gradient of −log P_B on the moves
        live = costs + lp.log_pb.detach() - lp.log_pb
        loss = subtrajectory_loss(traj, self.critic.values, live, self.subeb_lambda)
        optimizer_step(self.optimizer, loss)
        return {"backward_loss": float(loss.detach())}

    def modules(self) -> dict[str, Any]:
        return {"backward_optimizer": self.optimizer}
