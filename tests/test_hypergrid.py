"""HyperGrid: the reward formulas, log Z* from a closed form, and the DAG structure (hypothesis)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gfn_envs.tasks.hypergrid import HyperGrid


def band_counts(height: int) -> tuple[int, int]:
    """Cells per coordinate in band 1 (1/4 < a) and band 2 (3/10 < a < 2/5), a = |i/(H−1) − 1/2|.

    Plain Python with exact rationals, independent of the task code (which uses integers).
    """
    c1 = c2 = 0
    for i in range(height):
        a = abs(Fraction(i, height - 1) - Fraction(1, 2))
        c1 += a > Fraction(1, 4)
        c2 += Fraction(3, 10) < a < Fraction(2, 5)
    return c1, c2


def closed_form_log_z(ndim: int, height: int, R0: float, R1: float = 0.5, R2: float = 2.0) -> float:
    """log Σ_x R(x) for the "original" reward: the band indicators are products over coordinates,
    so Σ_x ∏_d 1[band(x_d)] = (cells in the band per coordinate)^ndim."""
    c1, c2 = band_counts(height)
    return math.log(R0 * height**ndim + R1 * c1**ndim + R2 * c2**ndim)


PAPER_GRIDS = [
    # (ndim, height, log Z* at R0 = 0.01, R1 = 0.5, R2 = 2), the values of the paper's code
    (2, 16, 3.75091),
    (2, 64, 6.73454),
    (2, 128, 8.17859),
    (2, 256, 9.53585),
    (3, 32, 7.94011),
    (4, 16, 7.91402),
    (4, 8, 5.30311),
]


@pytest.mark.parametrize(("ndim", "height", "log_z_star"), PAPER_GRIDS)
def test_log_partition_equals_the_closed_form_on_the_paper_grids(
    ndim: int, height: int, log_z_star: float
) -> None:
    assert closed_form_log_z(ndim, height, 0.01) == pytest.approx(log_z_star, abs=5e-6)
    task = HyperGrid(ndim=ndim, height=height, R0=0.01, R1=0.5, R2=2.0)
    assert task.log_partition() == pytest.approx(log_z_star, abs=5e-6)


def assert_mirror_symmetric(task: HyperGrid) -> None:
    states = task.all_states()
    log_r = task.log_reward(states)
    for axis in range(task.ndim):
        mirrored = states.clone()
        mirrored[:, axis] = task.height - 1 - mirrored[:, axis]
        assert torch.equal(task.log_reward(mirrored), log_r), (task.height, axis)


@pytest.mark.parametrize("reward", ["original", "cosine"])
def test_reward_is_symmetric_under_mirroring_every_axis_for_every_height(reward: str) -> None:
    """R(x) = R(x with x_d replaced by H−1−x_d), for every axis d and every H from 2 to 300.

    A float64 evaluation of a_d broke this on 16 × 16 (x = 12 inside band 2, its mirror 3 not)."""
    for height in range(2, 301):
        assert_mirror_symmetric(HyperGrid(ndim=2, height=height, reward=reward, R0=0.01))
    assert_mirror_symmetric(HyperGrid(ndim=3, height=32, reward=reward, R0=0.01))
    assert_mirror_symmetric(HyperGrid(ndim=4, height=16, reward=reward, R0=0.01))


def test_bands_equal_the_float32_arithmetic_of_the_reference_code_on_the_paper_grids() -> None:
    """GFN-PG and torchgfn compare a = |x/(H−1) − 0.5| in float32 with the band edges; on every
    paper grid that agrees with exact arithmetic. (On some other heights, e.g. H = 11, float32 is
    itself asymmetric at an edge, and the exact rule is the symmetric one.)"""
    for height in sorted({h for _, h, _ in PAPER_GRIDS}):
        x = torch.arange(height, dtype=torch.float32)
        a = (x / (height - 1) - 0.5).abs()
        float32_counts = (int((a > 0.25).sum()), int(((a > 0.3) & (a < 0.4)).sum()))
        assert float32_counts == band_counts(height), height


def test_true_distribution_and_log_partition_equal_torchgfn() -> None:
    """Where torchgfn is installed (the benchmark venv, extra ``anchor``), its HyperGrid defines the
    same target: equal log Z* and equal P*(x) cell by cell."""
    gym = pytest.importorskip("gfn.gym")
    for ndim, height, _ in PAPER_GRIDS:
        theirs = gym.HyperGrid(
            ndim=ndim,
            height=height,
            reward_fn_str="original",
            reward_fn_kwargs={"R0": 0.01, "R1": 0.5, "R2": 2.0},
            calculate_partition=True,
            store_all_states=True,
        )
        ours = HyperGrid(ndim=ndim, height=height, R0=0.01, R1=0.5, R2=2.0)
        assert theirs.log_partition() == pytest.approx(ours.log_partition(), abs=1e-5)
        cells = theirs.all_states.tensor.long()
        p_theirs = theirs.true_dist().double()
        p_ours = ours.true_distribution()[ours.state_index(cells)]
        torch.testing.assert_close(p_ours, p_theirs, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(
    ("ndim", "height", "R0"), [(1, 2, 0.1), (2, 8, 0.1), (3, 7, 0.01), (4, 5, 1.0)]
)
def test_log_partition_matches_closed_form_on_other_grids(
    ndim: int, height: int, R0: float
) -> None:
    task = HyperGrid(ndim=ndim, height=height, R0=R0)
    assert task.log_partition() == pytest.approx(closed_form_log_z(ndim, height, R0), abs=1e-6)


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
