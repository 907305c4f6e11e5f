"""The policy-dependent reward wrappers of a native vector env (``gymnasium.vector.VectorWrapper``).

They work in every autoreset mode. Sub-envs whose action is illegal or ignored (a finished
episode, the autoreset step of ``"next_step"``) get reward 0, as in the bare env.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
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


def _action_masks(env: Any) -> Any:
    while not hasattr(env, "action_masks") and hasattr(env, "env"):
        env = env.env
    return env.action_masks()


def _like(reward: Tensor, reference: Any) -> Any:
    if isinstance(reference, Tensor):
        return reward.to(device=reference.device, dtype=reference.dtype)
    return reward.cpu().numpy().astype(np.asarray(reference).dtype, copy=False)


class VectorPolicyDependentReward(ForwardRewardMixin, VectorWrapper):
    """Forward policy-dependent rewards on a native vector env (any autoreset mode).

    Arguments as :class:`~gfn_envs.wrappers.PolicyDependentReward`.
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
        check_direction(env, "forward")
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
        self._state = as_tensor(info["state"], device)
        # the actions legal now: empty for a finished sub-env, whose next action is ignored
        # (info["action_mask"] is the mask of its state even then)
        self._mask = as_tensor(_action_masks(self.env), device)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._remember(info)
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        if self._state is None or self._mask is None:
            raise RuntimeError("call reset() before step()")
        state, mask = self._state, self._mask
        obs, env_reward, terminated, truncated, info = self.env.step(actions)
        a = as_tensor(actions, self.model.task.device, torch.long)
        legal = mask.gather(1, a.unsqueeze(1)).squeeze(1)
        reward = torch.zeros(len(a), dtype=torch.float32, device=a.device)
        if bool(legal.any()):
            reward[legal] = self.model.rewards(state[legal], a[legal])
        self._remember(info)
        return obs, _like(reward, env_reward), terminated, truncated, info


class VectorBackwardPolicyReward(BackwardRewardMixin, VectorWrapper):
    """Backward policy-dependent rewards on a native backward vector env (any autoreset mode).

    Arguments as :class:`~gfn_envs.wrappers.BackwardPolicyReward`. The object x of each sub-env's
    episode is tracked through resets (including ``reset(options={"reset_mask": ...})``) and
    autoresets: with ``"same_step"`` the sub-envs that terminated restart at once, with
    ``"next_step"`` those left without a legal action (finished) restart on the next step.
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
        check_direction(env, "backward")
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
        self._state = as_tensor(info["state"], device)
        # the actions legal now: empty for a finished sub-env, whose next action is ignored
        # (info["action_mask"] is the mask of its state even then)
        self._mask = as_tensor(_action_masks(self.env), device)

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
            rows = as_tensor(options["reset_mask"], self._state.device, torch.bool)
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
        a = as_tensor(actions, self.model.task.device, torch.long)
        legal = mask.gather(1, a.unsqueeze(1)).squeeze(1)
        reward = torch.zeros(len(a), dtype=torch.float32, device=a.device)
        if bool(legal.any()):
            reward[legal] = self.model.rewards(
                state[legal], a[legal], self._objects[legal], self._first[legal]
            )
        self._first = self._first & ~legal
        self._remember(info)
        done = as_tensor(terminated, a.device, torch.bool)
        mode = self.env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode is AutoresetMode.SAME_STEP:
            self._restart(done)
        elif mode is AutoresetMode.NEXT_STEP:
            self._restart(~mask.any(dim=1))
        return obs, _like(reward, env_reward), terminated, truncated, info
