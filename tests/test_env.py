"""The Gymnasium adapters: checkers on every registered id, episode semantics in both directions,
the vector env's autoreset modes and tensor output, seeding, and clear errors for bad input."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import gfn_envs
from gfn_envs import ENVIRONMENTS, GFlowNetEnv, GFlowNetVectorEnv, IllegalActionError, check_gfn_env
from gfn_envs.tasks.hypergrid import HyperGrid

HYPERGRID = "gfn_envs.tasks.hypergrid:HyperGrid"

CHECK_OVERRIDES: dict[str, dict[str, Any]] = {}
"""Constructor kwargs that shrink an id whose full check would be too slow for the test suite.
Every id without an entry is checked with its registered defaults."""

IDS = sorted(ENVIRONMENTS)


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("name", IDS)
def test_registered_ids_pass_gymnasium_and_gfn_checkers(name: str, direction: str) -> None:
    kwargs = CHECK_OVERRIDES.get(name, {})
    env = gym.make(f"gfn_envs/{name}", direction=direction, **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    check_gfn_env(env, skip_gym_check=True)
    vec = gym.make_vec(f"gfn_envs/{name}", num_envs=3, direction=direction, **kwargs)
    assert isinstance(vec, GFlowNetVectorEnv)
    assert vec.single_observation_space == env.observation_space
    assert vec.single_action_space == env.action_space
    assert vec.metadata["autoreset_mode"] is gym.vector.AutoresetMode.NEXT_STEP
    check_gfn_env(vec)


def test_every_registered_id_is_in_the_gymnasium_registry() -> None:
    for name, (task, defaults) in ENVIRONMENTS.items():
        spec = gym.spec(f"gfn_envs/{name}")
        assert spec.vector_entry_point == "gfn_envs.env:GFlowNetVectorEnv"
        assert spec.kwargs == {"task": task, **defaults}


def test_paper_grid_ids_have_the_paper_parameters() -> None:
    task = gym.make("gfn_envs/HyperGrid-2x256-v0").unwrapped.task
    assert (task.ndim, task.height, task.R0, task.R1, task.R2) == (2, 256, 0.01, 0.5, 2.0)
    default = gym.make("gfn_envs/HyperGrid-v0", ndim=3, height=5, reward="cosine").unwrapped.task
    assert (default.ndim, default.height, default.reward, default.R0) == (3, 5, "cosine", 0.1)


# --------------------------------------------------------------------- single env semantics
def test_forward_episode_rewards_masks_and_info() -> None:
    env = gym.make("gfn_envs/HyperGrid-v0", ndim=2, height=3)
    task = env.unwrapped.task
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(info["state"], [0, 0])
    np.testing.assert_array_equal(info["action_mask"], [True, True, True])
    np.testing.assert_array_equal(obs, task.encode(task.s0(1))[0].numpy())
    for action, state, mask in [
        (0, [1, 0], [1, 1, 1]),
        (0, [2, 0], [0, 1, 1]),
        (1, [2, 1], [0, 1, 1]),
    ]:
        obs, reward, terminated, truncated, info = env.step(action)
        assert (reward, terminated, truncated, info["illegal_action"]) == (0.0, False, False, False)
        np.testing.assert_array_equal(info["state"], state)
        np.testing.assert_array_equal(info["action_mask"], np.array(mask, dtype=bool))
        np.testing.assert_array_equal(env.unwrapped.action_masks(), np.array(mask, dtype=bool))
    obs, reward, terminated, truncated, info = env.step(task.exit_action)
    assert terminated and not truncated
    assert reward == pytest.approx(float(task.log_reward(torch.tensor([[2, 1]]))[0]))
    np.testing.assert_array_equal(obs, task.encode(torch.tensor([[2, 1]]))[0].numpy())
    assert not env.unwrapped.action_masks().any()
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(0)


def test_backward_episode_walks_to_s0() -> None:
    env = gym.make("gfn_envs/HyperGrid-v0", ndim=3, height=4, direction="backward")
    assert env.action_space.n == 3
    obs, info = env.reset(options={"state": np.array([1, 3, 0])})
    np.testing.assert_array_equal(info["action_mask"], [True, True, False])
    steps = 0
    for action in (1, 1, 0, 1):
        obs, reward, terminated, _, info = env.step(action)
        steps += 1
        assert reward == 0.0
        assert terminated == (steps == 4)
    np.testing.assert_array_equal(info["state"], [0, 0, 0])
    assert not info["action_mask"].any()


def test_noop_illegal_action_leaves_the_state_unchanged() -> None:
    env = gym.make("gfn_envs/HyperGrid-v0", ndim=1, height=2)
    env.reset(seed=0)
    env.step(0)
    obs_before = env.unwrapped.task.encode(torch.tensor([[1]]))[0].numpy()
    obs, reward, terminated, truncated, info = env.step(0)
    assert info["illegal_action"] and reward == 0.0 and not terminated and not truncated
    np.testing.assert_array_equal(obs, obs_before)
    np.testing.assert_array_equal(info["state"], [1])


def test_strict_mode_names_the_action_and_the_legal_ones() -> None:
    env = gym.make("gfn_envs/HyperGrid-v0", ndim=2, height=2, illegal_action="raise")
    env.reset(seed=0)
    env.step(0)
    with pytest.raises(
        IllegalActionError, match=r"action 0 is illegal.*\[1, 0\].*legal actions: \[1, 2\]"
    ):
        env.step(0)
    back = gym.make(
        "gfn_envs/HyperGrid-v0", ndim=2, height=3, direction="backward", illegal_action="raise"
    )
    back.reset(options={"state": [2, 0]})
    with pytest.raises(IllegalActionError, match=r"backward action 1 .*legal actions: \[0\]"):
        back.step(1)


# ---------------------------------------------------------------------------- seeding
def _single_rollouts(direction: str, seed: int, episodes: int = 3) -> list[np.ndarray]:
    env = gym.make("gfn_envs/HyperGrid-v0", ndim=3, height=6, direction=direction)
    env.action_space.seed(seed)
    states = []
    for episode in range(episodes):
        _, info = env.reset(seed=seed if episode == 0 else None)
        states.append(info["state"])
        terminated = False
        while not terminated:
            action = env.action_space.sample(mask=info["action_mask"].astype(np.int8))
            _, _, terminated, _, info = env.step(action)
            states.append(info["state"])
    return states


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_fixed_seed_reproduces_single_env_rollouts(direction: str) -> None:
    first, second = _single_rollouts(direction, 3), _single_rollouts(direction, 3)
    assert len(first) == len(second)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    other = _single_rollouts(direction, 4)
    assert len(other) != len(first) or not all(
        np.array_equal(a, b) for a, b in zip(first, other, strict=True)
    )


def test_backward_reset_samples_depend_only_on_the_seed() -> None:
    env = gym.make("gfn_envs/HyperGrid-v0", ndim=2, height=16, direction="backward")
    starts = [tuple(env.reset(seed=seed)[1]["state"]) for seed in range(8)]
    again = [tuple(env.reset(seed=seed)[1]["state"]) for seed in range(8)]
    assert starts == again
    assert len(set(starts)) > 1
    assert (0, 0) not in starts


def _vector_rollout(direction: str, seed: int) -> list[torch.Tensor]:
    env = gym.make_vec(
        "gfn_envs/HyperGrid-v0",
        num_envs=16,
        ndim=2,
        height=8,
        direction=direction,
        autoreset_mode="disabled",
        tensors=True,
    )
    generator = torch.Generator().manual_seed(seed)
    _, info = env.reset(seed=seed)
    trace = [info["state"]]
    done = ~info["action_mask"].any(dim=1)  # a backward start drawn at s0 is already done
    while not bool(done.all()):
        mask = info["action_mask"] | done[:, None]
        actions = torch.multinomial(mask.float(), 1, generator=generator).squeeze(1)
        _, _, done, _, info = env.step(actions)
        trace.append(info["state"])
    return trace


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_fixed_seed_reproduces_vector_rollouts(direction: str) -> None:
    first, second = _vector_rollout(direction, 5), _vector_rollout(direction, 5)
    assert len(first) == len(second)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    other = _vector_rollout(direction, 6)
    assert not torch.equal(
        first[-1 if direction == "forward" else 0], other[-1 if direction == "forward" else 0]
    )


# ------------------------------------------------------------------------- vector env
def _vec(mode: str, **kwargs: Any) -> GFlowNetVectorEnv:
    return GFlowNetVectorEnv(2, task=HYPERGRID, ndim=2, height=3, autoreset_mode=mode, **kwargs)


def test_autoreset_next_step_resets_on_the_following_step_and_ignores_its_action() -> None:
    env = _vec("next_step")
    assert env.metadata["autoreset_mode"] is gym.vector.AutoresetMode.NEXT_STEP
    task = env.task
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.array([2, 0]))
    np.testing.assert_array_equal(terminated, [True, False])
    assert reward[0] == pytest.approx(float(task.log_reward(task.s0(1))[0]))
    assert reward[1] == 0.0
    # the mask of the returned state x, though its next action is ignored: nothing is legal now
    np.testing.assert_array_equal(info["action_mask"], [[True] * 3, [True] * 3])
    np.testing.assert_array_equal(env.action_masks(), [[False] * 3, [True] * 3])
    obs, reward, terminated, _, info = env.step(np.array([0, 2]))
    np.testing.assert_array_equal(info["state"], [[0, 0], [1, 0]])
    np.testing.assert_array_equal(terminated, [False, True])
    assert reward[0] == 0.0
    assert reward[1] == pytest.approx(float(task.log_reward(torch.tensor([[1, 0]]))[0]))
    np.testing.assert_array_equal(obs[0], task.encode(task.s0(1))[0].numpy())
    np.testing.assert_array_equal(info["illegal_action"], [False, False])


def test_autoreset_same_step_reports_final_obs_and_restarts_at_once() -> None:
    env = _vec("same_step")
    assert env.metadata["autoreset_mode"] is gym.vector.AutoresetMode.SAME_STEP
    task = env.task
    env.reset(seed=0)
    env.step(np.array([0, 0]))
    obs, reward, terminated, _, info = env.step(np.array([2, 1]))
    np.testing.assert_array_equal(terminated, [True, False])
    np.testing.assert_array_equal(info["_final_obs"], [True, False])
    np.testing.assert_array_equal(info["final_obs"][0], task.encode(torch.tensor([[1, 0]]))[0])
    np.testing.assert_array_equal(obs[0], task.encode(task.s0(1))[0].numpy())
    np.testing.assert_array_equal(info["state"], [[0, 0], [1, 1]])
    assert reward[0] == pytest.approx(float(task.log_reward(torch.tensor([[1, 0]]))[0]))
    _, _, terminated, _, info = env.step(np.array([0, 2]))
    np.testing.assert_array_equal(info["state"][0], [1, 0])
    np.testing.assert_array_equal(terminated, [False, True])


def test_autoreset_disabled_freezes_finished_envs_until_reset_mask() -> None:
    env = _vec("disabled")
    assert env.metadata["autoreset_mode"] is gym.vector.AutoresetMode.DISABLED
    env.reset(seed=0)
    env.step(np.array([0, 0]))
    env.step(np.array([2, 1]))
    _, reward, terminated, _, info = env.step(np.array([0, 2]))
    np.testing.assert_array_equal(terminated, [True, True])
    assert reward[0] == 0.0 and reward[1] != 0.0
    np.testing.assert_array_equal(info["state"], [[1, 0], [1, 1]])
    np.testing.assert_array_equal(info["illegal_action"], [False, False])
    assert not env.action_masks().any()
    np.testing.assert_array_equal(info["action_mask"][:, 2], [True, True])  # exit legal at x
    _, reward, terminated, _, info = env.step(np.array([1, 1]))
    np.testing.assert_array_equal(terminated, [True, True])
    np.testing.assert_array_equal(reward, [0.0, 0.0])
    np.testing.assert_array_equal(info["state"], [[1, 0], [1, 1]])
    _, info = env.reset(options={"reset_mask": np.array([True, False])})
    np.testing.assert_array_equal(info["state"], [[0, 0], [1, 1]])
    np.testing.assert_array_equal(env.action_masks(), [[True] * 3, [False] * 3])
    _, _, terminated, _, info = env.step(np.array([1, 0]))
    np.testing.assert_array_equal(terminated, [False, True])
    np.testing.assert_array_equal(info["state"], [[0, 1], [1, 1]])


def test_tensors_option_returns_torch_tensors_and_accepts_them() -> None:
    env = gym.make_vec("gfn_envs/HyperGrid-v0", num_envs=4, tensors=True, device="cpu")
    obs, info = env.reset(seed=0)
    assert isinstance(obs, torch.Tensor) and obs.dtype == torch.float32
    assert obs.shape == (4, env.single_observation_space.shape[0])
    assert info["action_mask"].dtype == torch.bool and isinstance(info["state"], torch.Tensor)
    obs, reward, terminated, truncated, info = env.step(torch.tensor([0, 1, 2, 2]))
    for value in (obs, reward, terminated, truncated, info["action_mask"], info["illegal_action"]):
        assert isinstance(value, torch.Tensor) and value.device.type == "cpu"
    assert terminated.tolist() == [False, False, True, True]
    assert isinstance(env.unwrapped.action_masks(), torch.Tensor)


@pytest.mark.parametrize("mode", ["next_step", "same_step", "disabled"])
def test_tensors_returned_by_the_vector_env_are_never_written_afterwards(mode: str) -> None:
    """In tensor mode a caller may keep the returned obs, rewards and info tensors: later steps
    and resets make new tensors rather than writing into old ones (the agents' rollouts rely on
    this to keep each step's states and masks without copying them)."""
    env = GFlowNetVectorEnv(6, task=HYPERGRID, ndim=2, height=3, tensors=True, autoreset_mode=mode)
    generator = torch.Generator().manual_seed(0)
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []  # (returned tensor, copy made at once)

    def keep(*tensors: torch.Tensor) -> None:
        kept.extend((t, t.clone()) for t in tensors)

    obs, info = env.reset(seed=0)
    for step in range(12):
        keep(obs, info["state"], info["action_mask"])
        if step == 6:
            obs, info = env.reset(options={"reset_mask": torch.ones(6, dtype=torch.bool)})
            continue
        legal = info["action_mask"] | env.done.unsqueeze(1)
        actions = torch.multinomial(legal.float(), 1, generator=generator).squeeze(1)
        obs, reward, terminated, _, info = env.step(actions)
        keep(reward, terminated)
    env.reset()
    assert all(torch.equal(t, copy) for t, copy in kept)


def test_vector_backward_starts_at_given_states_and_ends_at_s0() -> None:
    env = GFlowNetVectorEnv(
        2, task=HYPERGRID, ndim=2, height=4, direction="backward", autoreset_mode="disabled"
    )
    _, info = env.reset(options={"states": np.array([[1, 0], [2, 1]])})
    np.testing.assert_array_equal(info["action_mask"], [[True, False], [True, True]])
    _, reward, terminated, _, _ = env.step(np.array([0, 1]))
    np.testing.assert_array_equal(terminated, [True, False])
    np.testing.assert_array_equal(reward, [0.0, 0.0])
    env.step(np.array([0, 0]))
    _, _, terminated, _, info = env.step(np.array([0, 0]))
    np.testing.assert_array_equal(terminated, [True, True])
    np.testing.assert_array_equal(info["state"], [[0, 0], [0, 0]])


def test_backward_vector_env_never_starts_at_s0_and_keeps_running() -> None:
    """Drawn backward starts avoid s0 (no backward move there), also on autoreset, so every
    sub-env that has not just terminated always has a legal action."""
    env = gym.make_vec(
        "gfn_envs/HyperGrid-v0", num_envs=64, ndim=2, height=3, direction="backward", tensors=True
    )
    _, info = env.reset(seed=0)
    assert bool(info["action_mask"].any(dim=1).all())
    generator = torch.Generator().manual_seed(0)
    episodes = 0
    for _ in range(30):
        mask = info["action_mask"]
        finished = ~mask.any(dim=1)
        actions = torch.multinomial((mask | finished[:, None]).float(), 1, generator=generator)
        _, _, terminated, _, info = env.step(actions.squeeze(1))
        assert bool((info["action_mask"].any(dim=1) | terminated).all())
        episodes += int(terminated.sum())
    assert episodes > 64


def test_vector_strict_mode_names_sub_env_action_and_legal_ones() -> None:
    env = GFlowNetVectorEnv(2, task=HYPERGRID, ndim=2, height=2, illegal_action="raise")
    env.reset(seed=0)
    env.step(np.array([1, 0]))
    with pytest.raises(
        IllegalActionError, match=r"sub-env 1: .*action 0 is illegal.*legal actions: \[1, 2\]"
    ):
        env.step(np.array([0, 0]))


# --------------------------------------------------------------------------- bad input
def test_unknown_kwargs_name_the_argument_and_the_allowed_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) \['heigth'\].*height"):
        gym.make("gfn_envs/HyperGrid-v0", heigth=4)
    with pytest.raises(TypeError, match="heigth"):
        gym.make_vec("gfn_envs/HyperGrid-v0", num_envs=2, heigth=4)
    with pytest.raises(TypeError, match="Task subclass"):
        GFlowNetEnv(task=dict)
    with pytest.raises(TypeError, match="task instance"):
        GFlowNetEnv(task=HyperGrid(), ndim=3)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"ndim": 0}, "ndim"),
        ({"height": 1}, "height"),
        ({"reward": "linear"}, "reward"),
        ({"R0": -0.1}, "R0"),
        ({"R1": float("nan")}, "R1"),
        ({"direction": "sideways"}, "direction must be one of"),
        ({"illegal_action": "ignore"}, "illegal_action must be one of"),
        ({"render_mode": "video"}, "render_mode"),
    ],
)
@pytest.mark.filterwarnings("ignore:.*render_mode:UserWarning")
def test_invalid_env_kwargs(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        gym.make("gfn_envs/HyperGrid-v0", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"num_envs": 0}, "num_envs"),
        ({"num_envs": 2, "autoreset_mode": "sometimes"}, "autoreset_mode must be one of"),
        ({"num_envs": 2, "direction": "up"}, "direction"),
        ({"num_envs": 2, "render_mode": "ansi"}, "render_mode"),
    ],
)
def test_invalid_vector_env_kwargs(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        GFlowNetVectorEnv(task=HYPERGRID, **kwargs)


@pytest.mark.parametrize("action", [3, -1, 1.0, np.array([0, 1]), "0", None])
def test_single_env_rejects_bad_actions(action: Any) -> None:
    env = gym.make("gfn_envs/HyperGrid-v0").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 3\)"):
        env.step(action)


@pytest.mark.parametrize(
    ("actions", "words"),
    [
        (np.array([0, 1]), "shape"),
        (np.array([[0], [1], [2]]), "shape"),
        (np.array([0.0, 1.0, 2.0]), "integers"),
        (np.array([True, False, True]), "integers"),
        (np.array([0, 3, 1]), r"lie in \[0, 3\)"),
        (np.array([0, -1, 1]), r"lie in \[0, 3\)"),
    ],
)
def test_vector_env_rejects_bad_actions(actions: np.ndarray, words: str) -> None:
    env = GFlowNetVectorEnv(3, task=HYPERGRID)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=words):
        env.step(actions)


class CornerGrid(HyperGrid):
    """A HyperGrid whose only terminal object is the far corner, to test non-terminal starts."""

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        mask = super().forward_mask(states)
        mask[:, self.exit_action] = (states == self.height - 1).all(dim=1)
        return mask

    def is_terminal(self, states: torch.Tensor) -> torch.Tensor:
        return self.forward_mask(states)[:, self.exit_action]


@pytest.mark.parametrize(
    ("direction", "options", "error", "words"),
    [
        ("forward", {"seed_me": 1}, ValueError, r"unknown reset options \['seed_me'\]"),
        ("forward", {"state": [1, 1]}, ValueError, "only for direction='backward'"),
        ("backward", {"state": [0, 0]}, ValueError, "s0"),
        ("backward", {"state": [1, 9]}, ValueError, r"coordinates in \[0, 7\]"),
        ("backward", {"state": [1, 2, 3]}, ValueError, r"shape \[B, 2\]"),
        ("backward", {"state": [1.0, 2.0]}, TypeError, "integer"),
    ],
)
def test_bad_reset_options(
    direction: str, options: dict[str, Any], error: type, words: str
) -> None:
    env = gym.make("gfn_envs/HyperGrid-v0", direction=direction)
    with pytest.raises(error, match=words):
        env.reset(options=options)


def test_backward_start_must_be_terminal() -> None:
    env = GFlowNetEnv(task=CornerGrid, ndim=2, height=3, direction="backward")
    with pytest.raises(ValueError, match=r"terminal object, got \[1, 2\]"):
        env.reset(options={"state": [1, 2]})
    _, info = env.reset(options={"state": [2, 2]})
    np.testing.assert_array_equal(info["state"], [2, 2])
    vec = GFlowNetVectorEnv(2, task=CornerGrid, ndim=2, height=3, direction="backward")
    with pytest.raises(ValueError, match="terminal objects"):
        vec.reset(options={"states": np.array([[2, 2], [0, 2]])})


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"bogus": 1}, "unknown reset options"),
        ({"states": np.array([[1, 1]])}, "must hold 2 objects"),
        ({"states": np.array([[1, 1], [9, 1]])}, "coordinates"),
        ({"reset_mask": np.array([1, 0])}, "reset_mask"),
        ({"reset_mask": np.array([True, False, True])}, "reset_mask"),
    ],
)
def test_bad_vector_reset_options(options: dict[str, Any], words: str) -> None:
    env = GFlowNetVectorEnv(2, task=HYPERGRID, direction="backward")
    with pytest.raises(ValueError, match=words):
        env.reset(options=options)


def test_forward_vector_env_rejects_start_states() -> None:
    env = GFlowNetVectorEnv(2, task=HYPERGRID)
    with pytest.raises(ValueError, match="only for direction='backward'"):
        env.reset(options={"states": np.array([[1, 1], [1, 2]])})


def test_checker_rejects_nan_rewards() -> None:
    class NanGrid(HyperGrid):
        def log_reward(self, states: torch.Tensor) -> torch.Tensor:
            out = super().log_reward(states)
            return torch.where(states.sum(1) == 3, torch.nan, out)

    with pytest.raises(gfn_envs.GFlowNetContractError, match="NaN"):
        gfn_envs.check_task(NanGrid(ndim=2, height=4))


def test_checker_rejects_inconsistent_masks() -> None:
    class LeakyGrid(HyperGrid):
        def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
            return states > 1

    with pytest.raises(gfn_envs.GFlowNetContractError, match="parent|masked"):
        gfn_envs.check_task(LeakyGrid(ndim=2, height=4))


def test_checker_rejects_a_fused_step_that_disagrees_with_step() -> None:
    class SkippingGrid(HyperGrid):
        def step_where(
            self, states: torch.Tensor, actions: torch.Tensor, where: torch.Tensor
        ) -> torch.Tensor:
            return super().step_where(states, actions, torch.ones_like(where))

    with pytest.raises(gfn_envs.GFlowNetContractError, match="step_where"):
        gfn_envs.check_task(SkippingGrid(ndim=2, height=4))
