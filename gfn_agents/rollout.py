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

from dataclasses import dataclass
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


def _sample_actions(
    logits: Tensor,
    mask: Tensor,
    generator: torch.Generator,
    epsilon: float,
    temperature: float,
) -> Tensor:
    """Draw actions from softmax(logits / temperature) over the legal actions, mixed with ε of
    the uniform legal policy, by the Gumbel-max trick: argmax(log p + G), G = −log(−log U).

    U is clamped away from 0 so G is finite and a masked action (−inf) can never win.
    """
    with torch.no_grad():
        scores = torch.where(
            mask, logits if temperature == 1.0 else logits / temperature, -torch.inf
        )
        if epsilon > 0.0:
            probs = (1 - epsilon) * scores.softmax(dim=-1) + epsilon * uniform_log_probs(mask).exp()
            scores = probs.log()
        u = torch.rand(scores.shape, generator=generator, device=scores.device)
        noise = u.clamp_(min=torch.finfo(u.dtype).tiny).log_().neg_().log_()
        return (scores - noise).argmax(dim=-1)


def sample_trajectories(
    env: GFlowNetVectorEnv,
    policy: Policy | None,
    generator: torch.Generator,
    starts: Tensor | None = None,
    grad: bool = True,
    epsilon: float = 0.0,
    temperature: float = 1.0,
) -> Trajectories:
    """Roll out one complete trajectory per sub-env of ``env`` (autoreset disabled, tensors on).

    Each step runs the policy on the live sub-envs only and draws their actions; the
    log-probabilities of the taken actions are computed once, after the rollout, by one masked
    log-softmax over all rows (the graph still runs through each step's policy pass).

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

    Raises:
        FloatingPointError: the policy's outputs hold NaN or inf (a non-finite log-probability,
            or a trajectory that never ends because only illegal actions could be drawn): training
            has diverged, for instance on NaN log-rewards of the task.
    """
    obs, info = env.reset(options=None if starts is None else {"states": starts})
    n = env.single_action_space.n
    done = env.done
    states, masks, observations, outputs, chosen, alive_steps = [], [], [], [], [], []
    objects = env.states.clone() if env.direction == "backward" else None
    log_rewards = torch.zeros(env.num_envs, device=env.device)
    no_action = torch.zeros(env.num_envs, dtype=torch.long, device=env.device)
    while not bool(done.all()):
        if len(alive_steps) == env.task.max_length:
            raise FloatingPointError(
                f"a trajectory ran past the task's max_length ({env.task.max_length}): the "
                "policy's outputs are -inf on every legal action, or NaN (training has diverged)"
            )
        alive = ~done
        idx = alive.nonzero().squeeze(1)
        o, mask = obs[idx], info["action_mask"][idx]
        if policy is None:
            logits = torch.zeros(len(idx), n, device=env.device)
        else:
            with torch.set_grad_enabled(grad):
                out = policy(o, mask)
            outputs.append(out)
            logits = out[:, :n].detach()
        actions = _sample_actions(logits, mask, generator, epsilon, temperature)
        # the vector env never writes into a tensor it has returned, so the full-batch states and
        # masks are kept as they are and compacted once at the end
        states.append(info["state"])
        masks.append(info["action_mask"])
        observations.append(o)
        chosen.append(actions)
        alive_steps.append(alive)
        obs, reward, done, _, info = env.step(no_action.index_copy(0, idx, actions))
        if env.direction == "forward":
            log_rewards = log_rewards + reward  # nonzero only at each trajectory's exit
    if env.direction == "forward":
        objects = env.states.clone()
    else:
        log_rewards = env.task.log_reward(objects)
    valid = torch.stack(alive_steps)
    flat_masks = torch.stack(masks)[valid]
    flat_actions = torch.cat(chosen)
    flat_outputs = None if policy is None else torch.cat(outputs)
    if flat_outputs is None:
        log_probs = uniform_log_probs(flat_masks)
    else:
        with torch.set_grad_enabled(grad):
            log_probs = masked_log_softmax(flat_outputs[:, :n], flat_masks)
    taken = gather(log_probs, flat_actions)
    if not bool(torch.isfinite(taken.detach()).all()):
        raise FloatingPointError(
            "the policy's log-probabilities of the sampled actions are not finite: its outputs "
            "hold NaN or inf: training has diverged (lower the learning rates) or the task "
            "returned NaN log-rewards"
        )
    return Trajectories(
        direction=env.direction,
        valid=valid,
        states=torch.stack(states)[valid],
        obs=torch.cat(observations),
        masks=flat_masks,
        actions=flat_actions,
        outputs=flat_outputs,
        log_probs=taken,
        objects=objects,
        log_rewards=log_rewards,
    )
