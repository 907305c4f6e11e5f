"""Policy-dependent reward wrappers: GFlowNet training as ordinary (soft) RL.

The bare environments of :mod:`gfn_envs.env` reward only the exit step, with log R(x). These wrappers
replace that reward by the *policy-dependent* rewards of the paper (Definition 1), so that any
Gymnasium RL library trains a GFlowNet sampler.

Forward MDP (:class:`PolicyDependentReward`), for a step s → s' taken by forward action a:

* move (s' = step(s, a)):   r = log P_B(s | s')                      [− log P_F(s' | s)]
* exit (x → s_f):           r = log R(x) − log Z                     [− log P_F(exit | x)]

The bracketed term is added with ``entropy=True`` (it needs a forward policy). Along a complete
trajectory τ = (s0 → … → x → s_f) the accumulated reward is therefore

* ``entropy=False``:  Σ_t r_t = log[R(x)·P_B(τ|x)] − log Z
* ``entropy=True``:   Σ_t r_t = log[R(x)·P_B(τ|x)] − log[Z·P_F(τ)]   (minus the TB residual).

The paper (section 2.2) and its code minimise the *cost* c = −r; the two are the same objective.
With ``entropy=True`` the expected return is −KL(P_F(τ) ‖ R(x)P_B(τ|x)/Z), so exact soft RL
(α = 1, γ = 1) on these rewards samples x ∝ R(x) for any fixed P_B; without it, a soft RL
algorithm adds the entropy itself (soft Q-learning, Tiapkin et al. 2024).

Backward MDP (:class:`BackwardPolicyReward`, on ``direction="backward"`` envs), for a backward step
s' → s taken by backward action b, with a = forward_action(s', b) the forward move s → s':

* r = log P_ref(s' | s)   [− log P_B(s | s')]

where P_ref is a forward policy (RL-B: the current P_F) or a guide P_G (RL-G, :mod:`gfn_envs.guides`).
With ``exit_term=True`` the first step of each episode also gets log P_ref(exit | x). The
accumulated reward of a backward trajectory from x is Σ log P_ref(forward moves) [+ exit]
[− log P_B(τ|x)], the negative of the backward cost c_B of the paper (section 2.6).

Policies are ``"uniform"`` (uniform over the legal actions) or any callable — a torch module
included — with the convention of :data:`gfn_envs.exact.ForwardPolicy`:
``policy(obs float[B, obs_dim], mask bool[B, n]) -> log-probs [B, n]`` (−inf where masked). For a
backward policy, ``obs`` encodes the child s' and ``mask`` is its backward mask. Outputs are checked:
a wrong shape, or log-probs whose legal entries do not sum to 1, raise a ``ValueError``.

**Non-stationarity.** The rewards are functions of the policies (and of log Z). When a learned P_B,
P_F or log Z changes, the rewards of transitions collected earlier are stale. On-policy learners
should collect each rollout after the policies they read are updated (the wrappers evaluate the
policies at step time, so a live handle — a module being trained — is always current). Off-policy
learners must recompute rewards from stored raw states with :meth:`recompute_rewards` (the raw state
of every step is ``info["state"]``).

Both wrappers accept a single :class:`~gfn_envs.env.GFlowNetEnv` (they are ``gymnasium.Wrapper``\\ s)
or a native :class:`~gfn_envs.env.GFlowNetVectorEnv` (then the constructor returns the
``gymnasium.vector.VectorWrapper`` twin, :class:`VectorPolicyDependentReward` or
:class:`VectorBackwardPolicyReward`), possibly under other Gymnasium wrappers that keep
``info["state"]`` and ``info["action_mask"]``. They read the raw states from ``info`` and every
transition and log-probability from the unwrapped task.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from torch import Tensor

from gfn_envs.exact import task_of
from gfn_envs.guides import Guide
from gfn_envs.task import Task

PolicyLike = str | Callable[[Tensor, Tensor], Tensor]
"""``"uniform"`` or ``policy(obs [B, obs_dim], mask bool [B, n]) -> log-probs [B, n]``."""

LogZLike = float | Tensor | str | Callable[[], float]
"""A float, a scalar tensor (read at every step, so a learned ``nn.Parameter`` is a live handle),
``"exact"`` (log Z* of an enumerable task) or a zero-argument callable."""

NORMALISATION_TOLERANCE = 1e-3
"""Largest |log Σ_legal p| accepted from a policy callable."""


def _uniform(obs: Tensor, mask: Tensor) -> Tensor:
    counts = mask.sum(dim=1, keepdim=True).clamp_min(1).to(torch.float32)
    return counts.reciprocal().log().expand(mask.shape).masked_fill(~mask, -torch.inf)


def validate_log_probs(log_probs: Any, mask: Tensor, name: str) -> Tensor:
    """Check a policy output against ``mask`` and return it with −inf on illegal actions.

    Raises:
        TypeError: the output is not a floating-point tensor.
        ValueError: its shape differs from ``mask``'s, a legal entry is NaN, or the legal entries of
            a row with legal actions do not sum to 1 (|log Σ_legal p| > 1e-3).
    """
    if not isinstance(log_probs, Tensor) or not log_probs.dtype.is_floating_point:
        raise TypeError(
            f"{name} must return a floating-point torch tensor of log-probs, "
            f"got {type(log_probs).__name__}"
        )
    if log_probs.shape != mask.shape:
        raise ValueError(
            f"{name} must return log-probs of shape {list(mask.shape)} (batch, actions), "
            f"got {list(log_probs.shape)}"
        )
    log_probs = log_probs.to(mask.device).masked_fill(~mask, -torch.inf)
    if bool(log_probs.isnan().any()):
        raise ValueError(f"{name} returned NaN log-probs on legal actions")
    rows = mask.any(dim=1)
    total = torch.logsumexp(log_probs[rows], dim=1)
    bad = (total.abs() > NORMALISATION_TOLERANCE) | total.isnan()
    if bool(bad.any()):
        worst = float(total[bad][0])
        raise ValueError(
            f"{name} returned log-probs that do not normalise over the legal actions "
            f"(log of the legal mass = {worst:.4g} in some row, expected 0); set illegal logits "
            "to -inf before log_softmax"
        )
    return log_probs


class LogProbPolicy:
    """A resolved, validated policy: ``"uniform"`` or a callable/module with the obs-mask convention.

    Calling it evaluates the wrapped policy without gradients, on the device of its parameters
    when it is a module, and validates the output with :func:`validate_log_probs`.
    """

    def __init__(self, policy: PolicyLike, name: str) -> None:
        if isinstance(policy, LogProbPolicy):
            policy = policy.policy
        if isinstance(policy, str):
            if policy != "uniform":
                raise ValueError(f"{name} must be 'uniform' or a callable, got {policy!r}")
        elif not callable(policy):
            raise TypeError(
                f"{name} must be 'uniform' or a callable (obs, mask) -> log-probs, "
                f"got {type(policy).__name__}"
            )
        self.policy, self.name = policy, name

    @property
    def is_uniform(self) -> bool:
        """Whether this is the uniform policy over legal actions."""
        return isinstance(self.policy, str)

    def __call__(self, obs: Tensor, mask: Tensor) -> Tensor:
        if isinstance(self.policy, str):
            return _uniform(obs, mask)
        device = obs.device
        if isinstance(self.policy, torch.nn.Module):
            param = next(self.policy.parameters(), None)
            device = param.device if param is not None else device
        with torch.no_grad():
            out = self.policy(obs.to(device), mask.to(device))
        return validate_log_probs(out, mask, self.name)


def _read_log_z(log_z: LogZLike, task: Task) -> float:
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


def _gather(log_probs: Tensor, actions: Tensor) -> Tensor:
    return log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)


def _as_tensor(x: Any, device: torch.device, dtype: torch.dtype | None = None) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)


class ForwardRewardModel:
    """The forward policy-dependent reward of transitions, batched (see the module docstring).

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
        if not isinstance(entropy, bool):
            raise TypeError(f"entropy must be a bool, got {entropy!r}")
        if entropy and forward_policy is None:
            raise ValueError("entropy=True needs a forward_policy ('uniform' or a callable)")
        if log_reward_clip is not None and not math.isfinite(log_reward_clip):
            raise ValueError(
                f"log_reward_clip must be a finite number or None, got {log_reward_clip!r}"
            )
        self.task = task
        self.backward_policy = LogProbPolicy(backward_policy, "backward_policy")
        self.forward_policy = (
            None if forward_policy is None else LogProbPolicy(forward_policy, "forward_policy")
        )
        _read_log_z(log_z, task)
        self.log_z, self.entropy, self.log_reward_clip = log_z, entropy, log_reward_clip

    def rewards(self, states: Tensor, actions: Tensor) -> Tensor:
        """Rewards, float32 ``[B]``, of the *legal* forward ``actions`` taken in raw ``states``."""
        task = self.task
        states = task.validate_states(states)
        actions = actions.to(device=task.device, dtype=torch.long)
        out = torch.zeros(len(states), dtype=torch.float32, device=task.device)
        is_exit = actions == task.exit_action
        move = ~is_exit
        if bool(is_exit.any()):
            log_r = task.log_reward(states[is_exit]).to(torch.float32)
            if self.log_reward_clip is not None:
                log_r = log_r.clamp_min(self.log_reward_clip)
            out[is_exit] = log_r - _read_log_z(self.log_z, task)
        if bool(move.any()):
            parents, moves = states[move], actions[move]
            children = task.step(parents, moves)
            back = task.backward_action(parents, moves)
            log_pb = self.backward_policy(task.encode(children), task.backward_mask(children))
            out[move] = _gather(log_pb, back).to(torch.float32)
        if self.entropy and self.forward_policy is not None:
            log_pf = self.forward_policy(task.encode(states), task.forward_mask(states))
            out = out - _gather(log_pf, actions).to(torch.float32)
        return out


class BackwardRewardModel:
    """The backward policy-dependent reward of transitions, batched (see the module docstring).

    Args:
        task: the task.
        forward_policy: P_F (``"uniform"`` or a callable); with a ``guide``, the P_F whose log-probs
            are handed to the guide as its logits (so :class:`~gfn_envs.guides.ExitCapGuide` caps
            log P_F(exit|s) itself rather than a raw network logit).
        guide: a :class:`~gfn_envs.guides.Guide`; when given, the reward is log P_G(s'|s).
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
        for name, flag in (("entropy", entropy), ("exit_term", exit_term)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {flag!r}")
        if entropy and backward_policy is None:
            raise ValueError("entropy=True needs a backward_policy ('uniform' or a callable)")
        if guide is not None and not isinstance(guide, Guide):
            raise TypeError(
                f"guide must implement gfn_envs.guides.Guide, got {type(guide).__name__}"
            )
        self.task, self.guide = task, guide
        self.forward_policy = LogProbPolicy(forward_policy, "forward_policy")
        self.backward_policy = (
            None if backward_policy is None else LogProbPolicy(backward_policy, "backward_policy")
        )
        self.entropy, self.exit_term = entropy, exit_term

    def _reference(self, states: Tensor, actions: Tensor, objects: Tensor) -> Tensor:
        task = self.task
        log_pf = self.forward_policy(task.encode(states), task.forward_mask(states))
        if self.guide is None:
            return _gather(log_pf, actions)
        return self.guide.log_prob(states, actions, log_pf, objects)

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
        out = self._reference(parents, forward, objects).to(torch.float32)
        if self.entropy and self.backward_policy is not None:
            log_pb = self.backward_policy(task.encode(states), task.backward_mask(states))
            out = out - _gather(log_pb, actions).to(torch.float32)
        if self.exit_term and first is not None:
            first = first.to(task.device)
            if bool(first.any()):
                x = objects[first]
                exits = torch.full((len(x),), task.exit_action, device=task.device)
                out[first] = out[first] + self._reference(x, exits, x).to(torch.float32)
        return out


# ----------------------------------------------------------------------------- forward wrappers
class _ForwardSetters:
    model: ForwardRewardModel

    def set_backward_policy(self, policy: PolicyLike) -> None:
        """Swap P_B (rewards of later steps change; see the module docstring)."""
        self.model.backward_policy = LogProbPolicy(policy, "backward_policy")

    def set_forward_policy(self, policy: PolicyLike | None) -> None:
        """Swap the P_F of the entropy term (e.g. the current policy of an RL learner)."""
        if policy is None and self.model.entropy:
            raise ValueError("entropy=True needs a forward_policy")
        self.model.forward_policy = (
            None if policy is None else LogProbPolicy(policy, "forward_policy")
        )

    def set_log_z(self, log_z: LogZLike) -> None:
        """Swap log Z."""
        _read_log_z(log_z, self.model.task)
        self.model.log_z = log_z

    def recompute_rewards(self, states: Any, actions: Any) -> Tensor:
        """Rewards of stored transitions under the *current* policies and log Z.

        Args:
            states: raw states s the actions were taken in, ``[B, *state_shape]`` (``info["state"]``
                of the step before).
            actions: the legal forward actions taken, ``[B]``.
        """
        task = self.model.task
        return self.model.rewards(_as_tensor(states, task.device), _as_tensor(actions, task.device))


class PolicyDependentReward(_ForwardSetters, gym.Wrapper):
    """Forward policy-dependent rewards on a single env; see the module docstring.

    Given a ``gymnasium.vector.VectorEnv`` it returns a :class:`VectorPolicyDependentReward`.

    Args:
        env: a forward :class:`~gfn_envs.env.GFlowNetEnv`, possibly wrapped.
        backward_policy: P_B: ``"uniform"`` or a callable ``(obs, mask) -> log-probs``.
        log_z: log Z (float, scalar tensor read at each step, ``"exact"`` or callable).
        forward_policy: P_F of the entropy term.
        entropy: add −log P_F(s'|s) to every step.
        log_reward_clip: lower clip of log R(x), or None.
    """

    def __new__(cls, env: Any = None, *args: Any, **kwargs: Any) -> Any:
        if cls is PolicyDependentReward and isinstance(env, VectorEnv):
            return VectorPolicyDependentReward(env, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        env: gym.Env,
        backward_policy: PolicyLike = "uniform",
        log_z: LogZLike = 0.0,
        forward_policy: PolicyLike | None = None,
        entropy: bool = False,
        log_reward_clip: float | None = None,
    ) -> None:
        gym.Wrapper.__init__(self, env)
        task = task_of(env)
        if getattr(env.unwrapped, "direction", "forward") != "forward":
            raise ValueError("PolicyDependentReward needs a forward env; use BackwardPolicyReward")
        self.model = ForwardRewardModel(
            task, backward_policy, log_z, forward_policy, entropy, log_reward_clip
        )
        self._state: Tensor | None = None
        self._mask: Tensor | None = None

    def action_masks(self) -> np.ndarray:
        """The legal actions (the sb3-contrib convention), from the wrapped env."""
        return self.env.get_wrapper_attr("action_masks")()

    def _remember(self, info: dict[str, Any]) -> None:
        task = self.model.task
        self._state = _as_tensor(info["state"], task.device).reshape(1, *task.state_shape)
        self._mask = _as_tensor(info["action_mask"], task.device).reshape(1, -1)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._remember(info)
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._state is None or self._mask is None:
            raise RuntimeError("call reset() before step()")
        state, mask = self._state, self._mask
        obs, _, terminated, truncated, info = self.env.step(action)
        a = torch.tensor([int(action)], device=self.model.task.device)
        reward = float(self.model.rewards(state, a)[0]) if bool(mask[0, a[0]]) else 0.0
        self._remember(info)
        return obs, reward, terminated, truncated, info


class VectorPolicyDependentReward(_ForwardSetters, VectorWrapper):
    """Forward policy-dependent rewards on a native vector env (any autoreset mode).

    Arguments as :class:`PolicyDependentReward`. Sub-envs whose action is illegal or ignored (a
    finished episode, the autoreset step of ``"next_step"``) get reward 0, as in the bare env.
    """

    def __init__(
        self,
        env: VectorEnv,
        backward_policy: PolicyLike = "uniform",
        log_z: LogZLike = 0.0,
        forward_policy: PolicyLike | None = None,
        entropy: bool = False,
        log_reward_clip: float | None = None,
    ) -> None:
        VectorWrapper.__init__(self, env)
        if getattr(env.unwrapped, "direction", "forward") != "forward":
            raise ValueError("PolicyDependentReward needs a forward env; use BackwardPolicyReward")
        self.model = ForwardRewardModel(
            task_of(env), backward_policy, log_z, forward_policy, entropy, log_reward_clip
        )
        self._state: Tensor | None = None
        self._mask: Tensor | None = None

    def action_masks(self) -> Any:
        """Bool ``[num_envs, n]``: the legal actions, from the wrapped env."""
        return _action_masks(self.env)

    def _remember(self, info: dict[str, Any]) -> None:
        device = self.model.task.device
        self._state = _as_tensor(info["state"], device)
        self._mask = _as_tensor(info["action_mask"], device)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._remember(info)
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        if self._state is None or self._mask is None:
            raise RuntimeError("call reset() before step()")
        state, mask = self._state, self._mask
        obs, env_reward, terminated, truncated, info = self.env.step(actions)
        a = _as_tensor(actions, self.model.task.device, torch.long)
        legal = mask.gather(1, a.unsqueeze(1)).squeeze(1)
        reward = torch.zeros(len(a), dtype=torch.float32, device=a.device)
        if bool(legal.any()):
            reward[legal] = self.model.rewards(state[legal], a[legal])
        self._remember(info)
        return obs, _like(reward, env_reward), terminated, truncated, info


def _action_masks(env: Any) -> Any:
    while not hasattr(env, "action_masks") and hasattr(env, "env"):
        env = env.env
    return env.action_masks()


def _like(reward: Tensor, reference: Any) -> Any:
    if isinstance(reference, Tensor):
        return reward.to(device=reference.device, dtype=reference.dtype)
    return reward.cpu().numpy().astype(np.asarray(reference).dtype, copy=False)


# ---------------------------------------------------------------------------- backward wrappers
class _BackwardSetters:
    model: BackwardRewardModel

    def set_forward_policy(self, policy: PolicyLike) -> None:
        """Swap the reference P_F (or the P_F handed to the guide)."""
        self.model.forward_policy = LogProbPolicy(policy, "forward_policy")

    def set_backward_policy(self, policy: PolicyLike | None) -> None:
        """Swap the P_B of the entropy term (e.g. the current backward learner)."""
        if policy is None and self.model.entropy:
            raise ValueError("entropy=True needs a backward_policy")
        self.model.backward_policy = (
            None if policy is None else LogProbPolicy(policy, "backward_policy")
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
            _as_tensor(states, device),
            _as_tensor(actions, device),
            _as_tensor(objects, device),
            None if first is None else _as_tensor(first, device, torch.bool),
        )


def _check_backward(env: Any) -> None:
    if getattr(env.unwrapped, "direction", None) != "backward":
        raise ValueError(
            "BackwardPolicyReward needs a backward env (direction='backward'); "
            "use PolicyDependentReward for the forward direction"
        )


class BackwardPolicyReward(_BackwardSetters, gym.Wrapper):
    """Backward policy-dependent rewards on a single backward env; see the module docstring.

    Given a ``gymnasium.vector.VectorEnv`` it returns a :class:`VectorBackwardPolicyReward`.

    Args:
        env: a :class:`~gfn_envs.env.GFlowNetEnv` with ``direction="backward"``, possibly wrapped.
        forward_policy: the reference P_F (or the P_F handed to ``guide``).
        guide: a guide P_G; the reward is then log P_G(s'|s) (RL-G).
        backward_policy: P_B of the entropy term.
        entropy: add −log P_B(s|s') to every step.
        exit_term: add log P_ref(exit|x) at the first step of each episode.
    """

    def __new__(cls, env: Any = None, *args: Any, **kwargs: Any) -> Any:
        if cls is BackwardPolicyReward and isinstance(env, VectorEnv):
            return VectorBackwardPolicyReward(env, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        env: gym.Env,
        forward_policy: PolicyLike = "uniform",
        guide: Guide | None = None,
        backward_policy: PolicyLike | None = None,
        entropy: bool = False,
        exit_term: bool = False,
    ) -> None:
        gym.Wrapper.__init__(self, env)
        _check_backward(env)
        self.model = BackwardRewardModel(
            task_of(env), forward_policy, guide, backward_policy, entropy, exit_term
        )
        self._state: Tensor | None = None
        self._mask: Tensor | None = None
        self._object: Tensor | None = None
        self._first = True

    def action_masks(self) -> np.ndarray:
        """The legal backward actions, from the wrapped env."""
        return self.env.get_wrapper_attr("action_masks")()

    def _remember(self, info: dict[str, Any]) -> None:
        task = self.model.task
        self._state = _as_tensor(info["state"], task.device).reshape(1, *task.state_shape)
        self._mask = _as_tensor(info["action_mask"], task.device).reshape(1, -1)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._remember(info)
        self._object, self._first = self._state, True
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self._state is None or self._mask is None or self._object is None:
            raise RuntimeError("call reset() before step()")
        state, mask = self._state, self._mask
        obs, _, terminated, truncated, info = self.env.step(action)
        a = torch.tensor([int(action)], device=self.model.task.device)
        reward = 0.0
        if bool(mask[0, a[0]]):
            first = torch.tensor([self._first], device=a.device)
            reward = float(self.model.rewards(state, a, self._object, first)[0])
            self._first = False
        self._remember(info)
        return obs, reward, terminated, truncated, info


class VectorBackwardPolicyReward(_BackwardSetters, VectorWrapper):
    """Backward policy-dependent rewards on a native backward vector env (any autoreset mode).

    Arguments as :class:`BackwardPolicyReward`. The object x of each sub-env's episode is tracked
    through resets (including ``reset(options={"reset_mask": ...})``) and autoresets: with
    ``"same_step"`` the sub-envs that terminated restart at once, with ``"next_step"`` those left
    without a legal action (finished) restart on the next step.
    """

    def __init__(
        self,
        env: VectorEnv,
        forward_policy: PolicyLike = "uniform",
        guide: Guide | None = None,
        backward_policy: PolicyLike | None = None,
        entropy: bool = False,
        exit_term: bool = False,
    ) -> None:
        VectorWrapper.__init__(self, env)
        _check_backward(env)
        self.model = BackwardRewardModel(
            task_of(env), forward_policy, guide, backward_policy, entropy, exit_term
        )
        self._state: Tensor | None = None
        self._mask: Tensor | None = None
        self._objects: Tensor | None = None
        self._first: Tensor | None = None

    def action_masks(self) -> Any:
        """Bool ``[num_envs, n]``: the legal backward actions, from the wrapped env."""
        return _action_masks(self.env)

    def _remember(self, info: dict[str, Any]) -> None:
        device = self.model.task.device
        self._state = _as_tensor(info["state"], device)
        self._mask = _as_tensor(info["action_mask"], device)

    def _restart(self, rows: Tensor) -> None:
        assert self._objects is not None and self._first is not None and self._state is not None
        self._objects[rows] = self._state[rows]
        self._first[rows] = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._remember(info)
        assert self._state is not None
        n = len(self._state)
        rows = torch.ones(n, dtype=torch.bool, device=self._state.device)
        if options is not None and options.get("reset_mask") is not None:
            rows = _as_tensor(options["reset_mask"], self._state.device, torch.bool)
        if self._objects is None or self._first is None:
            self._objects = self._state.clone()
            self._first = torch.ones(n, dtype=torch.bool, device=self._state.device)
        self._restart(rows)
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        if self._state is None or self._mask is None or self._objects is None:
            raise RuntimeError("call reset() before step()")
        assert self._first is not None
        state, mask = self._state, self._mask
        obs, env_reward, terminated, truncated, info = self.env.step(actions)
        a = _as_tensor(actions, self.model.task.device, torch.long)
        legal = mask.gather(1, a.unsqueeze(1)).squeeze(1)
        reward = torch.zeros(len(a), dtype=torch.float32, device=a.device)
        if bool(legal.any()):
            reward[legal] = self.model.rewards(
                state[legal], a[legal], self._objects[legal], self._first[legal]
            )
        self._first = self._first & ~legal
        self._remember(info)
        done = _as_tensor(terminated, a.device, torch.bool)
        mode = self.env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode is AutoresetMode.SAME_STEP:
            self._restart(done)
        elif mode is AutoresetMode.NEXT_STEP:
            self._restart(~mask.any(dim=1))
        return obs, _like(reward, env_reward), terminated, truncated, info
