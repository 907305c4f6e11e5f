"""Ehrlich functions: the closed form, feasibility masks, exact metrics and the env."""

from __future__ import annotations

import itertools
import math

import gymnasium as gym
import pytest
import torch

import gfn_envs  # noqa: F401  (registers the ids)
from gfn_envs import check_gfn_env
from gfn_envs.exact import exact_distribution, target_policy
from gfn_envs.metrics.sequences import exact_sequence_metrics
from gfn_envs.task import Task
from gfn_envs.tasks.ehrlich import Ehrlich, EhrlichFunction


@pytest.fixture(scope="module")
def function() -> EhrlichFunction:
    return EhrlichFunction(n_states=4, length=8, n_motifs=2, motif_length=4, seed=0)


@pytest.fixture(scope="module")
def every_sequence() -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(4), repeat=8)))


def test_structure(function: EhrlichFunction) -> None:
    allowed = function.allowed
    assert bool(allowed.diagonal().all())  # repeats are always feasible
    assert int((~allowed).sum(dim=1).max()) == 1  # one of the v − 2 = 2 candidates banned
    assert torch.allclose(function.transition_matrix.sum(dim=1), torch.ones(4, dtype=torch.double))
    assert bool((function.transition_matrix[~allowed] == 0).all())
    assert bool((function.spacings[:, 0] == 0).all())
    assert bool((function.spacings.diff(dim=1) > 0).all())
    assert int(function.spacings.max()) < 8 // 2
    chain = function.motifs.flatten()
    assert bool(allowed[chain[:-1], chain[1:]].all())  # motifs and junctions are feasible


def test_closed_form_by_brute_force(
    function: EhrlichFunction, every_sequence: torch.Tensor
) -> None:
    """f agrees with a direct per-sequence evaluation of the definition on 300 sequences."""
    gen = torch.Generator().manual_seed(0)
    sample = every_sequence[torch.randperm(len(every_sequence), generator=gen)[:300]]
    f = function(sample)
    k, q = function.motif_length, function.quantization
    for x, value in zip(sample.tolist(), f.tolist(), strict=True):
        feasible = all(function.allowed[a, b] for a, b in itertools.pairwise(x))
        expected = 1.0
        for motif, space in zip(function.motifs.tolist(), function.spacings.tolist(), strict=True):
            best = max(
                sum(x[loc + s] == m for s, m in zip(space, motif, strict=True))
                for loc in range(8 - space[-1])
            )
            expected *= math.floor(best * q / k) / q
        assert value == (expected if feasible else -math.inf)


def test_value_set_and_optimum(function: EhrlichFunction, every_sequence: torch.Tensor) -> None:
    f = function(every_sequence)
    feasible = torch.isfinite(f)
    levels = torch.unique(f[feasible])
    assert bool(torch.isin(levels, torch.arange(17, dtype=torch.double) / 16).all())
    assert float(levels.max()) == 1.0 and int((f == 1).sum()) >= 1
    x = function.optimal_solution()
    assert float(function(x.unsqueeze(0))[0]) == 1.0
    samples = function.sample_feasible(500, torch.Generator().manual_seed(1))
    assert bool(function.feasible(samples).all())


def test_quantization_coarsens_levels(every_sequence: torch.Tensor) -> None:
    coarse = EhrlichFunction(quantization=2, seed=0)
    f = coarse(every_sequence)
    assert set(torch.unique(f[torch.isfinite(f)]).tolist()) <= {0.0, 0.25, 0.5, 1.0}


@pytest.mark.parametrize("mdp", ["fill", "prepend_append"])
def test_masks_reach_exactly_the_feasible_sequences(
    mdp: str, function: EhrlichFunction, every_sequence: torch.Tensor
) -> None:
    task = Ehrlich(mdp=mdp)
    terminals = task.terminal_states()
    feasible = every_sequence[function.feasible(every_sequence)]
    assert torch.equal(terminals, feasible)  # both lexicographic
    states = task.all_states()
    assert bool(task.forward_mask(states).any(dim=1).all())  # no dead ends
    walks = Task.sample_terminal(task, 300, torch.Generator().manual_seed(0))  # masked walks
    assert bool(task.function.feasible(walks).all())


@pytest.mark.parametrize("mdp", ["fill", "prepend_append"])
def test_target_policy_is_exact(mdp: str) -> None:
    task = Ehrlich(mdp=mdp)
    p = exact_distribution(task, target_policy(task))
    out = exact_sequence_metrics(task, p)
    assert out["tv"] < 1e-6 and out["acc"] > 1 - 1e-6
    modes = task.terminal_states()[task.mode_index()]
    assert bool((task.fitness(modes) == 1).all()) and task.modes_found(modes) == len(modes)


def test_reward_transform() -> None:
    task = Ehrlich()
    x = task.function.optimal_solution().unsqueeze(0)
    assert float(task.log_reward(x)[0]) == pytest.approx(math.log(10.0), abs=1e-6)
    zero = task.terminal_states()[task.fitness(task.terminal_states()) == 0][:1]
    assert float(task.log_reward(zero)[0]) == pytest.approx(math.log(10.0) + 3 * math.log(1e-3))


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("mdp", ["fill", "prepend_append"])
def test_check_gfn_env(direction: str, mdp: str) -> None:
    check_gfn_env(gym.make("gfn_envs/Ehrlich-v0", direction=direction, mdp=mdp))


def test_large_instance_is_sampled_not_enumerated() -> None:
    task = Ehrlich(n_states=20, length=32, n_motifs=2, motif_length=4, seed=1)
    assert not task.enumerable
    x = task.sample_terminal(64, torch.Generator().manual_seed(0))
    assert bool(task.function.feasible(x).all())
    check_gfn_env(task)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_states": 1}, "n_states"),
        ({"n_motifs": 3}, "n_motifs"),
        ({"quantization": 5}, "quantization"),
        ({"quantization": 0}, "quantization"),
        ({"banned_fraction": 1.5}, "banned_fraction"),
        ({"seed": 1.0}, "seed"),
        ({"mdp": "grow"}, "mdp"),
        ({"alpha": 0.0}, "alpha"),
        ({"r_min": 0.0}, "r_min"),
    ],
)
def test_bad_kwargs(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Ehrlich(**kwargs)


def test_guide_is_the_sequence_default() -> None:
    """RL-G's substructure guide applies: on a backward step of a feasible x it scores the
    candidate children (those that are still ancestors of x) and gives them all the mass."""
    task = Ehrlich()
    guide = task.default_guide()
    assert type(guide).__name__ == "SubstructureGuide"
    x = task.sample_terminal(8, torch.Generator().manual_seed(0))
    guide.observe(x, task.log_reward(x))
    parents = x.clone()
    parents[:, :2] = -1  # two slots left to fill: two candidates each
    logits = torch.where(task.forward_mask(parents), 0.0, -torch.inf)
    actions = torch.stack([x[:, 0] * 8, x[:, 1] * 8 + 1], dim=1)  # write x_0 at 0 or x_1 at 1
    probs = torch.stack(
        [guide.log_prob(parents, actions[:, i], logits, x).exp() for i in range(2)], dim=1
    )
    assert torch.allclose(probs.sum(dim=1), torch.ones(8, dtype=probs.dtype))


@pytest.mark.parametrize("mdp", ["fill", "prepend_append"])
def test_infeasible_states_are_refused(mdp: str, function: EhrlichFunction) -> None:
    task = Ehrlich(mdp=mdp)
    banned = (~function.allowed).nonzero()[0].tolist()  # a banned transition u -> w
    x = task.function.optimal_solution().clone()
    x[2:4] = torch.tensor(banned)
    with pytest.raises(ValueError, match="completable to a feasible sequence"):
        task.validate_states(x.unsqueeze(0))
    env = gym.make("gfn_envs/Ehrlich-v0", mdp=mdp, direction="backward")
    with pytest.raises(ValueError, match=r"options\['state'\] must be completable"):
        env.reset(options={"state": x})
    assert torch.equal(task.validate_states(task.all_states()), task.all_states())
