"""The TRPO step of RL-T: the Gauss-Newton Fisher-vector product against autograd's double
backward of the KL gradient (the Hessian of the mean per-trajectory KL at θ' = θ), the accepted
steps against a reference step over rows built on that double backward (also on batches whose rows
repeat a few states, where the step runs over the distinct states), and the rejected line search.

Policies are small random MLPs over random observations; masks give rows with 1, 2, 3 and 4 legal
actions (one row has all but one action masked).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from gfn_agents.policies import mlp
from gfn_agents.trpo import (
    GaussNewtonFisher,
    _flat,
    conjugate_gradient,
    distinct_states,
    trpo_step,
)
from gfn_envs.scoring import masked_log_softmax, policy_kl

N_ROWS, OBS_DIM, N_ACTIONS, BATCH = 40, 6, 4, 8
ONES = torch.ones(N_ROWS)


def random_problem(
    seed: int, dtype: torch.dtype = torch.float32
) -> tuple[nn.Module, Tensor, Tensor, Tensor, Tensor]:
    """A random policy, observations, masks (1 to 4 legal actions), sampled actions, advantages."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = mlp(OBS_DIM, N_ACTIONS, (16, 16))
    with torch.no_grad():  # sharper logits than the default init, so p is far from uniform
        net[-1].weight.mul_(4.0)
    obs = torch.randn(N_ROWS, OBS_DIM, generator=gen)
    mask = torch.rand(N_ROWS, N_ACTIONS, generator=gen) < 0.6
    mask[:, -1] = True
    mask[0] = torch.tensor([False, False, False, True])  # all but one masked
    mask[1] = True
    counts = mask.sum(dim=1)
    assert {1, 2, 3, 4} <= set(counts.tolist())
    with torch.no_grad():
        probs = masked_log_softmax(net(obs), mask).exp()
    actions = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    advantages = torch.randn(N_ROWS, generator=gen)
    return net.to(dtype), obs.to(dtype), mask, actions, (advantages - advantages.mean()).to(dtype)


def log_probs_of(net: nn.Module, obs: Tensor, mask: Tensor) -> Tensor:
    return masked_log_softmax(net(obs), mask)


def double_backward_fisher(
    params: list[nn.Parameter], log_probs: Tensor, mask: Tensor, damping: float
) -> Callable[[Tensor], Tensor]:
    """(∇²D(θ) + λI)·v by autograd's double backward of ∇D, D = (1/B) Σ_rows KL(π_θ ‖ π_θ')."""
    kl = policy_kl(log_probs.detach(), log_probs, mask).sum() / BATCH
    kl_grad = _flat(torch.autograd.grad(kl, params, create_graph=True), params)

    def product(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(kl_grad @ v, params, retain_graph=True)
        return _flat(hv, params) + damping * v

    return product


def reference_trpo_step(
    net: nn.Module,
    obs: Tensor,
    mask: Tensor,
    actions: Tensor,
    advantages: Tensor,
    damping: float,
    cg_iters: int,
) -> dict[str, float]:
    """The TRPO step with the double-backward Fisher product (the implementation it replaces)."""
    params = list(net.parameters())
    log_probs = log_probs_of(net, obs, mask)
    old, rows = log_probs.detach(), torch.arange(len(actions))

    def surrogate(current: Tensor) -> Tensor:
        return ((current - old)[rows, actions].exp() * advantages).sum() / BATCH

    loss = surrogate(log_probs)
    grad = _flat(torch.autograd.grad(loss, params, retain_graph=True), params)
    fisher = double_backward_fisher(params, log_probs, mask, damping)
    direction, _ = conjugate_gradient(fisher, grad, cg_iters)
    full_step = -torch.sqrt(2 * 0.01 / (direction @ fisher(direction))) * direction
    start = nn.utils.parameters_to_vector(params).detach()
    with torch.no_grad():
        for k in range(20):
            nn.utils.vector_to_parameters(start + 0.5**k * full_step, params)
            current = log_probs_of(net, obs, mask)
            new_kl = float(policy_kl(current, old, mask).mean())
            if float(surrogate(current)) < float(loss) and new_kl <= 0.01:
                return {"trpo_accepted": 1.0, "trpo_step_fraction": 0.5**k, "trpo_kl": new_kl}
        nn.utils.vector_to_parameters(start, params)
    return {"trpo_accepted": 0.0, "trpo_step_fraction": 0.0, "trpo_kl": 0.0}


def seed_of(actions: Tensor, advantages: Tensor) -> Tensor:
    return advantages.new_zeros(N_ROWS, N_ACTIONS).index_put(
        (torch.arange(N_ROWS), actions), advantages
    )


def test_conjugate_gradient_solves_and_returns_the_product() -> None:
    gen = torch.Generator().manual_seed(0)
    root = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    matrix = root @ root.T + 0.1 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)

    def matvec(v: Tensor) -> Tensor:
        return matrix @ v

    x, product = conjugate_gradient(matvec, b, iters=20, tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(matrix, b))
    torch.testing.assert_close(product, matrix @ x, rtol=1e-10, atol=1e-12)
    x, product = conjugate_gradient(matvec, torch.zeros(6, dtype=torch.float64), iters=5)
    assert torch.equal(x, torch.zeros(6, dtype=torch.float64)) and torch.equal(product, x)
    two, two_product = conjugate_gradient(matvec, b, iters=2)
    assert float(torch.linalg.norm(matrix @ two - b)) > 1e-3  # iters bounds the work
    torch.testing.assert_close(two_product, matrix @ two, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("damping", [0.0, 1e-3, 0.1])
def test_gauss_newton_product_equals_double_backward(seed: int, damping: float) -> None:
    net, obs, mask, actions, advantages = random_problem(seed)
    params = list(net.parameters())
    log_probs = log_probs_of(net, obs, mask)
    reference = double_backward_fisher(params, log_probs, mask, damping)
    fisher = GaussNewtonFisher(
        params, log_probs, mask, seed_of(actions, advantages), ONES, BATCH, damping
    )
    gen = torch.Generator().manual_seed(100 + seed)
    for _ in range(3):
        v = torch.randn(len(fisher.gradient), generator=gen)
        expected = reference(v)
        scale = float(expected.abs().max())
        torch.testing.assert_close(fisher(v), expected, rtol=1e-5, atol=1e-5 * scale)


def test_gauss_newton_gradient_is_the_surrogate_gradient() -> None:
    net, obs, mask, actions, advantages = random_problem(3)
    params = list(net.parameters())
    log_probs = log_probs_of(net, obs, mask)
    ratio = (log_probs - log_probs.detach())[torch.arange(N_ROWS), actions].exp()
    surrogate = (ratio * advantages).sum() / BATCH
    expected = _flat(torch.autograd.grad(surrogate, params, retain_graph=True), params)
    fisher = GaussNewtonFisher(
        params, log_probs, mask, seed_of(actions, advantages / BATCH), ONES, BATCH, 1e-3
    )
    torch.testing.assert_close(fisher.gradient, expected, rtol=1e-6, atol=1e-7)


def test_gauss_newton_product_with_parameters_outside_the_graph() -> None:
    """A parameter the log-probabilities do not depend on has a zero Fisher block: F·v = λv there."""
    net, obs, mask, actions, advantages = random_problem(4)
    unused = nn.Parameter(torch.randn(5))
    params = [*net.parameters(), unused]
    log_probs = log_probs_of(net, obs, mask)
    fisher = GaussNewtonFisher(
        params, log_probs, mask, seed_of(actions, advantages), ONES, BATCH, 0.1
    )
    v = torch.randn(len(fisher.gradient))
    out = fisher(v)
    torch.testing.assert_close(out[-5:], 0.1 * v[-5:])
    assert torch.equal(fisher.gradient[-5:], torch.zeros(5))
    reference = double_backward_fisher(list(net.parameters()), log_probs, mask, 0.1)
    torch.testing.assert_close(out[:-5], reference(v[:-5]), rtol=1e-5, atol=1e-6)


Problem = tuple[nn.Module, Tensor, Tensor, Tensor, Tensor]


def assert_takes_reference_step(
    problem: Callable[[], Problem],
    damping: float,
    cg_iters: int,
    distinct: bool,
    kl_rel: float,
    atol: float,
) -> None:
    """``trpo_step`` on a fresh ``problem()`` (over its distinct states when ``distinct``, else
    over its rows) accepts the same candidate as the reference step over the rows on another, and
    lands on the same parameters to ``atol``."""
    net, obs, mask, actions, advantages = problem()
    reference_net = problem()[0]
    states_obs, states_mask, states = (
        distinct_states(obs, mask) if distinct else (obs, mask, torch.arange(len(obs)))
    )
    start = nn.utils.parameters_to_vector(net.parameters()).detach().clone()
    stats = trpo_step(
        params=list(net.parameters()),
        log_probs=log_probs_of(net, states_obs, states_mask),
        evaluate=lambda: log_probs_of(net, states_obs, states_mask),
        mask=states_mask,
        actions=actions,
        advantages=advantages,
        batch_size=BATCH,
        states=states,
        cg_iters=cg_iters,
        damping=damping,
    )
    expected = reference_trpo_step(reference_net, obs, mask, actions, advantages, damping, cg_iters)
    assert stats["trpo_accepted"] == 1.0
    assert stats["trpo_step_fraction"] == expected["trpo_step_fraction"]
    assert stats["trpo_kl"] == pytest.approx(expected["trpo_kl"], rel=kl_rel)
    moved = nn.utils.parameters_to_vector(net.parameters()).detach()
    assert float((moved - start).abs().max()) > 1e-3
    torch.testing.assert_close(
        moved, nn.utils.parameters_to_vector(reference_net.parameters()), rtol=0.0, atol=atol
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("damping", "cg_iters"), [(1e-3, 10), (0.1, 10), (1e-3, 2)])
def test_trpo_step_takes_the_reference_step(seed: int, damping: float, cg_iters: int) -> None:
    """In float64, where both products are exact to about 1e-12. In float32 they differ by about
    1e-7 relative, and ten CG iterations on these sharp random policies amplify that to steps
    differing by up to 5e-3 (on steps of 0.1), as far as either float32 step is from the float64
    one: float32 CG is not reproducible to 1e-6 under any change of summation order."""
    assert_takes_reference_step(
        lambda: random_problem(seed, torch.float64), damping, cg_iters, False, 1e-6, 1e-6
    )


def repeated_problem(seed: int, rows: int = 120) -> Problem:
    """A float64 random problem whose ``rows`` rows repeat 12 states: 10 observations, two of them
    with a second mask (the same observation with other legal actions is another state). Actions
    and advantages are drawn per row, so a state's rows take different actions."""
    net, obs, mask, _, _ = random_problem(seed, torch.float64)
    gen = torch.Generator().manual_seed(1000 + seed)
    obs, mask = torch.cat([obs[:10], obs[:2]]), torch.cat([mask[:10], mask[10:12]])
    mask[10:] = mask[10:] | (torch.arange(N_ACTIONS) == 0)
    mask[:2, 0] = False  # so the second masks differ from the first
    pick = torch.cat([torch.arange(12), torch.randint(0, 12, (rows - 12,), generator=gen)])
    obs, mask = obs[pick], mask[pick]
    with torch.no_grad():
        probs = log_probs_of(net, obs, mask).exp()
    actions = torch.multinomial(probs, 1, generator=gen).squeeze(1)
    advantages = torch.randn(rows, generator=gen, dtype=torch.float64)
    return net, obs, mask, actions, advantages - advantages.mean()


def test_distinct_states_recover_every_row() -> None:
    _, obs, mask, _, _ = repeated_problem(0)
    unique_obs, unique_mask, states = distinct_states(obs, mask)
    assert len(unique_obs) == len(unique_mask) == 12  # the two shared observations count twice
    assert len(torch.unique(unique_obs, dim=0)) == 10
    assert torch.equal(unique_obs[states], obs) and torch.equal(unique_mask[states], mask)
    assert unique_mask.dtype == torch.bool


def test_gauss_newton_product_over_distinct_states_equals_the_product_over_rows() -> None:
    """Weighted by the rows per state, the product and the gradient over the 12 distinct states
    equal the double backward and the surrogate gradient over all 120 rows."""
    net, obs, mask, actions, advantages = repeated_problem(1)
    params = list(net.parameters())
    row_log_probs = log_probs_of(net, obs, mask)
    unique_obs, unique_mask, states = distinct_states(obs, mask)
    counts = torch.bincount(states).double()
    seed = torch.zeros(12, N_ACTIONS, dtype=torch.float64).index_put(
        (states, actions), advantages / BATCH, accumulate=True
    )
    fisher = GaussNewtonFisher(
        params, log_probs_of(net, unique_obs, unique_mask), unique_mask, seed, counts, BATCH, 1e-3
    )
    rows = torch.arange(len(actions))
    surrogate = ((row_log_probs - row_log_probs.detach())[rows, actions].exp() * advantages).sum()
    expected = _flat(torch.autograd.grad(surrogate / BATCH, params, retain_graph=True), params)
    torch.testing.assert_close(fisher.gradient, expected, rtol=1e-10, atol=1e-12)
    reference = double_backward_fisher(params, row_log_probs, mask, 1e-3)
    v = torch.randn(len(expected), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(fisher(v), reference(v), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cg_iters", [10, 2])
def test_trpo_step_over_distinct_states_takes_the_reference_step(seed: int, cg_iters: int) -> None:
    """120 rows of 12 states: the step over the distinct states, weighted by their rows, is the
    reference step over the rows (float64, as in the test above). With 2 CG iterations the two
    agree to 1e-16; with 10, CG amplifies the different summation order to about 2e-10 on steps
    of 0.02 to 0.04 (measured), hence the tolerance of 1e-8."""
    assert_takes_reference_step(lambda: repeated_problem(seed), 1e-3, cg_iters, True, 1e-7, 1e-8)


def test_rejected_line_search_leaves_parameters_bitwise_unchanged() -> None:
    """Every candidate fails the KL test (``evaluate`` reports a policy far from π_θ), so θ is
    restored exactly after the 20 trial steps."""
    net, obs, mask, actions, advantages = random_problem(5)
    before = [p.detach().clone() for p in net.parameters()]
    far = masked_log_softmax(torch.zeros(N_ROWS, N_ACTIONS), mask)
    trials = []

    def evaluate() -> Tensor:
        trials.append(nn.utils.parameters_to_vector(net.parameters()).clone())
        return far

    stats = trpo_step(
        params=list(net.parameters()),
        log_probs=log_probs_of(net, obs, mask),
        evaluate=evaluate,
        mask=mask,
        actions=actions,
        advantages=advantages,
        batch_size=BATCH,
        max_kl=1e-4,
    )
    assert stats == {"trpo_accepted": 0.0, "trpo_step_fraction": 0.0, "trpo_kl": 0.0}
    assert len(trials) == 20 and not torch.equal(trials[0], trials[-1])
    for p, b in zip(net.parameters(), before, strict=True):
        assert torch.equal(p, b)


def test_zero_advantages_leave_parameters_unchanged() -> None:
    """g = 0 gives a zero direction and zero curvature: no step, no line search."""
    net, obs, mask, actions, _ = random_problem(6)
    before = nn.utils.parameters_to_vector(net.parameters()).detach().clone()
    stats = trpo_step(
        params=list(net.parameters()),
        log_probs=log_probs_of(net, obs, mask),
        evaluate=lambda: pytest.fail("the line search must not run"),
        mask=mask,
        actions=actions,
        advantages=torch.zeros(N_ROWS),
        batch_size=BATCH,
    )
    assert stats["trpo_accepted"] == 0.0
    assert torch.equal(nn.utils.parameters_to_vector(net.parameters()), before)
