"""One trajectory container, and batched forward and backward sampling through the vector env.

Layout. A batch of B trajectories is stored *flat*: one row per action actually taken, in
time-major order (all first actions, then all second actions, …). ``valid`` is the ``[T, B]`` mask
of taken actions, so ``grid[valid]`` of any ``[T, B]`` tensor is in the same order as the flat rows,
and :meth:`Trajectories.to_grid` goes back. No padding rows enter a network.

Forward trajectories: row i is the state s_t where action a_t was taken; the last row of each
trajectory is its exit. Backward trajectories: row i is the state y_k where backward action b_k was
taken; the last row of each trajectory is the step into s0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from gfn_envs.env import GFlowNetVectorEnv
from gfn_envs.scoring import Policy, gather, masked_log_softmax, uniform_log_probs


@dataclass
class Trajectories:
    """A batch of complete trajectories, forward or backward, in flat time-major layout.

    Attributes:
        direction: ``"forward"`` or ``"backward"``.
        valid: bool ``[T, B]``, the actions taken.
        states, obs, masks, actions: per taken action, the state, its observation, the legal
            actions of the sampling direction there, and the action.
        outputs: the raw policy outputs at ``states`` (logits first); they carry the autograd graph
            when sampled with gradients, so losses reuse the sampling pass.
        log_probs: log-probability of ``actions`` under the policy (not under the exploration
            mixture), with the graph of ``outputs``.
        objects: ``[B, *state_shape]`` terminal object of each trajectory.
        log_rewards: ``[B]`` log R of ``objects``.
    """

    direction: str
    valid: Tensor
    states: Tensor
    obs: Tensor
    masks: Tensor
    actions: Tensor
    outputs: Tensor | None
    log_probs: Tensor
    objects: Tensor
    log_rewards: Tensor

    @property
    def batch_size(self) -> int:
        return self.valid.shape[1]

    @cached_property
    def lengths(self) -> Tensor:
        """Number of actions of each trajectory, ``[B]``."""
        return self.valid.sum(dim=0)

    @cached_property
    def batch_index(self) -> Tensor:
        """Trajectory of each flat row, ``[N]``."""
        return self.valid.nonzero()[:, 1]

    @cached_property
    def next_index(self) -> Tensor:
        """Flat row of the next action of the same trajectory, or −1 after its last action."""
        grid = torch.full(self.valid.shape, -1, dtype=torch.long, device=self.valid.device)
        grid[self.valid] = torch.arange(len(self.actions), device=self.valid.device)
        shifted = torch.cat([grid[1:], torch.full_like(grid[:1], -1)])
        return shifted[self.valid]

    @cached_property
    def is_last(self) -> Tensor:
        """Bool ``[N]``: the last action of its trajectory (exit, or the step into s0)."""
        return self.next_index < 0

    def to_grid(self, flat: Tensor) -> Tensor:
        """Scatter per-row values ``[N]`` into a zero-padded ``[T, B]`` grid."""
        grid = flat.new_zeros(self.valid.shape)
        grid[self.valid] = flat
        return grid

    def per_trajectory_sum(self, flat: Tensor) -> Tensor:
        """Σ over the rows of each trajectory, ``[B]``."""
        return flat.new_zeros(self.batch_size).index_add(0, self.batch_index, flat)

    def next_values(self, flat: Tensor, last: float | Tensor = 0.0) -> Tensor:
        """``flat`` at the next row of each trajectory, ``last`` after its final action."""
        nxt = self.next_index
        return torch.where(
            self.is_last, torch.as_tensor(last, dtype=flat.dtype), flat[nxt.clamp(min=0)]
        )


class DoneWatcher:
    """Tells a sync-free rollout that every row is done, without blocking the host on the device.

    Each step, the device-side flag "all rows done" is copied to a slot of pinned host memory with
    ``non_blocking=True`` and a CUDA event is recorded after the copy; a slot is read only once its
    event has completed (:meth:`torch.cuda.Event.query` never blocks). The flag only goes from
    false to true, so the newest completed slot decides, and a true flag read a step or two late
    costs a step or two of no-op work on finished rows. With all ``lag`` slots still in flight the
    host is ``lag`` steps ahead of the device and waits for the oldest one, which bounds the wasted
    steps without slowing a device-bound loop.

    On the CPU (the sync-free loop forced, to test it) a flag is read exactly ``lag − 1`` steps
    after it was pushed, which exercises the same no-op steps.
    """

    def __init__(self, device: torch.device, lag: int = 3) -> None:
        self.cuda = device.type == "cuda"
        self.lag = lag
        self.flags = torch.zeros(lag, dtype=torch.bool, pin_memory=self.cuda)
        self.events = [torch.cuda.Event() for _ in range(lag)] if self.cuda else []
        self.pending: list[int] = []
        self.pushed = 0

    def push(self, all_done: Tensor) -> bool:
        """Record this step's flag; True once some recorded flag has been read as true."""
        slot = self.pushed % self.lag
        self.pushed += 1
        self.flags[slot : slot + 1].copy_(all_done.reshape(1), non_blocking=True)
        self.pending.append(slot)
        if not self.cuda:
            return len(self.pending) == self.lag and bool(self.flags[self.pending.pop(0)])
        self.events[slot].record()
        if len(self.pending) == self.lag:
            self.events[self.pending[0]].synchronize()
        done = False
        while self.pending and self.events[self.pending[0]].query():
            done = bool(self.flags[self.pending.pop(0)]) or done
        return done


def gumbel_noise(
    shape: tuple[int, ...], generator: torch.Generator, device: torch.device
) -> Tensor:
    """G = −log(−log U), U ~ Uniform(0, 1) clamped away from 0 so that G is finite."""
    u = torch.rand(shape, generator=generator, device=device)
    return u.clamp_(min=torch.finfo(u.dtype).tiny).log_().neg_().log_().neg_()


def _sample_actions(
    logits: Tensor, mask: Tensor, noise: Tensor, epsilon: float, temperature: float
) -> Tensor:
    """Draw actions from softmax(logits / temperature) over the legal actions, mixed with ε of
    the uniform legal policy, by the Gumbel-max trick: argmax(log p + G) with the given noise G.

    G is finite, so a masked action (−inf) can never win.
    """
    with torch.no_grad():
        scores = torch.where(
            mask, logits if temperature == 1.0 else logits / temperature, -torch.inf
        )
        if epsilon > 0.0:
            probs = (1 - epsilon) * scores.softmax(dim=-1) + epsilon * uniform_log_probs(mask).exp()
            scores = probs.log()
        return (scores + noise).argmax(dim=-1)


@dataclass
class _Steps:
    """What the rollout loop records per step: the full-batch states, masks and live rows, and the
    policy's inputs, outputs and actions (the live rows only when compacting, else all rows)."""

    states: list[Tensor] = field(default_factory=list)
    masks: list[Tensor] = field(default_factory=list)
    alive: list[Tensor] = field(default_factory=list)
    obs: list[Tensor] = field(default_factory=list)
    outputs: list[Tensor] = field(default_factory=list)
    actions: list[Tensor] = field(default_factory=list)


def _rollout_loop(
    env: GFlowNetVectorEnv,
    policy: Policy | None,
    generator: torch.Generator,
    obs: Tensor,
    mask: Tensor,
    steps: _Steps,
    grad: bool,
    epsilon: float,
    temperature: float,
    sync_free: bool,
) -> Tensor | None:
    """Step every row until it is done (see :func:`sample_trajectories` for the two loops);
    returns the summed env rewards (log R(x) of each forward trajectory) when compacting."""
    n, batch, device = mask.shape[1], env.num_envs, env.device
    watcher = DoneWatcher(device) if sync_free else None
    rewards = torch.zeros(batch, device=device)
    no_action = torch.zeros(batch, dtype=torch.long, device=device)
    done = env.done
    for _ in range(env.task.max_length):
        if watcher is None and bool(done.all()):
            break
        noise = gumbel_noise((batch, n), generator, device)
        if watcher is None:
            idx = (~done).nonzero().squeeze(1)
            rows, row_mask, noise = obs[idx], mask[idx], noise[idx]
        else:  # finished rows may take any action: the env ignores it
            rows, row_mask = obs, mask | done.unsqueeze(1)
        if policy is None:
            logits = rows.new_zeros(len(rows), n)
        else:
            with torch.set_grad_enabled(grad):
                steps.outputs.append(policy(rows, row_mask))
            logits = steps.outputs[-1][:, :n].detach()
        actions = _sample_actions(logits, row_mask, noise, epsilon, temperature)
        # the vector env never writes into a tensor it has returned, so the full-batch states and
        # masks are kept as they are and compacted once at the end
        steps.states.append(env.states)
        steps.masks.append(mask)
        steps.alive.append(~done)
        steps.obs.append(rows)
        steps.actions.append(actions)
        if watcher is None:
            obs, reward, done, _, info = env.step(no_action.index_copy(0, idx, actions))
            mask, rewards = info["action_mask"], rewards + reward  # reward: log R at exits
        else:
            obs, mask, done = env.advance(actions)
            if watcher.push(done.all()):
                break
    return None if sync_free else rewards


def sample_trajectories(
    env: GFlowNetVectorEnv,
    policy: Policy | None,
    generator: torch.Generator,
    starts: Tensor | None = None,
    grad: bool = True,
    epsilon: float = 0.0,
    temperature: float = 1.0,
    sync_free: bool | None = None,
) -> Trajectories:
    """Roll out one complete trajectory per sub-env of ``env`` (autoreset disabled, tensors on).

    Two loops give the same trajectories: each step draws the Gumbel noise of all B rows from
    ``generator`` (``[B, n]``), and a row's action depends only on its own noise and logits.

    * **Compacting** (the default on the CPU): the policy runs on the live rows only, and the loop
      reads from the env whether every row is done, each step.
    * **Sync-free** (the default on CUDA; ``sync_free=True`` forces it): the policy runs on all B
      rows every step (finished rows see an all-legal mask and their actions are ignored), the env
      moves with :meth:`~gfn_envs.env.GFlowNetVectorEnv.advance` (no reward, no checks) and the end
      is learnt through a :class:`DoneWatcher`, so no step waits for the device. The no-op steps
      after the last exit are dropped, and log R of the objects is computed once, after the loop.

    The log-probabilities of the taken actions are computed once, after the rollout, by one masked
    log-softmax over all rows (the graph still runs through each step's policy pass). A batch whose
    rows are all done at the start (backward from s0 only) is empty: no rows, ``valid`` ``[0, B]``.

    Args:
        env: a :class:`GFlowNetVectorEnv` with ``autoreset_mode="disabled"`` and ``tensors=True``;
            its direction decides forward or backward sampling.
        policy: the sampling policy ``(obs, mask) -> logits`` (:data:`gfn_envs.scoring.Policy`;
            columns after the n logits, such as a log-flow head, are kept in
            :attr:`Trajectories.outputs`), or None for the uniform policy.
        generator: the source of randomness of the actions.
        starts: backward only: the terminal objects to take apart, one per sub-env.
        grad: keep the autograd graph of the policy outputs.
        epsilon, temperature: exploration (off-policy sampling for the balance losses).
        sync_free: choose the loop (None: sync-free exactly on CUDA).

    Raises:
        FloatingPointError: the policy's outputs hold NaN or inf (a non-finite log-probability,
            or a trajectory that never ends because only illegal actions could be drawn): training
            has diverged, for instance on NaN log-rewards of the task.
    """
    sync_free = env.device.type == "cuda" if sync_free is None else sync_free
    obs, info = env.reset(options=None if starts is None else {"states": starts})
    objects, first_mask = env.states.clone(), info["action_mask"]
    steps = _Steps()
    rewards = _rollout_loop(
        env, policy, generator, obs, first_mask, steps, grad, epsilon, temperature, sync_free
    )
    if not bool(env.done.all()):
        raise FloatingPointError(
            f"a trajectory ran past the task's max_length ({env.task.max_length}): the "
            "policy's outputs are -inf on every legal action, or NaN (training has diverged)"
        )
    if env.direction == "forward":
        objects = env.states.clone()
        log_rewards = rewards if rewards is not None else env.task.checked_log_reward(objects)
    else:
        log_rewards = env.task.log_reward(objects)
    valid = torch.stack(steps.alive) if steps.alive else env.done.new_zeros(0, env.num_envs)
    valid = valid[: int(valid.any(dim=1).sum())]  # drops the sync-free loop's no-op steps

    def flat(per_step: list[Tensor], compacted: bool, empty: Callable[[], Tensor]) -> Tensor:
        if len(valid) == 0:
            return empty()
        return torch.cat(per_step) if compacted else torch.stack(per_step[: len(valid)])[valid]

    compacted = not sync_free
    actions = flat(steps.actions, compacted, lambda: env.done.new_zeros(0, dtype=torch.long))
    masks = flat(steps.masks, False, lambda: first_mask[:0])
    if policy is None:
        outputs, log_probs = None, uniform_log_probs(masks)
    else:
        with torch.set_grad_enabled(grad):
            outputs = flat(steps.outputs, compacted, lambda: policy(obs[:0], first_mask[:0]))
            log_probs = masked_log_softmax(outputs[:, : masks.shape[1]], masks)
    taken = gather(log_probs, actions)
    if not bool(torch.isfinite(taken.detach()).all()):
        raise FloatingPointError(
            "the policy's log-probabilities of the sampled actions are not finite: its outputs "
            "hold NaN or inf: training has diverged (lower the learning rates) or the task "
            "returned NaN log-rewards"
        )
    return Trajectories(
        direction=env.direction,
        valid=valid,
        states=flat(steps.states, False, lambda: objects[:0]),
        obs=flat(steps.obs, compacted, lambda: obs[:0]),
        masks=masks,
        actions=actions,
        outputs=outputs,
        log_probs=taken,
        objects=objects,
        log_rewards=log_rewards,
    )
