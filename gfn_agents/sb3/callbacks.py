"""SB3 callbacks for GFlowNet training: the soft-reward policy feed, trajectory budgets and exact
learning curves.

Budgets are in trajectories: :class:`TrajectoryBudgetCallback` stops ``learn`` after a number of
finished episodes, and :class:`ExactTVCallback` records exact metrics along the way, with the
rows of :class:`gfn_agents.ExactEvalCallback`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from gfn_agents.evaluation import evaluate_sampler
from gfn_agents.sb3.policy import sb3_forward_policy
from gfn_envs.unwrap import task_of


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
        if (
            isinstance(total_trajectories, bool)
            or not isinstance(total_trajectories, int)
            or total_trajectories < 1
        ):
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

    ``history`` holds the rows of :class:`gfn_agents.ExactEvalCallback`: ``trajectories`` (finished
    episodes), ``timesteps`` (SB3's ``num_timesteps``), ``wall_time`` (seconds of training,
    evaluation excluded) and the metrics of :func:`gfn_agents.evaluate_sampler` (``tv``, ``l1``,
    ``jsd``, ``kl``, ``mode_mass``, ``modes_found``); the metrics and ``trajectories`` are also logged
    under ``eval/``.
    A row is recorded at the start, every ``every`` trajectories and at the end.

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
        self.history: list[dict[str, float]] = []
        self.num_trajectories = 0
        self._next = 0
        self._start = 0.0
        self._eval_time = 0.0

    def evaluate(self) -> dict[str, float]:
        """Exact metrics of the current policy (:func:`gfn_agents.evaluate_sampler`)."""
        return evaluate_sampler(sb3_forward_policy(self.model), self.task)

    def _record(self) -> None:
        t0 = time.perf_counter()
        result = self.evaluate()
        self._eval_time += time.perf_counter() - t0
        self.history.append(
            {
                "trajectories": float(self.num_trajectories),
                "timesteps": float(self.num_timesteps),
                "wall_time": time.perf_counter() - self._start - self._eval_time,
                **result,
            }
        )
        self.logger.record("eval/trajectories", self.num_trajectories)
        for key, value in result.items():
            self.logger.record(f"eval/{key}", value)
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
