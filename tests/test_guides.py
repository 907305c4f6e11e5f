"""RL-G's guide: the agent and the reward wrapper score identically, and checkpoints keep the guide."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor

import gfn_agents
from gfn_agents.logprobs import step_log_probs
from gfn_agents.rollout import sample_trajectories
from gfn_envs.guides import ExitCapGuide, register_guide
from gfn_envs.scoring import backward_costs
from gfn_envs.task import Task
from gfn_envs.tasks.bayesnet import BayesNet
from gfn_envs.tasks.bitseq import BitSequence
from gfn_envs.tasks.hypergrid import HyperGrid
from gfn_envs.wrappers import BackwardRewardModel

SMALL: dict[str, Any] = {
    "net_arch": (32, 32),
    "value_net_arch": (32,),
    "batch_size": 16,
    "seed": 0,
}


def rl_g(task: Task, **kwargs: Any) -> gfn_agents.PolicyGradientGFN:
    agent = gfn_agents.make_agent("RL-G", task, **{**SMALL, **kwargs})
    assert isinstance(agent, gfn_agents.PolicyGradientGFN)
    return agent


def sharpen(agent: gfn_agents.PolicyGradientGFN, scale: float = 4.0) -> None:
    """Make P_F far from uniform (larger output weights and biases)."""
    with torch.no_grad():
        last = agent.networks.pf[-1]
        last.weight.mul_(scale)
        last.bias.copy_(torch.linspace(-2.0, 2.0, len(last.bias)))


def constant_logits(agent: gfn_agents.PolicyGradientGFN, logits: list[float]) -> None:
    """Make P_F output the same ``logits`` in every state."""
    with torch.no_grad():
        last = agent.networks.pf[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor(logits))


def assert_agent_and_wrapper_agree(
    agent: gfn_agents.PolicyGradientGFN,
) -> tuple[Tensor, Tensor, Tensor]:
    """Backward trajectories from sampled objects: the agent's log P_G (step_log_probs) equals the
    wrapper's reward (BackwardRewardModel with the agent's P_F), bit for bit; with the entropy
    term the wrapper's reward is minus the agent's backward cost. Returns the parents, forward
    actions and log P_G of the scored moves."""
    task, guide = agent.task, agent.guide
    assert guide is not None
    objects = agent.sample(16)
    guide.observe(objects, task.log_reward(objects))
    traj = sample_trajectories(
        agent.backward_env, agent.networks.backward_logits, agent.generator, starts=objects
    )
    lp = step_log_probs(agent.networks, task, traj, guide=guide)
    assert lp.log_guide is not None
    owners = traj.objects[traj.batch_index]
    model = BackwardRewardModel(task, forward_policy=agent.networks.forward_outputs, guide=guide)
    assert torch.equal(model.rewards(traj.states, traj.actions, owners), lp.log_guide)
    model = BackwardRewardModel(
        task,
        forward_policy=agent.networks.forward_outputs,
        guide=guide,
        backward_policy=agent.networks.backward_logits,
        entropy=True,
    )
    costs = backward_costs(lp.log_guide, lp.log_pb.detach())
    torch.testing.assert_close(model.rewards(traj.states, traj.actions, owners), -costs)
    parents = task.backward_step(traj.states, traj.actions)
    return parents, task.forward_action(traj.states, traj.actions), lp.log_guide


@pytest.mark.parametrize(
    "task",
    [
        HyperGrid(ndim=2, height=8, R0=0.01),
        BitSequence(n=6, k=2),
        BayesNet(num_nodes=4, noise_std=1.0, seed=3),
    ],
    ids=["hypergrid", "bitsequence", "bayesnet"],
)
def test_agent_and_wrapper_give_identical_guide_log_probs(task: Task) -> None:
    agent = rl_g(task)
    sharpen(agent)
    assert_agent_and_wrapper_agree(agent)


@pytest.mark.parametrize(
    ("task", "cap"),
    [
        (HyperGrid(ndim=2, height=8, R0=0.01), math.log(1e-5)),
        (BayesNet(num_nodes=4, noise_std=1.0, seed=3, guide_threshold=1e9), math.log(1e-10)),
    ],
    ids=["hypergrid", "bayesnet"],
)
def test_logits_3_3_0_give_the_capped_exit_probability_in_agent_and_wrapper(
    task: Task, cap: float
) -> None:
    """With P_F = softmax(ℓ) for the same logits ℓ in every state, and ℓ = [3, 3, 0] on HyperGrid
    (ℓ_exit = 0 and 3 elsewhere on a DAG task), P_G(exit|x) at a low-reward terminal state is
    min(p_exit, e^cap) / (1 − p_exit + min(p_exit, e^cap)) in both paths, whatever constant is
    added to the logits."""
    agent = rl_g(task)
    n = task.n_actions
    results, state = [], agent.generator.get_state()
    for shift in (0.0, 5.0):
        constant_logits(agent, [3.0 + shift] * (n - 1) + [shift])
        agent.generator.set_state(state)  # the same objects and backward trajectories
        results.append(assert_agent_and_wrapper_agree(agent)[2])
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-6)
    guide = agent.guide
    assert isinstance(guide, ExitCapGuide) and guide.cap == pytest.approx(cap)

    # the agent's moves against the formula in probability space: p = softmax of the masked
    # logits, exit capped where the parent is terminal and low, renormalised
    parents, actions, log_pg = assert_agent_and_wrapper_agree(agent)
    mask = task.forward_mask(parents)
    p = torch.tensor([3.0] * (n - 1) + [0.0]).expand(mask.shape).masked_fill(~mask, -math.inf)
    p = p.double().softmax(1)
    low = mask[:, -1] & (task.log_reward(parents) <= guide.threshold)
    p[:, -1] = torch.where(low, p[:, -1].clamp(max=math.exp(cap)), p[:, -1])
    expected = (p / p.sum(1, keepdim=True)).gather(1, actions.unsqueeze(1)).squeeze(1)
    assert int(low.sum()) > 5  # the cap is exercised
    torch.testing.assert_close(log_pg.double().exp(), expected, rtol=1e-5, atol=0)

    # a low-reward terminal state: outside HyperGrid's bands, any graph below the BayesNet threshold
    x = torch.tensor([[3, 3]]) if isinstance(task, HyperGrid) else task.s0(1)
    assert float(task.log_reward(x)[0]) <= guide.threshold
    mask = task.forward_mask(x)[0]
    logits = torch.tensor([3.0] * (n - 1) + [0.0]).masked_fill(~mask, -math.inf)
    p_exit = float(logits.softmax(0)[-1])
    capped = min(p_exit, math.exp(cap))
    expected = capped / (1 - p_exit + capped)
    model = BackwardRewardModel(task, forward_policy=agent.networks.forward_outputs, guide=guide)
    exit_reward = model.reference_log_probs(x, torch.tensor([task.exit_action]), x)
    assert float(exit_reward.exp()) == pytest.approx(expected, rel=1e-4)
    assert expected < p_exit / 100  # the cap bites


# ---------------------------------------------------------------------------- checkpoints
def test_an_explicit_registered_guide_survives_save_and_load(tmp_path: Any) -> None:
    task = HyperGrid(ndim=2, height=8, R0=0.01)
    guide = ExitCapGuide(task, threshold=-1.0, cap=math.log(1e-3))  # not the default guide
    agent = rl_g(task, guide=guide)
    agent.learn(total_trajectories=32)
    agent.save(tmp_path / "rlg.zip")
    loaded = gfn_agents.PolicyGradientGFN.load(tmp_path / "rlg.zip", env=task)
    assert isinstance(loaded.guide, ExitCapGuide)
    assert (loaded.guide.threshold, loaded.guide.cap) == (-1.0, pytest.approx(math.log(1e-3)))
    agent.learn(total_trajectories=32, reset_num_timesteps=False)
    loaded.learn(total_trajectories=32, reset_num_timesteps=False)
    pairs = zip(agent.networks.parameters(), loaded.networks.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


def test_the_default_guide_is_rebuilt_from_the_task(tmp_path: Any) -> None:
    task = HyperGrid(ndim=2, height=8, R0=0.01)
    agent = rl_g(task)
    agent.save(tmp_path / "rlg.zip")
    loaded = gfn_agents.PolicyGradientGFN.load(tmp_path / "rlg.zip", env=task)
    default = task.default_guide()
    assert isinstance(loaded.guide, ExitCapGuide)
    assert (loaded.guide.threshold, loaded.guide.cap) == (default.threshold, default.cap)


class Tempered(ExitCapGuide):
    """An unregistered guide class (a user's own)."""


@register_guide
class CountingGuide(ExitCapGuide):
    """A registered guide with state: the number of objects it has observed."""

    def __init__(self, task: Task, threshold: float, cap: float = math.log(1e-5)) -> None:
        super().__init__(task, threshold, cap)
        self.seen = torch.zeros((), dtype=torch.long)

    def observe(self, objects: Tensor, log_rewards: Tensor) -> None:
        self.seen += len(objects)

    def state_dict(self) -> dict[str, Tensor]:
        return {"seen": self.seen.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.seen = state["seen"].clone()


def test_a_registered_guide_with_state_is_rebuilt_with_its_state(tmp_path: Any) -> None:
    task = HyperGrid(ndim=2, height=8, R0=0.01)
    agent = rl_g(task, guide=CountingGuide(task, threshold=-2.0))
    agent.learn(total_trajectories=48)
    assert int(agent.guide.seen) == 48
    agent.save(tmp_path / "rlg.zip")
    loaded = gfn_agents.PolicyGradientGFN.load(tmp_path / "rlg.zip", env=task)
    assert isinstance(loaded.guide, CountingGuide) and loaded.guide.threshold == -2.0
    assert int(loaded.guide.seen) == 48


def test_saving_an_unregistered_guide_is_refused_with_the_fix(tmp_path: Any) -> None:
    task = HyperGrid(ndim=2, height=8, R0=0.01)
    agent = rl_g(task, guide=Tempered(task, threshold=0.0))
    with pytest.raises(ValueError, match="register_guide"):
        agent.save(tmp_path / "rlg.zip")
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_guide_of_the_wrong_type_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="guide must implement"):
        rl_g(HyperGrid(ndim=2, height=8), guide=42)
