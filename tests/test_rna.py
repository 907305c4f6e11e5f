"""RNABinding: the FLEXS check values, the cached batched oracle, rewards, metrics and the env."""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch

pytest.importorskip("RNA")

import gfn_envs  # noqa: E402,F401  (registers the ids)
from gfn_envs import check_gfn_env  # noqa: E402
from gfn_envs.metrics.sequences import discovery_metrics  # noqa: E402
from gfn_envs.tasks.rna import (  # noqa: E402
    L14_STARTS,
    RNA_TARGETS,
    RNABinding,
    RNABindingOracle,
    binding_fitness,
    binding_norm,
    from_strings,
    reverse_complement,
    to_strings,
)

START = "AUGGGCCGGACCCC"


@pytest.fixture(scope="module")
def task() -> RNABinding:
    return RNABinding()


def test_flexs_check_values() -> None:
    """L14_RNA1: norm = −36.414 and the start sequence AUGGGCCGGACCCC scores 0.5437."""
    assert binding_norm(RNA_TARGETS[0], 14) == pytest.approx(-36.414, abs=1e-9)
    assert L14_STARTS[0] == START
    assert binding_fitness(RNA_TARGETS[0], [START])[0] == pytest.approx(0.5437, abs=5e-5)
    oracle = RNABindingOracle(target=1, length=14)
    assert float(oracle(from_strings([START]))[0]) == pytest.approx(0.5437, abs=5e-5)


def test_perfect_complement_of_a_target_window_binds_at_full_strength() -> None:
    """The reverse complement of a GC-rich 14-nt window of the target reaches f ≈ 1, far above
    random sequences (f ≈ 0.3)."""
    window = RNA_TARGETS[0][55:69]
    f = binding_fitness(RNA_TARGETS[0], [reverse_complement(window)])[0]
    assert f > 1.0
    assert reverse_complement("ACGU") == "ACGU" and reverse_complement("AAC") == "GUU"


def test_strings_round_trip() -> None:
    seqs = torch.randint(4, (50, 14), generator=torch.Generator().manual_seed(0))
    assert torch.equal(from_strings(to_strings(seqs)), seqs)
    assert to_strings(torch.tensor([[0, 1, 2, 3]])) == ["ACGU"]
    with pytest.raises(ValueError, match="ACGU"):
        from_strings(["ACGT"])


def test_oracle_caches_and_counts_distinct_sequences() -> None:
    oracle = RNABindingOracle()
    gen = torch.Generator().manual_seed(1)
    first = torch.randint(4, (40, 14), generator=gen)
    batch = torch.cat([first, first[:10]])  # 10 repeats inside one batch
    values = oracle(batch)
    assert oracle.oracle_calls == 40 and oracle.queries == 50 and oracle.cache_size == 40
    assert torch.equal(values[40:], values[:10])
    direct = torch.from_numpy(binding_fitness(oracle.target, to_strings(batch)))
    assert torch.equal(values, direct)

    second = torch.cat([first[20:], torch.randint(4, (15, 14), generator=gen)])
    again = oracle(second)
    assert oracle.oracle_calls == 55  # only the 15 new sequences reached ViennaRNA
    assert oracle.queries == 85
    assert torch.equal(again[:20], values[20:40])
    assert torch.equal(again, torch.from_numpy(binding_fitness(oracle.target, to_strings(second))))


def test_oracle_rejects_bad_input() -> None:
    oracle = RNABindingOracle()
    with pytest.raises(ValueError, match="shape"):
        oracle(torch.zeros(3, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="0..3"):
        oracle(torch.full((2, 14), 4))
    with pytest.raises(ValueError, match="one length"):
        binding_fitness(RNA_TARGETS[0], ["ACGU", "ACG"])


def test_reward_is_the_documented_transform(task: RNABinding) -> None:
    seqs = task.from_strings([START, "A" * 14])
    f = task.fitness(seqs)
    assert f[1] < 0  # poly-A barely binds: the R_min floor applies
    log_r = task.log_reward(seqs).double()
    assert log_r[0] == pytest.approx(math.log(10.0) + 3 * math.log(float(f[0])), abs=1e-5)
    assert log_r[1] == pytest.approx(math.log(10.0) + 3 * math.log(1e-3), abs=1e-5)
    other = RNABinding(alpha=1.0, r_max=1.0)
    assert float(other.log_reward(seqs[:1])) == pytest.approx(math.log(float(f[0])), abs=1e-6)


def test_both_mdps_share_the_oracle_and_are_not_enumerable() -> None:
    fill, pend = RNABinding(mdp="fill"), RNABinding(mdp="prepend_append")
    assert not fill.enumerable and not pend.enumerable
    seqs = torch.randint(4, (8, 14), generator=torch.Generator().manual_seed(2))
    assert torch.equal(fill.log_reward(seqs), pend.log_reward(seqs))
    assert fill.n_actions == 4 * 14 + 1 and pend.n_actions == 2 * 4 + 1


def test_discovery_metrics() -> None:
    task = RNABinding(mode_threshold=0.9)
    mode = task.from_strings([reverse_complement(RNA_TARGETS[0][55:69])])
    randoms = torch.randint(4, (30, 14), generator=torch.Generator().manual_seed(3))
    seqs = torch.cat([mode, randoms, mode, randoms[:5]])
    out = discovery_metrics(task, seqs, k=2)
    f = task.fitness(torch.cat([mode, randoms]))
    assert out["modes_found"] == 1.0 and out["unique"] == 31.0
    top2 = f.topk(2)
    assert out["top_k_fitness"] == pytest.approx(float(top2.values.mean()))
    best = torch.cat([mode, randoms])[top2.indices]
    assert out["top_k_diversity"] == float((best[0] != best[1]).sum())
    assert out["max_fitness"] == pytest.approx(float(f.max()))
    assert out["oracle_calls"] == task.oracle_calls == 31
    rewards = task.log_reward(best).double().exp()
    assert out["top_k_reward"] == pytest.approx(float(rewards.mean()), rel=1e-6)
    assert bool(task.is_mode(mode)[0]) and task.modes_found(seqs) == 1
    with pytest.raises(ValueError, match="k must"):
        discovery_metrics(task, seqs, k=0)


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("mdp", ["fill", "prepend_append"])
def test_check_gfn_env(direction: str, mdp: str) -> None:
    env = gym.make("gfn_envs/RNABinding-v0", direction=direction, mdp=mdp)
    check_gfn_env(env)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": 5}, "target"),
        ({"target": "ACGT"}, "target"),
        ({"target": True}, "target"),
        ({"length": 0}, "length"),
        ({"length": 40}, "length"),
        ({"mdp": "grow"}, "mdp"),
        ({"alpha": -1.0}, "alpha"),
        ({"r_min": 0.0}, "r_min"),
        ({"r_max": math.inf}, "r_max"),
        ({"mode_threshold": math.nan}, "mode_threshold"),
    ],
)
def test_bad_kwargs(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        RNABinding(**kwargs)


def test_guide_is_the_sequence_default(task: RNABinding) -> None:
    guide = task.default_guide()
    assert guide is not None and type(guide).__name__ == "SubstructureGuide"
