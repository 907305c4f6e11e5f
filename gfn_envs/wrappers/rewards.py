"""The reward models behind the wrappers: minus the costs of :mod:`gfn_envs.scoring`, batched.

:class:`ForwardRewardModel` gives a forward transition the reward r = −c of the forward cost
(without the −log P_F term unless ``entropy=True``); :class:`BackwardRewardModel` gives a backward
transition r = −c̄ of the backward cost (without the log P_B term unless ``entropy=True``). Both
read user policies through :class:`CheckedPolicy`, which validates what a callable returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gfn_envs.scoring import (
    Guide,
    Policy,
    backward_costs,
    backward_log_probs,
    forward_costs,
    forward_log_probs,
    guided_log_probs,
)
from gfn_envs.task import Task

PolicyLike = str | Callable[[Tensor, Tensor], Tensor]
"""``"uniform"`` or a policy ``(obs [B, obs_dim], mask bool [B, n]) -> logits [B, n]`` with the
convention of :data:`gfn_envs.scoring.Policy` (log-probabilities are valid logits)."""

LogZLike = float | Tensor | str | Callable[[], float]
"""A float, a scalar tensor (read at every step, so a learned ``nn.Parameter`` is a live handle),
``"exact"`` (log Z* of an enumerable task) or a zero-argument callable."""


def validate_logits(logits: Any, mask: Tensor, name: str) -> Tensor:
    """Check a policy's output against ``mask``; return it with −inf on the masked actions.

    Raises:
        TypeError: the output is not a floating-point tensor.
        ValueError: its shape differs from ``mask``'s, a legal entry is NaN or +inf, or every legal
            entry of a state is −inf (no probability distribution).
    """
    if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point:
        raise TypeError(
            f"{name} must return a floating-point torch tensor of logits, "
            f"got {type(logits).__name__}"
        )
    if logits.shape != mask.shape:
        raise ValueError(
            f"{name} must return logits of shape {list(mask.shape)} (batch, actions), "
            f"got {list(logits.shape)}"
        )
    logits = logits.to(mask.device).masked_fill(~mask, -torch.inf)
    if bool((logits.isnan() | (logits == torch.inf)).any()):
        raise ValueError(f"{name} returned NaN or +inf logits on legal actions")
    if bool((mask.any(dim=1) & (logits == -torch.inf).all(dim=1)).any()):
        raise ValueError(
            f"{name} returned -inf on every legal action of a state, which leaves no distribution"
        )
    return logits


class CheckedPolicy:
    """A resolved, validated policy: ``"uniform"`` or a callable/module with the scoring convention.

    Calling it evaluates the wrapped policy without gradients, on the device of its parameters
    when it is a module, and validates the output with :func:`validate_logits`. :attr:`policy` is
    what the scoring functions take (None for the uniform policy).
    """

    def __init__(self, policy: PolicyLike, name: str) -> None:
        if isinstance(policy, CheckedPolicy):
            policy = policy.source
        if isinstance(policy, str):
            if policy != "uniform":
                raise ValueError(f"{name} must be 'uniform' or a callable, got {policy!r}")
        elif not callable(policy):
            raise TypeError(
                f"{name} must be 'uniform' or a callable (obs, mask) -> logits, "
                f"got {type(policy).__name__}"
            )
        self.source, self.name = policy, name

    @property
    def is_uniform(self) -> bool:
        """Whether this is the uniform policy over legal actions."""
        return isinstance(self.source, str)

    @property
    def policy(self) -> Policy | None:
        """The checked callable for the scoring functions, or None for the uniform policy."""
        return None if self.is_uniform else self

    def __call__(self, obs: Tensor, mask: Tensor) -> Tensor:
        assert not isinstance(self.source, str)
        device = obs.device
        if isinstance(self.source, torch.nn.Module):
            param = next(self.source.parameters(), None)
            device = param.device if param is not None else device
        with torch.no_grad():
            out = self.source(obs.to(device), mask.to(device))
        return validate_logits(out, mask, self.name)


def read_log_z(log_z: LogZLike, task: Task) -> float:
    """The current value of a :data:`LogZLike`, checked to be finite."""
    if isinstance(log_z, Tensor):
        if log_z.numel() != 1:
            raise ValueError(f"log_z must be a scalar tensor, got shape {list(log_z.shape)}")
        value = float(log_z.detach())
    elif isinstance(log_z, str):
        if log_z != "exact":
            raise ValueError(
                f"log_z must be a number, a scalar tensor, 'exact' or a callable, got {log_z!r}"
            )
        value = task.log_partition()
    elif callable(log_z):
        value = float(log_z())
    elif isinstance(log_z, (int, float)) and not isinstance(log_z, bool):
        value = float(log_z)
    else:
        raise TypeError(
            f"log_z must be a number, a scalar tensor, 'exact' or a callable, got {type(log_z).__name__}"
        )
    if not math.isfinite(value):
        raise ValueError(f"log_z must be finite, got {value}")
    return value


def _check_flag(name: str, flag: Any) -> None:
    if not isinstance(flag, bool):
        raise TypeError(f"{name} must be a bool, got {flag!r}")


class ForwardRewardModel:
    """The forward policy-dependent reward r = −c of transitions, batched.

    Move s → s': r = log P_B(s|s') [− log P_F(s'|s)]; exit x → s_f: r = log R̂(x) − log Z
    [− log P_F(exit|x)]; the bracketed term with ``entropy=True``.

    Args:
        task: the task.
        backward_policy: P_B, ``"uniform"`` or a callable.
        log_z: log Z (see :data:`LogZLike`).
        forward_policy: P_F for the entropy term, ``"uniform"``, a callable or None.
        entropy: add −log P_F(s'|s) to every step (needs ``forward_policy``).
        log_reward_clip: if given, log R(x) is replaced by max(log R(x), clip) (the paper's code
            uses −12 for RL, TB and SubTB); None keeps log R(x).
    """

    def __init__(
        self,
        task: Task,
        backward_policy: PolicyLike = "uniform",
        log_z: LogZLike = 0.0,
        forward_policy: PolicyLike | None = None,
        entropy: bool = False,
        log_reward_clip: float | None = None,
    ) -> None:
        _check_flag("entropy", entropy)
        if entropy and forward_policy is None:
            raise ValueError("entropy=True needs a forward_policy ('uniform' or a callable)")
        if log_reward_clip is not None and not math.isfinite(log_reward_clip):
            raise ValueError(
                f"log_reward_clip must be a finite number or None, got {log_reward_clip!r}"
            )
        self.task = task
        self.backward_policy = CheckedPolicy(backward_policy, "backward_policy")
        self.forward_policy = (
            None if forward_policy is None else CheckedPolicy(forward_policy, "forward_policy")
        )
        read_log_z(log_z, task)
        self.log_z, self.entropy, self.log_reward_clip = log_z, entropy, log_reward_clip

    def rewards(self, states: Tensor, actions: Tensor) -> Tensor:
        """Rewards, float32 ``[B]``, of the *legal* forward ``actions`` taken in raw ``states``."""
        task = self.task
        states = task.validate_states(states)
        actions = actions.to(device=task.device, dtype=torch.long)
        is_exit = actions == task.exit_action
        move = ~is_exit
        log_rewards = torch.zeros(len(states), dtype=torch.float32, device=task.device)
        log_pb = torch.zeros_like(log_rewards)
        if bool(is_exit.any()):
            log_rewards[is_exit] = task.log_reward(states[is_exit]).to(torch.float32)
        if bool(move.any()):
            parents, moves = states[move], actions[move]
            children = task.step(parents, moves)
            back = task.backward_action(parents, moves)
            pb = self.backward_policy.policy
            log_pb[move] = backward_log_probs(task, pb, children, back).to(torch.float32)
        log_pf = None
        if self.entropy and self.forward_policy is not None:
            log_pf = forward_log_probs(task, self.forward_policy.policy, states, actions)
            log_pf = log_pf.to(torch.float32)
        log_z = read_log_z(self.log_z, task)
        return -forward_costs(log_pf, log_pb, is_exit, log_rewards, log_z, self.log_reward_clip)


class BackwardRewardModel:
    """The backward policy-dependent reward r = −c̄ of transitions, batched.

    Backward step s' → s undoing forward move a: r = log P_ref(s'|s) [− log P_B(s|s')], where
    P_ref is P_F or, with a ``guide``, P_G; with ``exit_term`` the first step of each episode also
    gets log P_ref(exit|x).

    Args:
        task: the task.
        forward_policy: P_F (``"uniform"`` or a callable); with a ``guide``, the P_F whose
            normalised log-probabilities the guide receives.
        guide: a :class:`~gfn_envs.scoring.Guide`; when given, the reference is P_G.
        backward_policy: P_B for the entropy term.
        entropy: add −log P_B(s|s') to every step (needs ``backward_policy``).
        exit_term: add log P_ref(exit|x) at the first step of each episode.
    """

    def __init__(
        self,
        task: Task,
        forward_policy: PolicyLike = "uniform",
        guide: Guide | None = None,
        backward_policy: PolicyLike | None = None,
        entropy: bool = False,
        exit_term: bool = False,
    ) -> None:
        _check_flag("entropy", entropy)
        _check_flag("exit_term", exit_term)
        if entropy and backward_policy is None:
            raise ValueError("entropy=True needs a backward_policy ('uniform' or a callable)")
        if guide is not None and not isinstance(guide, Guide):
            raise TypeError(
                f"guide must implement gfn_envs.guides.Guide, got {type(guide).__name__}"
            )
        self.task, self.guide = task, guide
        self.forward_policy = CheckedPolicy(forward_policy, "forward_policy")
        self.backward_policy = (
            None if backward_policy is None else CheckedPolicy(backward_policy, "backward_policy")
        )
        self.entropy, self.exit_term = entropy, exit_term

    def reference_log_probs(self, states: Tensor, actions: Tensor, objects: Tensor) -> Tensor:
        """log P_ref(a|s) of forward transitions: log P_G with a guide, else log P_F."""
        log_pf, log_pg = guided_log_probs(
            self.task, self.forward_policy.policy, states, actions, objects, self.guide
        )
        return log_pf if log_pg is None else log_pg

    def rewards(
        self, states: Tensor, actions: Tensor, objects: Tensor, first: Tensor | None = None
    ) -> Tensor:
        """Rewards, float32 ``[B]``, of the *legal* backward ``actions`` taken in raw ``states``.

        Args:
            states: the states s' the backward actions start from.
            actions: backward actions, long ``[B]``.
            objects: the terminal object x each episode started from (for guides and exit_term).
            first: bool ``[B]``, which steps are the first of their episode (for ``exit_term``).
        """
        task = self.task
        states = task.validate_states(states)
        objects = task.validate_states(objects, "objects")
        actions = actions.to(device=task.device, dtype=torch.long)
        parents = task.backward_step(states, actions)
        forward = task.forward_action(states, actions)
        log_ref = self.reference_log_probs(parents, forward, objects).to(torch.float32)
        log_pb = None
        if self.entropy and self.backward_policy is not None:
            log_pb = backward_log_probs(task, self.backward_policy.policy, states, actions)
            log_pb = log_pb.to(torch.float32)
        out = -backward_costs(log_ref, log_pb)
        if self.exit_term and first is not None:
            first = first.to(task.device)
            if bool(first.any()):
                x = objects[first]
                exits = torch.full((len(x),), task.exit_action, device=task.device)
                log_exit = self.reference_log_probs(x, exits, x).to(torch.float32)
                out[first] = out[first] - backward_costs(log_exit)
        return out


def as_tensor(x: Any, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    """``x`` (a tensor or an array-like) as a tensor on ``device`` (and of ``dtype`` if given)."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)


class ForwardRewardMixin:
    """The setters and :meth:`recompute_rewards` of the forward wrappers (single and vector)."""

    model: ForwardRewardModel

    def set_backward_policy(self, policy: PolicyLike) -> None:
        """Swap P_B (rewards of later steps change; see :mod:`gfn_envs.wrappers`)."""
        self.model.backward_policy = CheckedPolicy(policy, "backward_policy")

    def set_forward_policy(self, policy: PolicyLike | None) -> None:
        """Swap the P_F of the entropy term (e.g. the current policy of an RL learner)."""
        if policy is None and self.model.entropy:
            raise ValueError("entropy=True needs a forward_policy")
        self.model.forward_policy = (
            None if policy is None else CheckedPolicy(policy, "forward_policy")
        )

    def set_log_z(self, log_z: LogZLike) -> None:
        """Swap log Z."""
        read_log_z(log_z, self.model.task)
        self.model.log_z = log_z

    def recompute_rewards(self, states: Any, actions: Any) -> Tensor:
        """Rewards of stored transitions under the *current* policies and log Z.

        Args:
            states: raw states s the actions were taken in, ``[B, *state_shape]`` (``info["state"]``
                of the step before).
            actions: the legal forward actions taken, ``[B]``.
        """
        task = self.model.task
        return self.model.rewards(as_tensor(states, task.device), as_tensor(actions, task.device))


class BackwardRewardMixin:
    """The setters and :meth:`recompute_rewards` of the backward wrappers (single and vector)."""

    model: BackwardRewardModel

    def set_forward_policy(self, policy: PolicyLike) -> None:
        """Swap the reference P_F (or the P_F handed to the guide)."""
        self.model.forward_policy = CheckedPolicy(policy, "forward_policy")

    def set_backward_policy(self, policy: PolicyLike | None) -> None:
        """Swap the P_B of the entropy term (e.g. the current backward learner)."""
        if policy is None and self.model.entropy:
            raise ValueError("entropy=True needs a backward_policy")
        self.model.backward_policy = (
            None if policy is None else CheckedPolicy(policy, "backward_policy")
        )

    def recompute_rewards(
        self, states: Any, actions: Any, objects: Any, first: Any | None = None
    ) -> Tensor:
        """Rewards of stored backward transitions under the current policies/guide.

        Args:
            states: raw states s' the backward actions were taken in, ``[B, *state_shape]``.
            actions: the legal backward actions, ``[B]``.
            objects: the terminal object x of each episode, ``[B, *state_shape]``.
            first: bool ``[B]``, first step of its episode (only read with ``exit_term``).
        """
        device = self.model.task.device
        return self.model.rewards(
            as_tensor(states, device),
            as_tensor(actions, device),
            as_tensor(objects, device),
            None if first is None else as_tensor(first, device, torch.bool),
        )


def check_direction(env: Any, direction: str) -> None:
    """Raise a clear ValueError unless ``env`` steps in ``direction``."""
    if getattr(env.unwrapped, "direction", "forward") == direction:
        return
    if direction == "forward":
        raise ValueError("PolicyDependentReward needs a forward env; use BackwardPolicyReward")
    raise ValueError(
        "BackwardPolicyReward needs a backward env (direction='backward'); "
        "use PolicyDependentReward for the forward direction"
    )
