"""Summaries of an experiment folder: every agent's final metrics over seeds, and its claim.

:func:`load_runs` reads the run folders; :func:`summarize` returns what ``summary.json`` holds:

* ``experiment``: the config as run (``experiment.json``);
* ``agents``: per agent label, the ``seeds`` with a finished run, the ``unfinished`` ones, and
  ``final``: for every metric of the last evaluation (plus ``trajectories`` and ``wall_time``),
  its ``mean``, ``std`` (population, ddof = 0), ``min`` and ``max`` over seeds (None where a seed's
  value is not finite); with a claim, ``to_threshold``: trajectories to the claim's threshold
  (:func:`gfn_agents.experiments.claims.spread`);
* ``claim``: the verdict (:func:`gfn_agents.experiments.claims.judge`) or None;
* ``sweep``: first start, last end, the summed seconds of the runs (training, evaluation and
  checkpoints) and their summed CPU seconds.

Only finished runs count; the report lists unfinished ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gfn_agents.experiments.claims import first_reached, judge, spread
from gfn_agents.experiments.config import Claim
from gfn_agents.experiments.files import read_json
from gfn_agents.experiments.runs import CURVE, RECORD, Curve
from gfn_agents.experiments.sweep import EXPERIMENT

EXACT_METRICS = ("tv", "jsd", "kl", "logz_error", "mode_mass", "modes_found")
SAMPLED_METRICS = ("top_k_reward", "modes_found", "top_k_diversity", "unique", "oracle_calls")
"""The metrics report tables show, for exact and for sampled evaluation (all stay in the JSON)."""
EXACT_FIGURES = ("tv", "jsd", "logz_error", "mode_mass")
SAMPLED_FIGURES = ("top_k_reward", "modes_found", "top_k_diversity")
"""The metrics reports plot."""


@dataclass
class Run:
    """One run folder's record and curve."""

    label: str
    seed: int
    record: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def finished(self) -> bool:
        return self.record.get("status") == "finished"


def read_experiment(directory: Path) -> dict[str, Any]:
    """``experiment.json`` of an experiment folder (a ValueError names a folder without one)."""
    data = read_json(directory / EXPERIMENT)
    if data is None:
        raise ValueError(f"{directory} has no {EXPERIMENT}; is it a gfn-bench experiment folder?")
    return data


def claim_of(experiment: dict[str, Any]) -> Claim | None:
    raw = experiment.get("claims")
    if raw is None:
        return None
    return Claim(raw["metric"], raw["threshold"], tuple(raw["better"]), tuple(raw["than"]))


def load_runs(directory: Path, labels: list[str]) -> dict[str, list[Run]]:
    """The runs of each agent label, by seed (folders without a ``run.json`` are skipped)."""
    out: dict[str, list[Run]] = {}
    for label in labels:
        runs = []
        for seed_dir in sorted((directory / label).glob("seed-*")):
            record = read_json(seed_dir / RECORD)
            if record is None:
                continue
            rows = Curve(seed_dir / CURVE).rows
            runs.append(Run(label, int(record["seed"]), record, rows))
        out[label] = sorted(runs, key=lambda r: r.seed)
    return out


def statistics(values: list[float | None]) -> dict[str, float | None]:
    """mean, population std, min and max (all None if any value is None or none are given)."""
    if not values or any(v is None for v in values):
        return {"mean": None, "std": None, "min": None, "max": None}
    array = np.asarray(values, dtype=float)
    return {
        "mean": float(array.mean()),
        "std": float(array.std()),
        "min": float(array.min()),
        "max": float(array.max()),
    }


def summarize(directory: str | Path) -> dict[str, Any]:
    """The summary of an experiment folder (see the module docstring)."""
    directory = Path(directory)
    experiment = read_experiment(directory)
    labels = [a["label"] for a in experiment["agents"]]
    claim = claim_of(experiment)
    runs = load_runs(directory, labels)
    agents: dict[str, Any] = {}
    times: dict[str, dict[str, Any]] = {}
    for label in labels:
        done = [r for r in runs[label] if r.finished and r.rows]
        finals = [r.rows[-1] for r in done]
        keys = [k for k in finals[0] if all(k in f for f in finals)] if finals else []
        entry: dict[str, Any] = {
            "name": next(a["name"] for a in experiment["agents"] if a["label"] == label),
            "seeds": [r.seed for r in done],
            "unfinished": [r.seed for r in runs[label] if not r.finished],
            "final": {k: statistics([f[k] for f in finals]) for k in keys},
        }
        if claim is not None:
            times[label] = spread([first_reached(r.rows, claim) for r in done])
            entry["to_threshold"] = times[label]
        agents[label] = entry
    records = [r.record for group in runs.values() for r in group]
    return {
        "experiment": experiment,
        "agents": agents,
        "claim": judge(claim, times) if claim is not None else None,
        "sweep": {
            "started": min((r["started"] for r in records), default=None),
            "ended": max((r.get("ended", "") for r in records), default=None) or None,
            "run_seconds": sum(
                r.get("final", {}).get("wall_time", 0.0)
                + r.get("eval_seconds", 0.0)
                + r.get("checkpoint_seconds", 0.0)
                for r in records
            ),
            "cpu_seconds": sum(r.get("cpu_seconds", 0.0) for r in records),
        },
    }
