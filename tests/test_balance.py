"""TB, DB and SubTB(λ) losses against brute-force loops over trajectories and sub-trajectories
(values and gradients), on batches of trajectories of different lengths."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

import gfn_agents
from gfn_agents.balance import BalanceGFN
from gfn_agents.logprobs import StepLogProbs, step_log_probs
from gfn_agents.rollout import Trajectories, sample_trajectories
from gfn_envs.tasks.hypergrid import HyperGrid

CLIP = -2.5  # above some log-rewards of the grid (log R0 ≈ −4.6), so the clip is exercised


def batch(name: str, **kwargs: Any) -> tuple[BalanceGFN, Trajectories, StepLogProbs]:
    agent = gfn_agents.make_agent(
        name,
        HyperGrid(ndim=2, height=6, R0=0.01),
        seed=4,
        batch_size=8,
        net_arch=(32, 32),
        log_reward_clip=CLIP,
        **kwargs,
    )
    assert isinstance(agent, BalanceGFN)
    with torch.no_grad():
        agent.networks.log_z.fill_(0.9)
    traj = sample_trajectories(agent.forward_env, agent.networks.forward_outputs, agent.generator)
    lengths = traj.lengths.tolist()
    assert max(lengths) >= min(lengths) + 3  # trajectories of clearly different lengths
    assert bool((traj.log_rewards < CLIP).any())
    return agent, traj, step_log_probs(agent.networks, agent.task, traj, backward_grad=True)


def rows(traj: Trajectories, b: int) -> list[int]:
    """The flat rows of trajectory b, in order (the last one is its exit)."""
    return [int(i) for i in (traj.batch_index == b).nonzero().squeeze(1)]


def assert_same_loss_and_gradients(agent: BalanceGFN, loss: Tensor, brute: Tensor) -> None:
    torch.testing.assert_close(loss, brute, rtol=1e-5, atol=1e-6)
    params = [p for p in agent.networks.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    expected = torch.autograd.grad(brute, params, retain_graph=True, allow_unused=True)
    for g, e in zip(grads, expected, strict=True):
        if e is None:
            assert g is None or float(g.abs().max()) == 0.0
        else:
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


def test_tb_loss_is_the_mean_squared_trajectory_residual() -> None:
    """mean_b (log Z + Σ_t log P_F − Σ_t log P_B − max(log R, clip))²."""
    agent, traj, lp = batch("TB")
    terms = []
    for b in range(traj.batch_size):
        own = rows(traj, b)
        log_r = torch.clamp(traj.log_rewards[b], min=CLIP)
        residual = agent.networks.log_z + sum(lp.log_pf[i] - lp.log_pb[i] for i in own) - log_r
        terms.append(residual**2)
    assert_same_loss_and_gradients(agent, agent.loss(traj, lp), torch.stack(terms).mean())


def test_db_loss_sums_every_transition_residual() -> None:
    """(1/B) Σ_transitions (log F(s) + log P_F − log P_B − log F(s'))², log F(s_f) ≡ log R(x)
    (unclipped) on the exit transition."""
    agent, traj, lp = batch("DB")
    assert traj.outputs is not None
    flows = traj.outputs[:, agent.task.n_actions]
    total = torch.zeros(())
    for b in range(traj.batch_size):
        own = rows(traj, b)
        for position, i in enumerate(own):
            target = flows[own[position + 1]] if position + 1 < len(own) else traj.log_rewards[b]
            total = total + (flows[i] + lp.log_pf[i] - lp.log_pb[i] - target) ** 2
    assert_same_loss_and_gradients(agent, agent.loss(traj, lp), total / traj.batch_size)


@pytest.mark.parametrize("lam", [0.9, 0.5])
def test_subtb_loss_matches_a_loop_over_all_sub_trajectories(lam: float) -> None:
    """For each trajectory of L actions (states s_0 … s_{L−1} = x, then s_f): over all pairs
    0 ≤ i < j ≤ L the residual log F(s_i) + Σ_{i≤t<j} (log P_F − log P_B) − log F(s_j), with
    log F(s_L) replaced by max(log R(x), clip), weighted by λ^{j−i} / Σ_{pairs of this trajectory}
    λ^{j'−i'}; the loss is the mean over trajectories of the weighted squared residuals."""
    agent, traj, lp = batch("SubTB", subtb_lambda=lam)
    assert traj.outputs is not None
    flows = traj.outputs[:, agent.task.n_actions]
    per_trajectory = []
    for b in range(traj.batch_size):
        own = rows(traj, b)
        length = len(own)
        log_r = torch.clamp(traj.log_rewards[b], min=CLIP)
        log_flow = [flows[i] for i in own] + [log_r]
        weighted, weights = torch.zeros(()), 0.0
        for i in range(length):
            for j in range(i + 1, length + 1):
                inner = sum(lp.log_pf[own[t]] - lp.log_pb[own[t]] for t in range(i, j))
                residual = log_flow[i] + inner - log_flow[j]
                weighted = weighted + lam ** (j - i) * residual**2
                weights += lam ** (j - i)
        per_trajectory.append(weighted / weights)
    brute = torch.stack(per_trajectory).mean()
    assert_same_loss_and_gradients(agent, agent.loss(traj, lp), brute)
