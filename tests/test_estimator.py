"""The policy-gradient estimator (GAE, value step, policy steps) and the TRPO step, against hand
computations, and the agents' updates against the estimator written out by hand."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor

import gfn_agents
from gfn_agents.estimator import ValueCritic, advantages_and_returns, discounted_sum
from gfn_agents.logprobs import step_log_probs
from gfn_agents.rollout import Trajectories, sample_trajectories
from gfn_agents.trpo import trpo_step
from gfn_envs.scoring import backward_costs, forward_costs, masked_log_softmax, policy_log_probs
from gfn_envs.tasks.hypergrid import HyperGrid

SMALL = {"net_arch": (32, 32), "value_net_arch": (32,), "batch_size": 16}


def fake_batch(lengths: list[int], obs_dim: int = 1) -> Trajectories:
    """A batch of trajectories of the given lengths (only the layout and the observations, random,
    are meaningful)."""
    steps = max(lengths)
    valid = torch.tensor([[t < length for length in lengths] for t in range(steps)])
    n = int(valid.sum())
    zeros = torch.zeros(n, dtype=torch.long)
    return Trajectories(
        direction="forward",
        valid=valid,
        states=zeros.unsqueeze(1),
        obs=torch.randn(n, obs_dim, generator=torch.Generator().manual_seed(n)),
        masks=torch.ones(n, 1, dtype=torch.bool),
        actions=zeros,
        outputs=None,
        log_probs=torch.zeros(n),
        objects=torch.zeros(len(lengths), 1, dtype=torch.long),
        log_rewards=torch.zeros(len(lengths)),
    )


def test_discounted_sum_by_hand() -> None:
    """Lengths 3 and 1; flat rows are time-major: (t0, τ0), (t0, τ1), (t1, τ0), (t2, τ0)."""
    traj = fake_batch([3, 1])
    a0, b0, a1, a2 = 1.0, 10.0, 2.0, 4.0
    x = torch.tensor([a0, b0, a1, a2])
    lam = 0.5
    expected = [a0 + lam * a1 + lam**2 * a2, b0, a1 + lam * a2, a2]
    assert discounted_sum(traj, x, lam).tolist() == pytest.approx(expected)
    assert discounted_sum(traj, x, 1.0).tolist() == pytest.approx([7.0, 10.0, 6.0, 4.0])


def test_centred_gae_advantages_and_returns_by_hand() -> None:
    """δ_t = c_t + V(s_{t+1}) − V(s_t) (V = 0 after the last row), Â_t = Σ_k λ^k δ_{t+k}, centred
    over the batch; returns G_t = Σ_{k≥t} c_k."""
    traj = fake_batch([3, 2])
    # rows: (t0, τ0), (t0, τ1), (t1, τ0), (t1, τ1), (t2, τ0)
    c = torch.tensor([1.0, -2.0, 0.5, 3.0, 2.0])
    v = torch.tensor([0.4, 1.0, -0.3, 0.2, 0.7])
    lam = 0.5
    d = {  # δ by hand
        "a0": 1.0 + (-0.3) - 0.4,
        "a1": 0.5 + 0.7 - (-0.3),
        "a2": 2.0 + 0.0 - 0.7,
        "b0": -2.0 + 0.2 - 1.0,
        "b1": 3.0 + 0.0 - 0.2,
    }
    raw = [
        d["a0"] + lam * d["a1"] + lam**2 * d["a2"],
        d["b0"] + lam * d["b1"],
        d["a1"] + lam * d["a2"],
        d["b1"],
        d["a2"],
    ]
    mean = sum(raw) / len(raw)
    advantages, returns = advantages_and_returns(traj, c, v, lam)
    assert advantages.tolist() == pytest.approx([r - mean for r in raw], abs=1e-6)
    assert returns.tolist() == pytest.approx([3.5, 1.0, 2.5, 3.0, 2.0])
    assert abs(float(advantages.sum())) < 1e-6  # centred
    # λ = 0: the centred one-step TD errors
    td = [d["a0"], d["b0"], d["a1"], d["b1"], d["a2"]]
    zero, _ = advantages_and_returns(traj, c, v, 0.0)
    assert zero.tolist() == pytest.approx([x - sum(td) / 5 for x in td], abs=1e-6)


def test_value_critic_step_regresses_the_returns_and_uses_the_values_of_before() -> None:
    """One step: gradient of (1/B) Σ_rows (G_t − Ṽ(s_t))², and the advantages come from Ṽ before
    the Adam step."""
    traj = fake_batch([4, 2, 3], obs_dim=5)
    costs = torch.tensor([0.3, -1.0, 2.0, 0.5, 1.5, -0.2, 0.8, 0.1, 0.0])
    critic = ValueCritic(5, (8,), lr=0.1, lam=0.7, device=torch.device("cpu"))
    with torch.no_grad():
        before = critic.value(traj.obs)
    values = critic.value(traj.obs)
    returns = discounted_sum(traj, costs, 1.0)
    loss = ((returns - values) ** 2).sum() / 3
    expected = torch.autograd.grad(loss, list(critic.value.parameters()))
    advantages, stats = critic.step(traj, costs)
    torch.testing.assert_close(advantages, advantages_and_returns(traj, costs, before, 0.7)[0])
    assert stats["value_loss"] == pytest.approx(float(loss.detach()), rel=1e-6)
    for param, grad in zip(critic.value.parameters(), expected, strict=True):
        assert param.grad is not None
        torch.testing.assert_close(param.grad, grad)
    with torch.no_grad():
        assert not torch.equal(critic.value(traj.obs), before)  # the Adam step was taken


def _replay(agent: gfn_agents.PolicyGradientGFN) -> tuple[Trajectories, torch.Generator]:
    state = agent.generator.get_state()
    traj = sample_trajectories(agent.forward_env, agent.networks.forward_outputs, agent.generator)
    agent.generator.set_state(state)
    return traj, agent.generator


@pytest.mark.parametrize("lam", [0.0, 0.6])
def test_forward_update_applies_the_centred_gae_policy_gradient(lam: float) -> None:
    """The P_F gradient of one RL-U training step is that of (1/B) Σ Â_t log P_F(a_t|s_t) with Â the
    centred GAE(λ) advantages of the costs under the value network of before the step (λ = 0: the
    centred one-step TD errors), computed here row by row."""
    agent = gfn_agents.make_agent(
        "RL-U",
        "gfn_envs/HyperGrid-v0",
        env_kwargs={"ndim": 2, "height": 8},
        seed=1,
        gae_lambda=lam,
        **SMALL,
    )
    assert isinstance(agent, gfn_agents.PolicyGradientGFN)
    agent.networks.log_z.data.fill_(0.5)
    traj, _ = _replay(agent)
    lp = step_log_probs(agent.networks, agent.task, traj)
    costs = forward_costs(
        lp.log_pf, lp.log_pb, traj.is_last, traj.log_rewards[traj.batch_index], 0.5, -12.0
    ).detach()
    with torch.no_grad():
        values = agent.critic.value(traj.obs)
    # GAE written as a loop over each trajectory's rows
    advantages = torch.zeros_like(costs)
    rows = [[int(i) for i in (traj.batch_index == b).nonzero()] for b in range(traj.batch_size)]
    for own in rows:
        running = 0.0
        for position in reversed(range(len(own))):
            i = own[position]
            after = values[own[position + 1]] if position + 1 < len(own) else 0.0
            running = costs[i] + after - values[i] + lam * running
            advantages[i] = running
    advantages = advantages - advantages.mean()
    assert max(len(own) for own in rows) > 2 * min(len(own) for own in rows)
    loss = (advantages * lp.log_pf).sum() / traj.batch_size
    params = agent.networks.forward_parameters()
    expected = torch.autograd.grad(loss, params)

    agent.train_step()
    for param, grad in zip(params, expected, strict=True):
        assert param.grad is not None
        torch.testing.assert_close(param.grad, grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["RL-B", "RL-G"])
def test_backward_update_applies_the_monte_carlo_policy_gradient_of_the_backward_costs(
    name: str,
) -> None:
    """The P_B gradient of RL-B (RL-G) is that of (1/B) Σ Â log P_B with Â the centred Monte-Carlo
    returns of c̄ = log P_B − log P_F (log P_G) minus the backward baseline (λ = 1), on the backward
    batch it samples."""
    agent = gfn_agents.make_agent(
        name, "gfn_envs/HyperGrid-v0", env_kwargs={"ndim": 2, "height": 8}, seed=2, **SMALL
    )
    assert isinstance(agent, gfn_agents.PolicyGradientGFN)
    learner = agent.backward_learner
    forward = sample_trajectories(
        agent.forward_env, agent.networks.forward_outputs, agent.generator, grad=False
    )
    objects = forward.objects
    state = agent.generator.get_state()
    traj = sample_trajectories(
        agent.backward_env, agent.networks.backward_logits, agent.generator, starts=objects
    )
    agent.generator.set_state(state)
    lp = step_log_probs(agent.networks, agent.task, traj, guide=agent.guide)
    reference = lp.log_pf if name == "RL-B" else lp.log_guide
    assert reference is not None
    if name == "RL-G":
        assert float((lp.log_pf - reference).abs().max()) > 0.1  # the guide differs from P_F
    costs = backward_costs(reference, lp.log_pb.detach())
    with torch.no_grad():
        values = learner.critic.value(traj.obs)
    returns = torch.zeros_like(costs)  # Σ_{k≥t} c̄_k, row by row
    for i in range(len(costs)):
        later = (traj.batch_index == traj.batch_index[i]) & (torch.arange(len(costs)) >= i)
        returns[i] = costs[later].sum()
    advantages = returns - values
    advantages = advantages - advantages.mean()
    loss = (advantages * lp.log_pb).sum() / traj.batch_size
    params = agent.networks.backward_parameters()
    expected = torch.autograd.grad(loss, params)

    unused = step_log_probs(agent.networks, agent.task, forward)
    stats = learner.update(forward, unused, torch.zeros(len(forward.actions)))
    assert stats["backward_cost"] == pytest.approx(float(costs.sum()) / traj.batch_size, rel=1e-5)
    for param, grad in zip(params, expected, strict=True):
        assert param.grad is not None
        torch.testing.assert_close(param.grad, grad, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------- TRPO
def _linear_policy(seed: int) -> tuple[torch.nn.Linear, Tensor, Tensor, Tensor]:
    torch.manual_seed(seed)
    net = torch.nn.Linear(4, 3)
    obs = torch.randn(12, 4)
    mask = torch.ones(12, 3, dtype=torch.bool)
    mask[::3, 1] = False
    actions = torch.tensor([0, 2, 1, 0, 2, 1, 2, 0, 1, 0, 1, 2])
    actions[::3] = 0
    return net, obs, mask, actions


def test_trpo_restores_the_parameters_bitwise_when_the_line_search_rejects_every_step() -> None:
    net, obs, mask, actions = _linear_policy(0)
    params = list(net.parameters())
    before = [p.detach().clone() for p in params]
    log_probs = masked_log_softmax(net(obs), mask)
    advantages = torch.randn(12, generator=torch.Generator().manual_seed(1))
    tried: list[Tensor] = []

    def never_better() -> Tensor:
        # every candidate scores exactly as θ (surrogate not below L(θ)): all are rejected
        tried.append(torch.nn.utils.parameters_to_vector(params).detach().clone())
        return log_probs.detach()

    stats = trpo_step(params, log_probs, never_better, mask, actions, advantages, 4, backtracks=5)
    assert stats["trpo_accepted"] == 0.0
    assert len(tried) == 5
    start = torch.nn.utils.parameters_to_vector(before)
    assert all(not torch.equal(t, start) for t in tried)  # the search did move the parameters
    for p, b in zip(params, before, strict=True):
        assert torch.equal(p.detach(), b)


def test_trpo_accepts_a_step_that_lowers_the_surrogate_within_the_trust_region() -> None:
    net, obs, mask, actions = _linear_policy(3)
    params = list(net.parameters())
    log_probs = masked_log_softmax(net(obs), mask)
    advantages = torch.randn(12, generator=torch.Generator().manual_seed(4))
    old = log_probs.detach()
    rows = torch.arange(12)

    def surrogate(lp: Tensor) -> float:
        return float(((lp[rows, actions] - old[rows, actions]).exp() * advantages).sum() / 4)

    def evaluate() -> Tensor:
        return masked_log_softmax(net(obs), mask)

    stats = trpo_step(params, log_probs, evaluate, mask, actions, advantages, 4, max_kl=0.01)
    assert stats["trpo_accepted"] == 1.0
    with torch.no_grad():
        new = evaluate()
    assert surrogate(new) < surrogate(old)
    kl = (new.exp() * (new - old)).masked_fill(~mask, 0.0).sum(1).mean()
    assert float(kl) <= 0.01 and stats["trpo_kl"] == pytest.approx(float(kl), rel=1e-4)


def test_rl_t_step_moves_log_z_and_runs_trpo_on_the_forward_policy() -> None:
    agent = gfn_agents.make_agent("RL-T", HyperGrid(ndim=2, height=8), seed=0, **SMALL)
    before = copy.deepcopy(agent.networks.state_dict())
    stats = agent.train_step()
    assert stats["trpo_accepted"] in (0.0, 1.0) and "value_loss" in stats
    after = agent.networks.state_dict()
    assert not torch.equal(before["log_z"], after["log_z"])
    moved = any(not torch.equal(before[k], after[k]) for k in before if k.startswith("pf."))
    assert moved == bool(stats["trpo_accepted"])


def test_trpo_update_over_distinct_states_takes_the_step_over_rows() -> None:
    """RL-T's update runs the TRPO step on the batch's distinct (observation, mask) rows; on a
    2 × 8 batch (16 trajectories, all starting at the origin) it moves the policy as the step over
    every row does. Two CG iterations, where float32 rounding is not amplified (see
    tests/test_distributed.py)."""
    agent = gfn_agents.make_agent("RL-T", HyperGrid(ndim=2, height=8), seed=0, cg_iters=2, **SMALL)
    traj = sample_trajectories(agent.forward_env, agent.networks.forward_outputs, agent.generator)
    assert len(torch.unique(traj.obs, dim=0)) < len(traj.obs) / 2  # many rows repeat a state
    advantages = torch.randn(len(traj.actions), generator=torch.Generator().manual_seed(0))
    advantages -= advantages.mean()
    params = agent.networks.forward_parameters()
    start = torch.nn.utils.parameters_to_vector(params).detach().clone()
    stats = agent.policy_update.step(traj, traj.log_probs, advantages)
    over_states = torch.nn.utils.parameters_to_vector(params).detach().clone()
    torch.nn.utils.vector_to_parameters(start, params)

    def evaluate() -> Tensor:
        return policy_log_probs(agent.networks.forward_outputs, traj.obs, traj.masks)

    expected = trpo_step(
        params, evaluate(), evaluate, traj.masks, traj.actions, advantages, 16, cg_iters=2
    )
    assert stats["trpo_accepted"] == expected["trpo_accepted"] == 1.0
    assert stats["trpo_step_fraction"] == expected["trpo_step_fraction"]
    over_rows = torch.nn.utils.parameters_to_vector(params).detach()
    assert float((over_rows - start).abs().max()) > 1e-3
    torch.testing.assert_close(over_states, over_rows, rtol=0.0, atol=1e-6)
