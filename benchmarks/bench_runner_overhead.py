"""What the ``gfn-bench`` runner adds to a run: a plain ``learn`` loop against the runner.

Both sides train the same agent with the same seed on the same config and evaluate it exactly at
the same trajectory counts (0, the first iteration boundary at or after each multiple of the
config's ``eval_every``, and the end), so they do identical training and evaluation work:

* **plain**: ``make_agent`` + ``learn(total_trajectories=…, callback=…)`` with a callback that calls
  ``evaluate_sampler`` on that schedule, and nothing else;
* **runner**: ``execute_run`` of the same run: the same, plus the run folder, ``run.json`` (package
  versions, git commit), the curve written line by line with fsync, checkpoints (at most one per
  ``--checkpoint-seconds`` of training, and the final one) and, on 2-D grids, the final terminal
  distribution for the heatmaps.

After one untimed warm-up run, the two sides alternate ``--repeats`` times; the script prints
the median [min–max] wall and CPU seconds of each and the overhead (runner / plain − 1) of the
medians and of the minima (the least disturbed repeats), with the thread count. On a shared machine the CPU seconds are the steadier of the two;
the wall seconds also count the runner's file writes. The runner also times its own additions
(checkpoints, and bookkeeping: records, curve lines with fsync, the heatmap's file) in
``run.json``; the script prints them as a share of the run's training and evaluation time, a
measure that the load on the machine hardly moves. Process start-up (imports, about 2 s per
worker) is paid once per worker of a sweep, not per run, and is not included. Usage::

    .venv/bin/python benchmarks/bench_runner_overhead.py                      # TB on 2x128, quick
    .venv/bin/python benchmarks/bench_runner_overhead.py --agent RL-G --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback

from gfn_agents import evaluate_sampler, make_agent
from gfn_agents.experiments.cli import resolve_config
from gfn_agents.experiments.config import Experiment, load_experiment
from gfn_agents.experiments.runs import EvaluationSchedule, RunJob, execute_run


class ScheduledEvaluation(BaseCallback):
    """Exact evaluation at the runner's schedule, results kept in memory."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.schedule = EvaluationSchedule(every, 0)
        self.history: list[dict[str, float]] = []
        self.last = -1

    def evaluate(self) -> None:
        self.history.append(evaluate_sampler(self.model))
        self.last = self.model.num_trajectories
        self.schedule.done(self.last)

    def _on_step(self) -> bool:
        if self.schedule.due(self.model.num_trajectories):
            self.evaluate()
        return True


def plain(experiment: Experiment, label: str, seed: int) -> None:
    spec = experiment.agent(label)
    agent = make_agent(
        spec.name, experiment.env_id, env_kwargs=experiment.env_kwargs, seed=seed, **spec.kwargs
    )
    callback = ScheduledEvaluation(experiment.budget.eval_every)
    callback.init_callback(agent)  # type: ignore[arg-type]
    callback.evaluate()
    agent.learn(total_trajectories=experiment.budget.trajectories, callback=callback)
    if callback.last != agent.num_trajectories:
        callback.evaluate()


def runner(
    experiment: Experiment, label: str, seed: int, checkpoint_seconds: float, account: list[float]
) -> None:
    """The run through the runner; appends to ``account`` its self-reported overhead: seconds of
    checkpoints and bookkeeping over seconds of training and evaluation (from ``run.json``)."""
    with tempfile.TemporaryDirectory() as directory:
        job = RunJob(experiment, label, seed, directory, checkpoint_seconds=checkpoint_seconds)
        outcome = execute_run(job)
        record = json.loads((job.run_dir / "run.json").read_text())
    if outcome["status"] != "finished":
        raise RuntimeError(f"the run did not finish: {outcome}")
    added = record["checkpoint_seconds"] + record["bookkeeping_seconds"]
    account.append(added / (record["training_seconds"] + record["eval_seconds"]))


def timed(function: Callable[..., None], *args: Any) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="paper/hypergrid-2x128", help="config file or name")
    parser.add_argument("--agent", default="TB", help="agent label in the config")
    parser.add_argument("--full", action="store_true", help="the full budget, not [quick]")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-seconds", type=float, default=30.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    experiment = load_experiment(resolve_config(args.config), quick=not args.full)
    budget = experiment.budget
    print(
        f"{experiment.name} {args.agent} seed {args.seed}: {budget.trajectories:,} trajectories, "
        f"evaluated every {budget.eval_every:,}; 1 torch thread; checkpoints at most every "
        f"{args.checkpoint_seconds:g} s"
    )
    timed(plain, experiment, args.agent, args.seed)  # warm-up: imports, caches, the DP's structure
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "runner": []}
    account: list[float] = []
    for i in range(args.repeats):
        times["plain"].append(timed(plain, experiment, args.agent, args.seed))
        times["runner"].append(
            timed(runner, experiment, args.agent, args.seed, args.checkpoint_seconds, account)
        )
        line = ", ".join(f"{k} {v[-1][0]:.1f} s ({v[-1][1]:.1f} CPU s)" for k, v in times.items())
        print(f"repeat {i}: {line}")
    for column, what in enumerate(("wall", "CPU")):
        med = {k: statistics.median(t[column] for t in v) for k, v in times.items()}
        for name, values in times.items():
            low, high = min(t[column] for t in values), max(t[column] for t in values)
            print(f"{what:>4} {name:>6}: median {med[name]:.2f} s [{low:.2f}–{high:.2f}]")
        low = {k: min(t[column] for t in v) for k, v in times.items()}
        print(
            f"{what:>4} overhead of the runner: {100 * (med['runner'] / med['plain'] - 1):+.2f} % "
            f"(medians), {100 * (low['runner'] / low['plain'] - 1):+.2f} % (minima)"
        )
    print(
        f"self-accounted (run.json): checkpoints + bookkeeping = median "
        f"{100 * statistics.median(account):.2f} % [{100 * min(account):.2f}–"
        f"{100 * max(account):.2f}] of training + evaluation"
    )


if __name__ == "__main__":
    main()
