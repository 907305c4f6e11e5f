"""Policy-dependent reward wrappers: the trajectory identities, both directions, both env types."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import Tensor

from gfn_envs.env import GFlowNetEnv, GFlowNetVectorEnv
from gfn_envs.exact import target_policy
from gfn_envs.tasks.hypergrid import HyperGrid
from gfn_envs.wrappers import (
    BackwardPolicyReward,
    PolicyDependentReward,
    VectorBackwardPolicyReward,
    VectorPolicyDependentReward,
)

HG = "gfn_envs.tasks.hypergrid:HyperGrid"
KW = {"ndim": 2, "height": 5, "R0": 0.01}


class MaskedMLP(torch.nn.Module):
    """A random (non-uniform) policy (obs, mask) -> logits; it returns log-probabilities."""

    def __init__(self, obs_dim: int, n: int, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(obs_dim, 16), torch.nn.Tanh(), torch.nn.Linear(16, n)
        )
        with torch.no_grad():
            self.net[2].weight.mul_(5.0)

    def forward(self, obs: Tensor, mask: Tensor) -> Tensor:
        return self.net(obs).masked_fill(~mask, -torch.inf).log_softmax(dim=1)


def _policies(task: HyperGrid) -> tuple[MaskedMLP, MaskedMLP]:
    return MaskedMLP(task.obs_dim, task.n_actions, 0), MaskedMLP(
        task.obs_dim, task.n_backward_actions, 1
    )


def _lp(policy, states: Tensor, mask: Tensor, action: int, task: HyperGrid) -> float:
    return float(policy(task.encode(states), mask)[0, action].detach())


def _expected_forward(task, pf, pb, log_z, entropy, states: list[Tensor], actions: list[int]):
    """log[R(x) P_B(τ|x)] − log Z [− log P_F(τ)], term by term along the trajectory."""
    log_pb = log_pf = 0.0
    for s, a in zip(states, actions, strict=True):
        log_pf += _lp(pf, s, task.forward_mask(s), a, task)
        if a != task.exit_action:
            child = task.step(s, torch.tensor([a]))
            log_pb += _lp(pb, child, task.backward_mask(child), a, task)
    x = states[-1]
    value = float(task.log_reward(x)[0]) + log_pb - log_z
    return value - log_pf if entropy else value


@pytest.mark.parametrize("entropy", [False, True])
def test_forward_identity_single_env(entropy: bool) -> None:
    env = GFlowNetEnv(HG, **KW)
    task = env.task
    pf, pb = _policies(task)
    wrapped = PolicyDependentReward(
        env, backward_policy=pb, log_z=1.3, forward_policy=pf, entropy=entropy
    )
    rng = np.random.default_rng(0)
    for episode in range(20):
        obs, info = wrapped.reset(seed=episode)
        states, actions, total, done = [], [], 0.0, False
        while not done:
            a = int(rng.choice(np.flatnonzero(info["action_mask"])))
            states.append(torch.as_tensor(info["state"]).unsqueeze(0))
            actions.append(a)
            obs, r, done, _, info = wrapped.step(a)
            total += r
        expected = _expected_forward(task, pf, pb, 1.3, entropy, states, actions)
        assert total == pytest.approx(expected, abs=1e-4)


def test_target_policy_makes_the_soft_return_zero() -> None:
    """With P_F the exact target, uniform P_B and log Z = log Z*, every trajectory has return 0."""
    env = GFlowNetEnv(HG, **KW)
    wrapped = PolicyDependentReward(
        env, "uniform", log_z="exact", forward_policy=target_policy(env), entropy=True
    )
    rng = np.random.default_rng(1)
    for _ in range(20):
        _, info = wrapped.reset()
        total, done = 0.0, False
        while not done:
            _, r, done, _, info = wrapped.step(int(rng.choice(np.flatnonzero(info["action_mask"]))))
            total += r
        assert total == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("mode", ["same_step", "next_step", "disabled"])
@pytest.mark.parametrize("entropy", [False, True])
def test_forward_identity_vector_env(mode: str, entropy: bool) -> None:
    n = 8
    venv = GFlowNetVectorEnv(n, HG, autoreset_mode=mode, **KW)
    task = venv.task
    pf, pb = _policies(task)
    rewarded = PolicyDependentReward(venv, pb, log_z=-0.4, forward_policy=pf, entropy=entropy)
    assert isinstance(rewarded, VectorPolicyDependentReward)
    wrapped = gym.wrappers.vector.RecordEpisodeStatistics(rewarded)
    rng = np.random.default_rng(2)
    _, info = wrapped.reset(seed=0)
    traj = [([], []) for _ in range(n)]
    totals, checked = np.zeros(n), 0
    for _ in range(3 * task.max_length):
        mask = info["action_mask"]  # the mask of each returned state, finished rows included
        legal_now = rewarded.action_masks()  # empty for finished rows, whose action is ignored
        actions = np.array([rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in mask])
        prev = info["state"].copy()
        _, r, term, _, info = wrapped.step(actions)
        for i in range(n):
            if legal_now[i].any():
                traj[i][0].append(torch.as_tensor(prev[i]).unsqueeze(0))
                traj[i][1].append(int(actions[i]))
                totals[i] += r[i]
            else:
                assert r[i] == 0.0
            if term[i] and traj[i][1]:
                expected = _expected_forward(task, pf, pb, -0.4, entropy, *traj[i])
                assert totals[i] == pytest.approx(expected, abs=1e-4)
                if mode != "disabled":
                    assert info["episode"]["r"][i] == pytest.approx(expected, abs=1e-4)
                traj[i], totals[i], checked = ([], []), 0.0, checked + 1
    assert checked >= n


def test_forward_and_backward_wrappers_mirror_each_other() -> None:
    """Forward (entropy) return F and backward (entropy, exit_term) return B of the same τ obey
    F + B = log R(x) − log Z, since B = log P_F(τ) − log P_B(τ|x)."""
    fenv = GFlowNetEnv(HG, **KW)
    task = fenv.task
    pf, pb = _policies(task)
    forward = PolicyDependentReward(fenv, pb, log_z=0.7, forward_policy=pf, entropy=True)
    backward = BackwardPolicyReward(
        gym.wrappers.TimeLimit(GFlowNetEnv(HG, direction="backward", **KW), 100),
        forward_policy=pf,
        backward_policy=pb,
        entropy=True,
        exit_term=True,
    )
    rng = np.random.default_rng(3)
    for _ in range(15):
        _, info = forward.reset()
        f_total, moves, done = 0.0, [], False
        while not done:
            a = int(rng.choice(np.flatnonzero(info["action_mask"])))
            if a != task.exit_action:
                moves.append((info["state"].copy(), a))
            _, r, done, _, info = forward.step(a)
            f_total += r
        x = info["state"]
        if not moves:
            continue
        _, binfo = backward.reset(options={"state": x})
        b_total, bdone = 0.0, False
        for s, a in reversed(moves):
            b = int(task.backward_action(torch.as_tensor(s).unsqueeze(0), torch.tensor([a]))[0])
            assert binfo["action_mask"][b]
            _, r, bdone, _, binfo = backward.step(b)
            b_total += r
        assert bdone
        log_r = float(task.log_reward(torch.as_tensor(x).unsqueeze(0))[0])
        assert f_total + b_total == pytest.approx(log_r - 0.7, abs=1e-4)


@pytest.mark.parametrize("mode", ["same_step", "next_step"])
def test_backward_identity_vector_env(mode: str) -> None:
    """Backward return = Σ log P_F(s'|s) + log P_F(exit|x) − Σ log P_B(s|s'), per episode."""
    n = 6
    venv = GFlowNetVectorEnv(n, HG, direction="backward", autoreset_mode=mode, **KW)
    task = venv.task
    pf, pb = _policies(task)
    wrapped = BackwardPolicyReward(venv, pf, backward_policy=pb, entropy=True, exit_term=True)
    assert isinstance(wrapped, VectorBackwardPolicyReward)
    rng = np.random.default_rng(4)
    _, info = wrapped.reset(seed=0)
    expected, totals, checked = np.zeros(n), np.zeros(n), 0
    starts = [True] * n
    for _ in range(4 * task.max_length):
        mask, prev = info["action_mask"], info["state"].copy()
        actions = np.array([rng.choice(np.flatnonzero(m)) if m.any() else 0 for m in mask])
        _, r, term, _, info = wrapped.step(actions)
        for i in np.flatnonzero(mask.any(axis=1)):
            s = torch.as_tensor(prev[i]).unsqueeze(0)
            if starts[i]:
                expected[i] += _lp(pf, s, task.forward_mask(s), task.exit_action, task)
                starts[i] = False
            parent = task.backward_step(s, torch.tensor([int(actions[i])]))
            expected[i] += _lp(pf, parent, task.forward_mask(parent), int(actions[i]), task)
            expected[i] -= _lp(pb, s, task.backward_mask(s), int(actions[i]), task)
            totals[i] += r[i]
        for i in np.flatnonzero(term):
            assert totals[i] == pytest.approx(expected[i], abs=1e-4)
            expected[i], totals[i], starts[i], checked = 0.0, 0.0, True, checked + 1
    assert checked >= n


def test_backward_guide_reward_is_the_guide_log_prob() -> None:
    env = GFlowNetEnv(HG, direction="backward", **KW)
    task = env.task
    guide = task.default_guide()
    wrapped = BackwardPolicyReward(env, forward_policy="uniform", guide=guide)
    x = torch.tensor([[4, 0]])
    wrapped.reset(options={"state": x[0].numpy()})
    _, r, _, _, _ = wrapped.step(0)
    parent = torch.tensor([[3, 0]])
    logits = torch.log(torch.full((1, 3), 1 / 3))
    assert r == pytest.approx(float(guide.log_prob(parent, torch.tensor([0]), logits, x)[0]))
    # [3, 0] has R = R0, so the guide caps its exit: moving right is far likelier than 1/3
    assert r > math.log(0.49)


def test_recompute_rewards_follows_a_changed_backward_policy() -> None:
    env = GFlowNetEnv(HG, **KW)
    task = env.task
    _, pb = _policies(task)
    wrapped = PolicyDependentReward(env, "uniform", log_z=0.0)
    states = torch.tensor([[0, 0], [1, 0], [1, 1], [2, 3]])
    actions = torch.tensor([0, 1, 0, 2])
    before = wrapped.recompute_rewards(states, actions)
    assert before[:3].tolist() == pytest.approx([0.0, math.log(0.5), math.log(0.5)])
    assert float(before[3]) == pytest.approx(float(task.log_reward(states[3:])[0]))
    wrapped.set_backward_policy(pb)
    after = wrapped.recompute_rewards(states, actions)
    children = task.step(states[:3], actions[:3])
    log_pb = pb(task.encode(children), task.backward_mask(children)).gather(1, actions[:3, None])
    assert after[:3].tolist() == pytest.approx(log_pb.squeeze(1).tolist(), abs=1e-6)
    assert float(after[3]) == pytest.approx(float(before[3]))


def test_learned_log_z_is_read_live() -> None:
    log_z = torch.nn.Parameter(torch.tensor(0.0))
    wrapped = PolicyDependentReward(GFlowNetEnv(HG, **KW), "uniform", log_z=log_z)
    exit_ = wrapped.model.task.exit_action
    wrapped.reset()
    r0 = wrapped.step(exit_)[1]
    with torch.no_grad():
        log_z.fill_(2.0)
    wrapped.reset()
    assert wrapped.step(exit_)[1] == pytest.approx(r0 - 2.0)


def test_bad_policy_outputs_raise_clear_errors() -> None:
    env = GFlowNetEnv(HG, **KW)

    def wrong_shape(obs: Tensor, mask: Tensor) -> Tensor:
        return torch.zeros(len(obs), 7)

    def nan_logits(obs: Tensor, mask: Tensor) -> Tensor:
        return torch.full(mask.shape, math.nan)

    def plus_inf(obs: Tensor, mask: Tensor) -> Tensor:
        return torch.zeros(mask.shape).masked_fill(mask, math.inf)

    def no_legal_mass(obs: Tensor, mask: Tensor) -> Tensor:
        return torch.zeros(mask.shape).masked_fill(mask, -math.inf)

    def integer_logits(obs: Tensor, mask: Tensor) -> Tensor:
        return torch.zeros(mask.shape, dtype=torch.long)

    for policy, error, message in [
        (wrong_shape, ValueError, "backward_policy must return logits of shape"),
        (nan_logits, ValueError, "NaN or \\+inf"),
        (plus_inf, ValueError, "NaN or \\+inf"),
        (no_legal_mass, ValueError, "-inf on every legal action"),
        (integer_logits, TypeError, "floating-point"),
    ]:
        wrapped = PolicyDependentReward(env, backward_policy=policy)
        wrapped.reset()
        with pytest.raises(error, match=message):
            wrapped.step(0)
            wrapped.step(1)  # [1, 1] has two parents
    wrapped = PolicyDependentReward(env, "uniform", forward_policy=wrong_shape, entropy=True)
    wrapped.reset()
    with pytest.raises(ValueError, match="forward_policy.*shape"):
        wrapped.step(0)


def test_policies_return_logits_normalised_over_the_legal_actions() -> None:
    """Un-normalised logits, with any per-state offset and any value on illegal actions, give the
    rewards of the log-probabilities they define."""
    task = GFlowNetEnv(HG, **KW).task
    pf, pb = _policies(task)

    def shifted(policy: MaskedMLP):
        def logits(obs: Tensor, mask: Tensor) -> Tensor:
            return (policy(obs, mask) + 3.0 * obs[:, :1] - 1.0).masked_fill(~mask, 25.0)

        return logits

    states = torch.tensor([[0, 0], [1, 0], [1, 1], [2, 3], [4, 4]])
    actions = torch.tensor([0, 1, 0, 2, 2])
    reference = PolicyDependentReward(GFlowNetEnv(HG, **KW), pb, 0.3, pf, entropy=True)
    raw = PolicyDependentReward(GFlowNetEnv(HG, **KW), shifted(pb), 0.3, shifted(pf), entropy=True)
    torch.testing.assert_close(
        raw.recompute_rewards(states, actions), reference.recompute_rewards(states, actions)
    )


def test_bad_arguments_raise_clear_errors() -> None:
    env = GFlowNetEnv(HG, **KW)
    with pytest.raises(ValueError, match="backward_policy must be 'uniform'"):
        PolicyDependentReward(env, backward_policy="maxent")
    with pytest.raises(TypeError, match="backward_policy"):
        PolicyDependentReward(env, backward_policy=3)
    with pytest.raises(ValueError, match="entropy=True needs a forward_policy"):
        PolicyDependentReward(env, entropy=True)
    with pytest.raises(ValueError, match="log_z"):
        PolicyDependentReward(env, log_z="learned")
    with pytest.raises(ValueError, match="log_z must be finite"):
        PolicyDependentReward(env, log_z=math.inf)
    with pytest.raises(ValueError, match="backward env"):
        BackwardPolicyReward(env)
    with pytest.raises(ValueError, match="forward env"):
        PolicyDependentReward(GFlowNetEnv(HG, direction="backward", **KW))
    with pytest.raises(TypeError, match="guide"):
        BackwardPolicyReward(GFlowNetEnv(HG, direction="backward", **KW), guide=object())
    with pytest.raises(RuntimeError, match="reset"):
        PolicyDependentReward(env).step(0)


def test_wrapped_envs_pass_gymnasium_and_sb3_checkers() -> None:
    """Both wrappers keep the Gymnasium contract (checkers step them with unmasked random actions)."""
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    forward = PolicyDependentReward(
        GFlowNetEnv(HG, **KW), "uniform", forward_policy="uniform", entropy=True
    )
    backward = BackwardPolicyReward(
        GFlowNetEnv(HG, direction="backward", **KW),
        backward_policy="uniform",
        entropy=True,
        exit_term=True,
    )
    for env in (forward, backward):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "the env is wrapped" notice
            check_env(env, skip_render_check=True)
            sb3_check_env(env)
