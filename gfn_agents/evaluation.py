"""Exact evaluation of samplers, and a callback that records the learning curve.

:func:`evaluate_sampler` computes the exact terminal distribution P_F^T of an agent (or of any
``forward_policy`` callable) by the dynamic programming of :mod:`gfn_envs.exact` and compares it
with the target P* = R/Z*:

* ``tv`` = ½Σ|P_F^T − P*|, ``l1`` = Σ|P_F^T − P*|, ``jsd`` (nats), ``kl`` = KL(P* ‖ P_F^T);
* ``logz_error`` = |log Z − log Z*| for agents that learn log Z;
* ``mode_mass`` = P_F^T(modes) and ``modes_found`` = the expected number of distinct modes among
  ``n_mode_samples`` draws, where the modes are the task's ``modes()`` (default: the objects of
  maximal reward).
"""

from __future__ import annotations

import time
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from gfn_envs import metrics
from gfn_envs.exact import ForwardPolicy, exact_distribution
from gfn_envs.unwrap import task_of


def evaluate_sampler(
    agent_or_policy: Any, env: Any = None, n_mode_samples: int = 1000
) -> dict[str, float]:
    """Exact metrics of a sampler on an enumerable task (see the module docstring).

    Args:
        agent_or_policy: a gfn_agents agent, an object with ``forward_log_probs``, or a
            ``forward_policy(obs, mask) -> log-probs`` callable.
        env: the env or task; defaults to the agent's own.
        n_mode_samples: draws over which ``modes_found`` is counted.
    """
    policy: ForwardPolicy = getattr(agent_or_policy, "forward_log_probs", agent_or_policy)
    if env is None:
        env = getattr(agent_or_policy, "task", None)
        if env is None:
            raise ValueError("env is required when evaluating a bare policy callable")
    task = task_of(env)
    p = exact_distribution(task, policy)
    target = task.true_distribution().to(p.device)
    out = metrics.exact_metrics(p, target)
    modes = task.modes()
    out["mode_mass"] = float(p[modes].sum())
    out["modes_found"] = metrics.expected_modes_found(p, modes, n_mode_samples)
    log_z = getattr(agent_or_policy, "log_z", None)
    if log_z is not None:
        out["logz_error"] = metrics.logz_error(log_z, task.log_partition())
    return out


class ExactEvalCallback(BaseCallback):
    """Exact metrics before training, every ``eval_freq`` iterations and after the last iteration.

    The curve is kept in ``self.history`` (a list of dicts with ``trajectories``, ``timesteps``,
    ``wall_time`` and the metrics) and logged under ``eval/`` (with ``eval/trajectories``, the
    count the row was evaluated at). Each evaluation is recorded during its own iteration, before
    the agent dumps that iteration's row; the evaluation before training is dumped at once (step
    ``num_timesteps``); the final sampler is evaluated at training end unless the last iteration
    already was, and lands in the last row. Training stops once ``tv`` falls to ``tv_threshold``
    when one is given. ``wall_time`` excludes the time spent evaluating.
    """

    def __init__(
        self, eval_freq: int = 10, tv_threshold: float | None = None, verbose: int = 0
    ) -> None:
        super().__init__(verbose)
        if eval_freq < 1:
            raise ValueError(f"eval_freq must be >= 1, got {eval_freq!r}")
        self.eval_freq, self.tv_threshold = eval_freq, tv_threshold
        self.history: list[dict[str, float]] = []
        self._start = 0.0
        self._eval_time = 0.0

    def _on_training_start(self) -> None:
        self._start = time.perf_counter()
        if not self.history:
            self._evaluate()
            self.logger.dump(step=self.model.num_timesteps)

    def _evaluate(self) -> dict[str, float]:
        t0 = time.perf_counter()
        result = evaluate_sampler(self.model)
        self._eval_time += time.perf_counter() - t0
        row = {
            "trajectories": float(self.model.num_trajectories),
            "timesteps": float(self.model.num_timesteps),
            "wall_time": time.perf_counter() - self._start - self._eval_time,
            **result,
        }
        self.history.append(row)
        self.logger.record("eval/trajectories", self.model.num_trajectories)
        for key, value in result.items():
            self.logger.record(f"eval/{key}", value)
        if self.verbose:
            print(f"trajectories={row['trajectories']:.0f} tv={result['tv']:.4f}")
        return result

    def _on_step(self) -> bool:
        if self.n_calls % self.eval_freq != 0:
            return True
        result = self._evaluate()
        return self.tv_threshold is None or result["tv"] > self.tv_threshold

    def _on_training_end(self) -> None:
        if not self.history or self.history[-1]["trajectories"] != self.model.num_trajectories:
            self._evaluate()
