"""The exact terminal distribution: against Monte Carlo through the vector env, against a plain
recursion over trajectories, and the target policy's exact sampling."""

from __future__ import annotations

import functools
import math

import gymnasium as gym
import pytest
import torch

from gfn_envs import GFlowNetVectorEnv, exact_distribution, metrics, target_policy
from gfn_envs.exact import ForwardPolicy, distribution_from_probs, target_probs
from gfn_envs.task import Task
from gfn_envs.tasks.hypergrid import HyperGrid
from gfn_envs.unwrap import task_of

HYPERGRID = "gfn_envs.tasks.hypergrid:HyperGrid"


def uniform(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Uniform over the legal actions."""
    return (mask.float() / mask.sum(1, keepdim=True)).log()


def linear_policy(task: Task, seed: int = 0) -> ForwardPolicy:
    """A fixed, far-from-uniform policy: masked softmax of a random linear map of the observation."""
    weight = torch.randn(
        task.obs_dim, task.n_actions, generator=torch.Generator().manual_seed(seed)
    )

    def policy(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax((2.0 * obs @ weight).masked_fill(~mask, -torch.inf), dim=1)

    return policy


def sample_terminal_indices(
    task_kwargs: dict, n_batches: int, num_envs: int, seed: int
) -> torch.Tensor:
    """Terminal objects sampled by the uniform masked policy through the vector env (autoreset
    disabled, so each batch is num_envs complete trajectories), as terminal_states() indices."""
    env = GFlowNetVectorEnv(
        num_envs, task=HYPERGRID, autoreset_mode="disabled", tensors=True, **task_kwargs
    )
    generator = torch.Generator().manual_seed(seed)
    out = []
    for batch in range(n_batches):
        _, info = env.reset(seed=seed + batch)
        done = torch.zeros(num_envs, dtype=torch.bool)
        while not bool(done.all()):
            mask = info["action_mask"] | done[:, None]
            actions = torch.multinomial(mask.float(), 1, generator=generator).squeeze(1)
            _, _, done, _, info = env.step(actions)
        out.append(env.task.terminal_index(info["state"]))
    return torch.cat(out)


def test_uniform_policy_exact_distribution_matches_monte_carlo() -> None:
    """N = 24,576 trajectories on 2x4. Every frequency must lie within 5 standard errors
    sqrt(p(1−p)/N) of the exact probability (a correct sampler fails this with probability
    < 16 · 6e-7 ≈ 1e-5), and the TV must be below 3× the expected TV of a correct sampler."""
    kwargs = {"ndim": 2, "height": 4}
    env = gym.make("gfn_envs/HyperGrid-v0", **kwargs)
    p = exact_distribution(env, uniform)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)
    indices = sample_terminal_indices(kwargs, n_batches=3, num_envs=8192, seed=0)
    n = len(indices)
    freq = metrics.empirical_distribution(indices, len(p))
    stderr = (p * (1 - p) / n).sqrt()
    assert bool(((freq - p).abs() <= 5 * stderr).all()), (freq - p).abs() / stderr
    assert metrics.tv(freq, p) < 3 * metrics.tv_noise_floor(p, n)
    # The bound has power: the target distribution, a different law, is rejected by it.
    p_star = env.unwrapped.true_distribution()
    assert not bool(((freq - p_star).abs() <= 5 * stderr).all())


def test_uniform_policy_closed_form_on_a_line() -> None:
    """On a 1-D grid of height H the uniform policy exits at x < H−1 with probability
    (1/2)^(x+1) and at the end with probability (1/2)^(H−1)."""
    height = 6
    p = exact_distribution(HyperGrid(ndim=1, height=height), uniform)
    expected = torch.tensor([0.5 ** (x + 1) for x in range(height - 1)] + [0.5 ** (height - 1)])
    torch.testing.assert_close(p, expected.double())


def test_exact_distribution_matches_a_recursion_over_trajectories() -> None:
    """P_F^T(x) = Σ over all trajectories ending at x of the product of P_F along them, computed
    by a memoised recursion that queries the policy one state at a time."""
    task = HyperGrid(ndim=3, height=3)
    policy = linear_policy(task)

    @functools.cache
    def probs(state: tuple[int, ...]) -> list[float]:
        s = torch.tensor([state])
        return policy(task.encode(s), task.forward_mask(s))[0].exp().tolist()

    @functools.cache
    def visit(state: tuple[int, ...]) -> float:
        if state == (0, 0, 0):
            return 1.0
        total = 0.0
        for d in range(task.ndim):
            if state[d] > 0:
                parent = state[:d] + (state[d] - 1,) + state[d + 1 :]
                total += visit(parent) * probs(parent)[d]
        return total

    expected = [visit(tuple(x)) * probs(tuple(x))[-1] for x in task.terminal_states().tolist()]
    p = exact_distribution(task, policy)
    torch.testing.assert_close(p, torch.tensor(expected, dtype=torch.float64), atol=1e-7, rtol=1e-6)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ndim": 2, "height": 8},
        {"ndim": 2, "height": 64, "R0": 0.01},
        {"ndim": 3, "height": 8, "reward": "cosine"},
        {"ndim": 4, "height": 5, "R0": 0.001},
        {"ndim": 1, "height": 2},
    ],
)
def test_target_policy_samples_the_target_exactly(kwargs: dict) -> None:
    env = gym.make("gfn_envs/HyperGrid-v0", **kwargs)
    p = exact_distribution(env, target_policy(env))
    p_star = env.unwrapped.true_distribution()
    assert metrics.tv(p, p_star) < 1e-5
    assert metrics.jsd(p, p_star) < 1e-9
    # In float64 throughout, the target flows give P* to rounding error.
    task = task_of(env)
    torch.testing.assert_close(distribution_from_probs(task, target_probs(task)), p_star)


def test_exact_distribution_accepts_tasks_envs_and_vector_envs() -> None:
    kwargs = {"ndim": 2, "height": 5}
    task = HyperGrid(**kwargs)
    reference = exact_distribution(task, uniform)
    for env in (
        gym.make("gfn_envs/HyperGrid-v0", **kwargs),
        gym.make_vec("gfn_envs/HyperGrid-v0", num_envs=2, **kwargs),
    ):
        torch.testing.assert_close(exact_distribution(env, uniform), reference)
        assert torch.equal(env.unwrapped.terminal_states(), task.terminal_states())
        torch.testing.assert_close(env.unwrapped.true_distribution(), task.true_distribution())


def test_public_enumeration_names_on_the_env() -> None:
    env = gym.make("gfn_envs/HyperGrid-v0", ndim=2, height=4, R0=0.01)
    unwrapped = env.unwrapped
    states = unwrapped.terminal_states()
    p_star = unwrapped.true_distribution()
    assert len(states) == len(p_star) == 16
    log_r = unwrapped.task.log_reward(states).double()
    torch.testing.assert_close(p_star, (log_r - unwrapped.log_partition()).exp())
    assert unwrapped.log_partition() == pytest.approx(
        math.log(sum(math.exp(v) for v in log_r.tolist()))
    )


def test_policy_with_the_wrong_output_shape_is_rejected() -> None:
    task = HyperGrid(ndim=2, height=4)
    with pytest.raises(ValueError, match=r"logits of shape \[16, 3\]"):
        exact_distribution(task, lambda obs, mask: torch.zeros(len(obs), 2))


def test_a_policy_returns_logits_normalised_over_the_legal_actions() -> None:
    """The scoring convention: raw logits, logits shifted per state, logits with junk on illegal
    actions and the log-probabilities they define all give the same exact distribution."""
    task = HyperGrid(ndim=2, height=4)
    policy = linear_policy(task, seed=2)  # returns log-probabilities

    def raw(obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        shift = 5.0 * obs[:, :1] - 3.0  # a different constant in every state
        return (policy(obs, mask) + shift).masked_fill(~mask, 40.0)  # ignored where masked

    p = exact_distribution(task, policy)
    torch.testing.assert_close(exact_distribution(task, raw), p, rtol=0, atol=1e-7)
    assert float((p - exact_distribution(task, uniform)).abs().sum()) > 0.1  # not uniform


def test_policy_without_a_distribution_is_rejected() -> None:
    task = HyperGrid(ndim=2, height=4)
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="no distribution over the legal actions"):
            exact_distribution(task, lambda obs, mask, v=value: torch.full(mask.shape, v))


def test_non_enumerable_task_and_non_env_are_rejected() -> None:
    class Opaque(HyperGrid):
        @property
        def enumerable(self) -> bool:
            return False

    with pytest.raises(ValueError, match="cannot be enumerated"):
        exact_distribution(Opaque(), uniform)
    with pytest.raises(TypeError, match="expected a gfn_envs task or environment"):
        exact_distribution(object(), uniform)
