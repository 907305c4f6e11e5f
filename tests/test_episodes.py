"""Episode semantics shared by the single and the vector env: the single env is a one-row view of
the vector env, dead ends and non-finite rewards raise where they arise, and the mask in ``info``
is the mask of the state returned with it, in every autoreset mode and Gymnasium vectorisation."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import gfn_envs  # noqa: F401  (registers the ids)
from gfn_envs import GFlowNetEnv, GFlowNetVectorEnv
from gfn_envs.tasks.hypergrid import HyperGrid

GRID = {"ndim": 2, "height": 4}


def _mask_of(task: HyperGrid, direction: str, states: np.ndarray) -> np.ndarray:
    states = torch.as_tensor(np.asarray(states)).reshape(-1, *task.state_shape)
    mask = task.forward_mask(states) if direction == "forward" else task.backward_mask(states)
    return mask.numpy()


# --------------------------------------------------------------- one-row view
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_single_env_steps_exactly_like_a_one_row_vector_env(direction: str) -> None:
    """Same seed and actions: the single env returns what row 0 of a vector env returns (the
    drawn backward starts included), as numpy scalars and arrays."""
    single = GFlowNetEnv(HyperGrid, direction=direction, **GRID)
    vec = GFlowNetVectorEnv(1, HyperGrid, direction=direction, autoreset_mode="disabled", **GRID)
    rng = np.random.default_rng(0)
    for episode in range(5):
        obs, info = single.reset(seed=episode)
        vobs, vinfo = vec.reset(seed=episode)
        np.testing.assert_array_equal(obs, vobs[0])
        np.testing.assert_array_equal(info["state"], vinfo["state"][0])
        np.testing.assert_array_equal(info["action_mask"], vinfo["action_mask"][0])
        terminated = False
        while not terminated:
            action = int(rng.integers(single.action_space.n))  # illegal ones too (no-ops)
            obs, reward, terminated, truncated, info = single.step(action)
            vobs, vreward, vterm, vtrunc, vinfo = vec.step(np.array([action]))
            assert isinstance(reward, float) and isinstance(terminated, bool)
            assert (reward, terminated, truncated) == (float(vreward[0]), bool(vterm[0]), False)
            np.testing.assert_array_equal(obs, vobs[0])
            np.testing.assert_array_equal(info["state"], vinfo["state"][0])
            assert info["illegal_action"] == bool(vinfo["illegal_action"][0])
            if not terminated:
                np.testing.assert_array_equal(info["action_mask"], vinfo["action_mask"][0])


def test_single_env_outputs_are_copies() -> None:
    """Writing into a returned info array cannot change the env's state."""
    env = GFlowNetEnv(HyperGrid, **GRID)
    _, info = env.reset(seed=0)
    info["state"][:] = 3
    info["action_mask"][:] = False
    _, _, _, _, info = env.step(0)
    np.testing.assert_array_equal(info["state"], [1, 0])
    assert info["action_mask"].all()


# ------------------------------------------------------------------ dead ends
class DeadEndGrid(HyperGrid):
    """Cell (1, 1) is not terminal and has no move: a dead end of the forward DAG. Its children
    (1, 2) and (2, 1) have no parent but (1, 1)... so backward walks from them die there too."""

    def forward_mask(self, states: torch.Tensor) -> torch.Tensor:
        mask = super().forward_mask(states)
        dead = (states == 1).all(dim=1)
        return mask & ~dead.unsqueeze(1)

    def is_terminal(self, states: torch.Tensor) -> torch.Tensor:
        return self.forward_mask(states)[:, self.exit_action]


class OrphanGrid(HyperGrid):
    """Cell (0, 1) has no backward action although it is not s0."""

    def backward_mask(self, states: torch.Tensor) -> torch.Tensor:
        orphan = (states == torch.tensor([0, 1])).all(dim=1)
        return super().backward_mask(states) & ~orphan.unsqueeze(1)


def test_forward_step_into_a_dead_end_raises_in_both_envs() -> None:
    env = GFlowNetEnv(DeadEndGrid, **GRID)
    env.reset(seed=0)
    env.step(0)
    with pytest.raises(ValueError, match=r"reached state \[1, 1\].*not a terminal object"):
        env.step(1)
    vec = GFlowNetVectorEnv(2, DeadEndGrid, autoreset_mode="disabled", **GRID)
    vec.reset(seed=0)
    vec.step(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"DeadEndGrid reached state \[1, 1\] \(sub-env 0\)"):
        vec.step(np.array([1, 1]))


def test_backward_step_into_a_dead_end_raises_in_both_envs() -> None:
    env = GFlowNetEnv(OrphanGrid, direction="backward", **GRID)
    env.reset(options={"state": [0, 2]})
    with pytest.raises(ValueError, match=r"reached state \[0, 1\].*not s0 and has no legal"):
        env.step(1)
    vec = GFlowNetVectorEnv(2, OrphanGrid, direction="backward", **GRID)
    vec.reset(options={"states": np.array([[1, 0], [0, 2]])})
    with pytest.raises(ValueError, match=r"\(sub-env 1\)"):
        vec.step(np.array([0, 1]))


# ------------------------------------------------------------ non-finite rewards
class BadRewardGrid(HyperGrid):
    """log R is NaN at (2, 3), +inf at (3, 3) and −inf (R = 0) at (3, 2)."""

    def log_reward(self, states: torch.Tensor) -> torch.Tensor:
        out = super().log_reward(states)
        for cell, value in (((2, 3), math.nan), ((3, 3), math.inf), ((3, 2), -math.inf)):
            out = torch.where((states == torch.tensor(cell)).all(dim=1), value, out)
        return out


@pytest.mark.parametrize(("cell", "word"), [((2, 3), "nan"), ((3, 3), "inf")])
def test_non_finite_exit_reward_names_the_task_and_the_object(
    cell: tuple[int, int], word: str
) -> None:
    env = GFlowNetEnv(BadRewardGrid, **GRID)
    env.reset(seed=0)
    for coordinate, count in enumerate(cell):
        for _ in range(count):
            env.step(coordinate)
    pattern = rf"BadRewardGrid.log_reward returned {word} for the terminal object \[{cell[0]}, "
    with pytest.raises(ValueError, match=pattern):
        env.step(2)
    vec = GFlowNetVectorEnv(3, BadRewardGrid, autoreset_mode="disabled", tensors=True, **GRID)
    vec.reset(seed=0)
    vec.step(torch.tensor([2, 0, 0]))  # row 0 exits at s0 with a finite reward
    with pytest.raises(ValueError, match=word):
        vec.reset()
        for coordinate, count in enumerate(cell):
            for _ in range(count):
                vec.step(torch.tensor([coordinate, 2, 2]))
        vec.step(torch.tensor([2, 2, 2]))


def test_zero_reward_is_allowed_and_log_partition_refuses_nan() -> None:
    env = GFlowNetEnv(BadRewardGrid, **GRID)
    env.reset(seed=0)
    for action in (0, 0, 0, 1, 1):
        env.step(action)
    _, reward, terminated, _, _ = env.step(2)
    assert terminated and reward == -math.inf
    with pytest.raises(ValueError, match=r"BadRewardGrid.log_reward returned nan .*\[2, 3\]"):
        BadRewardGrid(**GRID).log_partition()
    with pytest.raises(ValueError, match="nan"):
        BadRewardGrid(**GRID).true_distribution()


# ------------------------------------------------------------- masks in info
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("mode", ["next_step", "same_step", "disabled"])
def test_native_vector_mask_is_the_mask_of_the_returned_state(direction: str, mode: str) -> None:
    """Every row of ``info["action_mask"]`` is the task's mask of ``info["state"]``, finished
    sub-envs included; ``action_masks()`` (what is legal now) is empty exactly for those."""
    env = GFlowNetVectorEnv(5, HyperGrid, direction=direction, autoreset_mode=mode, **GRID)
    task = env.task
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(1)
    finished_seen = 0
    for _ in range(40):
        mask = info["action_mask"]
        actions = np.array([rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in mask])
        _, _, terminated, _, info = env.step(actions)
        expected = _mask_of(task, direction, info["state"])
        finished = env.done.numpy()
        assert not finished.any() or mode != "same_step"
        np.testing.assert_array_equal(info["action_mask"], expected)
        legal_now = env.action_masks()
        np.testing.assert_array_equal(legal_now[~finished], expected[~finished])
        assert not legal_now[finished].any()
        finished_seen += int(finished.sum())
        if mode == "disabled" and finished.all():
            _, info = env.reset(options={"reset_mask": finished})
    assert finished_seen > 0 or mode == "same_step"


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("vectorization_mode", ["sync", "async"])
@pytest.mark.parametrize(
    "autoreset", [gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP]
)
def test_gymnasium_vector_mask_is_the_mask_of_the_returned_observation(
    direction: str, vectorization_mode: str, autoreset: gym.vector.AutoresetMode
) -> None:
    """In Gymnasium's Sync/Async vector envs every mask row is the mask of the returned state:
    at a termination too (forward: x, where exit is legal; backward: s0, where nothing is), so
    picking a random legal action works on every forward step, the autoreset step's included."""
    vec = gym.make_vec(
        "gfn_envs/HyperGrid-v0",
        num_envs=3,
        vectorization_mode=vectorization_mode,
        vector_kwargs={"autoreset_mode": autoreset},
        direction=direction,
        **GRID,
    )
    task = HyperGrid(**GRID)
    _, info = vec.reset(seed=0)
    rng = np.random.default_rng(2)
    terminations = 0
    for _ in range(30):
        mask = info["action_mask"]
        np.testing.assert_array_equal(mask, _mask_of(task, direction, info["state"]))
        if direction == "forward":
            assert mask.any(axis=1).all()
        actions = np.array([rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in mask])
        _, _, terminated, _, info = vec.step(actions)
        terminations += int(terminated.sum())
    vec.close()
    assert terminations > 0
