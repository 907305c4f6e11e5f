"""``check_gfn_env``: Gymnasium's ``check_env`` plus the GFlowNet contract of a task.

The contract, checked on states visited by random forward walks (and on every state of enumerable
tasks small enough):

* ``backward_step(step(s, a), backward_action(s, a)) == s`` and ``forward_action`` inverts it;
  ``step_where`` and ``backward_step_where`` agree with ``step`` and ``backward_step``;
* masks agree with children and parents: each legal forward move has its undoing backward move legal
  at the child, and each legal backward move has its forward move legal at the parent;
* s0 has no parent, every other state has one; exit is legal exactly at terminal objects and their
  log-rewards are neither NaN nor +inf;
* every trajectory ends within ``max_length``; observations have the declared shape and bounds;
* enumerable tasks: ``all_states`` lists parents before children, ``state_index`` inverts it, the
  true distribution sums to 1 and Σ_x R(x) = Z*, and the exact DP of the uniform policy sums to 1;
* seeding is deterministic, in the forward and the backward direction.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils.env_checker import check_env
from torch import Tensor

from gfn_envs.exact import exact_distribution
from gfn_envs.task import Task
from gfn_envs.unwrap import task_of


class GFlowNetContractError(AssertionError):
    """A task or environment breaks the GFlowNet contract."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise GFlowNetContractError(message)


def _visited_states(task: Task, n_walks: int, generator: torch.Generator) -> Tensor:
    """All states visited by ``n_walks`` uniform random forward walks (s0 included)."""
    states = task.s0(n_walks)
    seen = [states]
    for _ in range(task.max_length):
        mask = task.forward_mask(states)
        moves = mask[:, : task.exit_action]
        live = moves.any(dim=1)
        if not bool(live.any()):
            return torch.cat(seen)
        states = states[live]
        actions = torch.multinomial(moves[live].float(), 1, generator=generator).squeeze(1)
        states = task.step(states, actions)
        seen.append(states)
    raise GFlowNetContractError(f"a forward walk is longer than max_length={task.max_length}")


def check_task(task: Task, n_walks: int = 64, seed: int = 0) -> None:
    """Check the batched GFlowNet contract of ``task`` (see the module docstring)."""
    generator = torch.Generator(device=task.device).manual_seed(seed)
    s0 = task.s0(2)
    _require(tuple(s0.shape) == (2, *task.state_shape), "s0(2) has the wrong shape")
    _require(not bool(task.backward_mask(s0).any()), "s0 has a legal backward action")
    states = _visited_states(task, n_walks, generator)
    if task.enumerable and len(task.all_states()) <= 20000:
        states = torch.cat([states, task.all_states()])

    fmask, bmask = task.forward_mask(states), task.backward_mask(states)
    _require(fmask.shape == (len(states), task.n_actions), "forward_mask has the wrong shape")
    _require(
        bmask.shape == (len(states), task.n_backward_actions), "backward_mask has the wrong shape"
    )
    initial = task.is_initial(states)
    _require(bool((bmask.any(dim=1) | initial).all()), "a state other than s0 has no parent")
    terminal = fmask[:, task.exit_action]
    _require(bool((task.is_terminal(states) == terminal).all()), "is_terminal disagrees with exit")
    _require(bool((fmask.any(dim=1)).all()), "a state has no legal forward action")
    if bool(terminal.any()):
        log_r = task.log_reward(states[terminal])
        _require(bool((log_r < math.inf).all()), "log_reward returned NaN or +inf")

    obs = task.encode(states)
    _require(obs.shape == (len(states), task.obs_dim), "encode() has the wrong shape")
    _require(obs.dtype == torch.float32, "encode() must return float32")
    _require(
        bool(((obs >= task.obs_low) & (obs <= task.obs_high)).all()),
        "an observation lies outside [obs_low, obs_high]",
    )

    for a in range(task.exit_action):
        rows = fmask[:, a].nonzero().squeeze(1)
        if len(rows) == 0:
            continue
        parents, actions = states[rows], torch.full_like(rows, a)
        children = task.step(parents, actions)
        back = task.backward_action(parents, actions)
        _require(
            bool(task.backward_mask(children).gather(1, back.unsqueeze(1)).all()),
            f"forward action {a}: the undoing backward action is masked at the child",
        )
        _require(
            torch.equal(task.backward_step(children, back), parents),
            f"forward action {a}: backward_step(step(s, a)) != s",
        )
        _require(
            torch.equal(task.forward_action(children, back), actions),
            f"forward action {a}: forward_action does not invert backward_action",
        )
        half = torch.arange(len(rows), device=rows.device) % 2 == 0
        _require(
            torch.equal(
                task.step_where(parents, actions, half),
                torch.where(half.view(-1, *[1] * (parents.dim() - 1)), children, parents),
            ),
            f"forward action {a}: step_where disagrees with step",
        )
        _require(
            torch.equal(
                task.backward_step_where(children, back, half),
                torch.where(half.view(-1, *[1] * (parents.dim() - 1)), parents, children),
            ),
            f"forward action {a}: backward_step_where disagrees with backward_step",
        )
    for b in range(task.n_backward_actions):
        rows = bmask[:, b].nonzero().squeeze(1)
        if len(rows) == 0:
            continue
        children, actions = states[rows], torch.full_like(rows, b)
        parents = task.backward_step(children, actions)
        fwd = task.forward_action(children, actions)
        _require(
            bool(task.forward_mask(parents).gather(1, fwd.unsqueeze(1)).all()),
            f"backward action {b}: the forward action is masked at the parent",
        )
        _require(
            torch.equal(task.step(parents, fwd), children),
            f"backward action {b}: step(backward_step(s', b)) != s'",
        )
    task.sample_terminal(n_walks, generator)
    if task.enumerable:
        _check_enumeration(task)


def _check_enumeration(task: Task) -> None:
    states = task.all_states()
    index = task.state_index(states)
    _require(
        torch.equal(index, torch.arange(len(states), device=index.device)),
        "state_index(all_states()) is not 0..N-1",
    )
    p_star = task.true_distribution()
    _require(abs(float(p_star.sum()) - 1.0) < 1e-9, "true_distribution does not sum to 1")
    log_r = task.log_reward(task.terminal_states()).double()
    _require(
        math.isclose(
            float(torch.logsumexp(log_r, 0)), task.log_partition(), rel_tol=1e-9, abs_tol=1e-9
        ),
        "Σ_x R(x) differs from exp(log_partition())",
    )

    def uniform(obs: Tensor, mask: Tensor) -> Tensor:
        return (mask.float() / mask.sum(1, keepdim=True)).log()

    p = exact_distribution(task, uniform)
    _require(abs(float(p.sum()) - 1.0) < 1e-5, "the exact distribution of a uniform policy != 1")
    from gfn_envs.exact import dag_structure

    dag = dag_structure(task)
    _require(bool((dag.dst > dag.src).all()), "all_states() lists a child before its parent")


def _rollout(env: gym.Env, seed: int, steps: int) -> list[np.ndarray]:
    obs, info = env.reset(seed=seed)
    out = [obs]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        legal = np.flatnonzero(info["action_mask"])
        obs, _, terminated, _, info = env.step(int(rng.choice(legal)))
        out.append(obs)
        if terminated:
            break
    return out


def check_gfn_env(env: Any, skip_gym_check: bool = False) -> None:
    """Check a gfn_envs environment (single or vector, any direction) or task.

    Runs ``gymnasium.utils.env_checker.check_env`` on single environments, then the GFlowNet
    contract (module docstring). Raises :class:`GFlowNetContractError` on the first violation.
    """
    task = task_of(env)
    if isinstance(env, gym.Env):
        if not skip_gym_check:
            check_env(env.unwrapped, skip_render_check=True)
        n = env.unwrapped.task.max_length + 1
        a, b = _rollout(env, 123, n), _rollout(env, 123, n)
        _require(
            len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)),
            "the same seed gave two different episodes",
        )
        _require(len(a) <= n, "an episode is longer than max_length")
    elif isinstance(env, gym.vector.VectorEnv):
        first, _ = env.reset(seed=7)
        second, _ = env.reset(seed=7)
        _require(
            np.array_equal(np.asarray(first), np.asarray(second)),
            "the same seed gave two different vector resets",
        )
    check_task(task)
