"""Stable-Baselines3 on gfn-gym tasks: a masked ``VecEnv`` bridge, policy-dependent rewards, and
exact evaluation of SB3 policies.

* :func:`make_sb3_env` builds an SB3 ``VecEnv`` with action masks (``env_method("action_masks")``,
  what sb3-contrib's ``MaskablePPO`` calls) from a registered id, over our native vector env
  (``vectorization="native"``: one batched task, same-step autoreset, ``terminal_observation`` in
  the infos) or over ``n_envs`` single envs in SB3's ``DummyVecEnv`` (``"dummy"``). Rewards:

  - ``"policy"``: log P_B(s|s') per move, log R(x) − log Z at exit (:mod:`gfn_envs.wrappers`);
  - ``"soft"``: the same minus log π(a|s) of the SB3 policy being trained, fed in by
    :class:`SoftPolicyCallback` (exact soft RL with α = γ = 1; use ``ent_coef=0``);
  - ``"log_reward"``: the bare env, log R(x) at exit only (plain reward maximisation).

* :func:`sb3_forward_policy` turns a trained SB3 actor-critic (PPO, A2C, MaskablePPO, TRPO) into the
  ``forward_policy`` callable of :func:`gfn_envs.exact.exact_distribution`, so SB3 baselines get
  exact TV, JSD and modes like our agents.

* **Masked A2C.** SB3's A2C cannot mask. :func:`masked_a2c` returns a ``MaskablePPO`` configured as
  A2C: one epoch, one minibatch holding the whole rollout, no advantage normalisation. At the
  rollout's parameters the PPO ratio is 1, so the clipped surrogate's gradient is exactly the A2C
  policy gradient (plus the same value and entropy terms); the optimizer is Adam unless
  ``policy_kwargs`` says otherwise (A2C's default is RMSprop). Illegal actions are never sampled.

* :data:`GFN_PPO_KWARGS`: MaskablePPO hyperparameters suited to GFlowNet rewards (γ = 1,
  λ = 0.99, no entropy bonus, since the soft rewards carry the entropy).

Budgets are in trajectories: :class:`TrajectoryBudgetCallback` stops ``learn`` after a number of
finished episodes, and :class:`ExactTVCallback` records exact metrics along the way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn
from torch import Tensor

from gfn_envs import metrics
from gfn_envs.exact import ForwardPolicy, exact_distribution, task_of
from gfn_envs.wrappers import LogZLike, PolicyDependentReward, PolicyLike

REWARDS = ("policy", "soft", "log_reward")
VECTORIZATIONS = ("native", "dummy")

GFN_PPO_KWARGS: dict[str, Any] = {"gamma": 1.0, "gae_lambda": 0.99, "ent_coef": 0.0}
"""MaskablePPO settings for policy-dependent rewards: undiscounted, long GAE, entropy in rewards."""


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


def _policy_of(model: Any) -> Any:
    policy = getattr(model, "policy", model)
    if not hasattr(policy, "get_distribution"):
        raise TypeError(
            "sb3_forward_policy needs an SB3 actor-critic model or policy (PPO, A2C, MaskablePPO, "
            f"TRPO), got {type(model).__name__}"
        )
    return policy


def sb3_forward_policy(model: Any) -> ForwardPolicy:
    """The forward policy of an SB3 actor-critic, as ``(obs, mask) -> masked log-probs``.

    log π(a|s) is the log-softmax of the policy's logits over the legal actions. For a masked
    policy (MaskablePPO) this is the policy itself; for an unmasked one on an env whose illegal
    actions are no-ops, it is the distribution of the next legal move (retries are geometric), so it
    is the sampler's distribution either way. The callable reads the model's current parameters.
    """
    policy = _policy_of(model)

    def forward_policy(obs: Tensor, mask: Tensor) -> Tensor:
        with torch.no_grad():
            distribution = policy.get_distribution(obs.to(policy.device, torch.float32))
            logits = getattr(distribution.distribution, "logits", None)
            if logits is None or logits.shape != mask.shape:
                raise TypeError("sb3_forward_policy needs a policy over a Discrete action space")
            logits = logits.to(mask.device).masked_fill(~mask, -torch.inf)
            return logits.log_softmax(dim=1)

    return forward_policy


class SoftPolicyCallback(BaseCallback):
    """Feeds the SB3 policy being trained into the ``reward="soft"`` wrapper(s) of its env.

    The wrapper evaluates −log π(a|s) at step time with the parameters of that moment, i.e. with
    the rollout policy π_old — the soft return of an on-policy update.
    """

    def _on_training_start(self) -> None:
        self.training_env.env_method("set_forward_policy", sb3_forward_policy(self.model))

    def _on_step(self) -> bool:
        return True


class TrajectoryBudgetCallback(BaseCallback):
    """Stops ``learn`` once ``total_trajectories`` episodes have finished (counted in ``dones``)."""

    def __init__(self, total_trajectories: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        if isinstance(total_trajectories, bool) or not isinstance(total_trajectories, int):
            raise ValueError(
                f"total_trajectories must be a positive integer, got {total_trajectories!r}"
            )
        if total_trajectories < 1:
            raise ValueError(
                f"total_trajectories must be a positive integer, got {total_trajectories!r}"
            )
        self.total_trajectories = total_trajectories
        self.num_trajectories = 0

    def _on_step(self) -> bool:
        self.num_trajectories += int(np.sum(self.locals["dones"]))
        return self.num_trajectories < self.total_trajectories


class ExactTVCallback(BaseCallback):
    """Records exact metrics of the SB3 policy every ``every`` finished trajectories.

    ``history`` holds dicts with ``trajectories``, ``tv``, ``jsd`` and ``seconds`` (wall time of
    training, evaluation excluded).

    Args:
        env: the task or any gfn_envs env of the task (must be enumerable).
        every: evaluation period in trajectories.
    """

    def __init__(self, env: Any, every: int, verbose: int = 0) -> None:
        super().__init__(verbose)
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.task = task_of(env)
        self.every = every
        self.target = self.task.true_distribution().to(torch.float64)
        self.history: list[dict[str, float]] = []
        self.num_trajectories = 0
        self._next = 0
        self._start = 0.0
        self._eval_time = 0.0

    def evaluate(self) -> dict[str, float]:
        """Exact metrics of the current policy."""
        p = exact_distribution(self.task, sb3_forward_policy(self.model))
        return {"tv": float(metrics.tv(p, self.target)), "jsd": float(metrics.jsd(p, self.target))}

    def _record(self) -> None:
        t0 = time.perf_counter()
        row = {"trajectories": float(self.num_trajectories), **self.evaluate()}
        self._eval_time += time.perf_counter() - t0
        row["seconds"] = time.perf_counter() - self._start - self._eval_time
        self.history.append(row)
        self._next = self.num_trajectories + self.every

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()
        self._record()

    def _on_step(self) -> bool:
        self.num_trajectories += int(np.sum(self.locals["dones"]))
        if self.num_trajectories >= self._next:
            self._record()
        return True

    def _on_training_end(self) -> None:
        if self.history[-1]["trajectories"] != self.num_trajectories:
            self._record()


def masked_a2c(env: VecEnv, n_steps: int = 5, **kwargs: Any) -> Any:
    """A2C with action masks: ``MaskablePPO`` with one epoch over one full-rollout minibatch.

    See the module docstring for why this is A2C's update. ``kwargs`` go to ``MaskablePPO``.
    """
    from sb3_contrib import MaskablePPO

    for fixed in ("n_epochs", "batch_size", "normalize_advantage"):
        if fixed in kwargs:
            raise ValueError(f"{fixed} is fixed by masked_a2c")
    settings = {"learning_rate": 7e-4, "gae_lambda": 1.0, "ent_coef": 0.0, "vf_coef": 0.5}
    settings |= kwargs
    return MaskablePPO(
        "MlpPolicy",
        env,
        n_steps=n_steps,
        n_epochs=1,
        batch_size=n_steps * env.num_envs,
        normalize_advantage=False,
        **settings,
    )


def sample_sb3(model: Any, env: Any, n: int, seed: int = 0, batch: int = 4096) -> Tensor:
    """``n`` terminal objects sampled by running ``model.predict`` with masks (Monte Carlo).

    Args:
        model: an SB3 model whose ``predict`` accepts ``action_masks`` (MaskablePPO).
        env: the task or a gfn_envs env of it.
        n: number of objects.
        seed: seeds the policy's sampling (torch's global generator, as SB3 uses).
        batch: trajectories sampled in parallel.
    """
    from gfn_envs.env import GFlowNetVectorEnv

    task = task_of(env)
    torch.manual_seed(seed)
    out: list[Tensor] = []
    while sum(len(x) for x in out) < n:
        venv = GFlowNetVectorEnv(min(batch, n), task, autoreset_mode="disabled")
        obs, info = venv.reset()
        done = np.zeros(venv.num_envs, dtype=bool)
        while not done.all():
            actions, _ = model.predict(obs, action_masks=info["action_mask"], deterministic=False)
            obs, _, done, _, info = venv.step(np.asarray(actions))
        out.append(torch.as_tensor(info["state"]))
    return torch.cat(out)[:n]


__all__: Sequence[str] = (
    "GFN_PPO_KWARGS",
    "ExactTVCallback",
    "GFlowNetSB3VecEnv",
    "SoftPolicyCallback",
    "TrajectoryBudgetCallback",
    "make_sb3_env",
    "masked_a2c",
    "sample_sb3",
    "sb3_forward_policy",
)
