"""Behaviour of the gfn_agents surface: gradient identities, checkpoints, seeds, errors, NaN safety,
prediction and sampling, callbacks, and the accepted forms of ``env``.

Every test uses small networks and batches (see ``SMALL``) so the file runs in well under a minute;
the convergence claims live in ``tests/test_convergence.py``.
"""

from __future__ import annotations

import math
import os
import zipfile
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from presets import TRAINED_PRESETS
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback

import gfn_agents.checkpoint as checkpoint_module
import gfn_envs  # noqa: F401  (registers the ids)
from gfn_agents import (
    PRESETS,
    ExactEvalCallback,
    GFlowNetAlgorithm,
    PolicyGradientGFN,
    evaluate_sampler,
    make_agent,
)
from gfn_agents.balance import TrajectoryBalance, step_costs, tb_residuals
from gfn_agents.logprobs import step_log_probs
from gfn_agents.rollout import sample_trajectories
from gfn_envs.env import GFlowNetVectorEnv
from gfn_envs.exact import exact_distribution
from gfn_envs.tasks.bitseq import BitSequence
from gfn_envs.tasks.hypergrid import HyperGrid

ENV_ID = "gfn_envs/HyperGrid-v0"
GRID = {"ndim": 2, "height": 8}
SMALL: dict[str, Any] = {"net_arch": (32, 32), "batch_size": 16}


def small(name: str, **overrides: Any) -> dict[str, Any]:
    """Small-network kwargs for preset ``name`` (value networks only for the PG family; RL-PPO
    with minibatches of 4 of the 16 trajectories, so its minibatch order matters)."""
    kwargs = dict(SMALL)
    if PRESETS[name][0] is PolicyGradientGFN:
        kwargs["value_net_arch"] = (32, 32)
    if name == "RL-PPO":
        kwargs["minibatch_size"] = 4
    return {**kwargs, **overrides}


def build(name: str, seed: int = 0, env: Any = ENV_ID, **overrides: Any) -> GFlowNetAlgorithm:
    env_kwargs = GRID if isinstance(env, str) else None
    return make_agent(name, env, env_kwargs=env_kwargs, seed=seed, **small(name, **overrides))


def parameters(agent: GFlowNetAlgorithm) -> dict[str, torch.Tensor]:
    """Every tensor a checkpoint holds for the networks, by name."""
    out: dict[str, torch.Tensor] = {}
    for name, module in agent._modules().items():
        if isinstance(module, torch.nn.Module):
            for key, value in module.state_dict().items():
                out[f"{name}.{key}"] = value.detach().clone()
    return out


def assert_same_parameters(a: GFlowNetAlgorithm, b: GFlowNetAlgorithm) -> None:
    pa, pb = parameters(a), parameters(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        assert torch.equal(pa[key], pb[key]), key


# ---------------------------------------------------------------------------- gradient identities
@pytest.mark.parametrize("name", ["RL-U", "RL-B"])
def test_actor_gradient_with_trajectory_cost_as_advantage_is_half_the_tb_gradient(
    name: str,
) -> None:
    """With Â_t = S(τ) for every step (no baseline, no centring), the actor loss
    (1/B) Σ_n S(τ_n) Σ_t log P_F(a_t|s_t) has gradient (1/B) Σ_n S_n ∇ log P_F(τ_n), which is ½ of
    ∇_θ mean_n S_n² (the TB loss), P_B held fixed. Checked on a sampled batch with the costs of
    :func:`gfn_envs.scoring.forward_costs` and the TB residual of :mod:`gfn_agents.balance`."""
    agent = build(name, seed=3)
    assert isinstance(agent, PolicyGradientGFN)
    agent.networks.log_z.data.fill_(0.7)  # a non-trivial log Z
    traj = sample_trajectories(agent.forward_env, agent.networks.forward_outputs, agent.generator)
    lp = step_log_probs(agent.networks, agent.task, traj)
    log_z, clip = agent.networks.log_z, agent.log_reward_clip
    costs = step_costs(traj, lp, log_z.detach(), clip).detach()
    trajectory_costs = traj.per_trajectory_sum(costs)
    params = agent.networks.forward_parameters()

    actor_loss = (trajectory_costs[traj.batch_index] * lp.log_pf).sum() / traj.batch_size
    actor_grad = torch.autograd.grad(actor_loss, params, retain_graph=True)
    tb_loss = tb_residuals(traj, lp, log_z, clip).pow(2).mean()
    tb_grad = torch.autograd.grad(tb_loss, params)

    assert float(trajectory_costs.abs().mean()) > 0.1  # the identity is not 0 = 0
    for g_actor, g_tb in zip(actor_grad, tb_grad, strict=True):
        torch.testing.assert_close(g_actor, 0.5 * g_tb, rtol=1e-4, atol=1e-6)


def test_log_z_gradient_of_a_training_step_is_half_the_tb_log_z_gradient() -> None:
    """The log Z gradient that ``train_step`` applies is mean_n S(τ_n), ½ of ∂/∂log Z of the TB
    loss on the same batch. The batch is reproduced by replaying the sampling generator."""
    agent = build("RL-U", seed=5)
    agent.networks.log_z.data.fill_(-0.4)
    state = agent.generator.get_state()
    traj = sample_trajectories(agent.forward_env, agent.networks.forward_outputs, agent.generator)
    lp = step_log_probs(agent.networks, agent.task, traj)
    tb_loss = tb_residuals(traj, lp, agent.networks.log_z, agent.log_reward_clip).pow(2).mean()
    (tb_grad,) = torch.autograd.grad(tb_loss, [agent.networks.log_z])

    agent.generator.set_state(state)
    agent.train_step()
    applied = agent.networks.log_z.grad
    assert applied is not None and abs(float(tb_grad)) > 0.1
    torch.testing.assert_close(applied, 0.5 * tb_grad, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name", TRAINED_PRESETS)
def test_save_load_and_resume_equals_an_uninterrupted_run(name: str, tmp_path: Any) -> None:
    """learn(N); save; load; learn(M, reset_num_timesteps=False) gives exactly the parameters,
    counters and exact metrics of learn(N + M) with the same seed."""
    straight = build(name, seed=11).learn(total_trajectories=96)

    first = build(name, seed=11).learn(total_trajectories=48)
    first.save(tmp_path / "ckpt")
    resumed = type(first).load(tmp_path / "ckpt.zip")
    assert_same_parameters(first, resumed)
    assert resumed.num_trajectories == 48
    resumed.learn(total_trajectories=48, reset_num_timesteps=False)

    assert_same_parameters(straight, resumed)
    assert (resumed.num_trajectories, resumed.num_timesteps, resumed.iteration) == (
        straight.num_trajectories,
        straight.num_timesteps,
        straight.iteration,
    )
    assert evaluate_sampler(resumed) == evaluate_sampler(straight)


def test_base_class_load_rebuilds_the_saved_algorithm(tmp_path: Any) -> None:
    """``GFlowNetAlgorithm.load`` reads any checkpoint and returns an agent of the saved class."""
    agent = build("RL-B", seed=1).learn(total_trajectories=32)
    agent.save(tmp_path / "rl_b.zip")
    loaded = GFlowNetAlgorithm.load(tmp_path / "rl_b.zip")
    assert type(loaded) is PolicyGradientGFN and loaded.backward == "forward"
    assert_same_parameters(agent, loaded)


def test_corrupt_checkpoint_is_a_clear_value_error(tmp_path: Any) -> None:
    path = tmp_path / "broken.zip"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="is damaged or not a gfn-gym checkpoint"):
        PolicyGradientGFN.load(path)


def _rewrite_metadata(src: Any, dst: Any, key: str, value: Any) -> None:
    """Copy checkpoint ``src`` to ``dst`` with one field of its ``metadata.json`` replaced."""
    import json

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            payload = zin.read(item.filename)
            if item.filename == "metadata.json":
                data = json.loads(payload)
                data[key] = value
                payload = json.dumps(data).encode()
            zout.writestr(item, payload)


def test_wrong_format_version_is_a_clear_value_error(tmp_path: Any) -> None:
    build("RL-U").save(tmp_path / "ok.zip")
    _rewrite_metadata(tmp_path / "ok.zip", tmp_path / "future.zip", "format_version", 999)
    with pytest.raises(ValueError, match="checkpoint format 999; .* reads format 2 .*newer"):
        PolicyGradientGFN.load(tmp_path / "future.zip")


def test_loading_with_the_wrong_algorithm_class_is_a_clear_value_error(tmp_path: Any) -> None:
    build("RL-U").save(tmp_path / "pg.zip")
    with pytest.raises(ValueError, match="holds a PolicyGradientGFN, not a TrajectoryBalance"):
        TrajectoryBalance.load(tmp_path / "pg.zip")


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path: Any, monkeypatch: Any) -> None:
    """A successful save leaves only the checkpoint; a save that fails midway leaves the previous
    checkpoint byte for byte and no temporary file."""
    agent = build("RL-U").learn(total_trajectories=16)
    agent.save(tmp_path / "run.zip")
    assert sorted(os.listdir(tmp_path)) == ["run.zip"]
    before = (tmp_path / "run.zip").read_bytes()

    def disk_full(fd: int) -> None:  # the archive is written, but not yet flushed to disk
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.os, "fsync", disk_full)
    agent.learn(total_trajectories=16)
    with pytest.raises(OSError, match="disk full"):
        agent.save(tmp_path / "run.zip")
    assert sorted(os.listdir(tmp_path)) == ["run.zip"]
    assert (tmp_path / "run.zip").read_bytes() == before


def test_save_creates_missing_directories(tmp_path: Any) -> None:
    agent = build("TB")
    agent.save(tmp_path / "runs" / "nested" / "tb")
    assert sorted(os.listdir(tmp_path / "runs" / "nested")) == ["tb.zip"]
    assert_same_parameters(agent, TrajectoryBalance.load(tmp_path / "runs" / "nested" / "tb"))


def test_load_rebuilds_the_env_from_the_saved_id_and_kwargs(tmp_path: Any) -> None:
    agent = make_agent(
        "RL-U", ENV_ID, env_kwargs={"ndim": 3, "height": 4, "R0": 0.05}, seed=0, **small("RL-U")
    )
    agent.save(tmp_path / "grid.zip")
    task = PolicyGradientGFN.load(tmp_path / "grid.zip").task
    assert isinstance(task, HyperGrid)
    assert (task.ndim, task.height, task.R0) == (3, 4, 0.05)


# ---------------------------------------------------------------------------- seeds
@pytest.mark.parametrize("name", ["RL-G", "RL-T", "SubTB"])
def test_same_seed_gives_the_same_metrics_and_another_seed_does_not(name: str) -> None:
    runs = [build(name, seed=s).learn(total_trajectories=64) for s in (4, 4, 5)]
    metrics = [evaluate_sampler(a) for a in runs]
    assert metrics[0] == metrics[1]
    assert metrics[0]["tv"] != metrics[2]["tv"]


# ---------------------------------------------------------------------------- bad hyperparameters
@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("RL-U", {"learning_rate": -1e-3}, "learning_rate must be a positive number"),
        ("TB", {"learning_rate": 0.0}, "learning_rate must be a positive number"),
        ("RL-U", {"lr_z": -0.1}, "lr_z must be a positive number"),
        ("RL-B", {"lr_value": float("nan")}, "lr_value must be"),
        ("RL-U", {"gae_lambda": 1.5}, r"gae_lambda must lie in \[0, 1\]"),
        ("RL-U", {"gae_lambda": -0.01}, r"gae_lambda must lie in \[0, 1\]"),
        ("SubTB", {"subtb_lambda": 2.0}, r"subtb_lambda must lie in \[0, 1\]"),
        ("RL-U", {"batch_size": 0}, "batch_size must be a positive integer"),
        ("TB", {"batch_size": 2.5}, "batch_size must be a positive integer"),
        ("RL-U", {"batch_size": True}, "batch_size must be a positive integer"),
        ("RL-U", {"net_arch": (64, 0)}, "net_arch must be a non-empty list"),
        ("RL-U", {"backward": "sideways"}, "backward must be one of"),
        ("TB", {"epsilon": 1.5}, r"epsilon must lie in \[0, 1\]"),
    ],
)
def test_bad_hyperparameters_are_clear_value_errors(
    name: str, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        make_agent(name, ENV_ID, env_kwargs=GRID, **kwargs)


def test_unknown_preset_and_policy_names_are_clear_value_errors() -> None:
    with pytest.raises(ValueError, match="unknown agent 'RL-X'; choose one of"):
        make_agent("RL-X", ENV_ID)
    with pytest.raises(ValueError, match="policy must be one of"):
        make_agent("RL-U", ENV_ID, policy="CnnPolicy")


def test_unknown_kwargs_name_the_argument_and_the_allowed_ones() -> None:
    """A misspelt or foreign keyword (ε is for the balance losses; PG stays on-policy) is a
    TypeError that names it and lists what the agent accepts, its own and the base's."""
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) \['epsilon'\]") as info:
        build("RL-U", epsilon=0.1)
    assert "gae_lambda" in str(info.value) and "batch_size" in str(info.value)
    with pytest.raises(TypeError, match=r"TrajectoryBalance .*\['lr_vaule'\].*epsilon"):
        build("TB", lr_vaule=1e-3)
    with pytest.raises(TypeError, match=r"MunchausenDQN .*\['gae_lambda'\].*buffer_size"):
        build("MunchausenDQN", gae_lambda=0.9)


def test_every_documented_name_is_a_preset() -> None:
    assert set(TRAINED_PRESETS) <= set(PRESETS)


def test_learn_needs_exactly_one_budget() -> None:
    agent = build("RL-U")
    with pytest.raises(ValueError, match="exactly one of"):
        agent.learn()
    with pytest.raises(ValueError, match="exactly one of"):
        agent.learn(total_trajectories=16, total_timesteps=16)
    with pytest.raises(ValueError, match="must be a positive integer"):
        agent.learn(total_trajectories=-5)


# ---------------------------------------------------------------------------- NaN safety
@pytest.mark.parametrize("name", TRAINED_PRESETS)
def test_no_nan_on_a_grid_where_most_rewards_are_tiny(name: str) -> None:
    """On 2 × 12 with R0 = 1e-3 (about 80 % of the cells at reward 1e-3), a high learning rate and no
    log-reward clip, training keeps every parameter, statistic and exact metric finite."""
    stats: list[dict[str, float]] = []

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            return True

    agent = make_agent(
        name,
        ENV_ID,
        env_kwargs={"ndim": 2, "height": 12, "R0": 1e-3},
        seed=0,
        log_reward_clip=None,
        **small(name, learning_rate=1e-2),
    )
    rewards = agent.task.log_reward(agent.task.all_states()).exp()
    assert float((rewards < 2e-3).float().mean()) > 0.7
    original = agent.train_step

    def recording() -> dict[str, float]:
        out = original()
        stats.append(dict(out))
        return out

    agent.train_step = recording  # type: ignore[method-assign]
    agent.learn(total_trajectories=16 * 25, callback=Record())
    for row in stats:
        assert all(math.isfinite(v) for v in row.values()), row
    for key, value in parameters(agent).items():
        assert bool(torch.isfinite(value).all()), key
    assert all(math.isfinite(v) for v in evaluate_sampler(agent).values())


# ---------------------------------------------------------------------------- predict and sample
def test_predict_with_masks_returns_only_legal_actions() -> None:
    agent = build("RL-U", seed=2)
    task = agent.task
    states = task.all_states()
    obs, masks = task.encode(states), task.forward_mask(states)
    for deterministic in (False, True):
        for _ in range(20):
            actions, _ = agent.predict(
                obs.numpy(), action_masks=masks.numpy(), deterministic=deterministic
            )
            assert actions.shape == (len(states),)
            assert bool(masks[torch.arange(len(states)), torch.as_tensor(actions)].all())
    corner = torch.tensor([[7, 7]])
    action, _ = agent.predict(
        task.encode(corner)[0].numpy(), action_masks=task.forward_mask(corner)[0].numpy()
    )
    assert int(action) == task.n_actions - 1  # only exit is legal in the far corner


@pytest.mark.parametrize(
    ("observation", "masks", "words"),
    [
        (np.zeros(15), None, r"observation must have shape \(16,\) or \(batch, 16\)"),
        (np.zeros((2, 2, 16)), None, "observation must have shape"),
        (np.array(["a"] * 16), None, "observation must be numeric"),
        (np.full(16, np.nan), None, "observation must be finite"),
        (np.zeros((2, 16)), np.ones((2, 2), dtype=bool), r"action_masks must be bool of shape"),
        (np.zeros((2, 16)), np.ones((2, 3), dtype=int), "action_masks must be bool"),
        (np.zeros((2, 16)), np.zeros((2, 3), dtype=bool), "at least one action in every row"),
    ],
)
def test_predict_rejects_bad_observations_and_masks(
    observation: np.ndarray, masks: np.ndarray | None, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        build("TB").predict(observation, action_masks=masks)


def test_sample_draws_terminal_objects_from_the_exact_terminal_distribution() -> None:
    """``sample(n)`` returns terminal objects whose empirical distribution matches P_F^T from the
    exact DP (BitSequence: only complete strings are terminal)."""
    agent = make_agent(
        "RL-U", "gfn_envs/BitSequence-v0", env_kwargs={"n": 4, "k": 1}, seed=0, **small("RL-U")
    )
    agent.learn(total_trajectories=64)
    task = agent.task
    assert isinstance(task, BitSequence)
    objects = agent.sample(4000)
    assert objects.shape == (4000, *task.state_shape)
    assert bool(task.is_terminal(objects).all())
    exact = exact_distribution(task, agent.forward_log_probs)
    index = {tuple(s.tolist()): i for i, s in enumerate(task.terminal_states())}
    counts = torch.zeros(len(index))
    for obj in objects.tolist():
        counts[index[tuple(obj)]] += 1
    tv = 0.5 * float((counts / counts.sum() - exact.float()).abs().sum())
    assert tv < 0.05  # sampling noise for 16 outcomes and 4000 draws is about 0.02


@pytest.mark.parametrize(("temperature", "epsilon"), [(1.0, 0.0), (2.0, 0.0), (0.5, 0.3)])
def test_rollout_actions_follow_the_tempered_epsilon_mixed_policy(
    temperature: float, epsilon: float
) -> None:
    """The rollout draws its actions from (1 − ε)·softmax(logits/T) + ε·uniform over the legal
    actions, never an illegal one, and stores the log-probabilities of the untempered policy."""
    n = 20_000
    env = GFlowNetVectorEnv(n, HyperGrid(ndim=2, height=2), autoreset_mode="disabled", tensors=True)
    logits = torch.tensor([1.0, -0.5, 0.3])

    def policy(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return logits.expand(len(obs), 3)

    generator = torch.Generator().manual_seed(0)
    traj = sample_trajectories(env, policy, generator, epsilon=epsilon, temperature=temperature)
    first = traj.actions[: traj.batch_size]  # time-major: the first row of every trajectory
    frequencies = torch.bincount(first, minlength=3).float() / n
    expected = (1 - epsilon) * (logits / temperature).softmax(0) + epsilon / 3
    assert torch.allclose(frequencies, expected, atol=0.015)  # 3 standard errors is about 0.01
    assert bool(traj.masks.gather(1, traj.actions.unsqueeze(1)).all())
    log_policy = logits.expand(len(traj.masks), 3).masked_fill(~traj.masks, -torch.inf)
    expected_log_probs = log_policy.log_softmax(1).gather(1, traj.actions.unsqueeze(1)).squeeze(1)
    assert torch.allclose(traj.log_probs, expected_log_probs)


@pytest.mark.parametrize(
    ("value", "words"), [(float("nan"), "not finite"), (-math.inf, "max_length")]
)
def test_rollout_of_a_diverged_policy_is_a_clear_error(value: float, words: str) -> None:
    """NaN outputs give non-finite log-probabilities; −inf on every action leaves only illegal
    draws, which the env ignores, so the rollout stops at max_length instead of looping."""
    env = GFlowNetVectorEnv(8, HyperGrid(ndim=2, height=4), autoreset_mode="disabled", tensors=True)

    def diverged(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.full((len(obs), 3), value)

    with pytest.raises(FloatingPointError, match=words):
        sample_trajectories(env, diverged, torch.Generator().manual_seed(0))


def test_sample_of_fewer_objects_than_the_batch_uses_its_own_env() -> None:
    agent = build("RL-U")
    objects = agent.sample(3)
    assert objects.shape == (3, 2)
    assert bool(agent.task.is_terminal(objects).all())


# ---------------------------------------------------------------------------- callbacks and logging
class Counting(BaseCallback):
    """Counts the SB3 callback events."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.starts = self.ends = 0
        self.trajectories: list[int] = []

    def _on_training_start(self) -> None:
        self.starts += 1

    def _on_step(self) -> bool:
        self.trajectories.append(self.model.num_trajectories)
        return self.stop_after is None or self.n_calls < self.stop_after

    def _on_training_end(self) -> None:
        self.ends += 1


def test_sb3_callbacks_are_called_once_per_iteration(tmp_path: Any) -> None:
    """A list of callbacks (wrapped in SB3's CallbackList) sees training start, one step per
    iteration with the counters updated, and training end; SB3's CheckpointCallback saves loadable
    checkpoints."""
    counting = Counting()
    checkpoints = CheckpointCallback(save_freq=2, save_path=str(tmp_path), name_prefix="rl")
    agent = build("RL-U").learn(total_trajectories=16 * 6, callback=[counting, checkpoints])
    assert (counting.starts, counting.ends) == (1, 1)
    assert counting.trajectories == [16 * k for k in range(1, 7)]
    saved = sorted(os.listdir(tmp_path))
    assert len(saved) == 3 and all(f.startswith("rl_") and f.endswith(".zip") for f in saved)
    last = PolicyGradientGFN.load(tmp_path / f"rl_{agent.num_timesteps}_steps.zip")
    assert_same_parameters(agent, last)


def test_a_callback_returning_false_stops_training() -> None:
    agent = build("TB").learn(total_trajectories=16 * 50, callback=Counting(stop_after=3))
    assert agent.iteration == 3 and agent.num_trajectories == 48


def test_exact_eval_callback_records_the_curve_and_stops_at_the_tv_threshold() -> None:
    """ExactEvalCallback evaluates before training and every ``eval_freq`` iterations, and stops
    training at the first evaluation with TV ≤ threshold, long before the budget."""
    agent = make_agent("RL-T", ENV_ID, env_kwargs=GRID, seed=0, **small("RL-T", batch_size=64))
    callback = ExactEvalCallback(eval_freq=5, tv_threshold=0.1)
    budget = 64 * 500
    agent.learn(total_trajectories=budget, callback=callback)
    history = callback.history
    assert history[0]["trajectories"] == 0 and history[0]["tv"] > 0.1
    assert history[-1]["tv"] <= 0.1 and all(row["tv"] > 0.1 for row in history[:-1])
    assert agent.num_trajectories == history[-1]["trajectories"] < budget
    assert [row["trajectories"] for row in history] == [64 * 5 * k for k in range(len(history))]
    assert all(
        b["wall_time"] >= a["wall_time"] for a, b in zip(history[:-1], history[1:], strict=True)
    )
    assert {"tv", "l1", "jsd", "logz_error", "modes_found"} <= history[-1].keys()


def test_csv_log_holds_the_training_quantities(tmp_path: Any) -> None:
    agent = build("RL-B", tensorboard_log=str(tmp_path))
    agent.learn(total_trajectories=16 * 4, log_interval=2)
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    for key in (
        "train/log_z",
        "train/mean_log_reward",
        "train/mean_length",
        "train/value_loss",
        "train/backward_value_loss",
        "time/trajectories_per_s",
    ):
        assert key in header


def test_total_timesteps_counts_transitions() -> None:
    agent = build("RL-U").learn(total_timesteps=500)
    assert agent.num_timesteps >= 500
    assert agent.num_timesteps - 16 * agent.task.max_length < 500


# ---------------------------------------------------------------------------- env forms
def test_env_as_id_gym_env_or_vector_env_gives_the_same_run(tmp_path: Any) -> None:
    """The agent samples through its own vector env on the same task, so the registered id, a
    ``gym.make`` env and a ``gym.make_vec`` env train identically; the env identity is kept for
    ``load``."""
    envs = [
        ENV_ID,
        gym.make(ENV_ID, **GRID),
        gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", **GRID),
    ]
    agents = [build("RL-G", seed=9, env=env).learn(total_trajectories=48) for env in envs]
    for agent in agents[1:]:
        assert_same_parameters(agents[0], agent)
        assert agent.env_id == ENV_ID and agent.env_kwargs["height"] == 8
    agents[2].save(tmp_path / "vec.zip")
    assert_same_parameters(agents[0], PolicyGradientGFN.load(tmp_path / "vec.zip"))


def test_env_kwargs_with_an_env_object_is_a_clear_value_error() -> None:
    with pytest.raises(
        ValueError, match="env_kwargs are only for an env given by its registered id"
    ):
        make_agent("RL-U", gym.make(ENV_ID), env_kwargs=GRID)


def test_unregistered_env_needs_env_on_load(tmp_path: Any) -> None:
    vec = GFlowNetVectorEnv(4, HyperGrid(**GRID))
    agent = make_agent("RL-U", vec, seed=0, **small("RL-U"))
    agent.save(tmp_path / "bare.zip")
    with pytest.raises(ValueError, match="pass env= to load"):
        PolicyGradientGFN.load(tmp_path / "bare.zip")
    loaded = PolicyGradientGFN.load(tmp_path / "bare.zip", env=HyperGrid(**GRID))
    assert_same_parameters(agent, loaded)
    assert np.isfinite(evaluate_sampler(loaded)["tv"])


# ---------------------------------------------------------------------------- device
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["RL-G", "TB"])
def test_cuda_agent_trains_saves_and_loads_on_the_device(name: str, tmp_path: Any) -> None:
    """With device="cuda" (task and agent) every network lives on the GPU, training stays finite,
    and a checkpoint reloads onto the GPU with the same parameters and exact metrics."""
    kwargs = {"env_kwargs": {**GRID, "device": "cuda"}, "device": "cuda", "seed": 0}
    agent = make_agent(name, ENV_ID, **kwargs, **small(name)).learn(total_trajectories=64)
    assert all(p.is_cuda for p in agent.networks.parameters())
    agent.save(tmp_path / "gpu.zip")
    loaded = type(agent).load(tmp_path / "gpu.zip", device="cuda")
    assert_same_parameters(agent, loaded)
    metrics = evaluate_sampler(loaded)
    assert metrics == evaluate_sampler(agent) and math.isfinite(metrics["tv"])
    assert bool(loaded.task.is_terminal(loaded.sample(8)).all())


# ---------------------------------------------------------------------------- budgets and logging
def test_positional_budget_counts_transitions_as_in_sb3() -> None:
    """``learn(500)`` is ``learn(total_timesteps=500)``: transitions, SB3's meaning, passed by less
    than one iteration; trajectories are a keyword budget."""
    agent = build("RL-U").learn(500)
    assert 500 <= agent.num_timesteps < 500 + 16 * agent.task.max_length
    assert agent.num_trajectories == 16 * agent.iteration
    by_keyword = build("RL-U").learn(total_timesteps=500)
    assert_same_parameters(agent, by_keyword)
    assert build("RL-U").learn(total_trajectories=40).num_trajectories == 48  # ⌈40/16⌉ iterations


def test_a_non_callback_argument_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="callback must be an SB3 BaseCallback"):
        build("RL-U").learn(64, 16)  # type: ignore[arg-type]


@pytest.mark.parametrize("keyword", ["total_trajectories", "total_timesteps"])
def test_progress_bar_is_clamped_at_the_budget_and_ends_at_100_percent(
    keyword: str, capsys: Any
) -> None:
    """A budget that is not a multiple of the iteration runs past it; the bar stops at the budget
    (40/40, 100 %) instead of losing its percentage at 48/40."""
    build("RL-U").learn(**{keyword: 40}, progress_bar=True)
    err = capsys.readouterr().err
    assert "100%" in err and "40/40" in err
    assert "48/40" not in err and not any(f"{n}/40" in err for n in range(41, 400))


def _csv_rows(path: Any) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_evaluations_are_logged_in_the_row_of_their_own_iteration(tmp_path: Any) -> None:
    """Each evaluation lands in the CSV row of the iteration it was made at (not one dump late),
    the evaluation before training in a row of its own, and the final sampler's evaluation in the
    last row even when the last iteration is not a multiple of ``eval_freq``."""
    agent = build("RL-U", tensorboard_log=str(tmp_path))
    callback = ExactEvalCallback(eval_freq=3)
    agent.learn(total_trajectories=16 * 7, callback=callback, log_interval=2)
    history = callback.history
    assert [row["trajectories"] for row in history] == [0, 48, 96, 112]
    rows = _csv_rows(tmp_path / "progress.csv")
    evaluated = [row for row in rows if row["eval/tv"]]
    assert [float(row["eval/trajectories"]) for row in evaluated] == [0, 48, 96, 112]
    for row, expected in zip(evaluated, history, strict=True):
        assert float(row["eval/tv"]) == pytest.approx(expected["tv"], rel=1e-9)
    for row in evaluated[1:]:
        assert row["time/trajectories"] == row["eval/trajectories"]
    # rows at the log interval (2, 4, 6), at evaluations (3, 6) and at the end (7)
    assert [row["time/iterations"] for row in rows if row["time/iterations"]] == [
        "2",
        "3",
        "4",
        "6",
        "7",
    ]
    assert rows[-1]["eval/trajectories"] == rows[-1]["time/trajectories"] == "112"


def test_a_short_run_logs_its_last_iteration_to_stdout(capsys: Any) -> None:
    """With verbose=1 a run shorter than ``log_interval`` still prints its final statistics."""
    build("RL-U", verbose=1).learn(total_trajectories=32, log_interval=10)
    out = capsys.readouterr().out
    assert "time/" in out and "iterations" in out and "| 2 " in out.replace("  ", " ")


# ---------------------------------------------------------------------------- make_agent and inputs
def test_make_agent_accepts_ids_with_or_without_the_namespace() -> None:
    short = make_agent("TB", "HyperGrid-v0", env_kwargs=GRID, seed=3, **small("TB"))
    full = make_agent("TB", ENV_ID, env_kwargs=GRID, seed=3, **small("TB"))
    assert short.env_id == full.env_id == ENV_ID
    assert_same_parameters(short, full)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ("CartPole-v1", "'CartPole-v1' is a Gymnasium env but not a gfn_envs task"),
        ("NoSuchEnv-v0", "unknown env id 'NoSuchEnv-v0'; registered gfn_envs ids"),
    ],
)
def test_an_id_that_is_not_a_gfn_envs_task_is_a_clear_value_error(env: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        make_agent("RL-U", env)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"seed": -1}, "seed must be an integer >= 0 or None"),
        ({"seed": 1.5}, "seed must be an integer >= 0 or None"),
        ({"verbose": 3}, "verbose must be 0, 1 or 2"),
        ({"log_reward_clip": True}, "log_reward_clip must be a finite number or None"),
        ({"tensorboard_log": 3}, "tensorboard_log must be a path or None"),
        ({"device": "tpu"}, "device must be"),
        ({"device": "nonsense:7"}, "device must be"),
    ],
)
def test_bad_base_arguments_are_clear_value_errors(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        make_agent("RL-U", ENV_ID, env_kwargs=GRID, **kwargs)


def test_env_kwargs_must_be_a_dict() -> None:
    with pytest.raises(ValueError, match="env_kwargs must be a dict or None"):
        make_agent("RL-U", ENV_ID, env_kwargs=[("ndim", 2)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="CUDA is not available"):
        make_agent("RL-U", ENV_ID, env_kwargs=GRID, device="cuda")
