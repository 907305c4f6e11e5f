"""The task behind an environment: what every adapter, wrapper and evaluator starts from."""

from __future__ import annotations

from typing import Any

from gfn_envs.task import Task


def task_of(env: Any) -> Task:
    """The :class:`Task` behind a task, a Gymnasium env (wrapped or not) or a vector env.

    Raises:
        TypeError: ``env`` is none of these.
    """
    if isinstance(env, Task):
        return env
    for candidate in (env, getattr(env, "unwrapped", None)):
        task = getattr(candidate, "task", None)
        if isinstance(task, Task):
            return task
    raise TypeError(f"expected a gfn_envs task or environment, got {type(env).__name__}")
