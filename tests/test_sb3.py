"""SB3 on gfn-gym: the masked VecEnv bridge, policy-dependent rewards, exact evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO

from gfn_agents.dqn import MunchausenDQN, SoftDQN
from gfn_agents.evaluation import evaluate_sampler
from gfn_agents.sb3 import (
    GFN_PPO_KWARGS,
    ExactTVCallback,
    GFlowNetSB3VecEnv,
    SoftPolicyCallback,
    TrajectoryBudgetCallback,
    make_sb3_env,
    masked_a2c,
    sample_sb3,
    sb3_forward_policy,
)
from gfn_envs import metrics
from gfn_envs.env import GFlowNetVectorEnv
from gfn_envs.exact import exact_distribution
from gfn_envs.tasks.hypergrid import HyperGrid

HG8 = {"ndim": 2, "height": 8}


@pytest.fixture(scope="module")
def trained() -> tuple[MaskablePPO, ExactTVCallback]:
    """MaskablePPO with soft policy-dependent rewards on 2 × 8 HyperGrid (R0 = 0.1), 4096 steps."""
    env = make_sb3_env("HyperGrid-v0", n_envs=8, reward="soft", **HG8)
    model = MaskablePPO("MlpPolicy", env, n_steps=32, batch_size=128, seed=0, **GFN_PPO_KWARGS)
    tv = ExactTVCallback(HyperGrid(**HG8), every=400)
    model.learn(4096, callback=[SoftPolicyCallback(), tv])
    return model, tv


def test_maskable_ppo_learns_on_the_wrapped_env(trained) -> None:
    model, tv = trained
    assert model.num_timesteps >= 4096
    first, last = tv.history[0], tv.history[-1]
    assert last["trajectories"] > 500
    # the untrained policy has TV 0.70; soft PPO halves it within this small budget
    assert first["tv"] > 0.6
    assert last["tv"] < 0.5 * first["tv"]


def test_exact_tv_callback_records_the_rows_of_exact_eval_callback(trained) -> None:
    """Rows hold trajectories, timesteps, wall_time and every metric of evaluate_sampler; the last
    row is the exact evaluation of the trained policy."""
    model, tv = trained
    task = HyperGrid(**HG8)
    final = evaluate_sampler(sb3_forward_policy(model), task)
    for row in tv.history:
        assert set(row) == {"trajectories", "timesteps", "wall_time", *final}
    assert tv.history[-1] == {**tv.history[-1], **final}
    assert tv.history[-1]["timesteps"] == model.num_timesteps
    times = [row["wall_time"] for row in tv.history]
    assert times == sorted(times) and times[0] >= 0.0


def test_forward_policy_equals_monte_carlo_sampling(trained) -> None:
    model, _ = trained
    task = HyperGrid(**HG8)
    exact = exact_distribution(task, sb3_forward_policy(model))
    assert float(exact.sum()) == pytest.approx(1.0, abs=1e-6)
    objects = sample_sb3(model, task, 40_000, seed=1)
    empirical = torch.bincount(task.terminal_index(objects), minlength=len(exact)).double()
    empirical /= empirical.sum()
    # sampling noise: E[TV] <= 0.5 * sqrt(2 / (pi N)) * sum sqrt(p) <= 0.016 for 64 objects
    assert float(metrics.tv(exact, empirical)) < 0.03
    uniform_policy = exact_distribution(task, lambda o, m: torch.log(m / m.sum(1, keepdim=True)))
    assert float(metrics.tv(exact, uniform_policy)) > 0.1  # the check can tell policies apart


def test_native_and_dummy_bridges_give_the_same_rollout() -> None:
    buffers = []
    for vectorization in ("native", "dummy"):
        env = make_sb3_env("HyperGrid-v0", n_envs=4, vectorization=vectorization, log_z=0.5, **HG8)
        model = MaskablePPO("MlpPolicy", env, n_steps=40, batch_size=80, seed=3, **GFN_PPO_KWARGS)
        model.learn(160)
        buffers.append(model.rollout_buffer)
    native, dummy = buffers
    assert native.episode_starts[1:].sum() > 4  # several episodes ended inside the rollout
    np.testing.assert_array_equal(native.actions, dummy.actions)
    np.testing.assert_array_equal(native.episode_starts, dummy.episode_starts)
    np.testing.assert_allclose(native.rewards, dummy.rewards, atol=1e-6)


def test_bridge_autoresets_in_the_same_step_with_terminal_observation() -> None:
    env = make_sb3_env("HyperGrid-v0", n_envs=3, reward="log_reward", monitor=False, **HG8)
    task = HyperGrid(**HG8)
    obs = env.reset()
    env.step(np.array([0, 1, 2]))  # moves for sub-envs 0 and 1, exit at s0 for sub-env 2
    obs, rewards, dones, infos = env.step(np.array([2, 0, 1]))
    assert dones.tolist() == [True, False, False]
    x = torch.tensor([[1, 0]])
    np.testing.assert_array_equal(infos[0]["terminal_observation"], task.encode(x)[0].numpy())
    np.testing.assert_array_equal(obs[0], task.encode(task.s0(1))[0].numpy())
    assert rewards[0] == pytest.approx(float(task.log_reward(x)[0]))
    masks = env.env_method("action_masks")
    assert len(masks) == 3 and masks[0].tolist() == [True, True, True]


def test_masked_a2c_trains_and_never_takes_illegal_actions() -> None:
    env = make_sb3_env("HyperGrid-v0", n_envs=8, reward="policy", log_z="exact", **HG8)
    model = masked_a2c(env, n_steps=8, seed=0, gamma=1.0)
    budget = TrajectoryBudgetCallback(200)
    model.learn(100_000, callback=budget)
    assert 200 <= budget.num_trajectories < 200 + 8
    states = model.rollout_buffer.observations.reshape(-1, 2, 8).argmax(axis=2)
    actions = model.rollout_buffer.actions.reshape(-1).astype(int)
    moves = actions < 2
    assert (states[moves, actions[moves]] < 7).all()


def test_soft_reward_without_the_policy_says_how_to_fix_it() -> None:
    env = make_sb3_env("HyperGrid-v0", n_envs=2, reward="soft", **HG8)
    model = MaskablePPO("MlpPolicy", env, n_steps=8, batch_size=16, seed=0)
    with pytest.raises(RuntimeError, match="SoftPolicyCallback"):
        model.learn(16)


def test_bad_inputs_get_clear_errors() -> None:
    with pytest.raises(ValueError, match="reward must be one of"):
        make_sb3_env("HyperGrid-v0", reward="entropy")
    with pytest.raises(ValueError, match="vectorization"):
        make_sb3_env("HyperGrid-v0", vectorization="subproc")
    with pytest.raises(ValueError, match="n_envs"):
        make_sb3_env("HyperGrid-v0", n_envs=0)
    with pytest.raises(ValueError, match="forward_policy is only used"):
        make_sb3_env("HyperGrid-v0", forward_policy="uniform")
    with pytest.raises(ValueError, match="same_step"):
        GFlowNetSB3VecEnv(GFlowNetVectorEnv(2, HyperGrid(**HG8)))
    with pytest.raises(TypeError, match="actor-critic"):
        sb3_forward_policy(object())
    with pytest.raises(ValueError, match="total_trajectories"):
        TrajectoryBudgetCallback(0)


# ---------------------------------------------------------------------------- soft / Munchausen DQN
def _dqn(cls, **kwargs):
    return cls("MlpPolicy", "gfn_envs/HyperGrid-v0", env_kwargs=HG8, seed=0, **kwargs)


def test_soft_dqn_reaches_exact_tv_on_2x8_hypergrid() -> None:
    """Soft DQN with uniform P_B: exact TV < 0.06 and |log Z − log Z*| < 0.1 after 1,600
    trajectories (seed 0; measured TV 0.023, 0.68 before training)."""
    agent = _dqn(SoftDQN)
    agent.learn(total_trajectories=1600)
    result = evaluate_sampler(agent)
    assert result["tv"] < 0.06
    assert result["logz_error"] < 0.1


def test_munchausen_dqn_reaches_exact_tv_on_2x8_hypergrid() -> None:
    """Munchausen DQN (α = 0.15, τ = 1/(1 − α)): exact TV < 0.08 after 1,600 trajectories
    (seed 0; measured 0.027)."""
    agent = _dqn(MunchausenDQN)
    assert agent.temperature == pytest.approx(1 / 0.85)
    agent.learn(total_trajectories=1600)
    assert evaluate_sampler(agent)["tv"] < 0.08


def test_dqn_refreshes_stored_rewards_and_round_trips(tmp_path) -> None:
    agent = _dqn(SoftDQN, learning_starts=10_000)
    agent.learn(total_trajectories=32)
    size = agent.replay_buffer.size()
    states = torch.as_tensor(agent.replay_buffer.states[:size, 0])
    actions = torch.as_tensor(agent.replay_buffer.actions[:size, 0, 0]).long()
    exits = actions == agent.task.exit_action
    stored = torch.as_tensor(agent.replay_buffer.rewards[:size, 0])
    # uniform P_B: moves into a cell with k parents are rewarded -log k
    children = agent.task.step(states[~exits], actions[~exits])
    parents = agent.task.backward_mask(children).sum(1).float()
    assert torch.allclose(stored[~exits], -parents.log())

    def prefer_first(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = torch.tensor([0.0, -2.0]).expand(mask.shape)
        return logits.masked_fill(~mask, -torch.inf).log_softmax(1)

    agent.set_backward_policy(prefer_first)
    refreshed = torch.as_tensor(agent.replay_buffer.rewards[:size, 0])
    expected = prefer_first(agent.task.encode(children), agent.task.backward_mask(children))
    expected = expected.gather(1, actions[~exits, None]).squeeze(1)
    assert torch.allclose(refreshed[~exits], expected)
    assert torch.equal(refreshed[exits], stored[exits])

    agent = _dqn(SoftDQN)
    agent.learn(total_trajectories=64)
    agent.save(tmp_path / "dqn")
    loaded = SoftDQN.load(tmp_path / "dqn")
    assert evaluate_sampler(loaded)["tv"] == pytest.approx(evaluate_sampler(agent)["tv"], abs=1e-9)
    assert loaded.log_z == pytest.approx(agent.log_z)


def test_dqn_bad_arguments() -> None:
    with pytest.raises(ValueError, match="munchausen_alpha"):
        _dqn(MunchausenDQN, munchausen_alpha=1.0)
    with pytest.raises(ValueError, match="log_policy_clip"):
        _dqn(MunchausenDQN, log_policy_clip=0.5)
    with pytest.raises(ValueError, match="epsilon"):
        _dqn(SoftDQN, epsilon=1.5)
    with pytest.raises(ValueError, match="backward_policy"):
        _dqn(SoftDQN, backward_policy="maxent")


def test_dqn_resumes_exactly_with_its_saved_replay_buffer(tmp_path) -> None:
    """save + save_replay_buffer, then load + load_replay_buffer, continues as one run would; the
    buffer is what makes it exact (resuming without it trains differently)."""
    untrained = _dqn(SoftDQN, learning_starts=0)
    straight = _dqn(SoftDQN, learning_starts=0)
    straight.learn(total_trajectories=96)
    straight.learn(total_trajectories=96, reset_num_timesteps=False)

    first = _dqn(SoftDQN, learning_starts=0)
    first.learn(total_trajectories=96)
    first.save(tmp_path / "dqn")
    first.save_replay_buffer(tmp_path / "buffer.pkl")
    resumed = SoftDQN.load(tmp_path / "dqn")
    resumed.load_replay_buffer(tmp_path / "buffer.pkl")
    resumed.learn(total_trajectories=96, reset_num_timesteps=False)
    without_buffer = SoftDQN.load(tmp_path / "dqn")
    without_buffer.learn(total_trajectories=96, reset_num_timesteps=False)

    def same(a: SoftDQN, b: SoftDQN) -> bool:
        pairs = zip(a.networks.parameters(), b.networks.parameters(), strict=True)
        return all(torch.equal(x, y) for x, y in pairs)

    assert not same(straight, untrained)
    assert same(straight, resumed)
    assert not same(straight, without_buffer)
    assert resumed.num_trajectories == straight.num_trajectories


def test_dqn_load_replay_buffer_rejects_other_files(tmp_path) -> None:
    agent = _dqn(SoftDQN)
    other = _dqn(SoftDQN, buffer_size=500)
    other.save_replay_buffer(tmp_path / "small.pkl")
    with pytest.raises(ValueError, match="buffer_size"):
        agent.load_replay_buffer(tmp_path / "small.pkl")
