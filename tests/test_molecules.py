"""MoleculeString: the shipped QED table against live RDKit, validity, rewards, exact metrics."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import gfn_envs  # noqa: F401  (registers the ids)
from gfn_envs import check_gfn_env
from gfn_envs.exact import exact_distribution, target_policy
from gfn_envs.metrics.sequences import exact_sequence_metrics
from gfn_envs.tasks.molecules import (
    BLOCKS,
    MoleculeString,
    compute_qed,
    index_to_sequences,
    load_qed_table,
    to_smiles,
)

N = 11**5
HALOGENS = (BLOCKS.index("F"), BLOCKS.index("Cl"))


@pytest.fixture(scope="module")
def task() -> MoleculeString:
    return MoleculeString()


def test_table_matches_live_rdkit_exactly() -> None:
    """200 random strings recomputed with RDKit give bit-identical float32 QED values."""
    pytest.importorskip("rdkit")
    table = load_qed_table()
    assert table.shape == (N,) and table.dtype == np.float32
    index = np.random.default_rng(0).choice(N, 200, replace=False)
    live = compute_qed(index_to_sequences(index))
    assert np.array_equal(live, table[index])
    assert (live == 0).any() and (live > 0).any()  # the sample covers both kinds


def test_known_molecule() -> None:
    """(phenylene, pyridinediyl, carbonyl, N, C) assembles to N-methyl 5-phenylpicolinamide."""
    chem = pytest.importorskip("rdkit.Chem")
    from rdkit.Chem import QED

    seq = np.array([[5, 6, 4, 1, 0]])
    (smiles,) = to_smiles(seq)
    assert smiles == "c1ccc(cc1)c1ccc(nc1)C(=O)NC"
    canonical = chem.MolToSmiles(chem.MolFromSmiles(smiles))
    assert canonical == chem.MolToSmiles(chem.MolFromSmiles("CNC(=O)c1ccc(-c2ccccc2)cn1"))
    expected = np.float32(QED.qed(chem.MolFromSmiles("CNC(=O)c1ccc(-c2ccccc2)cn1")))
    assert load_qed_table()[int((seq[0] * 11 ** np.arange(4, -1, -1)).sum())] == expected


def test_validity_is_exactly_no_inner_halogen(task: MoleculeString) -> None:
    """RDKit rejects a halogen with two bonds; q = 0 marks exactly those 72,842 strings."""
    seqs = task.terminal_states()
    inner = torch.isin(seqs[:, 1:4], torch.tensor(HALOGENS)).any(dim=1)
    valid = task.is_valid(seqs)
    assert torch.equal(valid, ~inner)
    assert int((~valid).sum()) == 11**2 * (11**3 - 9**3) == 72842
    assert bool((task.qed(seqs[valid]) > 0).all())
    chem = pytest.importorskip("rdkit.Chem")
    assert chem.MolFromSmiles("CFC") is None and chem.MolFromSmiles("FCCCCl") is not None


def test_reward_is_the_paper_transform_with_a_floor_for_invalid(task: MoleculeString) -> None:
    q = task.qed_table
    rewards = task.reward_table
    expected = q.clamp(min=1e-3).pow(5) * (10.0 / q.max().pow(5))
    assert torch.allclose(rewards, expected, rtol=1e-12, atol=0)
    assert float(rewards.max()) == pytest.approx(10.0)
    floor = 10.0 * (1e-3 / float(q.max())) ** 5
    assert float(rewards[q == 0].max()) == pytest.approx(floor) == float(rewards.min())
    seqs = task.sequences_from_index(torch.tensor([0, int(q.argmax())]))
    log_r = task.log_reward(seqs).double()
    assert log_r[1] == pytest.approx(math.log(10.0), abs=1e-6)
    assert log_r[0] == pytest.approx(math.log(float(rewards[0])), abs=1e-5)


def test_modes_are_the_top_half_percent(task: MoleculeString) -> None:
    rewards = task.reward_table
    modes = task.mode_index()
    assert task.n_modes == 805
    other = torch.ones(N, dtype=torch.bool)
    other[modes] = False
    assert float(rewards[modes].min()) >= float(rewards[other].max())
    assert bool(task.is_valid(task.sequences_from_index(modes)).all())


@pytest.mark.parametrize("mdp", ["fill", "prepend_append"])
def test_target_policy_is_exact(mdp: str) -> None:
    """The policy that follows the true flows samples P* exactly: TV ≈ 0, Acc ≈ 1."""
    task = MoleculeString(mdp=mdp)
    assert task.enumerable
    p = exact_distribution(task, target_policy(task))
    out = exact_sequence_metrics(task, p)
    assert out["tv"] < 1e-6 and out["acc"] > 1 - 1e-6
    uniform = torch.full((N,), 1.0 / N, dtype=torch.float64)
    assert exact_sequence_metrics(task, uniform)["tv"] > 0.5


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("mdp", ["fill", "prepend_append"])
def test_check_gfn_env(direction: str, mdp: str) -> None:
    env = gym.make("gfn_envs/MoleculeString-v0", direction=direction, mdp=mdp)
    check_gfn_env(env)


def test_guide_is_the_sequence_default(task: MoleculeString) -> None:
    guide = task.default_guide()
    assert guide is not None and type(guide).__name__ == "SubstructureGuide"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mdp": "grow"}, "mdp"),
        ({"alpha": 0.0}, "alpha"),
        ({"r_min": 0.0}, "r_min"),
        ({"r_max": -1.0}, "r_max"),
        ({"mode_fraction": 0.0}, "mode_fraction"),
        ({"mode_fraction": 2.0}, "mode_fraction"),
    ],
)
def test_bad_kwargs(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MoleculeString(**kwargs)


def test_backward_start_with_an_unknown_block_is_refused() -> None:
    env = gym.make("gfn_envs/MoleculeString-v0", direction="backward")
    with pytest.raises(ValueError, match=r"options\['state'\] must hold symbols in \[0, 10\]"):
        env.reset(options={"state": [0, 0, 0, 0, 11]})
    _, info = env.reset(options={"state": [0, 0, 0, 0, 10]})
    np.testing.assert_array_equal(info["state"], [0, 0, 0, 0, 10])
