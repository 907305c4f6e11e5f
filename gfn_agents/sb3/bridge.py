"""The SB3 ``VecEnv`` bridge: gfn_envs tasks as masked SB3 vector envs with policy-dependent rewards.

:func:`make_sb3_env` builds an SB3 ``VecEnv`` with action masks (``env_method("action_masks")``,
what sb3-contrib's ``MaskablePPO`` calls) from a registered id, over our native vector env
(``vectorization="native"``: one batched task, same-step autoreset, ``terminal_observation`` in
the infos, :class:`GFlowNetSB3VecEnv`) or over ``n_envs`` single envs in SB3's ``DummyVecEnv``
(``"dummy"``). Rewards:

- ``"policy"``: log P_B(s|s') per move, log R(x) − log Z at exit (:mod:`gfn_envs.wrappers`);
- ``"soft"``: the same minus log π(a|s) of the SB3 policy being trained, fed in by
  :class:`~gfn_agents.sb3.callbacks.SoftPolicyCallback` (exact soft RL with α = γ = 1; use
  ``ent_coef=0``);
- ``"log_reward"``: the bare env, log R(x) at exit only (plain reward maximisation).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn
from torch import Tensor

from gfn_envs.wrappers import LogZLike, PolicyDependentReward, PolicyLike

REWARDS = ("policy", "soft", "log_reward")
VECTORIZATIONS = ("native", "dummy")


def _full_id(env_id: str) -> str:
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a registered id string, got {type(env_id).__name__}")
    return env_id if "/" in env_id else f"gfn_envs/{env_id}"


def _find(env: Any, name: str) -> Any:
    """The first object down a wrapper stack (``.env``) that has attribute ``name``."""
    current = env
    while True:
        if name in dir(current) or hasattr(type(current), name):
            return current
        if not hasattr(current, "env"):
            raise AttributeError(f"no environment in the stack of {env!r} has attribute {name!r}")
        current = current.env


class _MissingPolicy:
    """Placeholder forward policy of ``reward="soft"`` until the SB3 policy is fed in."""

    def __call__(self, obs: Tensor, mask: Tensor) -> Tensor:
        raise RuntimeError(
            "reward='soft' needs the current SB3 policy: pass SoftPolicyCallback() to learn(), "
            "or give forward_policy= to make_sb3_env"
        )


class GFlowNetSB3VecEnv(VecEnv):
    """An SB3 ``VecEnv`` over a Gymnasium vector env of gfn_envs in same-step autoreset mode.

    ``step`` returns SB3's (obs, rewards, dones, infos) with ``infos[i]["terminal_observation"]`` for
    finished sub-envs (and ``"TimeLimit.truncated"`` for truncated ones). ``env_method`` calls a
    method of the vector env once; ``env_method("action_masks")`` returns one mask per sub-env, as
    sb3-contrib expects.

    Args:
        venv: a :class:`~gfn_envs.env.GFlowNetVectorEnv` (numpy mode), possibly under vector
            wrappers, with ``autoreset_mode="same_step"``.
    """

    def __init__(self, venv: VectorEnv) -> None:
        if not isinstance(venv, VectorEnv):
            raise TypeError(f"venv must be a gymnasium VectorEnv, got {type(venv).__name__}")
        mode = venv.metadata.get("autoreset_mode")
        if mode is not AutoresetMode.SAME_STEP:
            raise ValueError(
                f"venv must use autoreset_mode='same_step' (SB3's convention), got {mode!r}"
            )
        if getattr(venv.unwrapped, "tensors", False):
            raise ValueError("venv must return numpy arrays (tensors=False) for SB3")
        self.venv = venv
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    def reset(self) -> np.ndarray:
        seed = self._seeds[0]
        obs, _ = self.venv.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return np.asarray(obs, dtype=np.float32)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_async() must come before step_wait()")
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        self._actions = None
        terminated, truncated = np.asarray(terminated), np.asarray(truncated)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        finished = np.flatnonzero(dones)
        if len(finished):
            final = np.asarray(info["final_obs"], dtype=np.float32)
            for i in finished:
                infos[i]["terminal_observation"] = final[i]
                if truncated[i] and not terminated[i]:
                    infos[i]["TimeLimit.truncated"] = True
        return (
            np.asarray(obs, dtype=np.float32),
            np.asarray(rewards, dtype=np.float32),
            dones,
            infos,
        )

    def close(self) -> None:
        self.venv.close()

    def action_masks(self) -> np.ndarray:
        """Bool ``[num_envs, n]``: the legal actions of every sub-env."""
        return np.asarray(_find(self.venv, "action_masks").action_masks(), dtype=bool)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        n = len(list(self._get_indices(indices)))
        if attr_name == "render_mode":
            return [None] * n
        return [getattr(_find(self.venv, attr_name), attr_name)] * n

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(_find(self.venv, attr_name), attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        rows = list(self._get_indices(indices))
        if method_name == "action_masks":
            return list(self.action_masks()[rows])
        result = getattr(_find(self.venv, method_name), method_name)(*method_args, **method_kwargs)
        return [result] * len(rows)

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))


def make_sb3_env(
    env_id: str,
    n_envs: int = 16,
    reward: str = "policy",
    backward_policy: PolicyLike = "uniform",
    log_z: LogZLike = 0.0,
    forward_policy: PolicyLike | None = None,
    log_reward_clip: float | None = None,
    vectorization: str = "native",
    monitor: bool = True,
    **env_kwargs: Any,
) -> VecEnv:
    """An SB3 ``VecEnv`` with action masks on a registered gfn_envs task.

    Args:
        env_id: registered id, with or without the ``gfn_envs/`` namespace.
        n_envs: number of parallel episodes.
        reward: ``"policy"``, ``"soft"`` or ``"log_reward"`` (see the module docstring).
        backward_policy: P_B of the policy-dependent rewards (``"uniform"`` or a callable).
        log_z: log Z of the exit reward (a number, a scalar tensor, ``"exact"`` or a callable).
            The optimal soft value of s0 is log Z* − log_z, so a wrong log Z only shifts returns.
        forward_policy: the −log P_F term of ``reward="soft"``; leave None to have
            :class:`SoftPolicyCallback` feed in the policy being trained.
        log_reward_clip: lower clip of log R(x) in the rewards, or None.
        vectorization: ``"native"`` (one batched env) or ``"dummy"`` (SB3's DummyVecEnv of single
            envs, each wrapped).
        monitor: wrap in SB3's ``VecMonitor`` so episode returns and lengths are logged.
        **env_kwargs: task kwargs (override the registered defaults).
    """
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
    if vectorization not in VECTORIZATIONS:
        raise ValueError(f"vectorization must be one of {VECTORIZATIONS}, got {vectorization!r}")
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"n_envs must be an integer >= 1, got {n_envs!r}")
    if reward != "soft" and forward_policy is not None:
        raise ValueError("forward_policy is only used with reward='soft'")
    env_id = _full_id(env_id)
    wrap_kwargs: dict[str, Any] = {
        "backward_policy": backward_policy,
        "log_z": log_z,
        "log_reward_clip": log_reward_clip,
    }
    if reward == "soft":
        wrap_kwargs |= {
            "entropy": True,
            "forward_policy": forward_policy if forward_policy is not None else _MissingPolicy(),
        }

    def wrap(env: Any) -> Any:
        return env if reward == "log_reward" else PolicyDependentReward(env, **wrap_kwargs)

    if vectorization == "native":
        venv = gym.make_vec(
            env_id,
            num_envs=n_envs,
            vectorization_mode="vector_entry_point",
            **env_kwargs,
            autoreset_mode="same_step",
        )
        sb3_env: VecEnv = GFlowNetSB3VecEnv(wrap(venv))
    else:
        sb3_env = DummyVecEnv([lambda: wrap(gym.make(env_id, **env_kwargs))] * n_envs)
    return VecMonitor(sb3_env) if monitor else sb3_env
