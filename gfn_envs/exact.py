"""The exact terminal distribution of a forward policy, by dynamic programming over the enumerated DAG.

For a forward policy P_F the probability u(s) of visiting a state obeys u(s0) = 1 and
u(s') = Σ_{s ∈ Par(s')} u(s)·P_F(s'|s); a terminal object x is then sampled with probability
P_F^T(x) = u(x)·P_F(exit|x). The DP runs level by level (longest distance from s0), and each level
is one vectorised ``index_add_`` over all of its edges, so its cost is a few tensor operations per
level on top of one batched policy pass over all states.

The edge lists are built once per task and cached on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gfn_envs.scoring import Policy, masked_log_softmax
from gfn_envs.task import Task
from gfn_envs.unwrap import task_of

ForwardPolicy = Policy
"""A forward policy with the convention of :data:`gfn_envs.scoring.Policy`:
``policy(obs [B, obs_dim] float32, mask [B, n_actions] bool) -> logits [B, n_actions]``
(log-probabilities are valid logits)."""


@dataclass
class DagStructure:
    """Every state of an enumerable task with its forward edges grouped by the level of the parent."""

    states: Tensor
    mask: Tensor
    obs: Tensor
    src: Tensor
    action: Tensor
    dst: Tensor
    level_offsets: list[int]
    terminal: Tensor
    s0_index: int


def dag_structure(task: Task) -> DagStructure:
    """Build (once) and return the enumerated DAG of ``task``."""
    cached = getattr(task, "_dag_structure", None)
    if cached is not None:
        return cached
    if not task.enumerable:
        raise ValueError(f"{type(task).__name__} cannot be enumerated; use sampled metrics")
    states = task.all_states()
    n = len(states)
    mask = task.forward_mask(states)
    srcs, acts, dsts = [], [], []
    for a in range(task.exit_action):
        parents = mask[:, a].nonzero().squeeze(1)
        if len(parents) == 0:
            continue
        actions = torch.full_like(parents, a)
        srcs.append(parents)
        acts.append(actions)
        dsts.append(task.state_index(task.step(states[parents], actions)))
    src, action, dst = torch.cat(srcs), torch.cat(acts), torch.cat(dsts)

    s0_index = int(task.state_index(task.s0(1))[0])
    level = torch.full((n,), -1, dtype=torch.long, device=task.device)
    frontier = torch.zeros(n, dtype=torch.bool, device=task.device)
    frontier[s0_index] = True
    depth = 0
    while bool(frontier.any()):
        level[frontier] = depth
        nxt = torch.zeros_like(frontier)
        nxt[dst[frontier[src]]] = True
        frontier, depth = nxt, depth + 1
        if depth > task.max_length:
            raise RuntimeError("the task's DAG has a path longer than max_length")
    if bool((level < 0).any()):
        raise RuntimeError(f"{int((level < 0).sum())} enumerated states are unreachable from s0")

    order = torch.argsort(level[src], stable=True)
    src, action, dst = src[order], action[order], dst[order]
    counts = torch.bincount(level[src], minlength=depth)
    offsets = [0, *torch.cumsum(counts, 0).tolist()]
    structure = DagStructure(
        states=states,
        mask=mask,
        obs=task.encode(states),
        src=src,
        action=action,
        dst=dst,
        level_offsets=offsets,
        terminal=mask[:, task.exit_action].clone(),
        s0_index=s0_index,
    )
    task._dag_structure = structure  # type: ignore[attr-defined]
    return structure


def policy_probs(task: Task, forward_policy: ForwardPolicy, batch_size: int = 65536) -> Tensor:
    """P_F(a|s) for every enumerated state, float64 ``[N, n_actions]``, in one batched pass.

    The policy's logits are normalised over the legal actions in float64.

    Raises:
        ValueError: the policy's output is not ``[B, n_actions]``, or makes no distribution.
    """
    dag = dag_structure(task)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(dag.states), batch_size):
            obs = dag.obs[start : start + batch_size]
            mask = dag.mask[start : start + batch_size]
            logits = forward_policy(obs, mask)
            if logits.shape != mask.shape:
                raise ValueError(
                    f"forward_policy must return logits of shape {list(mask.shape)}, "
                    f"got {list(logits.shape)}"
                )
            log_probs = masked_log_softmax(logits.to(torch.float64), mask)
            if bool(log_probs.isnan().any()):
                raise ValueError(
                    "forward_policy returned logits that make no distribution over the legal "
                    "actions (NaN, +inf, or -inf on every legal action of a state)"
                )
            chunks.append(log_probs.exp())
    return torch.cat(chunks)


def visit_probs(task: Task, probs: Tensor) -> Tensor:
    """u(s), the probability that action probabilities ``probs`` (float ``[N, n_actions]`` over
    :meth:`Task.all_states`) visit each enumerated state: u(s0) = 1,
    u(s') = Σ_{s ∈ Par(s')} u(s)·P_F(s'|s); float64 ``[N]``."""
    dag = dag_structure(task)
    probs = probs.to(torch.float64)
    u = torch.zeros(len(dag.states), dtype=torch.float64, device=probs.device)
    u[dag.s0_index] = 1.0
    weight = probs[dag.src, dag.action]
    offsets = dag.level_offsets
    for lo, hi in zip(offsets[:-1], offsets[1:], strict=True):
        u.index_add_(0, dag.dst[lo:hi], u[dag.src[lo:hi]] * weight[lo:hi])
    return u


def distribution_from_probs(task: Task, probs: Tensor) -> Tensor:
    """The exact terminal distribution, over :meth:`Task.terminal_states`, of action probabilities
    ``probs`` (float ``[N, n_actions]`` over :meth:`Task.all_states`): P_F^T(x) = u(x)·P_F(exit|x)
    with u of :func:`visit_probs`."""
    terminal = dag_structure(task).terminal
    return visit_probs(task, probs)[terminal] * probs.to(torch.float64)[terminal, task.exit_action]


def exact_distribution(env: Any, forward_policy: ForwardPolicy, batch_size: int = 65536) -> Tensor:
    """Exact probabilities, over ``terminal_states()``, that ``forward_policy`` samples each object.

    Args:
        env: a task, a Gymnasium env (possibly wrapped) or a vector env of gfn_envs.
        forward_policy: maps a float tensor ``[B, obs_dim]`` and a bool mask ``[B, n_actions]`` to
            logits ``[B, n_actions]`` (:data:`gfn_envs.scoring.Policy`; log-probabilities are
            valid logits).
        batch_size: how many states the policy sees per call.

    Returns:
        float64 tensor that sums to 1 (up to rounding) for a proper policy.
    """
    task = task_of(env)
    return distribution_from_probs(task, policy_probs(task, forward_policy, batch_size))


def target_probs(task: Task) -> Tensor:
    """Action probabilities of the *target* forward policy: it samples x with probability P*(x).

    With the uniform backward policy P_B(s|s') = 1/|Par(s')|, the flows
    F(s) = R(s)·1[s terminal] + Σ_{s'∈Ch(s)} F(s')·P_B(s|s') satisfy detailed balance, and
    P_F(s'|s) = F(s')P_B(s|s')/F(s), P_F(exit|s) = R(s)/F(s). Rewards are rescaled by their maximum
    first, which leaves every ratio unchanged and keeps exp() finite.
    """
    dag = dag_structure(task)
    n = len(dag.states)
    log_r = torch.full((n,), -torch.inf, dtype=torch.float64, device=task.device)
    log_r[dag.terminal] = task.log_reward(dag.states[dag.terminal]).to(torch.float64)
    reward = (log_r - log_r.max()).exp()
    n_parents = torch.bincount(dag.dst, minlength=n).to(torch.float64)
    pb = 1.0 / n_parents[dag.dst]
    flow = reward.clone()
    offsets = dag.level_offsets
    for lo, hi in reversed(list(zip(offsets[:-1], offsets[1:], strict=True))):
        flow.index_add_(0, dag.src[lo:hi], flow[dag.dst[lo:hi]] * pb[lo:hi])
    safe = flow.clamp_min(torch.finfo(torch.float64).tiny)
    probs = torch.zeros(n, task.n_actions, dtype=torch.float64, device=task.device)
    probs[dag.src, dag.action] = flow[dag.dst] * pb / safe[dag.src]
    probs[:, task.exit_action] = reward / safe
    dead = flow <= 0
    probs[dead] = dag.mask[dead].to(torch.float64) / dag.mask[dead].sum(1, keepdim=True)
    return probs


class StateLookup:
    """Maps observations back to enumerated state indices (exact row match through a hash)."""

    def __init__(self, task: Task) -> None:
        dag = dag_structure(task)
        generator = torch.Generator().manual_seed(0)
        self._weights = torch.randn(task.obs_dim, dtype=torch.float64, generator=generator)
        keys = dag.obs.to(torch.float64) @ self._weights.to(dag.obs.device)
        self._keys, self._order = torch.sort(keys)
        self._obs = dag.obs

    def __call__(self, obs: Tensor) -> Tensor:
        keys = obs.to(torch.float64) @ self._weights.to(obs.device)
        pos = torch.searchsorted(self._keys, keys).clamp(max=len(self._keys) - 1)
        index = self._order[pos]
        if not torch.equal(self._obs[index], obs.to(self._obs.dtype)):
            raise ValueError("an observation does not belong to any enumerated state")
        return index


def target_policy(env: Any) -> ForwardPolicy:
    """The exact-sampling forward policy of an enumerable task, as a ``forward_policy`` callable."""
    task = task_of(env)
    log_probs = target_probs(task).log().to(torch.float32)
    lookup = StateLookup(task)

    def policy(obs: Tensor, mask: Tensor) -> Tensor:
        return log_probs[lookup(obs)].masked_fill(~mask, -torch.inf)

    return policy
