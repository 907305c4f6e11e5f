"""The env spec a checkpoint stores, and the check that a loaded agent runs the same task.

* :func:`resolve_env_id`: ``HyperGrid-v0`` and ``gfn_envs/HyperGrid-v0`` name the same task; a
  Gymnasium id that is not a gfn_envs task is refused.
* :func:`env_identity`: the registered id and kwargs of an env (the device is left out: it is the
  loader's choice).
* :func:`task_fingerprint`: the task's class, state shape, action counts, observation size and
  maximal length, plus log R of :data:`PROBES` probe objects drawn by a seeded uniform walk, so that
  a checkpoint does not load silently into another task of the same shape (another R0, another
  reward). It costs one walk and one ``log_reward`` call on eight objects (on RNABinding these
  count as oracle calls); agents compute it once.
* :func:`check_env`: loading compares the saved fingerprint with the task (:func:`env_mismatch`)
  and names both specs (:func:`describe_env`) when they differ.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from gymnasium.envs.registration import registry

from gfn_envs.task import Task

NAMESPACE = "gfn_envs/"
PROBES = 8


def resolve_env_id(env_id: str) -> str:
    """The registered gfn_envs id for ``env_id`` (``HyperGrid-v0`` → ``gfn_envs/HyperGrid-v0``).

    Raises a ValueError for an unknown id and for a Gymnasium id that is not a gfn_envs task.
    """
    if not isinstance(env_id, str):
        raise ValueError(f"env id must be a string, got {env_id!r}")
    ours = sorted(k for k in registry if k.startswith(NAMESPACE))
    for candidate in (env_id, NAMESPACE + env_id):
        if candidate in ours:
            return candidate
    if env_id in registry:
        raise ValueError(
            f"{env_id!r} is a Gymnasium env but not a gfn_envs task; gfn_agents train GFlowNets "
            f"on gfn_envs tasks: {ours}"
        )
    raise ValueError(f"unknown env id {env_id!r}; registered gfn_envs ids: {ours}")


def env_identity(env: Any, env_kwargs: dict[str, Any] | None) -> tuple[str | None, dict[str, Any]]:
    """The registered id and kwargs a checkpoint stores (the device is the loader's choice)."""
    if isinstance(env, str):
        return resolve_env_id(env), {k: v for k, v in (env_kwargs or {}).items() if k != "device"}
    if env_kwargs:
        raise ValueError("env_kwargs are only for an env given by its registered id")
    spec = getattr(env, "spec", None)
    if spec is None:
        return None, {}
    skip = ("vectorization_mode", "num_envs", "device")
    return spec.id, {k: v for k, v in spec.kwargs.items() if k not in skip}


def task_fingerprint(task: Task) -> dict[str, Any]:
    """Structure of ``task`` and log R of :data:`PROBES` probe objects (a seeded uniform walk)."""
    generator = torch.Generator(device=task.device).manual_seed(0)
    probes = task.sample_terminal(PROBES, generator)
    log_rewards = task.log_reward(probes).double().cpu().tolist()
    return {
        **task_structure(task),
        "probe_objects": probes.cpu().tolist(),
        "probe_log_rewards": [v if math.isfinite(v) else str(v) for v in log_rewards],
    }


def task_structure(task: Task) -> dict[str, Any]:
    """The task's class, state shape, action counts, observation size and maximal length."""
    return {
        "class": f"{type(task).__module__}.{type(task).__qualname__}",
        "state_shape": list(task.state_shape),
        "n_actions": int(task.n_actions),
        "n_backward_actions": int(task.n_backward_actions),
        "obs_dim": int(task.obs_dim),
        "max_length": int(task.max_length),
    }


def env_mismatch(saved: dict[str, Any], task: Task) -> str | None:
    """How ``task`` differs from the saved fingerprint, or None when it matches."""
    current = task_structure(task)
    differences = [
        f"{key} {saved.get(key)!r} != {value!r}"
        for key, value in current.items()
        if saved.get(key) != value
    ]
    if differences:
        return "; ".join(differences)
    try:
        probes = torch.as_tensor(saved["probe_objects"], dtype=torch.long, device=task.device)
        expected = torch.tensor([float(v) for v in saved["probe_log_rewards"]], dtype=torch.float64)
        if tuple(probes.shape) != (len(expected), *task.state_shape):
            return "the probe objects have another shape"
        if not bool(task.is_terminal(probes).all()):
            return "the probe objects are not terminal objects of this task"
        found = task.log_reward(probes).double().cpu()
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        return f"the probe objects do not fit this task ({exc})"
    if not bool(torch.isclose(found, expected, rtol=1e-5, atol=1e-6).all()):
        return (
            f"log R of the probe objects differs (saved {expected[:3].tolist()}, "
            f"now {found[:3].tolist()}, ...): another reward"
        )
    return None


def describe_env(env_id: str | None, env_kwargs: dict[str, Any], fingerprint: Any) -> str:
    """One line naming an env spec: id, kwargs and the task's structure."""
    name = env_id if env_id is not None else "an unregistered env"
    if not isinstance(fingerprint, dict):
        return f"{name} {env_kwargs}"
    cls = str(fingerprint.get("class", "?")).rsplit(".", 1)[-1]
    return (
        f"{name} {env_kwargs} ({cls}, state shape {fingerprint.get('state_shape')}, "
        f"{fingerprint.get('n_actions')} actions, obs_dim {fingerprint.get('obs_dim')})"
    )


def check_env(
    path: str,
    saved: dict[str, Any],
    env_id: str | None,
    env_kwargs: dict[str, Any],
    task: Task,
    strict: bool,
) -> str:
    """Compare the env spec ``saved`` in checkpoint ``path`` with the task an agent was built on.

    A mismatch is a ValueError naming both specs, or with ``strict=False`` a warning. A checkpoint
    without a fingerprint (converted from format 1) warns that the env is not checked. Returns the
    two specs as one phrase for later error messages.
    """
    trained_on = describe_env(saved["id"], saved["kwargs"], saved["fingerprint"])
    here = describe_env(env_id, env_kwargs, task_structure(task))
    context = f"the file was trained on {trained_on}, this agent runs {here}"
    if saved["fingerprint"] is None:
        warnings.warn(f"{path} has no task fingerprint; the env is not checked", stacklevel=3)
        return context
    problem = env_mismatch(saved["fingerprint"], task)
    if problem is not None:
        message = f"{path} was trained on {trained_on}, not on {here}: {problem}"
        if strict:
            raise ValueError(message + "; pass strict_env=False to load it anyway")
        warnings.warn(message + "; loading anyway (strict_env=False)", stacklevel=3)
    return context
