"""The learners beyond the paper: the Sub-EB critic and backward strategy, TLM, and clipped PPO.

Each test checks a defining identity or fixed point on a small HyperGrid: the sub-trajectory loss
against a direct sum over sub-trajectories, Sub-EB's zero loss and zero advantages at the exact
flows of the exact DP, the TLM gradient against an independent likelihood, PPO's reduction to
RL-U's step and its clipping. Convergence lives in ``tests/test_convergence.py``, checkpoints in
``tests/test_agents.py``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import gfn_envs  # noqa: F401  (registers the ids)
from gfn_agents import PRESETS, PolicyGradientGFN, TrajectoryBalance, make_agent
from gfn_agents.backward import TLMBackward
from gfn_agents.balance import step_costs, subtrajectory_loss
from gfn_agents.logprobs import StepLogProbs, children_log_pb, step_log_probs
from gfn_agents.ppo import clipped_surrogate, ppo_cost_surrogate
from gfn_agents.rollout import Trajectories, sample_trajectories
from gfn_agents.subeb import SubEBBackward, SubEBCritic
from gfn_envs.env import GFlowNetVectorEnv
from gfn_envs.exact import StateLookup, target_policy, target_probs, visit_probs
from gfn_envs.scoring import forward_costs, masked_log_softmax
from gfn_envs.tasks.hypergrid import HyperGrid

ENV_ID = "gfn_envs/HyperGrid-v0"
GRID = {"ndim": 2, "height": 8}
CLIP = -12.0


def build(name: str, seed: int = 0, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = {"net_arch": (32, 32), "batch_size": 16, "seed": seed}
    if PRESETS[name][0] is PolicyGradientGFN:
        kwargs["value_net_arch"] = (32, 32)
    return make_agent(name, ENV_ID, env_kwargs=GRID, **{**kwargs, **overrides})


def sample(agent: Any) -> Trajectories:
    return sample_trajectories(agent.forward_env, agent.networks.forward_outputs, agent.generator)


# ------------------------------------------------------------------------ the sub-trajectory loss
def test_subtrajectory_loss_is_the_weighted_sum_over_every_sub_trajectory() -> None:
    """Against a direct double loop: Σ_{i<j≤L} λ^{j−i}(F_i + Σ_{i≤t<j} c_t − F_j)² / Σ λ^{j−i}
    per trajectory with F_L = 0, averaged over trajectories."""
    agent = build("TB", seed=1)
    traj = sample(agent)
    generator = torch.Generator().manual_seed(0)
    flows = torch.randn(len(traj.actions), generator=generator)
    costs = torch.randn(len(traj.actions), generator=generator)
    lam = 0.8
    per_trajectory = []
    for n in range(traj.batch_size):
        rows = (traj.batch_index == n).nonzero().squeeze(1)  # in time order
        f = torch.cat([flows[rows], torch.zeros(1)])
        c = costs[rows]
        total, weights = 0.0, 0.0
        for i in range(len(rows)):
            for j in range(i + 1, len(rows) + 1):
                residual = f[i] + c[i:j].sum() - f[j]
                total += lam ** (j - i) * float(residual) ** 2
                weights += lam ** (j - i)
        per_trajectory.append(total / weights)
    expected = sum(per_trajectory) / len(per_trajectory)
    assert math.isclose(float(subtrajectory_loss(traj, flows, costs, lam)), expected, rel_tol=1e-5)


# ------------------------------------------------------------------------------------- Sub-EB
class LookupValue(nn.Module):
    """A value 'network' returning fixed values per enumerated state (plus a zero parameter)."""

    def __init__(self, task: HyperGrid, values: Tensor) -> None:
        super().__init__()
        self.lookup, self.values = StateLookup(task), values.float()
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, obs: Tensor) -> Tensor:
        return self.values[self.lookup(obs)] + self.offset


def exact_batch() -> tuple[HyperGrid, Trajectories, Tensor, Tensor]:
    """A batch sampled by the exact target P_F of 2 × 8 (uniform P_B), its costs with log Z = log Z*,
    and V(s) = log u(s) over all states, u the target's visit probabilities (F*(s)/Z*)."""
    task = HyperGrid(**GRID)
    env = GFlowNetVectorEnv(32, task, autoreset_mode="disabled", tensors=True)
    traj = sample_trajectories(env, target_policy(task), torch.Generator().manual_seed(0))
    log_z_star = float(task.log_reward(task.terminal_states()).double().logsumexp(0))
    log_pb = children_log_pb(task, traj, None)
    log_rewards = traj.log_rewards[traj.batch_index]
    costs = forward_costs(traj.log_probs, log_pb, traj.is_last, log_rewards, log_z_star, CLIP)
    values = visit_probs(task, target_probs(task)).log()
    return task, traj, costs.detach(), values


def test_subeb_loss_vanishes_at_the_exact_flows_and_only_there() -> None:
    """At the exact P_F, P_B and log Z of 2 × 8, V(s) = log F*(s) − log Z* is the fixed point:
    every sub-trajectory residual is 0. Shifting V, perturbing one state's V, dropping the log Z
    term or flipping the sign of the costs breaks it."""
    task, traj, costs, values = exact_batch()
    lookup = StateLookup(task)
    v = values[lookup(traj.obs)].float()
    assert float(subtrajectory_loss(traj, v, costs, 0.9)) < 1e-9

    s0_rows = traj.states.sum(dim=1) == 0
    perturbed = torch.where(s0_rows, v + 0.3, v)
    log_z_star = float(task.log_reward(task.terminal_states()).double().logsumexp(0))
    without_log_z = torch.where(traj.is_last, costs - log_z_star, costs)
    for broken_v, broken_costs in (
        (v + 0.1, costs),
        (perturbed, costs),
        (v, without_log_z),
        (v, -costs),
    ):
        assert float(subtrajectory_loss(traj, broken_v, broken_costs, 0.9)) > 1e-3


def test_subeb_critic_gives_zero_advantages_and_zero_loss_at_the_fixed_point() -> None:
    """Through :class:`SubEBCritic`: with V exact, the GAE baseline −V makes every TD error, hence
    every (centred) advantage, 0, and the critic's loss is 0."""
    task, traj, costs, values = exact_batch()
    critic = SubEBCritic(task.obs_dim, (8,), 1e-3, 0.99, 0.9, task.device)
    critic.value = LookupValue(task, values)  # type: ignore[assignment]
    critic.optimizer = torch.optim.Adam(critic.value.parameters(), lr=1e-3)
    advantages, stats = critic.step(traj, costs)
    assert float(advantages.abs().max()) < 1e-4
    assert stats["value_loss"] < 1e-9
    # away from the fixed point the advantages are not 0
    critic.value.values = critic.value.values * 1.1
    advantages, _ = critic.step(traj, costs)
    assert float(advantages.abs().max()) > 0.05


def test_subeb_backward_gradient_is_the_subeb_loss_gradient_in_p_b_alone() -> None:
    """SubEB-B's P_B step: its gradient equals ∇_φ of the Sub-EB loss with the costs' log P_B live
    and V (as of before the critic's step on the batch), P_F and log Z fixed; P_F and V do not
    move."""
    agent = build("SubEB-B", seed=2)
    agent.networks.log_z.data.fill_(0.5)
    traj = sample(agent)
    lp = step_log_probs(agent.networks, agent.task, traj, backward_grad=True)
    live = step_costs(traj, lp, agent.networks.log_z.detach(), agent.log_reward_clip)
    with torch.no_grad():
        values = agent.critic.value(traj.obs)
    reference = subtrajectory_loss(traj, values, live, agent.subeb_lambda)
    params = agent.networks.backward_parameters()
    expected = torch.autograd.grad(reference, params, retain_graph=True)
    agent.critic.step(traj, live.detach())  # V moves first, as in a training step
    pf_before = [p.detach().clone() for p in agent.networks.forward_parameters()]
    v_before = [p.detach().clone() for p in agent.critic.value.parameters()]

    learner = agent.backward_learner
    assert isinstance(learner, SubEBBackward)
    learner.update(traj, lp, live.detach())
    assert max(float(g.abs().max()) for g in expected) > 1e-4
    for p, g in zip(params, expected, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7)
    for p, before in zip(agent.networks.forward_parameters(), pf_before, strict=True):
        assert torch.equal(p, before)
    for p, before in zip(agent.critic.value.parameters(), v_before, strict=True):
        assert torch.equal(p, before)


def test_subeb_b_training_step_hands_its_backward_step_the_batch_forward_costs() -> None:
    """In a SubEB-B iteration the backward step receives the forward costs of the batch (log P_F
    of the sampling pass, P_B at the children, log Z of before the step)."""
    agent = build("SubEB-B", seed=3)
    agent.networks.log_z.data.fill_(0.3)
    learner = agent.backward_learner
    update, seen = learner.update, []

    def recording(traj: Trajectories, lp: StepLogProbs, costs: Tensor) -> dict[str, float]:
        log_pb = children_log_pb(agent.task, traj, agent.networks.backward_policy)
        assert lp.log_pb.requires_grad  # P_B's graph, for the P_B step
        torch.testing.assert_close(lp.log_pb, log_pb)
        plain = StepLogProbs(traj.log_probs.detach(), log_pb.detach())
        seen.append(step_costs(traj, plain, 0.3, agent.log_reward_clip))
        torch.testing.assert_close(costs, seen[-1])
        return update(traj, lp, costs)

    learner.update = recording  # type: ignore[method-assign]
    agent.train_step()
    assert len(seen) == 1 and agent.log_z != 0.3


def test_adam_moves_log_z_alike_under_the_linear_and_the_squared_tb_loss() -> None:
    """GFN-PG's log Z loss log Z · mean S (gradient mean S) and Sub-EB's mean S² (gradient
    2·mean S) give the same Adam steps: the step is invariant to a constant gradient scale."""
    generator = torch.Generator().manual_seed(0)
    linear, squared = nn.Parameter(torch.zeros(())), nn.Parameter(torch.zeros(()))
    opt_linear = torch.optim.Adam([linear], lr=0.1)
    opt_squared = torch.optim.Adam([squared], lr=0.1)
    for _ in range(50):
        rest = torch.randn(16, generator=generator) + 2.0  # S(τ) − log Z
        for opt, loss in (
            (opt_linear, linear * (rest + linear.detach()).mean()),
            (opt_squared, (rest + squared).pow(2).mean()),
        ):
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert abs(float(linear.detach()) - float(squared.detach())) < 1e-5
    assert float(linear.detach()) < -1.0  # it moved towards −mean(rest)


# ---------------------------------------------------------------------------------------- TLM
def test_tlm_gradient_is_the_gradient_of_the_mean_trajectory_log_likelihood() -> None:
    """The TLM step's gradient in P_B equals −∇ (1/B) Σ_n log P_B(τ_n|x_n), recomputed here state
    by state from the children task.step(s, a); then the target P_B is (1 − τ)φ̄ + τφ, and P_F and
    log Z are untouched."""
    agent = build("TB-TLM", seed=4)
    learner = agent.tlm
    assert isinstance(learner, TLMBackward)
    traj = sample(agent)
    task = agent.task
    online = copy.deepcopy(learner.online)
    target_before = [p.detach().clone() for p in agent.networks.backward_parameters()]
    pf_before = [p.detach().clone() for p in agent.networks.forward_parameters()]
    log_z_before = agent.log_z

    moves = ~traj.is_last
    parents, actions = traj.states[moves], traj.actions[moves]
    children = task.step(parents, actions)
    log_p = masked_log_softmax(online(task.encode(children)), task.backward_mask(children))
    back = task.backward_action(parents, actions)
    rows = log_p.gather(1, back.unsqueeze(1)).squeeze(1)
    likelihood = torch.zeros(traj.batch_size).index_add(0, traj.batch_index[moves], rows)
    expected = torch.autograd.grad(-likelihood.mean(), list(online.parameters()))

    learner.update(traj)
    for p, g in zip(learner.online.parameters(), expected, strict=True):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7)
    assert max(float(g.abs().max()) for g in expected) > 1e-3
    tau = learner.tau
    for target, before, current in zip(
        agent.networks.backward_parameters(),
        target_before,
        learner.online.parameters(),
        strict=True,
    ):
        torch.testing.assert_close(target, (1 - tau) * before + tau * current)
    for p, before in zip(agent.networks.forward_parameters(), pf_before, strict=True):
        assert torch.equal(p, before)
    assert agent.log_z == log_z_before


def test_tb_tlm_trains_p_b_only_through_tlm_and_starts_uniform() -> None:
    """TB-TLM: P_B starts uniform (zero output layer); a training step moves P_B exactly by the
    Polyak update of the TLM step (TB's loss leaves it alone), and its step size decays by γ."""
    agent = build("TB-TLM", seed=6, tlm_tau=0.5, tlm_lr_decay=0.9)
    traj = sample(agent)
    log_pb = children_log_pb(agent.task, traj, agent.networks.backward_policy)
    uniform = children_log_pb(agent.task, traj, None)
    torch.testing.assert_close(log_pb, uniform)
    for _ in range(3):
        target = [p.detach().clone() for p in agent.networks.backward_parameters()]
        agent.train_step()
        for p, before, online in zip(
            agent.networks.backward_parameters(), target, agent.tlm.online.parameters(), strict=True
        ):
            torch.testing.assert_close(p, 0.5 * before + 0.5 * online)
    assert math.isclose(agent.tlm.optimizer.param_groups[0]["lr"], 1e-3 * 0.9**3)
    assert all(p.grad is None for p in agent.networks.backward_parameters())  # detached in TB


def test_rl_tlm_is_the_policy_gradient_family_with_a_tlm_backward_step() -> None:
    agent = build("RL-TLM", seed=8)
    assert isinstance(agent.backward_learner, TLMBackward)
    stats = agent.train_step()
    assert stats["tlm_loss"] > 0  # a negative log-likelihood of trajectories with moves


# ---------------------------------------------------------------------------------------- PPO
def test_clipped_surrogate_is_the_pessimistic_bound_for_costs() -> None:
    """max(ρÂ, clip(ρ)Â) with ε = 0.2: for a positive advantage (a worse action) a raised ratio
    counts in full and a lowered one past 0.8 stops counting; mirrored for a negative one."""
    log_ratio = torch.tensor([1.5, 0.5, 1.5, 0.5, 1.1]).log().requires_grad_()
    advantages = torch.tensor([2.0, 2.0, -2.0, -2.0, 2.0])
    value = clipped_surrogate(log_ratio, advantages, 0.2)
    torch.testing.assert_close(value, torch.tensor([3.0, 1.6, -2.4, -1.0, 2.2]))
    (grad,) = torch.autograd.grad(value.sum(), [log_ratio])
    torch.testing.assert_close(grad, torch.tensor([3.0, 0.0, 0.0, -1.0, 2.2]))


def test_ppo_surrogate_adds_the_kl_of_the_new_policy_which_vanishes_to_first_order() -> None:
    """Per row: max(ρÂ, clip(ρ)Â) + KL(π_θ ‖ π_old) over the legal actions, by hand on two masked
    rows; at π_θ = π_old the KL term has no gradient (the step is the policy gradient), and the
    masked −inf never makes a gradient NaN."""
    mask = torch.tensor([[True, True, False], [True, True, True]])
    old = masked_log_softmax(torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0]]), mask)
    logits = torch.tensor([[1.0, 0.0, 5.0], [0.5, 1.0, 1.0]], requires_grad=True)
    new = masked_log_softmax(logits, mask)
    actions, advantages = torch.tensor([0, 2]), torch.tensor([1.0, -0.5])
    value = ppo_cost_surrogate(new, old, mask, actions, advantages, 0.2)
    p0 = math.exp(1) / (math.exp(1) + 1)  # row 0: π_θ = (p0, 1 − p0), π_old = (½, ½)
    kl0 = p0 * math.log(2 * p0) + (1 - p0) * math.log(2 * (1 - p0))
    ratio0 = p0 / 0.5  # 1.46 > 1.2 with Â > 0: the unclipped term counts
    q = [math.exp(v) for v in (0.0, 1.0, 2.0)]
    z = sum(q)
    p = [
        math.exp(0.5) / (math.exp(0.5) + 2 * math.e),
        *(2 * [math.e / (math.exp(0.5) + 2 * math.e)]),
    ]
    kl1 = sum(pi * math.log(pi / (qi / z)) for pi, qi in zip(p, q, strict=True))
    ratio1 = p[2] / (q[2] / z)  # 0.60 < 0.8 with Â < 0: the clipped term counts
    expected = [ratio0 * 1.0 + kl0, max(ratio1 * -0.5, 0.8 * -0.5) + kl1]
    torch.testing.assert_close(value, torch.tensor(expected))
    (grad,) = torch.autograd.grad(value.sum(), [logits])
    assert bool(torch.isfinite(grad).all())

    at_old = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0]], requires_grad=True)
    current = masked_log_softmax(at_old, mask)
    surrogate = ppo_cost_surrogate(current, old, mask, actions, advantages, 0.2).sum()
    (g_ppo,) = torch.autograd.grad(surrogate, [at_old], retain_graph=True)
    pg = (advantages * current.gather(1, actions.unsqueeze(1)).squeeze(1)).sum()
    (g_pg,) = torch.autograd.grad(pg, [at_old])
    torch.testing.assert_close(g_ppo, g_pg)


def test_ppo_with_one_epoch_one_minibatch_and_no_clip_is_rl_u() -> None:
    """RL-PPO with n_epochs = 1, one minibatch of the whole batch and a clip range that never binds
    takes RL-U's step: same gradients and parameters after an iteration from the same seed."""
    rl_u = build("RL-U", seed=7)
    ppo = build("RL-PPO", seed=7, n_epochs=1, minibatch_size=16, clip_range=1e6)
    ppo.generator.set_state(rl_u.generator.get_state())  # PPO drew its minibatch-order base
    rl_u.train_step()
    stats = ppo.train_step()
    assert stats["ppo_steps"] == 1
    pairs = zip(rl_u.networks.forward_parameters(), ppo.networks.forward_parameters(), strict=True)
    for a, b in pairs:
        assert a.grad is not None and b.grad is not None
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)
    for a, b in zip(rl_u.networks.parameters(), ppo.networks.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for a, b in zip(rl_u.critic.value.parameters(), ppo.critic.value.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_ppo_takes_one_step_per_minibatch_and_epoch() -> None:
    ppo = build("RL-PPO", seed=9, n_epochs=3, minibatch_size=6)
    assert ppo.train_step()["ppo_steps"] == 3 * 3  # minibatches of 6, 6 and 4 trajectories


def test_ppo_stops_once_the_approximate_kl_exceeds_one_and_a_half_target_kl() -> None:
    """With one minibatch per epoch, the check before the second step sees the approximate KL
    k = mean_rows((ρ − 1) − log ρ) of the policy after the first step. From the same seed, a
    target_kl just below k/1.5 stops there (one step, reporting k); one just above takes both
    steps."""
    first = build("RL-PPO", seed=9, n_epochs=1, minibatch_size=16)
    old_params = [p.detach().clone() for p in first.networks.forward_parameters()]
    traj_holder: list[Trajectories] = []
    original = first.policy_update.step

    def recording(traj: Trajectories, *args: Any, **kwargs: Any) -> dict[str, float]:
        traj_holder.append(traj)
        return original(traj, *args, **kwargs)

    first.policy_update.step = recording  # type: ignore[method-assign]
    first.train_step()
    (traj,) = traj_holder
    mask, actions = traj.masks, traj.actions
    assert traj.outputs is not None
    old = masked_log_softmax(traj.outputs[:, : mask.shape[1]], mask).gather(1, actions[:, None])
    with torch.no_grad():
        new = masked_log_softmax(first.networks.forward_outputs(traj.obs, mask), mask)
        log_ratio = new.gather(1, actions[:, None]) - old
        k = float((log_ratio.exp() - 1 - log_ratio).mean())
    assert k > 0 and any(
        not torch.equal(a, b)
        for a, b in zip(old_params, first.networks.forward_parameters(), strict=True)
    )
    stopped = build("RL-PPO", seed=9, n_epochs=2, minibatch_size=16, target_kl=0.99 * k / 1.5)
    stats = stopped.train_step()
    assert stats["ppo_steps"] == 1
    assert stats["ppo_approx_kl"] == pytest.approx(k, rel=1e-4)
    going = build("RL-PPO", seed=9, n_epochs=2, minibatch_size=16, target_kl=1.01 * k / 1.5)
    assert going.train_step()["ppo_steps"] == 2


# ------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("name", "kwargs", "words"),
    [
        ("RL-U", {"critic": "td"}, "critic must be one of"),
        ("RL-U", {"backward": "subeb"}, "critic='subeb'"),
        ("SubEB-U", {"subeb_lambda": 1.5}, "subeb_lambda"),
        ("RL-PPO", {"n_epochs": 0}, "n_epochs"),
        ("RL-PPO", {"minibatch_size": 2.5}, "minibatch_size"),
        ("RL-PPO", {"clip_range": -0.1}, "clip_range"),
        ("RL-PPO", {"target_kl": 0.0}, "target_kl"),
        ("RL-TLM", {"tlm_tau": 0.0}, "tlm_tau"),
        ("TB-TLM", {"tlm_lr_decay": 1.5}, "tlm_lr_decay"),
        ("TB-TLM", {"share_trunk": True}, "share_trunk"),
        ("TB", {"backward": "subeb"}, "backward must be one of"),
    ],
)
def test_bad_learner_settings_are_clear_value_errors(
    name: str, kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        build(name, **kwargs)


def test_new_presets_are_listed_with_their_choices() -> None:
    expected = {
        "SubEB-U": (PolicyGradientGFN, "subeb", "uniform", "adam"),
        "SubEB-B": (PolicyGradientGFN, "subeb", "subeb", "adam"),
        "RL-TLM": (PolicyGradientGFN, "returns", "tlm", "adam"),
        "RL-PPO": (PolicyGradientGFN, "returns", "uniform", "ppo"),
    }
    for name, (cls, critic, backward, update) in expected.items():
        agent = build(name)
        assert isinstance(agent, cls)
        assert (agent.critic_name, agent.backward, agent.update) == (critic, backward, update)
    tb_tlm = build("TB-TLM")
    assert isinstance(tb_tlm, TrajectoryBalance) and tb_tlm.backward == "tlm"
