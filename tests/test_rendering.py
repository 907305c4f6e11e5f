"""Rendering (``"ansi"`` and ``"rgb_array"``) and SB3's ``make_vec_env``, which asks for rgb_array."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env

import gfn_envs  # noqa: F401  (registers the ids)
from gfn_envs.rendering import EMPTY, MARK, PALETTE, cells_image, grid_image
from gfn_envs.tasks.hypergrid import HyperGrid


def _red_cells(frame: np.ndarray) -> set[tuple[int, int]]:
    return {tuple(int(v) for v in p) for p in np.argwhere((frame == MARK).all(axis=2))}


def test_hypergrid_frame_marks_the_current_cell_and_follows_the_steps() -> None:
    env = gym.make("gfn_envs/HyperGrid-v0", ndim=2, height=8, render_mode="rgb_array")
    env.reset(seed=0)
    first = env.render()
    assert isinstance(first, np.ndarray) and first.dtype == np.uint8 and first.ndim == 3
    assert first.shape[2] == 3 and 32 <= first.shape[0] <= 300
    cell = (first.shape[0] - 1) // 8  # 8 cells, each with its 1-pixel separator
    red = _red_cells(first)
    assert red and all(r < cell and c < cell for r, c in red)  # s0 = (0, 0): top-left
    env.step(0)  # x_0 += 1: one row down
    env.step(1)  # x_1 += 1: one column right
    moved = _red_cells(env.render())
    assert {(r - cell, c - cell) for r, c in moved} == red


def test_hypergrid_frame_shades_cells_by_reward() -> None:
    task = HyperGrid(ndim=2, height=8)
    frame = task.render_rgb(torch.tensor([0, 0]))
    cell = (frame.shape[0] - 1) // 8

    def pixel(i: int, j: int) -> np.ndarray:
        return frame[1 + i * cell + cell // 2, 1 + j * cell + cell // 2]

    # (0, 7) is a corner (high reward), (4, 4) the centre (R0 only): the corner is darker
    assert int(pixel(0, 7)[0]) < int(pixel(4, 4)[0])
    np.testing.assert_array_equal(pixel(4, 4), pixel(3, 3))  # both R0 cells


@pytest.mark.parametrize("name", ["HyperGrid-4x16-v0", "BitSequence-v0", "BayesNet-v0"])
def test_generic_frames_show_the_state_vector_as_cells(name: str) -> None:
    env = gym.make(f"gfn_envs/{name}", render_mode="rgb_array")
    _, info = env.reset(seed=0)
    before = env.render()
    legal = np.flatnonzero(info["action_mask"][:-1])
    env.step(int(legal[0]))
    after = env.render()
    assert before.dtype == np.uint8 and before.shape == after.shape
    assert not np.array_equal(before, after)


def test_cells_image_colours_values_and_empty_slots() -> None:
    image = cells_image(np.array([0, 1, -1, 12]), cell=4)
    assert image.shape == (4 + 2, 4 * 5 + 1, 3)
    centres = [image[3, 1 + k * 5 + 2] for k in range(4)]
    np.testing.assert_array_equal(centres[0], PALETTE[0])
    np.testing.assert_array_equal(centres[1], PALETTE[1])
    np.testing.assert_array_equal(centres[2], EMPTY)
    np.testing.assert_array_equal(centres[3], PALETTE[2])
    big = grid_image(np.zeros((256, 256)), (3, 5))
    assert big.shape == (256, 256, 3) and _red_cells(big) == {(3, 5)}
    with pytest.raises(ValueError, match="columns and cell"):
        cells_image(np.zeros(3), columns=0)


def test_ansi_and_rgb_array_pass_gymnasiums_render_check() -> None:
    for mode in ("ansi", "rgb_array"):
        env = gym.make("gfn_envs/TFBind8-v0", render_mode=mode)
        check_env(env.unwrapped)
    env = gym.make("gfn_envs/TFBind8-v0", render_mode="ansi")
    env.reset(seed=0)
    assert env.render() == "TFBind8 state [-1, -1, -1, -1, -1, -1, -1, -1]"


@pytest.mark.parametrize("name", ["HyperGrid-v0", "TFBind8-v0"])
def test_sb3_make_vec_env_builds_and_steps(name: str) -> None:
    """SB3 passes render_mode="rgb_array" (and falls back only on TypeError)."""
    venv = make_vec_env(f"gfn_envs/{name}", n_envs=2, seed=0)
    obs = venv.reset()
    assert obs.shape == (2, venv.observation_space.shape[0])
    assert venv.render_mode == "rgb_array"
    episodes = 0
    for _ in range(60):
        masks = np.stack(venv.env_method("action_masks"))
        actions = np.array([np.random.default_rng(0).choice(np.flatnonzero(m)) for m in masks])
        obs, rewards, dones, infos = venv.step(actions)
        episodes += int(dones.sum())
        assert all(isinstance(img, np.ndarray) for img in venv.get_images())
    assert episodes > 0
    venv.close()
