"""Experiment configs: one TOML file names a task, the agents, a budget and the claim to check.

```toml
name = "hypergrid-2x64"              # the experiment's folder name
description = "optional free text"
[env]
id = "gfn_envs/HyperGrid-v0"         # any registered gfn_envs id
kwargs = { ndim = 2, height = 64, R0 = 0.01 }
[budget]
trajectories = 200_000               # training trajectories per run
eval_every = 10_000                  # trajectories between evaluations
seeds = [0, 1, 2]
[quick]                              # optional: overrides budget keys under --quick
trajectories = 20_000
[evaluation]                         # optional: sampled evaluation of tasks too large to enumerate
samples = 1000                       # terminal objects drawn per evaluation
top_k = 100                          # the k of the top-k statistics
[claims]                             # optional
metric = "tv"
threshold = 0.1                      # reached when tv <= 0.1 (>= for metrics where higher is better)
better = ["RL-T", "RL-G"]
than = ["TB", "DB", "SubTB"]
[[agents]]
name = "RL-G"                        # any make_agent name, or PPO-soft, PPO-plain, A2C-soft
[[agents]]
name = "TB"
label = "TB-eps"                     # optional: the agent's name in results (default: name)
kwargs = { epsilon = 0.05 }
```

:func:`load_experiment` parses and checks the file's structure; every error is a
:class:`ConfigError` naming the file, the key and what is allowed. Checking the env and the agents'
kwargs needs the task, which :func:`gfn_agents.experiments.learners.check_experiment` builds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

FORMAT = 1
"""Version of the run layout; part of every run's config hash."""

TOP_KEYS = ("name", "description", "env", "budget", "quick", "evaluation", "claims", "agents")
ENV_KEYS = ("id", "kwargs")
BUDGET_KEYS = ("trajectories", "eval_every", "seeds")
EVALUATION_KEYS = ("samples", "top_k")
CLAIM_KEYS = ("metric", "threshold", "better", "than")
AGENT_KEYS = ("name", "label", "kwargs")
EVALUATION_DEFAULTS: dict[str, int] = {"samples": 1000, "top_k": 100}

LOWER_IS_BETTER = ("tv", "l1", "kl", "jsd", "logz_error")
HIGHER_IS_BETTER = (
    "mode_mass",
    "modes_found",
    "top_k_reward",
    "top_k_fitness",
    "top_k_diversity",
    "max_fitness",
    "unique",
    "mean_log_reward",
    "max_log_reward",
)
"""Metric names a claim may use, by the direction in which a sampler improves."""


class ConfigError(ValueError):
    """A config that cannot run: the message names the file, the key and what is allowed."""

    def __init__(self, path: str, key: str, message: str) -> None:
        super().__init__(f"{path}: {key}: {message}")
        self.path, self.key = path, key


@dataclass(frozen=True)
class Budget:
    """Trajectories per run, trajectories between evaluations, and the seeds."""

    trajectories: int
    eval_every: int
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class AgentSpec:
    """An agent by ``name`` (a make_agent name or an SB3 baseline) with its kwargs."""

    label: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """Does an agent of ``better`` reach ``metric`` = ``threshold`` in fewer trajectories than
    every agent of ``than``?"""

    metric: str
    threshold: float
    better: tuple[str, ...]
    than: tuple[str, ...]

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    def reached(self, value: float | None) -> bool:
        """Whether a metric value meets the threshold (≤ for divergences, ≥ otherwise)."""
        if value is None:
            return False
        return value <= self.threshold if self.lower_is_better else value >= self.threshold


@dataclass(frozen=True)
class Experiment:
    """A parsed config with its budget resolved (the ``[quick]`` one under ``quick``)."""

    path: str
    name: str
    description: str
    env_id: str
    env_kwargs: dict[str, Any]
    budget: Budget
    quick: bool
    evaluation: dict[str, int]
    claim: Claim | None
    agents: tuple[AgentSpec, ...]

    def agent(self, label: str) -> AgentSpec:
        """The agent called ``label``; a ConfigError lists the labels otherwise."""
        for spec in self.agents:
            if spec.label == label:
                return spec
        raise ConfigError(self.path, "agents", f"no agent {label!r}; agents: {self.labels}")

    @property
    def labels(self) -> list[str]:
        return [spec.label for spec in self.agents]

    def run_hash(self, label: str) -> str:
        """Hash of everything that determines a run's results except its seed.

        A run folder whose hash differs was made by a different config and is never mixed in.
        """
        spec = self.agent(label)
        content = {
            "format": FORMAT,
            "env": {"id": self.env_id, "kwargs": self.env_kwargs},
            "agent": {"name": spec.name, "kwargs": spec.kwargs},
            "budget": {
                "trajectories": self.budget.trajectories,
                "eval_every": self.budget.eval_every,
            },
            "evaluation": self.evaluation,
        }
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        """A JSON view of the experiment (what ``experiment.json`` holds)."""
        return {
            "config": portable_path(self.path),
            "name": self.name,
            "description": self.description,
            "env": {"id": self.env_id, "kwargs": self.env_kwargs},
            "budget": {
                "trajectories": self.budget.trajectories,
                "eval_every": self.budget.eval_every,
                "seeds": list(self.budget.seeds),
            },
            "quick": self.quick,
            "evaluation": self.evaluation,
            "claims": None
            if self.claim is None
            else {
                "metric": self.claim.metric,
                "threshold": self.claim.threshold,
                "better": list(self.claim.better),
                "than": list(self.claim.than),
            },
            "agents": [{"label": a.label, "name": a.name, "kwargs": a.kwargs} for a in self.agents],
        }


# ---------------------------------------------------------------------------------------- parsing
def _table(path: str, key: str, value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(path, key, f"must be a table, got {type(value).__name__}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        where = f"{key}.{unknown[0]}" if key else unknown[0]
        raise ConfigError(path, where, f"unknown key; allowed keys: {list(allowed)}")
    return value


def _positive_int(path: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(path, key, f"must be a positive integer, got {value!r}")
    return value


def _seeds(path: str, key: str, value: Any) -> tuple[int, ...]:
    ok = isinstance(value, list) and value
    ok = ok and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    if not ok or len(set(value)) != len(value):
        raise ConfigError(
            path, key, f"must be a non-empty list of distinct integers >= 0, got {value!r}"
        )
    return tuple(value)


def _budget(path: str, key: str, raw: dict[str, Any]) -> Budget:
    missing = [k for k in BUDGET_KEYS if k not in raw]
    if missing:
        raise ConfigError(path, f"{key}.{missing[0]}", f"missing; {key} needs {list(BUDGET_KEYS)}")
    trajectories = _positive_int(path, f"{key}.trajectories", raw["trajectories"])
    eval_every = _positive_int(path, f"{key}.eval_every", raw["eval_every"])
    if eval_every > trajectories:
        raise ConfigError(
            path,
            f"{key}.eval_every",
            f"must be at most {key}.trajectories ({trajectories}), got {eval_every}",
        )
    return Budget(trajectories, eval_every, _seeds(path, f"{key}.seeds", raw["seeds"]))


def _names(path: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(path, key, f"must be a non-empty list of agent labels, got {value!r}")
    return tuple(value)


def _claim(path: str, raw: dict[str, Any], labels: list[str]) -> Claim:
    missing = [k for k in CLAIM_KEYS if k not in raw]
    if missing:
        raise ConfigError(path, f"claims.{missing[0]}", f"missing; claims need {list(CLAIM_KEYS)}")
    metrics = LOWER_IS_BETTER + HIGHER_IS_BETTER
    if raw["metric"] not in metrics:
        raise ConfigError(
            path, "claims.metric", f"unknown metric {raw['metric']!r}; allowed: {list(metrics)}"
        )
    threshold = raw["threshold"]
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not math.isfinite(threshold)
    ):
        raise ConfigError(path, "claims.threshold", f"must be a finite number, got {threshold!r}")
    better, than = (
        _names(path, "claims.better", raw["better"]),
        _names(path, "claims.than", raw["than"]),
    )
    for key, group in (("claims.better", better), ("claims.than", than)):
        for label in group:
            if label not in labels:
                raise ConfigError(path, key, f"{label!r} is not an agent here; agents: {labels}")
    if set(better) & set(than):
        raise ConfigError(
            path, "claims", f"better and than share {sorted(set(better) & set(than))}"
        )
    return Claim(raw["metric"], float(threshold), better, than)


def _agents(path: str, raw: Any) -> tuple[AgentSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(path, "agents", "needs at least one [[agents]] table")
    specs: list[AgentSpec] = []
    for i, entry in enumerate(raw):
        key = f"agents[{i}]"
        entry = _table(path, key, entry, AGENT_KEYS)
        name = entry.get("name")
        if not isinstance(name, str):
            raise ConfigError(path, f"{key}.name", f"must be an agent name string, got {name!r}")
        label = entry.get("label", name)
        if not isinstance(label, str) or not label or "/" in label or label.startswith("."):
            raise ConfigError(path, f"{key}.label", f"must be a folder-safe name, got {label!r}")
        if label in (s.label for s in specs):
            raise ConfigError(
                path, f"{key}.label", f"{label!r} appears twice; give each agent its own label"
            )
        kwargs = entry.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise ConfigError(path, f"{key}.kwargs", f"must be a table, got {kwargs!r}")
        specs.append(AgentSpec(label, name, kwargs))
    return tuple(specs)


def read_toml(path: str) -> dict[str, Any]:
    """The TOML table in ``path``; a ConfigError for a missing or malformed file."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(path, "file", "no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "file", f"not valid TOML: {exc}") from None


def load_experiment(
    path: str | os.PathLike[str], quick: bool = False, seeds: list[int] | None = None
) -> Experiment:
    """Parse and check a config file (structure, budget, claims, agent labels).

    Args:
        path: the TOML file.
        quick: use the ``[quick]`` table's overrides of ``[budget]``.
        seeds: replace the budget's seeds (the command line's ``--seeds``).
    """
    path = os.fspath(path)
    raw = _table(path, "", read_toml(path), TOP_KEYS)
    name = raw.get("name")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ConfigError(path, "name", f"must be a folder-safe experiment name, got {name!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(path, "description", f"must be a string, got {description!r}")
    if "env" not in raw:
        raise ConfigError(path, "env", "missing; give [env] with id = a registered gfn_envs id")
    env = _table(path, "env", raw["env"], ENV_KEYS)
    if not isinstance(env.get("id"), str):
        raise ConfigError(path, "env.id", f"must be a registered env id, got {env.get('id')!r}")
    env_kwargs = env.get("kwargs", {})
    if not isinstance(env_kwargs, dict):
        raise ConfigError(path, "env.kwargs", f"must be a table, got {env_kwargs!r}")
    if "budget" not in raw:
        raise ConfigError(path, "budget", f"missing; give [budget] with {list(BUDGET_KEYS)}")
    budget_raw = _table(path, "budget", raw["budget"], BUDGET_KEYS)
    full = _budget(path, "budget", budget_raw)
    quick_raw = _table(path, "quick", raw.get("quick", {}), BUDGET_KEYS)
    quick_budget = _budget(path, "quick", {**budget_raw, **quick_raw})
    budget = quick_budget if quick else full
    if seeds is not None:
        budget = Budget(budget.trajectories, budget.eval_every, _seeds("--seeds", "seeds", seeds))
    evaluation_raw = _table(path, "evaluation", raw.get("evaluation", {}), EVALUATION_KEYS)
    evaluation = {
        key: _positive_int(path, f"evaluation.{key}", evaluation_raw.get(key, default))
        for key, default in EVALUATION_DEFAULTS.items()
    }
    agents = _agents(path, raw.get("agents"))
    labels = [a.label for a in agents]
    claim = None
    if "claims" in raw:
        claim = _claim(path, _table(path, "claims", raw["claims"], CLAIM_KEYS), labels)
    return Experiment(
        path=path,
        name=name,
        description=description,
        env_id=env["id"] if "/" in env["id"] else f"gfn_envs/{env['id']}",
        env_kwargs=env_kwargs,
        budget=budget,
        quick=quick,
        evaluation=evaluation,
        claim=claim,
        agents=agents,
    )


# ------------------------------------------------------------------------------- shipped configs
SHIPPED = Path(__file__).resolve().parents[2] / "configs"
"""The ``configs/`` folder of the checkout this package runs from."""


def shipped_configs() -> dict[str, Path]:
    """Shipped config names (path under ``configs/`` without ``.toml``) and their files."""
    if not SHIPPED.is_dir():
        return {}
    return {
        path.relative_to(SHIPPED).with_suffix("").as_posix(): path
        for path in sorted(SHIPPED.rglob("*.toml"))
    }


def portable_path(config: str | Path) -> str:
    """A shipped config's path relative to the repository (``configs/paper/tfbind8.toml``), so
    that recorded results do not name the machine they ran on; any other path as given."""
    resolved = Path(config).resolve()
    if resolved.is_relative_to(SHIPPED):
        return (Path(SHIPPED.name) / resolved.relative_to(SHIPPED)).as_posix()
    return str(config)


def resolve_config(config: str) -> str:
    """A config file path, or the file of a shipped config name."""
    if Path(config).exists():
        return config
    shipped = shipped_configs()
    if config in shipped:
        return str(shipped[config])
    raise ConfigError(config, "file", f"no such file, nor a shipped config: {sorted(shipped)}")
