"""The policy-dependent reward wrappers of a single env (``gymnasium.Wrapper``).

Given a ``gymnasium.vector.VectorEnv`` instead, each constructor returns its vector twin from
:mod:`gfn_envs.wrappers.vector`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import Tensor

from gfn_envs.scoring import Guide
from gfn_envs.unwrap import task_of
from gfn_envs.wrappers.rewards import (
    BackwardRewardMixin,
    BackwardRewardModel,
    ForwardRewardMixin,
    ForwardRewardModel,
    LogZLike,
    PolicyLike,
    as_tensor,
    check_direction,
)
from gfn_envs.wrappers.vector import VectorBackwardPolicyReward, VectorPolicyDependentReward


class PolicyDependentReward(ForwardRewardMixin, gym.Wrapper):
    """Forward policy-dependent rewards on a single env; see :mod:`gfn_envs.wrappers`.

    Given a ``gymnasium.vector.VectorEnv`` it returns a :class:`VectorPolicyDependentReward`.

    Args:
        env: a forward :class:`~gfn_envs.env.GFlowNetEnv`, possibly wrapped.
        backward_policy: P_B: ``"uniform"`` or a callable ``(obs, mask) -> logits``.
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
        check_direction(env, "forward")
        self.model = ForwardRewardModel(
            task_of(env), backward_policy, log_z, forward_policy, entropy, log_reward_clip
        )
        self._state: Tensor | None = None
        self._mask: Tensor | None = None

    def action_masks(self) -> np.ndarray:
        """The legal actions (the sb3-contrib convention), from the wrapped env."""
        return self.env.get_wrapper_attr("action_masks")()

    def _remember(self, info: dict[str, Any]) -> None:
        task = self.model.task
        self._state = as_tensor(info["state"], task.device).reshape(1, *task.state_shape)
        self._mask = as_tensor(info["action_mask"], task.device).reshape(1, -1)

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


class BackwardPolicyReward(BackwardRewardMixin, gym.Wrapper):
    """Backward policy-dependent rewards on a single backward env; see :mod:`gfn_envs.wrappers`.

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
        check_direction(env, "backward")
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
        self._state = as_tensor(info["state"], task.device).reshape(1, *task.state_shape)
        self._mask = as_tensor(info["action_mask"], task.device).reshape(1, -1)

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
