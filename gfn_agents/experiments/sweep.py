"""A sweep: every (agent, seed) run of one or more experiments, checked up front, run in parallel.

:func:`plan` parses and checks every config (env, agents, kwargs) and every existing run folder
(config hashes) before anything starts, then returns the jobs. :func:`run_jobs` executes them in a
local process pool (``spawn`` context, one torch thread per job by default) or, for one job at a
time, in this process. :func:`commands` turns the jobs into one shell command each, for any
scheduler (a SLURM job array, several machines).

Each experiment's folder is ``<out>/<name>/``; it holds ``experiment.json`` (the config as run,
and for 2-D grids ``target_distribution.npy``), one folder per run (see
:mod:`gfn_agents.experiments.runs`) and, after the sweep, the summary and report.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import gymnasium as gym

from gfn_agents.experiments.config import Experiment, load_experiment
from gfn_agents.experiments.files import write_json, write_npy
from gfn_agents.experiments.learners import check_experiment
from gfn_agents.experiments.runs import (
    RunJob,
    check_record,
    execute_run,
    finished,
    grid_distribution,
    is_grid_2d,
    machine,
)
from gfn_envs.unwrap import task_of

EXPERIMENT, TARGET = "experiment.json", "target_distribution.npy"


@dataclass(frozen=True)
class Options:
    """Command-line options shared by every job of a sweep."""

    out: str = "runs"
    quick: bool = False
    seeds: tuple[int, ...] | None = None
    threads: int = 1
    device: str = "cpu"
    checkpoint_seconds: float = 30.0


def experiment_dir(experiment: Experiment, options: Options) -> Path:
    """``<out>/<name>``, where ``out`` defaults to ``runs`` (``runs/quick`` under --quick)."""
    return Path(options.out) / experiment.name


def plan(configs: Sequence[str], options: Options) -> list[tuple[Experiment, bool, list[RunJob]]]:
    """Parse and check every config and existing run; return (experiment, exact, jobs) each.

    Raises a ConfigError (bad config) or ConfigChanged (a run folder of another config) before
    anything has run.
    """
    seeds = list(options.seeds) if options.seeds is not None else None
    experiments = [load_experiment(path, quick=options.quick, seeds=seeds) for path in configs]
    names = [e.name for e in experiments]
    for e in experiments:
        if names.count(e.name) > 1:
            raise ValueError(f"two configs are named {e.name!r}; names must be distinct")
    out = []
    for experiment in experiments:
        exact = check_experiment(experiment)
        directory = str(experiment_dir(experiment, options))
        jobs = [
            RunJob(
                experiment,
                label,
                seed,
                directory,
                threads=options.threads,
                device=options.device,
                checkpoint_seconds=options.checkpoint_seconds,
            )
            for label in experiment.labels
            for seed in experiment.budget.seeds
        ]
        for job in jobs:
            check_record(job)
        out.append((experiment, exact, jobs))
    return out


def write_experiment(experiment: Experiment, exact: bool, options: Options, command: str) -> Path:
    """Write ``experiment.json`` (and a 2-D grid's target) into the experiment's folder."""
    directory = experiment_dir(experiment, options)
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        **experiment.to_json(),
        "exact": exact,
        "command": command,
        "threads": options.threads,
        "machine": machine(),
    }
    write_json(directory / EXPERIMENT, data)
    task = task_of(gym.make(experiment.env_id, **experiment.env_kwargs))
    if is_grid_2d(task):
        write_npy(directory / TARGET, grid_distribution(task))
    return directory


def run_command(config: str, options: Options) -> str:
    """The ``gfn-bench run`` command for ``config`` (as the user named it) and ``options``."""
    parts = ["gfn-bench", "run", config, "--out", options.out]
    if options.quick:
        parts.append("--quick")
    if options.seeds is not None:
        parts += ["--seeds", *map(str, options.seeds)]
    return shlex.join(parts)


def commands(config: str, jobs: Sequence[RunJob], options: Options) -> list[str]:
    """One ``gfn-bench run-one`` command per job of ``config`` (as the user named it)."""
    out = []
    for job in jobs:
        parts = ["gfn-bench", "run-one", config, "--agent", job.label]
        parts += ["--seed", str(job.seed), "--out", options.out, "--threads", str(job.threads)]
        if options.quick:
            parts.append("--quick")
        if options.device != "cpu":
            parts += ["--device", options.device]
        out.append(shlex.join(parts))
    return out


def _describe(outcome: dict[str, Any]) -> str:
    final = outcome.get("final") or {}
    metric = next((f"{k}={final[k]:.4g}" for k in ("tv", "top_k_reward") if final.get(k)), "")
    text = f"{outcome['status']:>11}  {outcome['label']} seed {outcome['seed']}"
    text += f"  {outcome.get('seconds', 0.0):.0f} s  {metric}"
    if "error" in outcome:
        text += f"\n             {outcome['error']}"
    return text


def run_jobs(
    jobs: Sequence[RunJob],
    processes: int = 1,
    report: Callable[[str], None] = lambda line: print(line, flush=True),
) -> list[dict[str, Any]]:
    """Execute ``jobs``, ``processes`` at a time (in this process when 1); return the outcomes.

    Runs that finished before are reported as skipped without starting a process.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes!r}")
    outcomes: list[dict[str, Any]] = []
    pending = []
    for job in jobs:
        done = finished(job)
        if done is None:
            pending.append(job)
        else:
            outcomes.append(done)
            report(_describe(done))
    if min(processes, len(pending)) <= 1:
        for job in pending:
            outcomes.append(execute_run(job))
            report(_describe(outcomes[-1]))
        return outcomes
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(execute_run, job) for job in pending]
        try:
            for future in as_completed(futures):
                outcomes.append(future.result())
                report(_describe(outcomes[-1]))
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return outcomes
