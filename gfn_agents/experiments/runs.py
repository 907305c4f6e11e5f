"""One run (an agent and a seed of an experiment) in its own folder, resumable.

``<experiment dir>/<agent label>/seed-<seed>/`` holds:

* ``curve.jsonl``: one JSON object per evaluation, with ``trajectories``, ``timesteps``,
  ``wall_time`` (seconds of training so far, evaluations and checkpoints excluded, summed over
  restarts) and the metrics (non-finite values are written as ``null``);
* the checkpoint (``checkpoint.zip`` for agents, ``model.pt`` + ``model.json`` for SB3);
* ``run.json``: the config hash, seed, budget, package versions, git commit, threads, device,
  machine, every start, the status (``running``, ``interrupted``, ``failed``, ``finished``), the
  end, the final metrics, and the seconds of training, of evaluation, of checkpoints and of the
  runner's own bookkeeping (records, curve lines, the heatmap's file), and the CPU seconds of the
  run's process, all summed over restarts;
* ``terminal_distribution.npy`` on 2-D grids: the learned P_F^T as an H × H array (the final
  evaluation and this file share one policy pass, :class:`FinalSampler`).

**Evaluation schedule.** At 0 trajectories, then at the first iteration boundary at or after each
multiple of ``eval_every`` (one evaluation per multiple, even when an iteration crosses several),
and at the end. Evaluation never touches the training random streams.

**Checkpoints and resume.** After an evaluation the learner is checkpointed (atomically) when at
least ``checkpoint_seconds`` have passed since the last checkpoint (0: at every evaluation), and
always at the end. Re-running a run whose ``run.json`` says ``finished`` does nothing. Otherwise
it resumes from its checkpoint: the curve is cut back to the checkpoint's trajectory count and
training continues with the restored weights, optimizers, counters and random states, so the
resumed curve equals an uninterrupted one. Learners that cannot resume exactly (SB3 baselines,
agents with a replay buffer) restart from scratch. A ``run.json`` with another config hash is an
error: results of two configs are never mixed.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gfn_agents import evaluate_sampler
from gfn_agents.experiments.config import Experiment, portable_path
from gfn_agents.experiments.files import read_json, write_bytes, write_json, write_npy
from gfn_agents.experiments.learners import (
    CHECKPOINT,
    WEIGHTS,
    AgentLearner,
    Learner,
    build_learner,
)
from gfn_envs.exact import exact_distribution
from gfn_envs.task import Task
from gfn_envs.tasks.hypergrid import HyperGrid

CURVE, RECORD, DISTRIBUTION = "curve.jsonl", "run.json", "terminal_distribution.npy"
PACKAGES = ("gfn-gym", "torch", "numpy", "gymnasium", "stable-baselines3", "sb3-contrib")


class RunInterrupted(Exception):
    """Raised by the ``stop_after`` hook: the run stops as if killed after a checkpoint."""


class ConfigChanged(ValueError):
    """A run folder holds results of a different config (its hash differs)."""


@dataclass(frozen=True)
class RunJob:
    """Everything a worker process needs to execute one run.

    Args:
        experiment: the parsed config.
        label: the agent's label.
        seed: the run's seed.
        directory: the experiment's output folder.
        threads: torch threads of the run.
        device: torch device of the learner.
        checkpoint_seconds: least seconds between periodic checkpoints (0: at every evaluation).
        stop_after: stop (:class:`RunInterrupted`) after this many periodic evaluations; for tests.
    """

    experiment: Experiment
    label: str
    seed: int
    directory: str
    threads: int = 1
    device: str = "cpu"
    checkpoint_seconds: float = 30.0
    stop_after: int | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.directory) / self.label / f"seed-{self.seed}"

    @property
    def config_hash(self) -> str:
        return self.experiment.run_hash(self.label)


# ------------------------------------------------------------------------------ files
def finite(metrics: dict[str, float]) -> dict[str, float | None]:
    """Metrics with non-finite values as None (JSON null)."""
    return {k: (float(v) if math.isfinite(v) else None) for k, v in metrics.items()}


class Curve:
    """The append-only ``curve.jsonl`` of a run (a last line cut off mid-write is ignored)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lines = (path.read_text() if path.exists() else "").splitlines()
        self.rows: list[dict[str, Any]] = []
        for i, line in enumerate(lines):
            try:
                self.rows.append(json.loads(line))
            except json.JSONDecodeError:
                if i < len(lines) - 1:
                    raise ValueError(f"{path}: line {i + 1} is not JSON") from None
                # a last line cut off by a kill while it was written; the next rewrite drops it

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row, allow_nan=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows.append(row)

    def keep_until(self, trajectories: int) -> None:
        """Drop the rows after ``trajectories`` (rewritten atomically)."""
        self.rows = [r for r in self.rows if r["trajectories"] <= trajectories]
        write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in self.rows).encode())


def check_record(job: RunJob) -> dict[str, Any] | None:
    """The run's ``run.json``; :class:`ConfigChanged` when it was made by another config."""
    record = read_json(job.run_dir / RECORD)
    if record is not None and record.get("config_hash") != job.config_hash:
        raise ConfigChanged(
            f"{job.run_dir} holds a run of a different config (hash {record.get('config_hash')}, "
            f"now {job.config_hash}); use another --out or remove that folder"
        )
    return record


# ------------------------------------------------------------------------------ provenance
def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git() -> dict[str, Any]:
    """The commit of the checkout the package runs from (None outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:

        def git(*args: str) -> str:
            out = subprocess.run(
                ["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10
            )
            if out.returncode:
                raise OSError(out.stderr)
            return out.stdout.strip()

        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine() -> dict[str, Any]:
    """Processor, core count and platform of this machine."""
    processor = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                processor = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"processor": processor, "cpus": os.cpu_count(), "platform": platform.platform()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------ schedule
class EvaluationSchedule:
    """Due at the first iteration boundary at or after each multiple of ``every`` trajectories.

    After an evaluation at n trajectories the next one is due at the next multiple above n, so
    there is at most one evaluation per multiple, whatever the batch size.
    """

    def __init__(self, every: int, last: int) -> None:
        self.every = every
        self.done(last)

    def due(self, trajectories: int) -> bool:
        return trajectories >= self.next

    def done(self, trajectories: int) -> None:
        self.next = (trajectories // self.every + 1) * self.every


def is_grid_2d(task: Task) -> bool:
    """Whether the task is a 2-D HyperGrid (whose distributions are drawn as heatmaps)."""
    return isinstance(task, HyperGrid) and task.ndim == 2


def grid_distribution(task: HyperGrid, p: torch.Tensor | None = None) -> np.ndarray:
    """A distribution over a 2-D grid's cells (default: the target R/Z*) as an H × H array
    indexed ``[x0, x1]``."""
    p = task.true_distribution() if p is None else p
    cells = task.terminal_states().cpu().numpy()
    grid = np.zeros((task.height, task.height))
    grid[cells[:, 0], cells[:, 1]] = p.detach().cpu().double().numpy()
    return grid


class _Memo:
    """A forward policy that keeps its answer for each observation tensor it was called with.

    The exact DP calls the policy on slices of the task's cached state table, so a second DP right
    after the first (same parameters) is answered from memory. The observation tensors are kept
    alive with their answers, so their memory cannot be reused by other tensors meanwhile.
    """

    def __init__(self, policy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.policy = policy
        self.answers: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        key = (obs.data_ptr(), obs.shape, obs.stride(), obs.dtype, mask.data_ptr(), mask.shape)
        if key not in self.answers:
            self.answers[key] = (obs, self.policy(obs, mask))
        return self.answers[key][1]


class FinalSampler:
    """The learner's sampler at the end, for the final evaluation and the heatmap: both go through
    one :class:`_Memo` of its policy, so they share one pass over every state.

    It has what :func:`gfn_agents.evaluate_sampler` reads: ``task``, ``forward_log_probs`` and,
    for learners that learn it, ``log_z``.
    """

    def __init__(self, learner: Learner) -> None:
        self.task = learner.task
        self.forward_log_probs = _Memo(learner.forward_policy)
        if learner.log_z is not None:
            self.log_z = learner.log_z

    def grid(self) -> np.ndarray:
        """The terminal distribution on a 2-D grid (see :func:`grid_distribution`)."""
        return grid_distribution(self.task, exact_distribution(self.task, self.forward_log_probs))


# ------------------------------------------------------------------------------ the run
class _Run:
    """State of one execution of a run: learner, curve, clock, schedule, record."""

    def __init__(self, job: RunJob, record: dict[str, Any] | None) -> None:
        self.job, self.dir = job, job.run_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.curve = Curve(self.dir / CURVE)
        self.learner = (record is not None and self._resume()) or self._fresh()
        last = self.curve.rows[-1] if self.curve.rows else None
        self.offset = float(last["wall_time"]) if last else 0.0
        self.schedule = EvaluationSchedule(
            job.experiment.budget.eval_every, self.learner.trajectories
        )
        self.evaluations = 0
        self.paused = {"eval": 0.0, "checkpoint": 0.0, "bookkeeping": 0.0}
        previous = record or {}
        self.totals = {k: previous.get(f"{k}_seconds", 0.0) for k in (*self.paused, "cpu")}
        self.start = self.last_checkpoint = time.perf_counter()
        self.cpu = time.process_time()
        with self.pause("bookkeeping"):
            self.record = self._start_record(previous)

    def _resume(self) -> Learner | None:
        if not (self.dir / CHECKPOINT).exists():
            return None
        learner = AgentLearner.load(self.dir, self.job.device)
        at = learner.trajectories
        if not learner.resumable or not any(r["trajectories"] == at for r in self.curve.rows):
            return None
        self.curve.keep_until(at)
        return learner

    def _fresh(self) -> Learner:
        for name in (*WEIGHTS, DISTRIBUTION):
            (self.dir / name).unlink(missing_ok=True)
        self.curve.keep_until(-1)
        job = self.job
        return build_learner(job.experiment, job.label, job.seed, job.device)

    def _start_record(self, previous: dict[str, Any]) -> dict[str, Any]:
        job, spec = self.job, self.job.experiment.agent(self.job.label)
        starts = previous.get("starts", []) + [
            {"at": _now(), "trajectories": self.learner.trajectories}
        ]
        record = {
            "experiment": job.experiment.name,
            "config": portable_path(job.experiment.path),
            "config_hash": job.config_hash,
            "agent": job.label,
            "agent_name": spec.name,
            "agent_kwargs": spec.kwargs,
            "seed": job.seed,
            "budget": {
                "trajectories": job.experiment.budget.trajectories,
                "eval_every": job.experiment.budget.eval_every,
            },
            "evaluation": job.experiment.evaluation,
            "status": "running",
            "started": starts[0]["at"],
            "starts": starts,
            "threads": job.threads,
            "device": job.device,
            "versions": _versions(),
            "git": _git(),
            "machine": machine(),
        }
        write_json(self.dir / RECORD, record)
        return record

    @contextmanager
    def pause(self, what: str) -> Iterator[None]:
        """Time spent inside is not training time (it goes to ``<what>_seconds``)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.paused[what] += time.perf_counter() - t0

    def training_seconds(self) -> float:
        elapsed = time.perf_counter() - self.start - sum(self.paused.values())
        return self.offset + elapsed

    def evaluate(self, final: FinalSampler | None = None) -> None:
        learner = self.learner
        wall_time = self.training_seconds()
        with self.pause("eval"):
            if final is None:
                metrics = learner.evaluate(self.job.experiment.evaluation)
            else:
                metrics = evaluate_sampler(final)
        row = {
            "trajectories": learner.trajectories,
            "timesteps": learner.timesteps,
            "wall_time": wall_time,
            **finite(metrics),
        }
        with self.pause("bookkeeping"):
            self.curve.append(row)
        self.schedule.done(learner.trajectories)

    def checkpoint(self) -> str:
        with self.pause("checkpoint"):
            name = self.learner.save(self.dir)
        self.last_checkpoint = time.perf_counter()
        return name

    def on_iteration(self) -> bool:
        trajectories = self.learner.trajectories
        if trajectories >= self.job.experiment.budget.trajectories:
            return True  # the last iteration: execute() evaluates and checkpoints the end
        if not self.schedule.due(trajectories):
            return True
        self.evaluate()
        self.evaluations += 1
        since = time.perf_counter() - self.last_checkpoint
        if self.learner.resumable and since >= self.job.checkpoint_seconds:
            self.checkpoint()
        if self.job.stop_after is not None and self.evaluations >= self.job.stop_after:
            raise RunInterrupted(f"stopped after {self.evaluations} evaluations")
        return True

    def execute(self) -> dict[str, Any]:
        if not self.curve.rows:
            self.evaluate()
        self.learner.learn(self.job.experiment.budget.trajectories, self.on_iteration)
        grid = is_grid_2d(self.learner.task)
        final = FinalSampler(self.learner) if grid else None
        if self.curve.rows[-1]["trajectories"] != self.learner.trajectories:
            self.evaluate(final)
        checkpoint = self.checkpoint()
        if final is not None:
            with self.pause("bookkeeping"):  # a DP over the evaluation's remembered pass
                write_npy(self.dir / DISTRIBUTION, final.grid())
        self.finish("finished", checkpoint=checkpoint, final=self.curve.rows[-1])
        return self.curve.rows[-1]

    def finish(self, status: str, **fields: Any) -> None:
        with self.pause("bookkeeping"):
            self.record.update(status=status, ended=_now(), **fields)
            self.record["training_seconds"] = self.training_seconds()
            self.record["cpu_seconds"] = self.totals["cpu"] + time.process_time() - self.cpu
            for what, seconds in self.paused.items():
                self.record[f"{what}_seconds"] = self.totals[what] + seconds
            write_json(self.dir / RECORD, self.record)


def _identity(job: RunJob) -> dict[str, Any]:
    return {"label": job.label, "seed": job.seed, "directory": str(job.run_dir)}


def finished(job: RunJob) -> dict[str, Any] | None:
    """The ``skipped`` outcome of a run that finished before, else None (:class:`ConfigChanged`
    when its folder holds another config's run)."""
    record = check_record(job)
    if record is None or record.get("status") != "finished":
        return None
    return {**_identity(job), "status": "skipped", "seconds": 0.0, "final": record.get("final")}


def execute_run(job: RunJob) -> dict[str, Any]:
    """Execute (or skip, or resume) one run; return its outcome.

    The outcome has ``status`` (``skipped``, ``finished``, ``interrupted`` or ``failed``), the
    run's ``label``, ``seed`` and ``directory``, ``seconds`` of this execution, and ``final``
    metrics or an ``error``.
    """
    done = finished(job)
    if done is not None:
        return done
    torch.set_num_threads(job.threads)
    t0 = time.perf_counter()
    outcome = _identity(job)
    try:
        run = _Run(job, check_record(job))
    except Exception as exc:  # noqa: BLE001  (recorded in the outcome; the sweep goes on)
        return {
            **outcome,
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "seconds": time.perf_counter() - t0,
        }
    try:
        final = run.execute()
        outcome.update(status="finished", final=final)
    except RunInterrupted as exc:
        run.finish("interrupted")
        outcome.update(status="interrupted", error=str(exc))
    except Exception as exc:  # a failed run is recorded and the sweep goes on  # noqa: BLE001
        run.finish("failed", error=traceback.format_exc())
        outcome.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    return {**outcome, "seconds": time.perf_counter() - t0}
