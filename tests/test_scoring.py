"""The scoring layer: every formula against a hand computation, and the guide convention."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from gfn_envs.guides import ExitCapGuide, guide_spec, make_guide, register_guide
from gfn_envs.scoring import (
    Guide,
    backward_costs,
    backward_log_probs,
    clip_log_rewards,
    forward_costs,
    forward_log_probs,
    gather,
    guided_log_probs,
    masked_log_softmax,
    policy_log_probs,
    uniform_log_probs,
    uniform_policy,
)
from gfn_envs.tasks.hypergrid import HyperGrid

GRID = HyperGrid(ndim=2, height=8, R0=0.01)  # actions: +x, +y, exit; backward: −x, −y
LOW = torch.tensor([[3, 3]])  # d = |2·3 − 7| = 1 on both axes: outside the bands, R = R0
HIGH = torch.tensor([[0, 0]])  # a corner: inside the outer band


def constant(*logits: float):
    """A policy giving the same logits in every state."""
    row = torch.tensor(logits)

    def policy(obs: Tensor, mask: Tensor) -> Tensor:
        return row.expand(len(obs), len(row))

    return policy


# ---------------------------------------------------------------------------- the policy
def test_masked_log_softmax_by_hand() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])
    mask = torch.tensor([[True, False, True], [False, True, False]])
    z = math.log(math.e + math.e**3)
    expected = torch.tensor([[1.0 - z, -math.inf, 3.0 - z], [-math.inf, 0.0, -math.inf]])
    torch.testing.assert_close(masked_log_softmax(logits, mask), expected)


def test_uniform_policy_by_hand() -> None:
    mask = torch.tensor([[True, True, False], [True, True, True]])
    expected = torch.tensor([[-math.log(2), -math.log(2), -math.inf], [-math.log(3)] * 3])
    torch.testing.assert_close(uniform_log_probs(mask), expected)
    torch.testing.assert_close(uniform_policy(torch.zeros(2, 4), mask), expected)
    torch.testing.assert_close(policy_log_probs(None, torch.zeros(2, 4), mask), expected)


def test_policy_log_probs_ignore_offsets_masked_values_and_extra_columns() -> None:
    """Logits are defined up to a per-state constant; masked entries and columns past n (an
    agent's log-flow head) are ignored; log-probabilities are valid logits."""
    obs = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=torch.bool)
    weight = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    expected = masked_log_softmax(obs @ weight, mask)

    def shifted(o: Tensor, m: Tensor) -> Tensor:
        logits = (o @ weight + 10.0 * o[:, :1]).masked_fill(~m, 99.0)
        return torch.cat([logits, torch.full((len(o), 1), -7.0)], dim=1)  # a flow column

    torch.testing.assert_close(policy_log_probs(shifted, obs, mask), expected)
    torch.testing.assert_close(policy_log_probs(lambda o, m: expected, obs, mask), expected)
    assert gather(expected, torch.tensor([1, 2, 1, 0])).tolist() == pytest.approx(
        [float(expected[0, 1]), float(expected[1, 2]), float(expected[2, 1]), float(expected[3, 0])]
    )


# ---------------------------------------------------------------------------- transitions
def test_forward_and_backward_log_probs_use_the_right_masks() -> None:
    """log P_F at [7, 2] (only +y and exit legal) and log P_B at [0, 5] (only −y legal)."""
    policy = constant(1.0, 2.0, 3.0)
    states = torch.tensor([[7, 2], [7, 2], [3, 3]])
    actions = torch.tensor([1, 2, 0])
    lp = forward_log_probs(GRID, policy, states, actions)
    z = math.log(math.e**2 + math.e**3)
    full = math.log(math.e + math.e**2 + math.e**3)
    assert lp.tolist() == pytest.approx([2.0 - z, 3.0 - z, 1.0 - full])
    children = torch.tensor([[0, 5], [4, 4]])
    lb = backward_log_probs(GRID, constant(0.3, -0.8), children, torch.tensor([1, 0]))
    assert lb.tolist() == pytest.approx([0.0, 0.3 - math.log(math.exp(0.3) + math.exp(-0.8))])
    assert backward_log_probs(GRID, None, children, torch.tensor([1, 1])).tolist() == (
        pytest.approx([0.0, -math.log(2)])
    )


def test_exit_cap_guide_caps_the_exit_probability_for_logits_3_3_0() -> None:
    """P_F = softmax([3, 3, 0]) puts p = 1/(2e³ + 1) ≈ 0.024 on exit at a low-reward state; the
    guide gives exit min(p, 1e-5) and renormalises: 1e-5 / (1 − p + 1e-5) ≈ 1.025e-5 (capping the
    raw logit instead would give 2.5e-7). The same numbers for logits shifted by a constant."""
    guide = ExitCapGuide(GRID, threshold=math.log(0.01) + 1e-6, cap=math.log(1e-5))
    p_exit = 1.0 / (2 * math.e**3 + 1)
    p_move = math.e**3 / (2 * math.e**3 + 1)
    norm = 1 - p_exit + 1e-5
    states = LOW.expand(3, 2)
    actions = torch.tensor([0, 1, 2])
    for shift in (0.0, 7.0, -40.0):
        log_pf, log_pg = guided_log_probs(
            GRID, constant(3 + shift, 3 + shift, shift), states, actions, states, guide
        )
        assert log_pf.exp().tolist() == pytest.approx([p_move, p_move, p_exit], rel=1e-5)
        assert log_pg is not None
        assert log_pg.exp().tolist() == pytest.approx(
            [p_move / norm, p_move / norm, 1e-5 / norm], rel=1e-5
        )
    assert float(log_pg[2].exp()) == pytest.approx(1.025e-5, rel=1e-3)


def test_exit_cap_guide_leaves_high_reward_states_and_small_exits_alone() -> None:
    guide = ExitCapGuide(GRID, threshold=math.log(0.01) + 1e-6, cap=math.log(1e-5))
    log_pf = masked_log_softmax(
        torch.tensor([[3.0, 3.0, 0.0], [1.0, 2.0, -20.0]]),
        GRID.forward_mask(torch.cat([HIGH, LOW])),
    )
    states = torch.cat([HIGH, LOW])
    for a in range(3):
        actions = torch.full((2,), a)
        log_pg = guide.log_prob(states, actions, log_pf, states)
        # the corner is in the band (not capped); at LOW, P_F(exit) = 2.2e-10 is below the cap
        torch.testing.assert_close(log_pg, gather(log_pf, actions))


def test_guide_registry_round_trip_and_refusal() -> None:
    guide = ExitCapGuide(GRID, threshold=-3.0, cap=-9.0)
    spec = guide_spec(guide)
    assert spec == {"name": "ExitCapGuide", "config": {"threshold": -3.0, "cap": -9.0}}
    rebuilt = make_guide(GRID, spec)
    assert isinstance(rebuilt, ExitCapGuide) and isinstance(rebuilt, Guide)
    assert (rebuilt.task, rebuilt.threshold, rebuilt.cap) == (GRID, -3.0, -9.0)

    class Unregistered(ExitCapGuide):
        pass

    with pytest.raises(ValueError, match="register_guide"):
        guide_spec(Unregistered(GRID, threshold=0.0))
    with pytest.raises(ValueError, match="unknown guide 'Nope'"):
        make_guide(GRID, {"name": "Nope", "config": {}})
    with pytest.raises(TypeError, match="config"):
        register_guide(type("NoConfig", (), {}))
    with pytest.raises(ValueError, match="cap"):
        ExitCapGuide(GRID, threshold=0.0, cap=0.5)


# ---------------------------------------------------------------------------------- costs
def test_clip_log_rewards_by_hand() -> None:
    log_r = torch.tensor([-20.0, -12.0, -3.0])
    assert clip_log_rewards(log_r, -12.0).tolist() == [-12.0, -12.0, -3.0]
    assert clip_log_rewards(log_r, None) is log_r


def test_forward_costs_by_hand() -> None:
    """Moves: log P_F − log P_B; exit: log P_F(exit|x) − (max(log R, clip) − log Z)."""
    log_pf = torch.tensor([-0.5, -1.0, -0.2, -0.4])
    log_pb = torch.tensor([-0.7, -0.3, 0.0, 0.0])
    is_exit = torch.tensor([False, False, True, True])
    log_r = torch.tensor([0.0, 0.0, -15.0, -2.0])
    log_z = torch.tensor(1.5, requires_grad=True)
    costs = forward_costs(log_pf, log_pb, is_exit, log_r, log_z, clip=-12.0)
    expected = [0.2, -0.7, -0.2 - (-12.0 - 1.5), -0.4 - (-2.0 - 1.5)]
    assert costs.tolist() == pytest.approx(expected)
    (grad,) = torch.autograd.grad(costs.sum(), log_z)
    assert float(grad) == 2.0  # +1 per exit row
    no_pf = forward_costs(None, log_pb, is_exit, log_r, 1.5, clip=None)
    assert no_pf.tolist() == pytest.approx([0.7, 0.3, 15.0 + 1.5, 2.0 + 1.5])


def test_summed_forward_costs_are_the_tb_residual() -> None:
    """Σ_t c_t = log Z + Σ_t log P_F − Σ_t log P_B − log R̂(x) along a trajectory."""
    generator = torch.Generator().manual_seed(0)
    log_pf = -torch.rand(6, generator=generator)
    log_pb = torch.cat([-torch.rand(5, generator=generator), torch.zeros(1)])
    is_exit = torch.tensor([False] * 5 + [True])
    log_r = torch.full((6,), -30.0)
    costs = forward_costs(log_pf, log_pb, is_exit, log_r, 0.8, clip=-12.0)
    residual = 0.8 + float(log_pf.sum()) - float(log_pb.sum()) - (-12.0)
    assert float(costs.sum()) == pytest.approx(residual, rel=1e-6)


def test_backward_costs_by_hand() -> None:
    log_pb = torch.tensor([-0.5, -2.0])
    log_ref = torch.tensor([-1.2, -0.1])
    assert backward_costs(log_ref, log_pb).tolist() == pytest.approx([0.7, -1.9])
    assert backward_costs(log_ref).tolist() == pytest.approx([1.2, 0.1])
