"""HyperGrid: the reward formulas, log Z* from a closed form, and the DAG structure (hypothesis)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gfn_envs.tasks.hypergrid import HyperGrid


def band_counts(height: int, exact: bool = False) -> tuple[int, int]:
    """Cells per coordinate in band 1 (0.25 < a) and band 2 (0.3 < a < 0.4), a = |i/(H−1) − 1/2|.

    Plain Python, independent of the task code. By default a is evaluated in float64 as the paper's
    code does; ``exact=True`` uses rationals instead. They differ on cells that sit exactly on a
    band edge: on H = 256, i = 204 has a = 3/10 exactly but 0.30000000000000004 in float64.
    """
    c1 = c2 = 0
    for i in range(height):
        if exact:
            a = abs(Fraction(i, height - 1) - Fraction(1, 2))
            c1 += a > Fraction(1, 4)
            c2 += Fraction(3, 10) < a < Fraction(2, 5)
        else:
            a = abs(i / (height - 1) - 0.5)
            c1 += a > 0.25
            c2 += 0.3 < a < 0.4
    return c1, c2


def closed_form_log_z(
    ndim: int, height: int, R0: float, R1: float, R2: float, exact: bool = False
) -> float:
    """log Σ_x R(x) for the "original" reward: the band indicators are products over coordinates,
    so Σ_x ∏_d 1[band(x_d)] = (cells in the band per coordinate)^ndim."""
    c1, c2 = band_counts(height, exact)
    return math.log(R0 * height**ndim + R1 * c1**ndim + R2 * c2**ndim)


def test_log_partition_2x256_matches_the_paper_value_by_closed_form() -> None:
    log_z = closed_form_log_z(2, 256, 0.01, 0.5, 2.0)
    assert log_z == pytest.approx(9.55033, abs=5e-6)
    task = HyperGrid(ndim=2, height=256, R0=0.01, R1=0.5, R2=2.0)
    assert task.log_partition() == pytest.approx(log_z, abs=1e-6)


def test_paper_value_relies_on_float64_band_edges() -> None:
    """The published 9.55033 counts the edge cell i = 204 in band 2 (its mirror i = 51 rounds to
    exactly 0.3 and stays out); exact rational arithmetic gives 50 instead of 51 cells per
    coordinate and log Z* = 9.53585. The task follows the paper's float64 convention."""
    assert band_counts(256) == (128, 51)
    assert band_counts(256, exact=True) == (128, 50)
    assert closed_form_log_z(2, 256, 0.01, 0.5, 2.0, exact=True) == pytest.approx(9.53585, abs=5e-6)


@pytest.mark.parametrize(
    ("ndim", "height", "R0"), [(1, 2, 0.1), (2, 8, 0.1), (3, 7, 0.01), (4, 5, 1.0)]
)
def test_log_partition_matches_closed_form_on_other_grids(
    ndim: int, height: int, R0: float
) -> None:
    task = HyperGrid(ndim=ndim, height=height, R0=R0)
    assert task.log_partition() == pytest.approx(
        closed_form_log_z(ndim, height, R0, 0.5, 2.0), abs=1e-6
    )


def test_original_reward_values_by_hand() -> None:
    """H = 11, so a = |x/10 − 0.5|: x ∈ {0, 10} → a = 0.5 (band 1 only), x = 5 → a = 0.
    H = 21: x ∈ {3, 17} → a = 0.35 (both bands), x = 10 → a = 0."""
    task = HyperGrid(ndim=2, height=11, R0=0.1, R1=0.5, R2=2.0)
    states = torch.tensor([[0, 0], [0, 5], [5, 5], [0, 10], [10, 0]])
    expected = torch.tensor([0.6, 0.1, 0.1, 0.6, 0.6]).log()
    torch.testing.assert_close(task.log_reward(states), expected)
    inside = HyperGrid(ndim=2, height=21, R0=0.1, R1=0.5, R2=2.0)
    torch.testing.assert_close(
        inside.log_reward(torch.tensor([[3, 3], [3, 17], [3, 10]])),
        torch.tensor([2.6, 2.6, 0.1]).log(),
    )


def test_cosine_reward_matches_its_documented_formula() -> None:
    task = HyperGrid(ndim=2, height=9, reward="cosine", R0=0.1, R1=0.5)
    states = torch.tensor([[0, 0], [4, 4], [1, 7], [8, 3]])
    expected = []
    for x in states.tolist():
        prod = 1.0
        for xd in x:
            a = abs(xd / 8 - 0.5)
            prod *= (math.cos(50 * a) + 1) * math.exp(-0.5 * (5 * a) ** 2) / math.sqrt(2 * math.pi)
        expected.append(math.log(0.1 + 0.5 * prod))
    torch.testing.assert_close(task.log_reward(states), torch.tensor(expected))


def test_k_hot_encoding() -> None:
    task = HyperGrid(ndim=3, height=4)
    obs = task.encode(torch.tensor([[0, 3, 1]]))
    expected = torch.zeros(12)
    expected[[0, 4 + 3, 8 + 1]] = 1.0
    assert obs.dtype == torch.float32
    torch.testing.assert_close(obs[0], expected)


def test_structure_constants() -> None:
    task = HyperGrid(ndim=3, height=5)
    assert (task.n_actions, task.n_backward_actions, task.exit_action) == (4, 3, 3)
    assert task.max_length == 3 * 4 + 1
    assert task.obs_dim == 15
    assert len(task.terminal_states()) == 125
    assert bool(task.is_terminal(task.all_states()).all())


grids = st.tuples(st.integers(1, 4), st.integers(2, 6)).filter(lambda g: g[1] ** g[0] <= 1300)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(grid=grids, data=st.data())
def test_backward_step_undoes_step(grid: tuple[int, int], data: st.DataObject) -> None:
    ndim, height = grid
    task = HyperGrid(ndim=ndim, height=height)
    coords = st.lists(st.integers(0, height - 1), min_size=ndim, max_size=ndim)
    states = torch.tensor(data.draw(st.lists(coords, min_size=1, max_size=20)))
    mask = task.forward_mask(states)
    for a in range(task.exit_action):
        rows = mask[:, a]
        if not bool(rows.any()):
            continue
        parents, actions = states[rows], torch.full((int(rows.sum()),), a)
        children = task.step(parents, actions)
        back = task.backward_action(parents, actions)
        assert bool(task.backward_mask(children).gather(1, back[:, None]).all())
        assert torch.equal(task.backward_step(children, back), parents)
        assert torch.equal(task.forward_action(children, back), actions)
        assert torch.equal(children.sum(1), parents.sum(1) + 1)
    bmask = task.backward_mask(states)
    for b in range(task.n_backward_actions):
        rows = bmask[:, b]
        if not bool(rows.any()):
            continue
        kids, actions = states[rows], torch.full((int(rows.sum()),), b)
        parents = task.backward_step(kids, actions)
        assert torch.equal(task.step(parents, task.forward_action(kids, actions)), kids)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(grid=grids)
def test_masks_agree_with_children_and_parents(grid: tuple[int, int]) -> None:
    """The edges read off the forward masks equal those read off the backward masks, and both are
    exactly the +1 moves inside the grid."""
    ndim, height = grid
    task = HyperGrid(ndim=ndim, height=height)
    states = task.all_states()
    fmask, bmask = task.forward_mask(states), task.backward_mask(states)

    def edges(parents: torch.Tensor, kids: torch.Tensor) -> set[tuple[tuple[int, ...], ...]]:
        return {(tuple(p), tuple(k)) for p, k in zip(parents.tolist(), kids.tolist(), strict=True)}

    forward_edges: set[tuple[tuple[int, ...], ...]] = set()
    for a in range(task.exit_action):
        rows = fmask[:, a]
        kids = task.step(states[rows], torch.full((int(rows.sum()),), a))
        forward_edges |= edges(states[rows], kids)
    backward_edges: set[tuple[tuple[int, ...], ...]] = set()
    for b in range(task.n_backward_actions):
        rows = bmask[:, b]
        parents = task.backward_step(states[rows], torch.full((int(rows.sum()),), b))
        backward_edges |= edges(parents, states[rows])
    assert forward_edges == backward_edges
    expected = {
        (s, s[:d] + (s[d] + 1,) + s[d + 1 :])
        for s in map(tuple, states.tolist())
        for d in range(ndim)
        if s[d] < height - 1
    }
    assert forward_edges == expected
    assert bool(fmask[:, task.exit_action].all())
    s0 = task.s0(1)
    assert not bool(task.backward_mask(s0).any())
    others = ~task.is_initial(states)
    assert bool(bmask[others].any(dim=1).all())


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"ndim": 0}, ValueError, "ndim"),
        ({"ndim": 1.5}, ValueError, "ndim"),
        ({"ndim": True}, ValueError, "ndim"),
        ({"height": 1}, ValueError, "height"),
        ({"height": "8"}, ValueError, "height"),
        ({"reward": "quadratic"}, ValueError, "reward"),
        ({"R0": 0.0}, ValueError, "R0"),
        ({"R0": -1.0}, ValueError, "R0"),
        ({"R0": float("nan")}, ValueError, "R0"),
        ({"R1": -0.5}, ValueError, "R1"),
        ({"R2": float("inf")}, ValueError, "R2"),
        ({"R2": "2"}, ValueError, "R2"),
    ],
)
def test_invalid_constructor_arguments(kwargs: dict, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        HyperGrid(**kwargs)
