"""Per-step log P_F, log P_B and guide log-probabilities of a trajectory batch.

Every loss (the policy-gradient costs, TB, DB, SubTB, the backward-policy costs) reads its
log-probabilities from :func:`step_log_probs`, which computes them with :mod:`gfn_envs.scoring`
on the rows of a :class:`~gfn_agents.rollout.Trajectories` batch:

* **Forward trajectories**, row i = (s_t, a_t): ``log_pf[i] = log P_F(a_t|s_t)`` (exit included);
  ``log_pb[i] = log P_B(s_t|s_{t+1})`` for moves and 0 for the exit row (P_B has no exit factor).
  The P_F values are those of the sampling pass, with its autograd graph; P_B is evaluated at the
  child, which is the next row's state, so the pass over the rows' observations serves both.
* **Backward trajectories**, row i = (y_k, b_k) with parent p = backward_step(y_k, b_k):
  ``log_pb[i] = log P_B(b_k|y_k)`` from the sampling pass; ``log_pf[i] = log P_F(y_k|p)``, the
  forward move that b_k undoes, without gradient; ``log_guide[i] = log P_G(y_k|p)`` when a guide
  is given (it receives P_F's normalised log-probabilities at p, as in the reward wrappers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gfn_agents.policies import PolicyNetworks
from gfn_agents.rollout import Trajectories
from gfn_envs.scoring import Guide, Policy, backward_log_probs, guided_log_probs
from gfn_envs.task import Task


@dataclass
class StepLogProbs:
    """Per-row log-probabilities of a :class:`Trajectories` batch (see the module docstring)."""

    log_pf: Tensor
    log_pb: Tensor
    log_guide: Tensor | None = None


def children_log_pb(task: Task, traj: Trajectories, policy: Policy | None) -> Tensor:
    """log P_B(s_t|s_{t+1}) of every row of forward trajectories under ``policy``, 0 on exit rows.

    The child s_{t+1} of a move is the next row's state, so P_B runs on rows' observations
    already at hand (one pass over the N − B children).
    """
    moves = ~traj.is_last
    rows = traj.next_index.clamp(min=0)[moves]
    back = task.backward_action(traj.states[moves], traj.actions[moves])
    children = backward_log_probs(task, policy, traj.states[rows], back, obs=traj.obs[rows])
    return torch.zeros_like(traj.log_probs).masked_scatter(moves, children)


def step_log_probs(
    networks: PolicyNetworks,
    task: Task,
    traj: Trajectories,
    backward_grad: bool = False,
    guide: Guide | None = None,
) -> StepLogProbs:
    """Per-row log P_F, log P_B (and log P_G) of ``traj``; see the module docstring.

    Args:
        backward_grad: forward trajectories only: keep P_B's graph (TB/DB/SubTB with learned P_B).
        guide: backward trajectories only: also score the forward moves under this guide.
    """
    if traj.direction == "forward":
        with torch.set_grad_enabled(backward_grad and networks.pb is not None):
            log_pb = children_log_pb(task, traj, networks.backward_policy)
        return StepLogProbs(log_pf=traj.log_probs, log_pb=log_pb)

    parents = task.backward_step(traj.states, traj.actions)
    forward_actions = task.forward_action(traj.states, traj.actions)
    with torch.no_grad():
        objects = traj.objects[traj.batch_index]
        log_pf, log_guide = guided_log_probs(
            task, networks.forward_outputs, parents, forward_actions, objects, guide
        )
    return StepLogProbs(log_pf=log_pf, log_pb=traj.log_probs, log_guide=log_guide)
